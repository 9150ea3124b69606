//! Enriches JSON records from a lookup table (a compacted topic the host materialises).
//!
//! Config: `table` (required), `key_field` (dotted path, default `user_id`), `into` (put the
//! found object under this field; default: merge its fields into the record), `overwrite`
//! (`true` lets table fields replace record fields; default `false`), `on_missing` (`keep` —
//! the default —, `drop` or `reject` records whose key is absent from the table).

use serde_json::Value;
use sluice_sdk::{Error, Outcome, Record, json};

#[derive(Debug)]
pub struct Enrich {
    table: String,
    key_field: String,
    into: Option<String>,
    overwrite: bool,
    on_missing: String,
}

pub fn setup() -> Result<Enrich, Error> {
    let get = sluice_sdk::config;
    let on_missing = get("on_missing").unwrap_or_else(|| "keep".into());
    if !matches!(on_missing.as_str(), "keep" | "drop" | "reject") {
        return Err(Error::new(format!(
            "on_missing must be keep, drop or reject, not {on_missing:?}"
        )));
    }
    Ok(Enrich {
        table: get("table").ok_or_else(|| Error::new("config `table` is required"))?,
        key_field: get("key_field").unwrap_or_else(|| "user_id".into()),
        into: get("into"),
        overwrite: get("overwrite").as_deref() == Some("true"),
        on_missing,
    })
}

fn missing(e: &Enrich, why: String) -> Outcome {
    match e.on_missing.as_str() {
        "drop" => Outcome::drop(),
        "reject" => Outcome::reject(why),
        _ => Outcome::keep(),
    }
}

pub fn enrich(e: &Enrich, record: &Record) -> Result<Outcome, Error> {
    let mut doc = record.json()?;
    let Some(obj) = doc.as_object_mut() else {
        return Err(Error::new("value is not a JSON object"));
    };
    let Some(key) = json::path(&Value::Object(obj.clone()), &e.key_field).map(json::text) else {
        return Ok(missing(e, format!("no {} field", e.key_field)));
    };
    let Some(found) = sluice_sdk::lookup(&e.table, key.as_bytes()) else {
        return Ok(missing(e, format!("{key} is not in table {}", e.table)));
    };
    let found: Value = serde_json::from_slice(&found).map_err(|err| {
        Error::new(format!(
            "table {} value for {key} is not JSON: {err}",
            e.table
        ))
    })?;
    match (&e.into, found) {
        (Some(field), found) => {
            if e.overwrite || !obj.contains_key(field) {
                obj.insert(field.clone(), found);
            }
        }
        (None, Value::Object(fields)) => json::merge(obj, fields, e.overwrite),
        (None, other) => {
            return Err(Error::new(format!(
                "table value for {key} is {other}, not an object; set `into` to nest it"
            )));
        }
    }
    Ok(Outcome::emit(record.to_owned().with_json(&doc)))
}

sluice_sdk::export_transform!(enrich, init = setup);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn case_table() {
        Harness::with_init(setup, enrich).run_suites(include_str!("../cases.json"));
    }
}
