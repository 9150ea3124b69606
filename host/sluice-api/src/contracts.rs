//! Data contracts on the produce path: a schema-validated topic's records must be framed
//! with a registered id of its subject (and, in `decode` mode, decode against it). One
//! check for HTTP produce; the Kafka listener applies the same rule through
//! `sluice_schema::Registry::validate`.

use sluice_log::batch::NewRecord;
use sluice_log::{TopicSchema, Validation};
use sluice_schema::{Registry, ValidationMode};

/// The registry's mode for a topic setting.
pub fn mode(v: Validation) -> ValidationMode {
    match v {
        Validation::Id => ValidationMode::Id,
        Validation::Decode => ValidationMode::Decode,
    }
}

/// Whether `rec` meets `rules`: the part (`value` or `key`) that does not, and why. Null
/// values (tombstones) and null keys pass.
pub fn check(
    registry: &Registry,
    rules: &TopicSchema,
    rec: &NewRecord,
) -> Result<(), (&'static str, String)> {
    for (part, rule, bytes) in [
        ("value", &rules.value, &rec.value),
        ("key", &rules.key, &rec.key),
    ] {
        if let (Some(rule), Some(bytes)) = (rule, bytes) {
            registry
                .validate(&rule.subject, bytes, mode(rule.validation))
                .map_err(|e| (part, e.to_string()))?;
        }
    }
    Ok(())
}
