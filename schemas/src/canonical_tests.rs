use super::*;

/// One case of the Avro project's shared vectors.
struct Vector {
    number: String,
    input: String,
    canonical: String,
    fingerprint: Option<i64>,
}

/// Reads `schema-tests.txt`: `// NNN`, `<<INPUT` (one line, or lines up to `INPUT`),
/// `<<canonical`, and sometimes `<<fingerprint` (Java's signed long).
fn vectors() -> Vec<Vector> {
    let text = include_str!("../testdata/schema-tests.txt");
    let mut vectors = Vec::new();
    let mut lines = text.lines().peekable();
    let mut number = String::new();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("// ")
            && rest.chars().all(|c| c.is_ascii_digit())
        {
            number = rest.to_owned();
        } else if let Some(rest) = line.strip_prefix("<<INPUT") {
            let input = if rest.trim().is_empty() {
                let mut input = String::new();
                for line in lines.by_ref() {
                    if line == "INPUT" {
                        break;
                    }
                    input.push_str(line);
                    input.push('\n');
                }
                input
            } else {
                rest.trim().to_owned()
            };
            let canonical = lines
                .next()
                .and_then(|line| line.strip_prefix("<<canonical "))
                .expect("a canonical form follows every input")
                .to_owned();
            let fingerprint = lines
                .next_if(|line| line.starts_with("<<fingerprint "))
                .and_then(|line| line.strip_prefix("<<fingerprint ")?.parse().ok());
            vectors.push(Vector {
                number: number.clone(),
                input,
                canonical,
                fingerprint,
            });
        }
    }
    vectors
}

#[test]
fn every_published_vector_has_our_canonical_form_and_fingerprint() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 34, "the file holds 34 cases (000–033)");
    for vector in &vectors {
        let canonical = parsing_canonical_form(&vector.input)
            .unwrap_or_else(|error| panic!("case {}: {error}", vector.number));
        assert_eq!(canonical, vector.canonical, "case {}", vector.number);
        if let Some(expected) = vector.fingerprint {
            // Java's long is the same 64 bits.
            assert_eq!(
                crc64_avro(canonical.as_bytes()) as i64,
                expected,
                "case {}",
                vector.number
            );
        }
    }
    assert!(
        vectors.iter().filter(|v| v.fingerprint.is_some()).count() >= 20,
        "most cases carry a fingerprint"
    );
}

#[test]
fn a_logical_type_on_a_primitive_collapses_to_the_primitive() {
    assert_eq!(
        parsing_canonical_form(r#"{"type":"string","logicalType":"uuid"}"#).unwrap(),
        r#""string""#
    );
    let record = r#"{"type":"record","name":"E","namespace":"shop.events","fields":[
        {"name":"at","type":{"type":"long","logicalType":"timestamp-millis"},"doc":"when"},
        {"name":"lines","type":{"type":"array","items":{"type":"record","name":"Line",
          "fields":[{"name":"id","type":{"type":"string","logicalType":"uuid"}}]}}},
        {"name":"again","type":["null","Line"],"default":null}]}"#;
    assert_eq!(
        parsing_canonical_form(record).unwrap(),
        concat!(
            r#"{"name":"shop.events.E","type":"record","fields":["#,
            r#"{"name":"at","type":"long"},"#,
            r#"{"name":"lines","type":{"type":"array","items":{"name":"shop.events.Line","type":"record","fields":[{"name":"id","type":"string"}]}}},"#,
            r#"{"name":"again","type":["null","shop.events.Line"]}]}"#
        )
    );
}

#[test]
fn the_fingerprint_of_user_registered_v2_is_the_one_fastavro_computes() {
    // Measured with fastavro 1.x and a hand-written CRC-64-AVRO when the bug was found.
    let v2 = include_str!("../avro/user_registered.v2.avsc");
    assert_eq!(
        single_object_fingerprint(v2).unwrap(),
        [0x8e, 0x42, 0x4a, 0xf9, 0x05, 0x02, 0x6b, 0x2e]
    );
}

#[test]
fn what_is_not_a_schema_says_so() {
    for text in [
        "",
        "42",
        r#"{"name":"x"}"#,
        r#"{"type":"record","name":"r"}"#,
    ] {
        assert!(parsing_canonical_form(text).is_err(), "{text}");
    }
}
