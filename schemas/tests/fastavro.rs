//! Our Parsing Canonical Form and fingerprint of every schema against fastavro's, another
//! implementation (`dev/avro/fingerprints.py`, in the virtualenv dev/test installs and names in
//! `SHOP_TEST_PYTHON`). The specification's own vectors are checked in `src/canonical_tests.rs`.

use std::collections::HashMap;
use std::process::Command;

use serde::Deserialize;
use shop_schemas::{fingerprint_hex, known_schemas};

#[derive(Deserialize)]
struct Theirs {
    canonical: String,
    fingerprint: String,
}

#[test]
fn every_schema_has_the_canonical_form_and_fingerprint_fastavro_computes() {
    let python = std::env::var("SHOP_TEST_PYTHON")
        .expect("SHOP_TEST_PYTHON names a Python with fastavro: run this through dev/test");
    let output = Command::new(python)
        .args(["dev/avro/fingerprints.py", "schemas/avro"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("the fastavro script runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: HashMap<String, Theirs> =
        serde_json::from_slice(&output.stdout).expect("the script prints JSON");
    assert_eq!(
        theirs.len(),
        known_schemas().len(),
        "one entry per schema file"
    );
    for known in known_schemas() {
        let theirs = &theirs[known.file];
        assert_eq!(known.canonical_form, theirs.canonical, "{}", known.file);
        assert_eq!(
            fingerprint_hex(&known.fingerprint),
            theirs.fingerprint,
            "{}",
            known.file
        );
    }
}
