//! Avro schemas: parsing with referenced named types (apache-avro), the canonical and normalized
//! texts, and the named-type table the compatibility checker and the codec resolve `Ref`s with.

pub(crate) mod codec;
pub(crate) mod compat;

use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{InnerDecimalSchema, UuidSchema};
use serde_json::{Map, Value};

use crate::error::SchemaError;

const TYPE: &str = "AVRO";

/// A parsed Avro schema with every named type it can reach (its own and those of its references)
/// by full name, so `Schema::Ref` nodes resolve to their definitions.
#[derive(Debug)]
pub(crate) struct AvroSchema {
    pub(crate) root: Schema,
    pub(crate) names: HashMap<String, Schema>,
}

impl AvroSchema {
    /// Follows `Ref`s to the definition (bounded: a `Ref` to a `Ref` cannot occur, names map to
    /// definitions).
    pub(crate) fn resolve<'a>(&'a self, schema: &'a Schema) -> &'a Schema {
        match schema {
            Schema::Ref { name } => self.names.get(&name.fullname(None)).unwrap_or(schema),
            other => other,
        }
    }
}

/// Parses `text` with the texts of its references (dependencies first), as Confluent does: the
/// referenced named types are parsed into the same name space first.
pub(crate) fn parse(text: &str, references: &[String]) -> Result<AvroSchema, SchemaError> {
    let (root, refs) = if references.is_empty() {
        (
            Schema::parse_str(text).map_err(|e| SchemaError::invalid(TYPE, e.to_string()))?,
            Vec::new(),
        )
    } else {
        Schema::parse_str_with_list(text, references)
            .map_err(|e| SchemaError::invalid(TYPE, e.to_string()))?
    };
    let mut names = HashMap::new();
    for schema in refs.iter().chain(std::iter::once(&root)) {
        collect_names(schema, &mut names);
    }
    Ok(AvroSchema { root, names })
}

fn collect_names(schema: &Schema, names: &mut HashMap<String, Schema>) {
    let name = match schema {
        Schema::Record(r) => {
            for f in &r.fields {
                collect_names(&f.schema, names);
            }
            Some(&r.name)
        }
        Schema::Enum(e) => Some(&e.name),
        Schema::Fixed(f) | Schema::Duration(f) => Some(&f.name),
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Fixed(f) => Some(&f.name),
            InnerDecimalSchema::Bytes => None,
        },
        Schema::Uuid(UuidSchema::Fixed(f)) => Some(&f.name),
        Schema::Array(a) => {
            collect_names(&a.items, names);
            None
        }
        Schema::Map(m) => {
            collect_names(&m.types, names);
            None
        }
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, names);
            }
            None
        }
        _ => None,
    };
    if let Some(name) = name {
        names
            .entry(name.fullname(None))
            .or_insert_with(|| schema.clone());
    }
}

/// The canonical text: the submitted JSON re-emitted compactly in its own key order, with a schema
/// object that only names a type (`{"type":"string"}`) collapsed to that type, as Java's
/// `Schema.toString()` prints it. Whitespace and that wrapping therefore never make a new id.
pub(crate) fn canonical(text: &str) -> Result<String, SchemaError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| SchemaError::invalid(TYPE, e.to_string()))?;
    Ok(canonical_value(&value).to_string())
}

