//! Avro single-object encoding, with schema resolution on the way in.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;

use crate::registry::{self, KnownSchema};
use crate::{Envelope, Event};

/// The two marker bytes that start every single-object encoded message.
pub const MAGIC: [u8; 2] = [0xC3, 0x01];

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("no schema is known for {0}")]
    UnknownEvent(&'static str),
    #[error("{event} does not fit its schema: {reason}")]
    Invalid { event: &'static str, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not an Avro single-object message (no C3 01 marker)")]
    NotSingleObject,
    #[error("written with a schema this service does not know (fingerprint {0})")]
    UnknownSchema(String),
    #[error("{event} v{version} does not decode: {reason}")]
    Malformed {
        event: String,
        version: u32,
        reason: String,
    },
}

/// A decoded message: the event, and which schema version wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub event: Envelope,
    pub writer_version: u32,
}

pub fn fingerprint_hex(fingerprint: &[u8]) -> String {
    fingerprint
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `event` as a single-object message, written with the newest version of its schema. Also
/// returns that schema's fingerprint (for the message headers).
pub fn encode<E: Event>(event: &E) -> Result<(Vec<u8>, [u8; 8]), EncodeError> {
    let known = registry::newest(E::NAME).ok_or(EncodeError::UnknownEvent(E::NAME))?;
    let invalid = |reason: apache_avro::Error| EncodeError::Invalid {
        event: E::NAME,
        reason: reason.to_string(),
    };
    // serde gives strings where the schema has logical types (uuid); resolving converts them.
    let value = apache_avro::to_value(event)
        .and_then(|value| value.resolve(&known.schema))
        .map_err(invalid)?;
    let body = GenericDatumWriter::builder(&known.schema)
        .build()
        .map_err(invalid)?
        .write_value_to_vec(value)
        .map_err(invalid)?;
    let mut message = Vec::with_capacity(10 + body.len());
    message.extend_from_slice(&MAGIC);
    message.extend_from_slice(&known.fingerprint);
    message.extend_from_slice(&body);
    Ok((message, known.fingerprint))
}

/// Reads a single-object message written with any known version of any event, resolving it
/// against the newest version of that event's schema.
pub fn decode(message: &[u8]) -> Result<Decoded, DecodeError> {
    let (writer, body) = writer_of(message)?;
    let reader = registry::newest(&writer.name).unwrap_or(writer);
    decode_with(writer, reader, body)
}

/// Reads a message with a given reader schema (the evolution tests read with older versions).
pub fn decode_as(message: &[u8], reader: &KnownSchema) -> Result<Decoded, DecodeError> {
    let (writer, body) = writer_of(message)?;
    decode_with(writer, reader, body)
}

fn writer_of(message: &[u8]) -> Result<(&'static KnownSchema, &[u8]), DecodeError> {
    let rest = message
        .strip_prefix(&MAGIC)
        .ok_or(DecodeError::NotSingleObject)?;
    if rest.len() < 8 {
        return Err(DecodeError::NotSingleObject);
    }
    let (fingerprint, body) = rest.split_at(8);
    let writer = registry::by_fingerprint(fingerprint)
        .ok_or_else(|| DecodeError::UnknownSchema(fingerprint_hex(fingerprint)))?;
    Ok((writer, body))
}

fn decode_with(
    writer: &KnownSchema,
    reader: &KnownSchema,
    body: &[u8],
) -> Result<Decoded, DecodeError> {
    let malformed = |reason: String| DecodeError::Malformed {
        event: writer.name.clone(),
        version: writer.version,
        reason,
    };
    let value = GenericDatumReader::builder(&writer.schema)
        .reader_schema(&reader.schema)
        .build()
        .map_err(|error| malformed(error.to_string()))?
        .read_value(&mut &body[..])
        .map_err(|error| malformed(error.to_string()))?;
    let event = Envelope::from_value(&reader.name, &value)
        .ok_or_else(|| malformed("no Rust type for this event".to_owned()))?
        .map_err(|error| malformed(error.to_string()))?;
    Ok(Decoded {
        event,
        writer_version: writer.version,
    })
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
