//! Every schema version Shop knows, by fingerprint: what a reader needs to decode a message
//! written with any of them.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;

use crate::canonical;

/// The `.avsc` files, compiled in: `(file name, text)`.
const FILES: &[(&str, &str)] = &[
    (
        "user_registered.v1.avsc",
        include_str!("../avro/user_registered.v1.avsc"),
    ),
    (
        "user_registered.v2.avsc",
        include_str!("../avro/user_registered.v2.avsc"),
    ),
    (
        "user_registered.v3.avsc",
        include_str!("../avro/user_registered.v3.avsc"),
    ),
    (
        "user_updated.v1.avsc",
        include_str!("../avro/user_updated.v1.avsc"),
    ),
    (
        "user_deleted.v1.avsc",
        include_str!("../avro/user_deleted.v1.avsc"),
    ),
    (
        "account_mail_requested.v1.avsc",
        include_str!("../avro/account_mail_requested.v1.avsc"),
    ),
    (
        "order_placed.v1.avsc",
        include_str!("../avro/order_placed.v1.avsc"),
    ),
    (
        "order_placed.v2.avsc",
        include_str!("../avro/order_placed.v2.avsc"),
    ),
    (
        "order_placed.v3.avsc",
        include_str!("../avro/order_placed.v3.avsc"),
    ),
    (
        "order_paid.v1.avsc",
        include_str!("../avro/order_paid.v1.avsc"),
    ),
    (
        "order_shipped.v1.avsc",
        include_str!("../avro/order_shipped.v1.avsc"),
    ),
    (
        "order_shipped.v2.avsc",
        include_str!("../avro/order_shipped.v2.avsc"),
    ),
    (
        "order_delivered.v1.avsc",
        include_str!("../avro/order_delivered.v1.avsc"),
    ),
    (
        "order_cancelled.v1.avsc",
        include_str!("../avro/order_cancelled.v1.avsc"),
    ),
    (
        "payment_succeeded.v1.avsc",
        include_str!("../avro/payment_succeeded.v1.avsc"),
    ),
    (
        "payment_failed.v1.avsc",
        include_str!("../avro/payment_failed.v1.avsc"),
    ),
    (
        "payment_refunded.v1.avsc",
        include_str!("../avro/payment_refunded.v1.avsc"),
    ),
    (
        "product_price_changed.v1.avsc",
        include_str!("../avro/product_price_changed.v1.avsc"),
    ),
];

/// One version of one event's schema.
pub struct KnownSchema {
    /// `UserRegistered`, …
    pub name: String,
    pub version: u32,
    /// Its file under `schemas/avro/`.
    pub file: &'static str,
    pub schema: Schema,
    /// The specification's Parsing Canonical Form of the schema.
    pub canonical_form: String,
    /// CRC-64-AVRO of the Parsing Canonical Form, little-endian, as single-object encoding
    /// writes it (and as every other Avro implementation computes it).
    pub fingerprint: [u8; 8],
    /// The fingerprint messages carried before 2026-12: apache-avro 0.22's, of a canonical form
    /// that kept `{"type":"string"}` for logical types. Still read, never written, so messages
    /// already in topics and dead-letter topics decode.
    pub legacy_fingerprint: [u8; 8],
}

static KNOWN: LazyLock<Vec<KnownSchema>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(file, text)| {
            // The files are part of the build; a broken one fails every test at once.
            let schema = Schema::parse_str(text).unwrap_or_else(|error| {
                panic!("schemas/avro/{file} is not a valid schema: {error}")
            });
            let version = file
                .rsplit_once(".v")
                .and_then(|(_, rest)| rest.trim_end_matches(".avsc").parse().ok())
                .unwrap_or_else(|| panic!("schemas/avro/{file}: the file name has no .vN"));
            let name = match &schema {
                Schema::Record(record) => record.name.name().to_owned(),
                _ => panic!("schemas/avro/{file}: an event schema is a record"),
            };
            let canonical_form = canonical::parsing_canonical_form(text)
                .unwrap_or_else(|error| panic!("schemas/avro/{file}: {error}"));
            let fingerprint = canonical::crc64_avro(canonical_form.as_bytes()).to_le_bytes();
            let legacy_fingerprint: [u8; 8] = schema
                .fingerprint::<Rabin>()
                .bytes
                .try_into()
                .unwrap_or_else(|_| panic!("a CRC-64-AVRO fingerprint has 8 bytes"));
            KnownSchema {
                name,
                version,
                file,
                schema,
                canonical_form,
                fingerprint,
                legacy_fingerprint,
            }
        })
        .collect()
});

/// Every known schema version.
pub fn known_schemas() -> &'static [KnownSchema] {
    &KNOWN
}

/// The schema a message names by its fingerprint: the specification's, or the legacy one.
pub(crate) fn by_fingerprint(fingerprint: &[u8]) -> Option<&'static KnownSchema> {
    KNOWN
        .iter()
        .find(|known| known.fingerprint == fingerprint)
        .or_else(|| {
            KNOWN
                .iter()
                .find(|known| known.legacy_fingerprint == fingerprint)
        })
}

/// The newest version of an event's schema: what this code writes and reads with.
pub(crate) fn newest(name: &str) -> Option<&'static KnownSchema> {
    KNOWN
        .iter()
        .filter(|known| known.name == name)
        .max_by_key(|known| known.version)
}
