//! Compatibility levels over the per-type checkers, exactly as Confluent's
//! `CompatibilityChecker`/`SchemaValidatorBuilder` apply them: which earlier versions are checked,
//! in which direction, and how the message list is assembled.

use crate::schema::{Inner, ParsedSchema};
use crate::types::CompatibilityLevel;

/// An earlier version to check against: its schema and, when known, its version number (printed
/// as `{oldSchemaVersion: N}`).
#[derive(Debug, Clone, Copy)]
pub struct PreviousSchema<'a> {
    pub schema: &'a ParsedSchema,
    pub version: Option<i32>,
}

/// Confluent's `compatibilityPolicy`; only JSON Schema reads it (`LENIENT` accepts more changes
/// to open content models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Strict,
    Lenient,
}

/// Longest old schema text quoted in full in `{oldSchema: '...'}`.
const OLD_SCHEMA_LIMIT: usize = 10 * 1024;

/// `reader.isBackwardCompatible(writer)`: can `reader` read data written with `writer`? One
/// message per incompatibility, `%s` placeholders filled with the two labels.
pub fn can_read(
    reader: &ParsedSchema,
    writer: &ParsedSchema,
    policy: Policy,
    reader_label: &str,
    writer_label: &str,
) -> Vec<String> {
    match (&reader.inner, &writer.inner) {
        (Inner::Avro(r), Inner::Avro(w)) => {
            crate::avro::compat::check(r, w, reader_label, writer_label)
        }
        (Inner::Protobuf(r), Inner::Protobuf(w)) => {
            crate::protobuf::compat::check(r, w, reader_label, writer_label)
        }
        (Inner::Json(r), Inner::Json(w)) => crate::json::compat::check(
            &r.model,
            &w.model,
            policy == Policy::Lenient,
            reader_label,
            writer_label,
        ),
        _ => vec!["Incompatible because of different schema type".to_string()],
    }
}

fn old_schema_info(previous: &PreviousSchema<'_>, messages: &mut Vec<String>) {
    if let Some(v) = previous.version {
        messages.push(format!("{{oldSchemaVersion: {v}}}"));
    }
    let text = previous.schema.canonical();
    if text.chars().count() > OLD_SCHEMA_LIMIT {
        let head: String = text.chars().take(OLD_SCHEMA_LIMIT).collect();
        messages.push(format!("{{oldSchema: <truncated> '{head}...'}}"));
    } else {
        messages.push(format!("{{oldSchema: '{text}'}}"));
    }
}

fn check_one(
    level: CompatibilityLevel,
    policy: Policy,
    new: &ParsedSchema,
    previous: &PreviousSchema<'_>,
) -> Vec<String> {
    let old = previous.schema;
    if new.schema_type() != old.schema_type() {
        return vec!["Incompatible because of different schema type".to_string()];
    }
    let backward = |with_info: bool| {
        let mut m = can_read(new, old, policy, "new", "old");
        if with_info && !m.is_empty() {
            old_schema_info(previous, &mut m);
        }
        m
    };
    match level {
        CompatibilityLevel::None => Vec::new(),
        CompatibilityLevel::Backward | CompatibilityLevel::BackwardTransitive => backward(true),
        CompatibilityLevel::Forward | CompatibilityLevel::ForwardTransitive => {
            let mut m = can_read(old, new, policy, "old", "new");
            if !m.is_empty() {
                old_schema_info(previous, &mut m);
            }
            m
        }
        CompatibilityLevel::Full | CompatibilityLevel::FullTransitive => {
            // Forward first, without the old-schema entries; they follow the backward half only.
            let mut m = can_read(old, new, policy, "old", "new");
            m.extend(backward(true));
            m
        }
    }
}

/// Checks `new` against `previous` (the subject's undeleted versions, **newest first**) at
/// `level`. Non-transitive levels check the newest only; transitive ones walk newest to oldest and
/// stop at the first failing version. An empty list means compatible; otherwise the list ends
/// with Confluent's `{validateFields: 'false', compatibility: '<LEVEL>'}`.
pub fn check(
    level: CompatibilityLevel,
    new: &ParsedSchema,
    previous: &[PreviousSchema<'_>],
) -> Vec<String> {
    check_with_policy(level, Policy::Strict, new, previous)
}

/// [`check`] under a compatibility policy.
pub fn check_with_policy(
    level: CompatibilityLevel,
    policy: Policy,
    new: &ParsedSchema,
    previous: &[PreviousSchema<'_>],
) -> Vec<String> {
    if level == CompatibilityLevel::None {
        return Vec::new();
    }
    let targets = if level.is_transitive() {
        previous
    } else {
        previous.get(..1).unwrap_or(&[])
    };
    for p in targets {
        let mut messages = check_one(level, policy, new, p);
        if !messages.is_empty() {
            messages.push(format!(
                "{{validateFields: 'false', compatibility: '{}'}}",
                level.as_str()
            ));
            return messages;
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::schema::{no_references, parse_schema};
    use crate::types::SchemaType;

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    /// Protobuf and JSON cases also list every difference Confluent's diff finds, compatible ones
    /// included (`"TYPE #/path"`): the ports must find the same multiset.
    #[test]
    fn difference_lists_match_confluent() {
        let cases: Vec<Value> =
            serde_json::from_str(include_str!("../tests/compat-cases.json")).unwrap();
        let mut failures = Vec::new();
        let mut compared = 0;
        for case in &cases {
            let t = SchemaType::parse(case["type"].as_str().unwrap()).unwrap();
            if t == SchemaType::Avro {
                continue;
            }
            let name = case["name"].as_str().unwrap();
            let old = parse_schema(t, case["old"].as_str().unwrap(), &[], &no_references).unwrap();
            let new = parse_schema(t, case["new"].as_str().unwrap(), &[], &no_references).unwrap();
            for (key, original, update) in [
                ("backward_differences", &old, &new),
                ("forward_differences", &new, &old),
            ] {
                let want: Vec<String> = case[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect();
                let got = match (&original.inner, &update.inner) {
                    (Inner::Protobuf(o), Inner::Protobuf(u)) => {
                        crate::protobuf::compat::difference_list(o, u)
                    }
                    (Inner::Json(o), Inner::Json(u)) => {
                        crate::json::compat::difference_list(&o.model, &u.model, false)
                    }
                    _ => unreachable!(),
                };
                if sorted(want.clone()) != sorted(got.clone()) {
                    failures.push(format!(
                        "[{t}] {name} {key}\n  want {want:?}\n  got  {got:?}"
                    ));
                }
                compared += 1;
            }
        }
        assert_eq!(compared, 2 * (80 + 110));
        assert!(
            failures.is_empty(),
            "{} differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}
