//! The data path's vocabulary: how strictly a schema-validated topic checks records, and how
//! records map to JSON. The codecs are methods of [`crate::ParsedSchema`]
//! (`decode_payload`, `check_payload`, `encode_payload`), reached by id through
//! [`crate::Registry`]'s cache (`decode_to_json`, `validate`, `encode_from_json`).
//!
//! # JSON mappings
//! - **Avro**: records are objects in field order, maps objects, arrays arrays, enums their
//!   symbol; a union is its branch's value unwrapped (encoding tries the branches in order, and
//!   also accepts Avro's `{"<type name>": value}` wrapping); `bytes` and `fixed` are strings of code
//!   points 0–255, one per byte (Avro's JSON encoding, as Confluent's console tools print them);
//!   `decimal` is a string of its digits (`"-12.34"`; encoding also takes a JSON number, refusing
//!   more fraction digits than the scale); `uuid` its string; `date`, `time-*`, `timestamp-*`
//!   their underlying number; `float`/`double` NaN and infinities the strings `"NaN"`,
//!   `"Infinity"`, `"-Infinity"`. A missing field takes its default; unknown fields are refused;
//!   trailing bytes after a datum are an error.
//! - **Protobuf**: proto3 canonical JSON (lowerCamelCase names, 64-bit integers as strings, enum
//!   names, defaults omitted) of the message the record's message-index path names; encoding
//!   refuses unknown fields and writes the indexes (`[0]` as the single byte `0`). Indexes count
//!   nested messages in declaration order without map-entry messages, as Confluent's Java
//!   serializers do.
//! - **JSON Schema**: the payload itself; encoding validates first.
//!
//! Bounds on hostile input: Avro decoding stops at 128 levels of nesting and at a budget of
//! values proportional to the input's size (a block count cannot claim billions of empty items);
//! Protobuf decoding has prost's recursion limit (100); JSON has serde_json's (128).

/// How a schema-validated topic checks a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ValidationMode {
    /// The record is framed with the id of a version of the topic's subject (cheap: no decoding).
    #[default]
    Id,
    /// As `Id`, and the payload decodes (Avro, Protobuf) or validates (JSON Schema) against it.
    Decode,
}

impl ValidationMode {
    /// Parses the topic setting's `"validation"` value (`id` or `decode`).
    pub fn parse(s: &str) -> Option<ValidationMode> {
        match s {
            "id" => Some(ValidationMode::Id),
            "decode" => Some(ValidationMode::Decode),
            _ => None,
        }
    }
}
