//! Shop's events: one Avro schema per event and version (`avro/*.avsc`, namespace `shop.events`),
//! the Rust type of each event, and the codec.
//!
//! Messages use **Avro single-object encoding**: `C3 01`, the 8-byte little-endian CRC-64-AVRO
//! fingerprint of the writer schema's Parsing Canonical Form, then the Avro binary body. A reader
//! looks the writer schema up by fingerprint among every version it knows and resolves it against
//! its own schema, so messages written with an older or a newer version of an event still decode.
//! (apache-avro's own single-object reader accepts one exact fingerprint only.) The canonical
//! form and fingerprint are computed here (`canonical.rs`), to the specification; messages
//! written before that carry apache-avro's own fingerprint and still decode.

pub mod canonical;
mod codec;
mod events;
mod registry;

pub use codec::{DecodeError, Decoded, EncodeError, decode, decode_as, encode, fingerprint_hex};
pub use events::*;
pub use registry::{KnownSchema, known_schemas};

/// What every event type offers the codec and the bridge.
pub trait Event:
    serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Into<Envelope> + 'static
{
    /// The schema's name (`UserRegistered`); its full name is `shop.events.<NAME>`.
    const NAME: &'static str;
    /// The topic it is published on.
    const TOPIC: &'static str;

    fn event_id(&self) -> uuid::Uuid;
    /// The aggregate the event belongs to: the message key, so one aggregate's events stay in
    /// order on one partition.
    fn aggregate_id(&self) -> uuid::Uuid;
    fn into_envelope(self) -> Envelope {
        self.into()
    }
}

pub const USERS: &str = "shop.users";
pub const ORDERS: &str = "shop.orders";
pub const PAYMENTS: &str = "shop.payments";
pub const PRODUCTS: &str = "shop.products";
/// Every topic events are published on.
pub const TOPICS: &[&str] = &[USERS, ORDERS, PAYMENTS, PRODUCTS];

/// Where a topic's undeliverable messages go.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}
