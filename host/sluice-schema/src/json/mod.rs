//! JSON Schema schemas: parsing and validation with the `jsonschema` crate (no network: `$ref`s
//! resolve only to the schema's references, by name), the canonical and normalized texts, the
//! diff model, and validating records.

pub(crate) mod compat;
mod context;
mod diff;
mod keywords;
pub(crate) mod model;

use std::sync::Arc;

use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde_json::{Map, Value};

use crate::error::SchemaError;

const TYPE: &str = "JSON";

/// A parsed JSON Schema: its document, Confluent's diff model and a compiled validator.
pub(crate) struct JsonSchema {
    pub(crate) value: Value,
    pub(crate) model: model::Model,
    pub(crate) validator: Validator,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

/// Serves `$ref`s from the schema's references only (Confluent blocks remote references).
struct References(Arc<Vec<(String, Value)>>);

impl Retrieve for References {
    fn retrieve(
        &self,
        uri: &Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let wanted = uri.as_str();
        let wanted_path = wanted.strip_prefix("json-schema:///").unwrap_or(wanted);
        let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
        self.0
            .iter()
            .find(|(name, doc)| {
                name == wanted
                    || name == wanted_path
                    || doc.get("$id").and_then(Value::as_str) == Some(wanted)
            })
            .or_else(|| {
                self.0
                    .iter()
                    .find(|(name, _)| last(name) == last(wanted_path))
            })
            .map(|(_, doc)| doc.clone())
            .ok_or_else(|| format!("no schema reference named '{wanted}'").into())
    }
}

/// Parses `text` with its references (name, text) and checks it as Confluent does: valid against
/// its metaschema, loadable into the diff model, every `$ref` resolvable.
pub(crate) fn parse(
    text: &str,
    references: &[(String, String)],
) -> Result<JsonSchema, SchemaError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| SchemaError::invalid(TYPE, e.to_string()))?;
    if !value.is_object() && !value.is_boolean() {
        return Err(SchemaError::invalid(
            TYPE,
            "a JSON schema must be an object or a boolean",
        ));
    }
    let mut docs = vec![(String::new(), value.clone())];
    for (name, text) in references {
        let doc: Value = serde_json::from_str(text)
            .map_err(|e| SchemaError::invalid(TYPE, format!("reference '{name}': {e}")))?;
        docs.push((name.clone(), doc));
    }
    let model = model::load(&docs).map_err(|e| SchemaError::invalid(TYPE, e))?;
    let refs = Arc::new(docs.into_iter().skip(1).collect::<Vec<_>>());
    let mut options = jsonschema::options().with_retriever(References(refs));
    if value.get("$schema").is_none() {
        options = options.with_draft(Draft::Draft7);
    }
    let validator = options
        .build(&value)
        .map_err(|e| SchemaError::invalid(TYPE, e.to_string()))?;
    Ok(JsonSchema {
        value,
        model,
        validator,
    })
}

/// The canonical text: the JSON re-emitted compactly in its own key order.
pub(crate) fn canonical(schema: &JsonSchema) -> String {
    schema.value.to_string()
}

/// The normalized text: every object's keys sorted, recursively.
pub(crate) fn normalized(schema: &JsonSchema) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                let mut out = Map::with_capacity(o.len());
                for k in keys {
                    out.insert(k.clone(), sorted(&o[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(&schema.value).to_string()
}

/// Validates a record against the schema; the error lists the first violations with their
/// instance paths.
pub(crate) fn validate(schema: &JsonSchema, value: &Value) -> Result<(), String> {
    let errors: Vec<String> = schema
        .validator
        .iter_errors(value)
        .take(5)
        .map(|e| {
            let path = e.instance_path().to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("{path}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_resolve_by_name_and_validation_works() {
        let address =
            r#"{"type":"object","properties":{"zip":{"type":"string"}},"required":["zip"]}"#;
        let user = r#"{"type":"object","properties":{"home":{"$ref":"address.json"}}}"#;
        let s = parse(user, &[("address.json".into(), address.into())]).unwrap();
        assert!(validate(&s, &serde_json::json!({"home": {"zip": "1000"}})).is_ok());
        let e = validate(&s, &serde_json::json!({"home": {}})).unwrap_err();
        assert!(e.contains("/home"), "{e}");
        assert!(parse(user, &[]).is_err());
    }

    #[test]
    fn invalid_schemas_are_rejected() {
        assert!(parse(r#"{"type":"nope"}"#, &[]).is_err());
        assert!(parse(r#"{"type":"string","minLength":"x"}"#, &[]).is_err());
        assert!(parse("[1]", &[]).is_err());
        assert!(parse("{", &[]).is_err());
    }

    #[test]
    fn normalized_sorts_keys() {
        let s = parse(
            r#"{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(
            normalized(&s),
            r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#
        );
        assert_eq!(
            canonical(&s),
            r#"{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}"#
        );
    }
}
