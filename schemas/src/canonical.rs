//! The Avro specification's Parsing Canonical Form and its CRC-64-AVRO fingerprint, written
//! here rather than taken from apache-avro: its `canonical_form()` (0.22) strips `logicalType`
//! from `{"type":"string","logicalType":"uuid"}` but leaves `{"type":"string"}` instead of
//! `"string"` ([PRIMITIVES]), so every schema with a logical type got a fingerprint no other
//! implementation computes. Checked against the specification's published test vectors
//! (`tests/data/schema-tests.txt`) and against fastavro (`dev/avro/`).
//!
//! <https://avro.apache.org/docs/1.12.0/specification/#parsing-canonical-form-for-schemas>

use std::sync::LazyLock;

use serde_json::{Map, Value};

/// Why a schema has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Avro schema: {0}")]
pub struct CanonicalError(String);

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// The Parsing Canonical Form of the schema `text` (JSON).
pub fn parsing_canonical_form(text: &str) -> Result<String, CanonicalError> {
    let schema: Value =
        serde_json::from_str(text).map_err(|error| CanonicalError(error.to_string()))?;
    let mut out = String::new();
    write_schema(&schema, None, &mut out)?;
    Ok(out)
}

/// A schema anywhere in the tree; `namespace` is the most tightly enclosing one ([FULLNAMES]).
fn write_schema(
    schema: &Value,
    namespace: Option<&str>,
    out: &mut String,
) -> Result<(), CanonicalError> {
    match schema {
        // A primitive, or a reference to a named type by its (full) name.
        Value::String(name) if PRIMITIVES.contains(&name.as_str()) => write_string(name, out),
        Value::String(name) => write_string(&full_name(name, namespace), out),
        Value::Array(branches) => {
            out.push('[');
            for (index, branch) in branches.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_schema(branch, namespace, out)?;
            }
            out.push(']');
        }
        Value::Object(attributes) => write_object(attributes, namespace, out)?,
        other => return Err(CanonicalError(format!("a schema cannot be {other}"))),
    }
    Ok(())
}

/// An object schema: its attributes kept in the canonical order ([ORDER]), all others dropped
/// ([STRIP]), and primitives written as their names alone ([PRIMITIVES]).
fn write_object(
    attributes: &Map<String, Value>,
    namespace: Option<&str>,
    out: &mut String,
) -> Result<(), CanonicalError> {
    let kind = match attributes.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        // `{"type": <schema>}`: the inner schema is the schema.
        Some(inner @ (Value::Object(_) | Value::Array(_))) => {
            return write_schema(inner, namespace, out);
        }
        _ => return Err(CanonicalError("an object schema without a type".into())),
    };
    match kind {
        "record" | "error" | "enum" | "fixed" => {
            let name = string_attribute(attributes, "name")?;
            let own_namespace = match attributes.get("namespace") {
                Some(Value::String(namespace)) => Some(namespace.as_str()),
                _ => namespace,
            };
            let full = full_name(name, own_namespace);
            // Names inside a named type are relative to its namespace.
            let inner_namespace = full.rsplit_once('.').map(|(namespace, _)| namespace);
            out.push_str("{\"name\":");
            write_string(&full, out);
            out.push_str(",\"type\":");
            write_string(kind, out);
            match kind {
                "enum" => {
                    out.push_str(",\"symbols\":");
                    let symbols = attributes
                        .get("symbols")
                        .ok_or_else(|| CanonicalError("an enum without symbols".into()))?;
                    out.push_str(&symbols.to_string());
                }
                "fixed" => {
                    let size = attributes
                        .get("size")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| CanonicalError("a fixed without a size".into()))?;
                    out.push_str(&format!(",\"size\":{size}"));
                }
                _ => {
                    out.push_str(",\"fields\":[");
                    let fields = match attributes.get("fields") {
                        Some(Value::Array(fields)) => fields,
                        _ => return Err(CanonicalError("a record without fields".into())),
                    };
                    for (index, field) in fields.iter().enumerate() {
                        if index > 0 {
                            out.push(',');
                        }
                        let Value::Object(field) = field else {
                            return Err(CanonicalError("a field is an object".into()));
                        };
                        out.push_str("{\"name\":");
                        write_string(string_attribute(field, "name")?, out);
                        out.push_str(",\"type\":");
                        let kind = field
                            .get("type")
                            .ok_or_else(|| CanonicalError("a field without a type".into()))?;
                        write_schema(kind, inner_namespace, out)?;
                        out.push('}');
                    }
                    out.push(']');
                }
            }
            out.push('}');
        }
        "array" => {
            out.push_str("{\"type\":\"array\",\"items\":");
            let items = attributes
                .get("items")
                .ok_or_else(|| CanonicalError("an array without items".into()))?;
            write_schema(items, namespace, out)?;
            out.push('}');
        }
        "map" => {
            out.push_str("{\"type\":\"map\",\"values\":");
            let values = attributes
                .get("values")
                .ok_or_else(|| CanonicalError("a map without values".into()))?;
            write_schema(values, namespace, out)?;
            out.push('}');
        }
        // A primitive with attributes (a logical type, say), or a named type by reference.
        primitive_or_name => {
            write_schema(&Value::String(primitive_or_name.into()), namespace, out)?
        }
    }
    Ok(())
}

fn string_attribute<'a>(
    attributes: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, CanonicalError> {
    attributes
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| CanonicalError(format!("no \"{name}\"")))
}

/// A name made full: one with a dot is full already; otherwise the namespace goes before it.
fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) if !name.contains('.') && !namespace.is_empty() => {
            format!("{namespace}.{name}")
        }
        _ => name.to_owned(),
    }
}

/// A JSON string with UTF-8 characters as they are ([STRINGS]).
fn write_string(text: &str, out: &mut String) {
    out.push_str(&Value::String(text.to_owned()).to_string());
}

/// CRC-64-AVRO ("Rabin") of `bytes`, as the specification defines it.
pub fn crc64_avro(bytes: &[u8]) -> u64 {
    bytes.iter().fold(EMPTY, |fingerprint, byte| {
        (fingerprint >> 8) ^ TABLE[((fingerprint ^ u64::from(*byte)) & 0xff) as usize]
    })
}

const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

static TABLE: LazyLock<[u64; 256]> = LazyLock::new(|| {
    let mut table = [0; 256];
    for (index, entry) in table.iter_mut().enumerate() {
        let mut fingerprint = index as u64;
        for _ in 0..8 {
            fingerprint = (fingerprint >> 1) ^ (EMPTY & (0_u64.wrapping_sub(fingerprint & 1)));
        }
        *entry = fingerprint;
    }
    table
});

/// The fingerprint single-object encoding writes after `C3 01`: CRC-64-AVRO of the Parsing
/// Canonical Form, little-endian.
pub fn single_object_fingerprint(schema_text: &str) -> Result<[u8; 8], CanonicalError> {
    Ok(crc64_avro(parsing_canonical_form(schema_text)?.as_bytes()).to_le_bytes())
}

#[cfg(test)]
#[path = "canonical_tests.rs"]
mod tests;
