use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use serde::Serialize;
use uuid::Uuid;

use super::*;
use crate::registry::known_schemas;
use crate::*;

fn user(phone: Option<&str>) -> UserRegistered {
    UserRegistered {
        event_id: Uuid::from_u128(1),
        occurred_at: 1_795_000_000_000,
        user_id: Uuid::from_u128(2),
        email: "ada@example.com".into(),
        name: "Ada".into(),
        phone: phone.map(str::to_owned),
        verification_token: None,
        verification_expires_at: None,
    }
}

fn known(name: &str, version: u32) -> &'static KnownSchema {
    known_schemas()
        .iter()
        .find(|known| known.name == name && known.version == version)
        .unwrap()
}

/// An `OrderPlaced`, with what v2 and v3 add (`full`) or without it.
fn order_placed(full: bool) -> OrderPlaced {
    let address = ShippingAddress {
        name: "Ada Lovelace".into(),
        line1: "Unter den Linden 1".into(),
        line2: None,
        city: "Berlin".into(),
        region: None,
        postal_code: "10117".into(),
        country: "DE".into(),
        phone: Some("+4930123456".into()),
    };
    OrderPlaced {
        event_id: Uuid::from_u128(12),
        occurred_at: 1,
        order_id: Uuid::from_u128(10),
        customer_id: Uuid::from_u128(11),
        customer_email: "c@example.com".into(),
        customer_name: "C".into(),
        lines: vec![OrderLine {
            product_id: Uuid::from_u128(3),
            name: "Mug".into(),
            quantity: 2,
            unit_price: 1299,
        }],
        total: 2598 + 490,
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        idempotency_key: "k-1".into(),
        shipping_address: full.then(|| Box::new(address)),
        shipping_method: full.then(|| "standard".into()),
        subtotal: full.then_some(2598),
        shipping: full.then_some(490),
        tax: full.then_some(493),
        prices_include_tax: full.then_some(true),
        delivery_min_days: full.then_some(1),
        delivery_max_days: full.then_some(3),
        pay_by: full.then_some(1_800_000),
    }
}

