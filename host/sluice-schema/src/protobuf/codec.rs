//! Protobuf binary ⇄ proto3 canonical JSON for the data path (prost-reflect's serde support),
//! the message type picked by the record's message-index path.

use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use serde_json::Value;

use super::ProtobufSchema;

/// A message's nested messages as Confluent numbers them: map-entry messages are not declared
/// in `.proto` text and do not count (descriptor compilers place them differently).
fn nested(message: &MessageDescriptor) -> impl Iterator<Item = MessageDescriptor> + '_ {
    message.child_messages().filter(|m| !m.is_map_entry())
}

impl ProtobufSchema {
    /// The message a message-index path names: the first index picks a top-level message in
    /// declaration order, each further one a nested message of the previous.
    pub(crate) fn message_at(&self, indexes: &[i32]) -> Result<MessageDescriptor, String> {
        let mut iter = indexes.iter();
        let first = iter.next().copied().unwrap_or(0);
        let mut current = usize::try_from(first)
            .ok()
            .and_then(|i| self.file.messages().nth(i))
            .ok_or_else(|| {
                format!(
                    "message index {first} is out of range: the schema has {} top-level messages",
                    self.file.messages().len()
                )
            })?;
        for &i in iter {
            let next = usize::try_from(i)
                .ok()
                .and_then(|i| nested(&current).nth(i));
            current = next.ok_or_else(|| {
                format!(
                    "message index {i} is out of range in {}",
                    current.full_name()
                )
            })?;
        }
        Ok(current)
    }

    /// The message-index path of a message of this schema's file (by full name).
    pub(crate) fn indexes_of(&self, full_name: &str) -> Option<Vec<i32>> {
        let desc = self.pool.get_message_by_name(full_name)?;
        if desc.parent_file().name() != self.file.name() {
            return None;
        }
        let mut path = Vec::new();
        let mut current = desc;
        while let Some(parent) = current.parent_message() {
            let i = nested(&parent).position(|m| m.full_name() == current.full_name())?;
            path.push(i32::try_from(i).ok()?);
            current = parent;
        }
        let i = self
            .file
            .messages()
            .position(|m| m.full_name() == current.full_name())?;
        path.push(i32::try_from(i).ok()?);
        path.reverse();
        Some(path)
    }
}

/// Decodes a payload as `message` and renders it as proto3 canonical JSON.
pub(crate) fn decode(message: &MessageDescriptor, payload: &[u8]) -> Result<Value, String> {
    let msg = DynamicMessage::decode(message.clone(), payload)
        .map_err(|e| format!("cannot decode {}: {e}", message.full_name()))?;
    msg.serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
        .map_err(|e| format!("cannot render {} as JSON: {e}", message.full_name()))
}

/// Decodes only (the `decode` validation mode): no JSON is built.
pub(crate) fn check(message: &MessageDescriptor, payload: &[u8]) -> Result<(), String> {
    DynamicMessage::decode(message.clone(), payload)
        .map(|_| ())
        .map_err(|e| format!("cannot decode {}: {e}", message.full_name()))
}

/// Builds `message` from proto3 JSON (unknown fields refused) and encodes it.
pub(crate) fn encode(message: &MessageDescriptor, value: &Value) -> Result<Vec<u8>, String> {
    let msg = DynamicMessage::deserialize_with_options(
        message.clone(),
        value,
        &DeserializeOptions::new(),
    )
    .map_err(|e| format!("not a valid {}: {e}", message.full_name()))?;
    Ok(msg.encode_to_vec())
}
