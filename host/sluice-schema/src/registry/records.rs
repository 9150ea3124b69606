//! Confluent's `_schemas` record format (keys and values as JSON, property names and order as
//! Confluent's `SchemaRegistryKey*`/`*Value` classes write them), so the topic stays readable by
//! Confluent's tools and a topic written by Confluent replays here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::{Mode, SchemaReference};

/// A `_schemas` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// `{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}`
    Schema { subject: String, version: i32 },
    /// `{"keytype":"CONFIG","subject":"s","magic":0}`; no subject for the global config.
    Config { subject: Option<String> },
    /// `{"keytype":"MODE","subject":"s","magic":0}`; no subject for the global mode.
    Mode { subject: Option<String> },
    /// `{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}`: soft-deletes versions up to one.
    DeleteSubject { subject: String },
    /// `{"keytype":"CLEAR_SUBJECT","subject":"s","magic":0}`: forgets soft-deleted versions.
    ClearSubject { subject: Option<String> },
    /// NOOP, CONTEXT, ASSOC and key types of later versions: read and ignored.
    Ignored,
}

#[derive(Deserialize)]
struct RawKey {
    keytype: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<i32>,
}

impl Key {
    /// Parses a key; `None` for bytes that are not a `_schemas` key at all.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Key> {
        let raw: RawKey = serde_json::from_slice(bytes).ok()?;
        Some(match raw.keytype.as_str() {
            "SCHEMA" => Key::Schema {
                subject: raw.subject?,
                version: raw.version.filter(|v| *v >= 1)?,
            },
            "CONFIG" => Key::Config {
                subject: raw.subject,
            },
            "MODE" => Key::Mode {
                subject: raw.subject,
            },
            "DELETE_SUBJECT" => Key::DeleteSubject {
                subject: raw.subject?,
            },
            "CLEAR_SUBJECT" => Key::ClearSubject {
                subject: raw.subject,
            },
            "NOOP" | "CONTEXT" | "ASSOC" => Key::Ignored,
            _ => Key::Ignored,
        })
    }

    /// The key's bytes, properties in Confluent's `@JsonPropertyOrder`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        fn subject_key(keytype: &str, subject: Option<&str>) -> String {
            match subject {
                Some(s) => format!(
                    "{{\"keytype\":\"{keytype}\",\"subject\":{},\"magic\":0}}",
                    Value::String(s.to_string())
                ),
                None => format!("{{\"keytype\":\"{keytype}\",\"magic\":0}}"),
            }
        }
        let text = match self {
            Key::Schema { subject, version } => format!(
                "{{\"keytype\":\"SCHEMA\",\"subject\":{},\"version\":{version},\"magic\":1}}",
                Value::String(subject.clone())
            ),
            Key::Config { subject } => subject_key("CONFIG", subject.as_deref()),
            Key::Mode { subject } => subject_key("MODE", subject.as_deref()),
            Key::DeleteSubject { subject } => subject_key("DELETE_SUBJECT", Some(subject)),
            Key::ClearSubject { subject } => subject_key("CLEAR_SUBJECT", subject.as_deref()),
            Key::Ignored => "{\"keytype\":\"NOOP\",\"magic\":0}".to_string(),
        };
        text.into_bytes()
    }
}

/// A `SCHEMA` value (Confluent's `SchemaValue`). `ts` is Confluent's read-side timestamp
/// property; Sluice writes it so replay restores the registration time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SchemaValue {
    pub(crate) subject: String,
    pub(crate) version: i32,
    pub(crate) id: i32,
    #[serde(
        rename = "schemaType",
        default = "avro",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) schema_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) references: Vec<SchemaReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) metadata: Option<Value>,
    #[serde(rename = "ruleSet", default, skip_serializing_if = "Option::is_none")]
    pub(crate) rule_set: Option<Value>,
    pub(crate) schema: String,
    #[serde(default, skip_serializing_if = "is_false_keep")]
    pub(crate) deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ts: Option<i64>,
}

/// Confluent writes `"deleted":false` too (a primitive survives `NON_EMPTY`); so do we.
fn is_false_keep(_: &bool) -> bool {
    false
}

fn avro() -> Option<String> {
    Some("AVRO".to_string())
}

/// A `CONFIG` value: Confluent's `ConfigValue` properties, kept as a map so every key (data
/// contract ones included) survives a round trip.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ConfigValue(pub(crate) Map<String, Value>);

impl ConfigValue {
    pub(crate) fn parse(bytes: &[u8]) -> Option<ConfigValue> {
        let mut map: Map<String, Value> = serde_json::from_slice(bytes).ok()?;
        map.remove("subject");
        map.remove("offset");
        map.remove("ts");
        Some(ConfigValue(map))
    }

    pub(crate) fn to_bytes(&self, subject: Option<&str>) -> Vec<u8> {
        let mut map = Map::new();
        if let Some(s) = subject {
            map.insert("subject".into(), Value::String(s.to_string()));
        }
        for (k, v) in &self.0 {
            map.insert(k.clone(), v.clone());
        }
        Value::Object(map).to_string().into_bytes()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ModeValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<String>,
    pub(crate) mode: Mode,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeleteSubjectValue {
    pub(crate) subject: String,
    pub(crate) version: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ClearSubjectValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<String>,
}

pub(crate) use super::JournalRecord as Record;

pub(crate) fn record<T: Serialize>(key: &Key, value: &T) -> Record {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    (key.to_bytes(), Some(bytes))
}

pub(crate) fn tombstone(key: &Key) -> Record {
    (key.to_bytes(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_confluent_bytes() {
        let k = Key::Schema {
            subject: "s".into(),
            version: 1,
        };
        assert_eq!(
            String::from_utf8(k.to_bytes()).unwrap(),
            r#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#
        );
        assert_eq!(Key::parse(&k.to_bytes()), Some(k));
        let g = Key::Config { subject: None };
        assert_eq!(
            String::from_utf8(g.to_bytes()).unwrap(),
            r#"{"keytype":"CONFIG","magic":0}"#
        );
        assert_eq!(
            Key::parse(br#"{"keytype":"CONFIG","subject":null,"magic":0}"#),
            Some(g)
        );
        assert_eq!(
            Key::parse(br#"{"keytype":"NOOP","magic":0}"#),
            Some(Key::Ignored)
        );
        assert_eq!(Key::parse(b"garbage"), None);
        assert_eq!(
            Key::parse(br#"{"keytype":"SCHEMA","subject":"s","version":0,"magic":1}"#),
            None
        );
    }

    #[test]
    fn schema_values_round_trip_and_default_to_avro() {
        let v: SchemaValue = serde_json::from_str(
            r#"{"subject":"s","version":1,"id":3,"schema":"\"string\"","deleted":false}"#,
        )
        .unwrap();
        assert_eq!(v.schema_type.as_deref(), Some("AVRO"));
        let text = serde_json::to_string(&v).unwrap();
        assert_eq!(
            text,
            r#"{"subject":"s","version":1,"id":3,"schemaType":"AVRO","schema":"\"string\"","deleted":false}"#
        );
    }
}