/// `event` written with `version` of its schema, as a service built then writes it.
fn written_with<E: Event>(event: &E, version: u32) -> Vec<u8> {
    let schema = known(E::NAME, version);
    let value = apache_avro::to_value(event)
        .and_then(|value| value.resolve(&schema.schema))
        .unwrap();
    let body = GenericDatumWriter::builder(&schema.schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    [&MAGIC[..], &schema.fingerprint[..], &body[..]].concat()
}

#[test]
fn an_order_placed_v1_message_decodes_with_the_v2_reader() {
    let decoded = decode(&written_with(&order_placed(false), 1)).unwrap();
    assert_eq!(decoded.writer_version, 1);
    assert_eq!(
        decoded.event,
        order_placed(false).into_envelope(),
        "what v2 adds is absent"
    );
}

#[test]
fn an_order_placed_v3_message_decodes_with_the_v1_reader() {
    let (message, _) = encode(&order_placed(true)).unwrap();
    assert_eq!(decode(&message).unwrap().writer_version, 3);
    let decoded = decode_as(&message, known("OrderPlaced", 1)).unwrap();
    assert_eq!(decoded.writer_version, 3);
    // The v1 reader knows nothing of the address, shipping, tax and payment window; the rest is
    // all there.
    assert_eq!(decoded.event, order_placed(false).into_envelope());
}

/// A whole `OrderPlaced` as v2 knows it: everything but the payment window.
fn without_window() -> OrderPlaced {
    OrderPlaced {
        pay_by: None,
        ..order_placed(true)
    }
}

#[test]
fn an_order_placed_v2_message_decodes_with_the_v3_reader_without_a_payment_window() {
    let decoded = decode(&written_with(&order_placed(true), 2)).unwrap();
    assert_eq!(decoded.writer_version, 2);
    assert_eq!(decoded.event, without_window().into_envelope());
}

#[test]
fn an_order_placed_v3_message_decodes_with_the_v2_reader() {
    let (message, _) = encode(&order_placed(true)).unwrap();
    let decoded = decode_as(&message, known("OrderPlaced", 2)).unwrap();
    assert_eq!(decoded.event, without_window().into_envelope());
}

#[test]
fn every_event_survives_a_round_trip() {
    let order = Uuid::from_u128(10);
    let customer = Uuid::from_u128(11);
    let id = Uuid::from_u128(12);
    let events: Vec<Envelope> = vec![
        user(Some("+4915112345678")).into_envelope(),
        order_placed(true).into_envelope(),
        OrderPaid {
            event_id: id,
            occurred_at: 2,
            order_id: order,
            customer_id: customer,
            payment_id: id,
            amount: 2598,
            currency: "EUR".into(),
        }
        .into_envelope(),
        OrderShipped {
            event_id: id,
            occurred_at: 3,
            order_id: order,
            customer_id: customer,
            tracking_number: Some("TRACK-1".into()),
            carrier: Some("DHL".into()),
            delivery_min_days: Some(1),
            delivery_max_days: Some(3),
        }
        .into_envelope(),
        OrderDelivered {
            event_id: id,
            occurred_at: 4,
            order_id: order,
            customer_id: customer,
        }
        .into_envelope(),
        OrderCancelled {
            event_id: id,
            occurred_at: 5,
            order_id: order,
            customer_id: customer,
            reason: "customer".into(),
            was_paid: true,
        }
        .into_envelope(),
        PaymentSucceeded {
            event_id: id,
            occurred_at: 6,
            payment_id: id,
            order_id: order,
            amount: 1,
            currency: "EUR".into(),
            provider_reference: "pi_1".into(),
        }
        .into_envelope(),
        PaymentFailed {
            event_id: id,
            occurred_at: 7,
            payment_id: id,
            order_id: order,
            amount: 1,
            currency: "EUR".into(),
            reason: "declined".into(),
            code: Some("card_declined".into()),
        }
        .into_envelope(),
        PaymentRefunded {
            event_id: id,
            occurred_at: 8,
            payment_id: id,
            order_id: order,
            amount: 1,
            currency: "EUR".into(),
        }
        .into_envelope(),
        UserUpdated {
            event_id: id,
            occurred_at: 10,
            user_id: Uuid::from_u128(4),
            email: "ada@example.com".into(),
            name: "Ada".into(),
            phone: None,
            email_verified: true,
        }
        .into_envelope(),
        UserDeleted {
            event_id: id,
            occurred_at: 11,
            user_id: Uuid::from_u128(4),
            by_admin: false,
        }
        .into_envelope(),
        AccountMailRequested {
            event_id: id,
            occurred_at: 12,
            user_id: Uuid::from_u128(4),
            kind: AccountMailKind::EmailChangeNotice,
            email: "ada@example.com".into(),
            name: "Ada".into(),
            token: None,
            expires_at: Some(13),
            new_email: Some("ada@example.org".into()),
        }
        .into_envelope(),
        ProductPriceChanged {
            event_id: id,
            occurred_at: 9,
            product_id: Uuid::from_u128(3),
            old_price: 1299,
            new_price: 1499,
            currency: "EUR".into(),
        }
        .into_envelope(),
    ];
    for event in events {
        let encoded = match &event {
            Envelope::UserRegistered(e) => encode(e),
            Envelope::UserUpdated(e) => encode(e),
            Envelope::UserDeleted(e) => encode(e),
            Envelope::AccountMailRequested(e) => encode(e),
            Envelope::OrderPlaced(e) => encode(&**e),
            Envelope::OrderPaid(e) => encode(e),
            Envelope::OrderShipped(e) => encode(e),
            Envelope::OrderDelivered(e) => encode(e),
            Envelope::OrderCancelled(e) => encode(e),
            Envelope::PaymentSucceeded(e) => encode(e),
            Envelope::PaymentFailed(e) => encode(e),
            Envelope::PaymentRefunded(e) => encode(e),
            Envelope::ProductPriceChanged(e) => encode(e),
        }
        .unwrap()
        .0;
        assert_eq!(decode(&encoded).unwrap().event, event, "{}", event.name());
    }
}

#[test]
fn a_message_is_c3_01_then_the_specs_fingerprint_of_the_writer_schema_then_the_body() {
    let (message, fingerprint) = encode(&user(None)).unwrap();
    assert_eq!(&message[..2], &[0xC3, 0x01]);
    // fastavro's CRC-64-AVRO of user_registered.v3's Parsing Canonical Form.
    assert_eq!(
        fingerprint,
        [0xbe, 0x62, 0x54, 0x16, 0x69, 0x5e, 0xc4, 0xb1]
    );
    assert_eq!(&message[2..10], &fingerprint);
}

#[test]
fn a_message_written_with_the_legacy_fingerprint_still_decodes() {
    let event = user(Some("+4915112345678"));
    let (message, _) = encode(&event).unwrap();
    let v2 = known("UserRegistered", 2);
    // What the services wrote before (read off shop.users with kcat when the bug was found).
    assert_eq!(
        v2.legacy_fingerprint,
        [0x75, 0x99, 0x60, 0xc6, 0x07, 0x46, 0x3c, 0x92]
    );
    // A v2 body is a v3 body without v3's two trailing fields (two nulls: one 0 byte each).
    let v2_body = &message[10..message.len() - 2];
    let legacy = [&MAGIC[..], &v2.legacy_fingerprint[..], v2_body].concat();
    let decoded = decode(&legacy).unwrap();
    assert_eq!(decoded.event, event.into_envelope());
    assert_eq!(decoded.writer_version, 2);
}

#[test]
fn every_schema_has_its_own_fingerprint_and_a_different_legacy_one() {
    let schemas = known_schemas();
    let mut all: Vec<[u8; 8]> = schemas
        .iter()
        .flat_map(|known| [known.fingerprint, known.legacy_fingerprint])
        .collect();
    all.sort_unstable();
    all.dedup();
    // Every event schema has a logical type, which is what apache-avro got wrong.
    assert_eq!(all.len(), 2 * schemas.len(), "no two fingerprints collide");
}

/// The Avro binary encoding by hand: zig-zag varint longs, length-prefixed strings, a union as
/// its branch index then the value.
fn zigzag(mut out: Vec<u8>, value: i64) -> Vec<u8> {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if n < 0x80 {
            out.push(n as u8);
            return out;
        }
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
}

fn string(out: Vec<u8>, text: &str) -> Vec<u8> {
    let mut out = zigzag(out, text.len() as i64);
    out.extend_from_slice(text.as_bytes());
    out
}

#[test]
fn the_body_is_the_avro_binary_encoding_of_the_specification() {
    let event = user(Some("+49151"));
    let (message, _) = encode(&event).unwrap();
    let mut expected = string(Vec::new(), &event.event_id.to_string());
    expected = zigzag(expected, event.occurred_at);
    expected = string(expected, &event.user_id.to_string());
    expected = string(expected, "ada@example.com");
    expected = string(expected, "Ada");
    expected = zigzag(expected, 1); // the union's second branch: string
    expected = string(expected, "+49151");
    expected = zigzag(expected, 0); // v3's verification_token: null
    expected = zigzag(expected, 0); // and its expiry: null
    assert_eq!(&message[10..], &expected[..]);
}

/// A writer that still has version 1 of UserRegistered.
#[derive(Serialize)]
struct UserRegisteredV1 {
    event_id: String,
    occurred_at: i64,
    user_id: String,
    email: String,
    name: String,
}

fn written_with_v1() -> Vec<u8> {
    let v1 = known("UserRegistered", 1);
    let value = apache_avro::to_value(UserRegisteredV1 {
        event_id: Uuid::from_u128(1).to_string(),
        occurred_at: 1_795_000_000_000,
        user_id: Uuid::from_u128(2).to_string(),
        email: "ada@example.com".into(),
        name: "Ada".into(),
    })
    .and_then(|value| value.resolve(&v1.schema))
    .unwrap();
    let body = GenericDatumWriter::builder(&v1.schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    [&MAGIC[..], &v1.fingerprint[..], &body[..]].concat()
}

#[test]
fn a_v1_message_decodes_with_the_v2_reader() {
    let decoded = decode(&written_with_v1()).unwrap();
    assert_eq!(decoded.writer_version, 1);
    assert_eq!(
        decoded.event,
        user(None).into_envelope(),
        "phone takes its default"
    );
}

#[test]
fn a_newer_message_decodes_with_the_v1_reader() {
    let (message, _) = encode(&user(Some("+4915112345678"))).unwrap();
    let decoded = decode_as(&message, known("UserRegistered", 1)).unwrap();
    assert_eq!(decoded.writer_version, 3);
    // The v1 reader does not know the phone (nor v3's token); the rest is all there.
    assert_eq!(decoded.event, user(None).into_envelope());
}

#[test]
fn consecutive_versions_of_every_event_are_fully_compatible_both_ways() {
    let mut names: Vec<&str> = known_schemas().iter().map(|k| k.name.as_str()).collect();
    names.sort();
    names.dedup();
    let mut pairs = 0;
    for name in names {
        let mut versions: Vec<&KnownSchema> =
            known_schemas().iter().filter(|k| k.name == name).collect();
        versions.sort_by_key(|k| k.version);
        assert_eq!(versions[0].version, 1, "{name} starts at v1");
        for pair in versions.windows(2) {
            assert_eq!(
                pair[1].version,
                pair[0].version + 1,
                "{name}: no gap in versions"
            );
            let compatibility = SchemaCompatibility::mutual_read(&pair[0].schema, &pair[1].schema);
            assert_eq!(
                compatibility.map_err(|e| e.to_string()),
                Ok(Compatibility::Full),
                "{name} v{} and v{}",
                pair[0].version,
                pair[1].version
            );
            pairs += 1;
        }
    }
    assert!(pairs >= 1, "at least one event has two versions");
}

#[test]
fn what_is_not_a_known_message_is_told_apart() {
    assert_eq!(
        decode(b"{\"json\": true}"),
        Err(DecodeError::NotSingleObject)
    );
    assert_eq!(
        decode(&[0xC3, 0x01, 1, 2]),
        Err(DecodeError::NotSingleObject)
    );
    let unknown = [0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0];
    assert!(matches!(
        decode(&unknown),
        Err(DecodeError::UnknownSchema(_))
    ));
    let (message, _) = encode(&user(None)).unwrap();
    assert!(matches!(
        // Cut inside the name.
        decode(&message[..message.len() - 5]),
        Err(DecodeError::Malformed { .. })
    ));
}
