//! A schema of any type parsed with its references resolved: the one value the compatibility
//! checkers, the registry and the codecs share.

use std::collections::HashSet;

use serde_json::Value;

use crate::avro::{self, AvroSchema};
use crate::error::{CodecError, SchemaError};
use crate::json::{self, JsonSchema};
use crate::protobuf::{self, Import, ProtobufSchema};
use crate::types::{SchemaReference, SchemaType};

/// What a reference resolves to: the referenced version's schema and its own references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedReference {
    pub schema_type: SchemaType,
    pub schema: String,
    pub references: Vec<SchemaReference>,
}

/// Gives the schema of `(subject, version)` for reference resolution (the registry answers from
/// its state; tests from a table). Any `Fn(&str, i32) -> Option<ResolvedReference>` is one.
pub trait ReferenceResolver {
    fn resolve(&self, subject: &str, version: i32) -> Option<ResolvedReference>;
}

impl<F> ReferenceResolver for F
where
    F: Fn(&str, i32) -> Option<ResolvedReference>,
{
    fn resolve(&self, subject: &str, version: i32) -> Option<ResolvedReference> {
        self(subject, version)
    }
}

/// A resolver for schemas without references.
pub fn no_references(_: &str, _: i32) -> Option<ResolvedReference> {
    None
}

/// Bounds reference graphs (a chain of references deeper than this, or more of them, is refused).
const MAX_REFERENCE_DEPTH: usize = 32;
const MAX_REFERENCES: usize = 1000;

#[derive(Debug)]
pub(crate) enum Inner {
    Avro(AvroSchema),
    Protobuf(ProtobufSchema),
    Json(JsonSchema),
}

/// A parsed, validated schema: its type, references, canonical and normalized texts, and the
/// per-type representation the checkers and codecs use.
#[derive(Debug)]
pub struct ParsedSchema {
    schema_type: SchemaType,
    references: Vec<SchemaReference>,
    canonical: String,
    normalized: String,
    pub(crate) inner: Inner,
}

impl ParsedSchema {
    pub fn schema_type(&self) -> SchemaType {
        self.schema_type
    }

    pub fn references(&self) -> &[SchemaReference] {
        &self.references
    }

    /// The canonical text (what the registry stores and identifies schemas by).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// The normalized text (`normalize=true`): equal for schemas that differ only in ordering of
    /// keys, imports, fields or aliases.
    pub fn normalized(&self) -> &str {
        &self.normalized
    }

    /// The text for a `format` query parameter: Protobuf `serialized` is the base64
    /// `FileDescriptorProto`; anything else (and unknown formats) the canonical text.
    pub fn formatted(&self, format: Option<&str>) -> String {
        match (&self.inner, format) {
            (Inner::Protobuf(p), Some(f)) if f.eq_ignore_ascii_case("serialized") => p.serialized(),
            _ => self.canonical.clone(),
        }
    }

    /// Decodes a payload (what follows the 5-byte header) to JSON. Protobuf payloads start with
    /// their message-index path.
    pub fn decode_payload(&self, payload: &[u8]) -> Result<Value, CodecError> {
        match &self.inner {
            Inner::Avro(a) => avro::codec::decode(a, payload).map_err(CodecError::Decode),
            Inner::Protobuf(p) => {
                let (indexes, body) = crate::wire::read_message_indexes(payload)?;
                let message = p.message_at(&indexes).map_err(CodecError::Decode)?;
                protobuf::codec::decode(&message, body).map_err(CodecError::Decode)
            }
            Inner::Json(_) => serde_json::from_slice(payload)
                .map_err(|e| CodecError::Decode(format!("payload is not JSON: {e}"))),
        }
    }

    /// Checks that a payload decodes (Avro, Protobuf) or validates (JSON Schema) without keeping
    /// the result: the `decode` validation mode.
    pub fn check_payload(&self, payload: &[u8]) -> Result<(), CodecError> {
        match &self.inner {
            Inner::Avro(a) => avro::codec::check(a, payload).map_err(CodecError::Decode),
            Inner::Protobuf(p) => {
                let (indexes, body) = crate::wire::read_message_indexes(payload)?;
                let message = p.message_at(&indexes).map_err(CodecError::Decode)?;
                protobuf::codec::check(&message, body).map_err(CodecError::Decode)
            }
            Inner::Json(j) => {
                let value: Value = serde_json::from_slice(payload)
                    .map_err(|e| CodecError::Decode(format!("payload is not JSON: {e}")))?;
                json::validate(j, &value).map_err(CodecError::Invalid)
            }
        }
    }

