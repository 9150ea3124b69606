//! Schema-aware processing: a deployment with `"decode": "json"` hands its plugin the
//! values of records framed in Confluent's wire format (Avro, Protobuf, JSON Schema)
//! decoded to JSON — by the host, at native speed, schemas cached by id — and encodes the
//! JSON values the plugin emits again: with the output's subject (`output_schemas`, else the
//! output topic's schema setting), else with the schema the input record had. Outputs with
//! a subject must match it whatever the plugin did: an emitted value that does not (or does
//! not encode) dead-letters its input with the reason, so a plugin cannot break a topic's
//! contract.

use std::sync::Arc;

use bytes::Bytes;
use sluice_schema::{EncodeTarget, Registry, ValidationMode};
use sluice_sdk::codec::{Reader, RecordView, next_raw, put_record_with_value};

use crate::emit::InputBatch;

/// How one deployment's records cross the schema registry.
#[derive(Debug)]
pub(crate) struct SchemaCodec {
    registry: Arc<Registry>,
    /// Values reach the plugin as JSON; JSON outputs are encoded again.
    decode: bool,
    /// Per output slot: the subject its values must carry.
    subjects: Vec<Option<String>>,
}

impl SchemaCodec {
    /// The codec of a deployment, if it is schema-aware at all.
    pub fn new(
        registry: Option<Arc<Registry>>,
        decode: bool,
        subjects: Vec<Option<String>>,
    ) -> Option<SchemaCodec> {
        let registry = registry?;
        (decode || subjects.iter().any(Option::is_some)).then_some(SchemaCodec {
            registry,
            decode,
            subjects,
        })
    }

    /// The batch as the plugin sees it (framed values decoded to JSON text; the rest as
    /// they are) and the schema id each record had. Without `decode`, the batch itself.
    pub fn plugin_input(&self, input: &InputBatch) -> (InputBatch, Vec<Option<i32>>) {
        if !self.decode {
            return (input.clone(), Vec::new());
        }
        let mut section = Vec::with_capacity(input.section.len() * 2);
        let mut ids = Vec::with_capacity(input.offsets.len());
        let mut r = Reader::new(&input.section);
        for _ in 0..input.offsets.len() {
            let Ok(raw) = next_raw(&mut r) else { break };
            let Ok(view) = RecordView::read(&mut Reader::new(raw)) else {
                section.extend_from_slice(raw);
                ids.push(None);
                continue;
            };
            let decoded = view
                .value
                .and_then(|v| self.registry.decode_to_json(v).ok());
            match decoded {
                Some(d) => {
                    let json = d.value.to_string();
                    put_record_with_value(&mut section, &view, Some(json.as_bytes()));
                    ids.push(Some(d.id));
                }
                None => {
                    section.extend_from_slice(raw);
                    ids.push(None);
                }
            }
        }
        (
            InputBatch {
                section: Bytes::from(section),
                offsets: input.offsets.clone(),
                base_offset: input.base_offset,
                base_timestamp: input.base_timestamp,
            },
            ids,
        )
    }

    /// A framed value decoded to JSON text, for a `decode` deployment (to read its fields
    /// on the host: event times).
    pub fn json_value(&self, value: Option<&[u8]>) -> Option<String> {
        if !self.decode {
            return None;
        }
        let d = self.registry.decode_to_json(value?).ok()?;
        Some(d.value.to_string())
    }

    /// What an emitted value becomes in output `slot`, for an input that had schema
    /// `input_id`: `Ok(None)` as emitted, `Ok(Some(bytes))` encoded, `Err(why)` when it
    /// breaks the output's contract. Null values pass.
    pub fn output(
        &self,
        slot: usize,
        input_id: Option<i32>,
        value: Option<&[u8]>,
    ) -> Result<Option<Vec<u8>>, String> {
        let Some(value) = value else { return Ok(None) };
        let subject = self.subjects.get(slot).and_then(Option::as_ref);
        if self.decode {
            let target = match (subject, input_id) {
                (Some(s), _) => Some(EncodeTarget::Subject(s.clone())),
                (None, Some(id)) => Some(EncodeTarget::Id(id)),
                (None, None) => None,
            };
            if let Some(target) = target {
                // A value that is already framed (the plugin encoded it) is checked below;
                // JSON is encoded.
                if value.first() != Some(&0) {
                    let json: serde_json::Value = serde_json::from_slice(value).map_err(|e| {
                        format!("the output value is not JSON to encode with its schema: {e}")
                    })?;
                    let framed = self
                        .registry
                        .encode_from_json(&target, &json, None)
                        .map_err(|e| format!("the output does not encode with its schema: {e}"))?;
                    return Ok(Some(framed));
                }
            }
        }
        if let Some(s) = subject {
            self.registry
                .validate(s, value, ValidationMode::Decode)
                .map_err(|e| format!("the output breaks the contract of subject {s}: {e}"))?;
        }
        Ok(None)
    }
}