fn canonical_value(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(canonical_value).collect()),
        Value::Object(obj) => {
            if obj.len() == 1
                && let Some(t) = obj.get("type")
            {
                return canonical_value(t);
            }
            let mut out = Map::with_capacity(obj.len());
            for (k, v) in obj {
                let v = match k.as_str() {
                    "type" if !v.is_string() => canonical_value(v),
                    "items" | "values" => canonical_value(v),
                    "fields" => match v {
                        Value::Array(fields) => Value::Array(
                            fields
                                .iter()
                                .map(|f| match f {
                                    Value::Object(fo) => {
                                        let mut fo = fo.clone();
                                        if let Some(t) = fo.get_mut("type") {
                                            *t = canonical_value(t);
                                        }
                                        Value::Object(fo)
                                    }
                                    other => other.clone(),
                                })
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    _ => v.clone(),
                };
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// The normalized text (`normalize=true`): full names, a fixed key order, sorted aliases and
/// custom properties, and named types after their first definition (or from references) as
/// full-name strings.
pub(crate) fn normalized(schema: &AvroSchema) -> String {
    let mut defined = std::collections::HashSet::new();
    normalized_value(&schema.root, &mut defined).to_string()
}

fn attrs_sorted(out: &mut Map<String, Value>, attrs: &std::collections::BTreeMap<String, Value>) {
    for (k, v) in attrs {
        out.insert(k.clone(), v.clone());
    }
}

fn aliases_sorted(aliases: &Option<Vec<apache_avro::schema::Alias>>) -> Option<Value> {
    let mut names: Vec<String> = aliases.as_ref()?.iter().map(|a| a.fullname(None)).collect();
    if names.is_empty() {
        return None;
    }
    names.sort();
    Some(Value::Array(names.into_iter().map(Value::String).collect()))
}

fn named_fixed(
    f: &apache_avro::schema::FixedSchema,
    logical: Option<(&str, Option<(usize, usize)>)>,
    defined: &mut std::collections::HashSet<String>,
) -> Value {
    let full = f.name.fullname(None);
    if !defined.insert(full.clone()) {
        return Value::String(full);
    }
    let mut out = Map::new();
    out.insert("name".into(), Value::String(full));
    out.insert("type".into(), Value::String("fixed".into()));
    out.insert("size".into(), Value::from(f.size));
    if let Some(doc) = &f.doc {
        out.insert("doc".into(), Value::String(doc.clone()));
    }
    if let Some(a) = aliases_sorted(&f.aliases) {
        out.insert("aliases".into(), a);
    }
    if let Some((lt, ps)) = logical {
        out.insert("logicalType".into(), Value::String(lt.into()));
        if let Some((p, s)) = ps {
            out.insert("precision".into(), Value::from(p));
            if s != 0 {
                out.insert("scale".into(), Value::from(s));
            }
        }
    }
    attrs_sorted(&mut out, &f.attributes);
    Value::Object(out)
}

fn logical(base: &str, logical_type: &str) -> Value {
    serde_json::json!({ "type": base, "logicalType": logical_type })
}

fn normalized_value(schema: &Schema, defined: &mut std::collections::HashSet<String>) -> Value {
    match schema {
        Schema::Null => Value::String("null".into()),
        Schema::Boolean => Value::String("boolean".into()),
        Schema::Int => Value::String("int".into()),
        Schema::Long => Value::String("long".into()),
        Schema::Float => Value::String("float".into()),
        Schema::Double => Value::String("double".into()),
        Schema::Bytes => Value::String("bytes".into()),
        Schema::String => Value::String("string".into()),
        Schema::Array(a) => {
            let mut out = Map::new();
            out.insert("type".into(), Value::String("array".into()));
            out.insert("items".into(), normalized_value(&a.items, defined));
            attrs_sorted(&mut out, &a.attributes);
            Value::Object(out)
        }
        Schema::Map(m) => {
            let mut out = Map::new();
            out.insert("type".into(), Value::String("map".into()));
            out.insert("values".into(), normalized_value(&m.types, defined));
            attrs_sorted(&mut out, &m.attributes);
            Value::Object(out)
        }
        Schema::Union(u) => Value::Array(
            u.variants()
                .iter()
                .map(|v| normalized_value(v, defined))
                .collect(),
        ),
        Schema::Record(r) => {
            let full = r.name.fullname(None);
            if !defined.insert(full.clone()) {
                return Value::String(full);
            }
            let mut out = Map::new();
            out.insert("name".into(), Value::String(full));
            out.insert("type".into(), Value::String("record".into()));
            if let Some(doc) = &r.doc {
                out.insert("doc".into(), Value::String(doc.clone()));
            }
            if let Some(a) = aliases_sorted(&r.aliases) {
                out.insert("aliases".into(), a);
            }
            let fields = r
                .fields
                .iter()
                .map(|f| {
                    let mut fo = Map::new();
                    fo.insert("name".into(), Value::String(f.name.clone()));
                    fo.insert("type".into(), normalized_value(&f.schema, defined));
                    if let Some(doc) = &f.doc {
                        fo.insert("doc".into(), Value::String(doc.clone()));
                    }
                    if !f.aliases.is_empty() {
                        let mut a = f.aliases.clone();
                        a.sort();
                        fo.insert("aliases".into(), Value::from(a));
                    }
                    if let Some(d) = &f.default {
                        fo.insert("default".into(), d.clone());
                    }
                    attrs_sorted(&mut fo, &f.custom_attributes);
                    Value::Object(fo)
                })
                .collect();
            out.insert("fields".into(), Value::Array(fields));
            attrs_sorted(&mut out, &r.attributes);
            Value::Object(out)
        }
        Schema::Enum(e) => {
            let full = e.name.fullname(None);
            if !defined.insert(full.clone()) {
                return Value::String(full);
            }
            let mut out = Map::new();
            out.insert("name".into(), Value::String(full));
            out.insert("type".into(), Value::String("enum".into()));
            if let Some(doc) = &e.doc {
                out.insert("doc".into(), Value::String(doc.clone()));
            }
            if let Some(a) = aliases_sorted(&e.aliases) {
                out.insert("aliases".into(), a);
            }
            out.insert("symbols".into(), Value::from(e.symbols.clone()));
            if let Some(d) = &e.default {
                out.insert("default".into(), Value::String(d.clone()));
            }
            attrs_sorted(&mut out, &e.attributes);
            Value::Object(out)
        }
        Schema::Fixed(f) => named_fixed(f, None, defined),
        Schema::Duration(f) => named_fixed(f, Some(("duration", None)), defined),
        Schema::Decimal(d) => match &d.inner {
            InnerDecimalSchema::Fixed(f) => {
                named_fixed(f, Some(("decimal", Some((d.precision, d.scale)))), defined)
            }
            InnerDecimalSchema::Bytes => {
                let mut out = Map::new();
                out.insert("type".into(), Value::String("bytes".into()));
                out.insert("logicalType".into(), Value::String("decimal".into()));
                out.insert("precision".into(), Value::from(d.precision));
                if d.scale != 0 {
                    out.insert("scale".into(), Value::from(d.scale));
                }
                Value::Object(out)
            }
        },
        Schema::BigDecimal => logical("bytes", "big-decimal"),
        Schema::Uuid(UuidSchema::String) => logical("string", "uuid"),
        Schema::Uuid(UuidSchema::Bytes) => logical("bytes", "uuid"),
        Schema::Uuid(UuidSchema::Fixed(f)) => named_fixed(f, Some(("uuid", None)), defined),
        Schema::Date => logical("int", "date"),
        Schema::TimeMillis => logical("int", "time-millis"),
        Schema::TimeMicros => logical("long", "time-micros"),
        Schema::TimestampMillis => logical("long", "timestamp-millis"),
        Schema::TimestampMicros => logical("long", "timestamp-micros"),
        Schema::TimestampNanos => logical("long", "timestamp-nanos"),
        Schema::LocalTimestampMillis => logical("long", "local-timestamp-millis"),
        Schema::LocalTimestampMicros => logical("long", "local-timestamp-micros"),
        Schema::LocalTimestampNanos => logical("long", "local-timestamp-nanos"),
        Schema::Ref { name } => Value::String(name.fullname(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_collapses_type_wrappers_and_whitespace() {
        assert_eq!(canonical(r#"{"type": "string"}"#).unwrap(), r#""string""#);
        assert_eq!(canonical(r#" "string" "#).unwrap(), r#""string""#);
        let rec =
            r#"{ "type":"record", "name":"r", "fields":[ {"name":"a","type":{"type":"int"}} ] }"#;
        assert_eq!(
            canonical(rec).unwrap(),
            r#"{"type":"record","name":"r","fields":[{"name":"a","type":"int"}]}"#
        );
    }

    #[test]
    fn references_resolve_named_types() {
        let address = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"zip","type":"string"}]}"#;
        let user = r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"home","type":"Address"}]}"#;
        let parsed = parse(user, &[address.to_string()]).unwrap();
        assert!(parsed.names.contains_key("com.acme.Address"));
        assert!(parse(user, &[]).is_err());
    }

    #[test]
    fn normalized_form_is_order_independent() {
        let a = parse(
            r#"{"type":"record","name":"r","namespace":"n","fields":[{"type":"int","name":"a"}]}"#,
            &[],
        )
        .unwrap();
        let b = parse(
            r#"{"namespace":"n","fields":[{"name":"a","type":"int"}],"name":"r","type":"record"}"#,
            &[],
        )
        .unwrap();
        assert_eq!(normalized(&a), normalized(&b));
        assert_eq!(
            normalized(&a),
            r#"{"name":"n.r","type":"record","fields":[{"name":"a","type":"int"}]}"#
        );
    }

    #[test]
    fn invalid_defaults_and_names_are_rejected() {
        assert!(parse(r#"{"type":"record","name":"r","fields":[{"name":"a","type":"int","default":"x"}]}"#, &[]).is_err());
        assert!(parse(r#"{"type":"record","name":"1r","fields":[]}"#, &[]).is_err());
        assert!(parse(r#"{"type":"nope"}"#, &[]).is_err());
    }
}