    /// Encodes JSON as a payload (Protobuf: message indexes then the message; `message` picks a
    /// message type by full name, the file's first message otherwise).
    pub fn encode_payload(
        &self,
        value: &Value,
        message: Option<&str>,
    ) -> Result<Vec<u8>, CodecError> {
        match &self.inner {
            Inner::Avro(a) => avro::codec::encode(a, value).map_err(CodecError::Encode),
            Inner::Protobuf(p) => {
                let indexes = match message {
                    Some(name) => p.indexes_of(name.trim_start_matches('.')).ok_or_else(|| {
                        CodecError::Encode(format!("the schema has no message {name}"))
                    })?,
                    None => vec![0],
                };
                let desc = p.message_at(&indexes).map_err(CodecError::Encode)?;
                let body = protobuf::codec::encode(&desc, value).map_err(CodecError::Encode)?;
                let mut out = Vec::with_capacity(body.len() + 2);
                crate::wire::write_message_indexes(&mut out, &indexes);
                out.extend_from_slice(&body);
                Ok(out)
            }
            Inner::Json(j) => {
                json::validate(j, value).map_err(CodecError::Invalid)?;
                serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string()))
            }
        }
    }
}

struct Collected {
    /// (reference name, subject, version, resolved), dependencies before dependents.
    refs: Vec<(String, String, i32, ResolvedReference)>,
    seen: HashSet<(String, String, i32)>,
}

fn collect(
    references: &[SchemaReference],
    resolver: &dyn ReferenceResolver,
    depth: usize,
    out: &mut Collected,
) -> Result<(), SchemaError> {
    if depth > MAX_REFERENCE_DEPTH || out.refs.len() > MAX_REFERENCES {
        return Err(SchemaError::invalid(
            "reference",
            "references nest too deeply or are too many",
        ));
    }
    for r in references {
        if !out
            .seen
            .insert((r.name.clone(), r.subject.clone(), r.version))
        {
            continue;
        }
        let resolved = resolver.resolve(&r.subject, r.version).ok_or_else(|| {
            SchemaError::MissingReference {
                subject: r.subject.clone(),
                version: r.version,
            }
        })?;
        collect(&resolved.references, resolver, depth + 1, out)?;
        out.refs
            .push((r.name.clone(), r.subject.clone(), r.version, resolved));
    }
    Ok(())
}

/// Parses and validates `text` as `schema_type`, resolving `references` (recursively) through
/// `resolver`. Reference versions must be concrete (the registry resolves `-1` first).
pub fn parse_schema(
    schema_type: SchemaType,
    text: &str,
    references: &[SchemaReference],
    resolver: &dyn ReferenceResolver,
) -> Result<ParsedSchema, SchemaError> {
    if text.trim().is_empty() {
        return Err(SchemaError::Empty);
    }
    let mut collected = Collected {
        refs: Vec::new(),
        seen: HashSet::new(),
    };
    collect(references, resolver, 0, &mut collected)?;
    let (inner, canonical, normalized) = match schema_type {
        SchemaType::Avro => {
            let mut texts: Vec<String> = Vec::new();
            let mut seen = HashSet::new();
            for (_, subject, version, r) in &collected.refs {
                if seen.insert((subject.clone(), *version)) {
                    texts.push(r.schema.clone());
                }
            }
            let parsed = avro::parse(text, &texts)?;
            let canonical = avro::canonical(text)?;
            let normalized = avro::normalized(&parsed);
            (Inner::Avro(parsed), canonical, normalized)
        }
        SchemaType::Protobuf => {
            let imports: Vec<Import> = collected
                .refs
                .iter()
                .map(|(name, subject, version, r)| Import {
                    name: name.clone(),
                    text: r.schema.clone(),
                    subject: subject.clone(),
                    version: *version,
                })
                .collect();
            let parsed = protobuf::parse(text, &imports)?;
            let canonical = parsed.canonical();
            let normalized = parsed.normalized();
            (Inner::Protobuf(parsed), canonical, normalized)
        }
        SchemaType::Json => {
            let refs: Vec<(String, String)> = collected
                .refs
                .iter()
                .map(|(name, _, _, r)| (name.clone(), r.schema.clone()))
                .collect();
            let parsed = json::parse(text, &refs)?;
            let canonical = json::canonical(&parsed);
            let normalized = json::normalized(&parsed);
            (Inner::Json(parsed), canonical, normalized)
        }
    };
    Ok(ParsedSchema {
        schema_type,
        references: references.to_vec(),
        canonical,
        normalized,
        inner,
    })
}

/// Reference lists compare sorted and deduplicated under `normalize=true`.
pub(crate) fn normalized_references(references: &[SchemaReference]) -> Vec<SchemaReference> {
    let mut refs = references.to_vec();
    refs.sort();
    refs.dedup();
    refs
}
