//! Request and response bodies of the REST API, serializing to Confluent's exact JSON shapes
//! (`NON_EMPTY`: absent, empty lists and empty strings omitted, `false` kept).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::RegistryError;
use crate::types::{CompatibilityLevel, Mode, SchemaReference, SchemaType};

/// A reference as a request carries it: every field must be present; `version` may be `-1`
/// (latest).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReferenceRequest {
    pub name: Option<String>,
    pub subject: Option<String>,
    pub version: Option<i32>,
}

/// The body of register, lookup and the compatibility checks (`RegisterSchemaRequest`).
/// Unknown properties are ignored, as Confluent's entities do.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RegisterRequest {
    pub schema: Option<String>,
    /// Absent or null means AVRO; the name is case-sensitive.
    #[serde(rename = "schemaType")]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Option<Vec<ReferenceRequest>>,
    /// Data-contract metadata: stored opaquely, echoed, part of the identity.
    pub metadata: Option<Value>,
    #[serde(rename = "ruleSet")]
    pub rule_set: Option<Value>,
    /// IMPORT mode only.
    pub id: Option<i32>,
    /// IMPORT mode only (or the next version).
    pub version: Option<i32>,
}

impl RegisterRequest {
    /// A request for `schema` of `schema_type` with no references (tests, the CLI).
    pub fn new(schema_type: SchemaType, schema: impl Into<String>) -> RegisterRequest {
        RegisterRequest {
            schema: Some(schema.into()),
            schema_type: Some(schema_type.as_str().to_string()),
            ..RegisterRequest::default()
        }
    }

    /// Adds a reference.
    pub fn with_reference(mut self, name: &str, subject: &str, version: i32) -> RegisterRequest {
        self.references
            .get_or_insert_with(Vec::new)
            .push(ReferenceRequest {
                name: Some(name.into()),
                subject: Some(subject.into()),
                version: Some(version),
            });
        self
    }

    pub(crate) fn parsed_type(&self) -> Result<SchemaType, RegistryError> {
        match self.schema_type.as_deref() {
            None => Ok(SchemaType::Avro),
            Some(t) => SchemaType::parse(t)
                .ok_or_else(|| RegistryError::invalid_schema(format!("Invalid schema type {t}"))),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A subject-version (`GET /subjects/{s}/versions/{v}`, lookup, `GET /schemas`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaResponse {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub guid: String,
    #[serde(rename = "schemaType")]
    pub schema_type: SchemaType,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(rename = "ruleSet", skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<Value>,
    pub schema: String,
    pub ts: i64,
    pub deleted: bool,
}

/// `POST /subjects/{s}/versions`. `schema` is the exact submitted text, not the canonical one:
/// confluent-kafka-python caches it as the schema of the id (a base64 Protobuf descriptor must
/// stay one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegisterResponse {
    pub id: i32,
    pub version: i32,
    pub guid: String,
    #[serde(rename = "schemaType")]
    pub schema_type: SchemaType,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(rename = "ruleSet", skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<Value>,
    pub schema: String,
    pub ts: i64,
    pub deleted: bool,
}

/// `GET /schemas/ids/{id}` (`SchemaString`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SchemaStringResponse {
    #[serde(rename = "schemaType")]
    pub schema_type: SchemaType,
    pub schema: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(rename = "ruleSet", skip_serializing_if = "Option::is_none")]
    pub rule_set: Option<Value>,
    /// With `?subject=`: the subject-version the id resolved to (maybe another subject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    pub guid: String,
    pub ts: i64,
    #[serde(skip_serializing_if = "is_false")]
    pub deleted: bool,
    #[serde(rename = "maxId", skip_serializing_if = "Option::is_none")]
    pub max_id: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
}

/// `POST /compatibility/...`: `messages` only with `?verbose=true` (then `[]` when compatible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CompatibilityResponse {
    pub is_compatible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<String>>,
}

/// `GET /config[/{s}]` (`Config`): `compatibilityLevel` plus whatever other keys are set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigResponse {
    #[serde(rename = "compatibilityLevel")]
    pub compatibility_level: CompatibilityLevel,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl ConfigResponse {
    pub(crate) fn from_map(
        map: &Map<String, Value>,
        default: CompatibilityLevel,
    ) -> ConfigResponse {
        let level = map
            .get("compatibilityLevel")
            .and_then(Value::as_str)
            .and_then(|s| CompatibilityLevel::parse(s).ok())
            .unwrap_or(default);
        let other = map
            .iter()
            .filter(|(k, _)| *k != "compatibilityLevel")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ConfigResponse {
            compatibility_level: level,
            other,
        }
    }
}

/// The keys of a config PUT besides `compatibility` that are stored as given.
pub(crate) const CONFIG_KEYS: [&str; 11] = [
    "alias",
    "normalize",
    "validateFields",
    "validateRules",
    "compatibilityPolicy",
    "compatibilityGroup",
    "defaultMetadata",
    "overrideMetadata",
    "defaultRuleSet",
    "overrideRuleSet",
    "aliasForDeks",
];

/// `PUT /config[/{s}]` body and response (`ConfigUpdateRequest`): note `compatibility`, not
/// `compatibilityLevel`. A merge: absent keys keep their values.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ConfigUpdate(pub Map<String, Value>);

impl ConfigUpdate {
    pub fn compatibility(level: CompatibilityLevel) -> ConfigUpdate {
        let mut m = Map::new();
        m.insert("compatibility".into(), Value::String(level.as_str().into()));
        ConfigUpdate(m)
    }
}

/// `PUT /mode[/{s}]` body and response, and the mode GET/DELETE answer: `{"mode": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeUpdate {
    /// Missing reads as empty, which is 42204 like any invalid mode.
    #[serde(default)]
    pub mode: String,
}

/// A decoded record: its schema id and its value as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub id: i32,
    pub value: Value,
}

/// Which schema `encode_from_json` encodes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeTarget {
    /// The subject's latest (non-deleted) version.
    Subject(String),
    SubjectVersion(String, i32),
    Id(i32),
}

/// The answer to the mode endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ModeResponse {
    pub mode: Mode,
}
