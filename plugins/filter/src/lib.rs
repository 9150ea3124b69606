//! Keeps or drops records by a predicate on a JSON field.
//!
//! Config: `field` (dotted path or JSON pointer), `op` (`eq`, `ne`, `gt`, `gte`, `lt`,
//! `lte`, `contains`, `prefix`, `in`, `exists`, `missing`; default `eq`), `value` (numbers
//! compare as numbers; `in` takes a comma-separated list), `mode` (`keep` the matching
//! records — the default — or `drop` them), `on_invalid` (what to do with values that are
//! not JSON: `reject` — the default —, `drop` or `keep`).

use serde_json::Value;
use sluice_sdk::{Error, Outcome, Record, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
    Contains,
    Prefix,
    In,
    Exists,
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnInvalid {
    Reject,
    Drop,
    Keep,
}

#[derive(Debug)]
pub struct Filter {
    field: String,
    op: Op,
    value: String,
    list: Vec<String>,
    keep_matching: bool,
    on_invalid: OnInvalid,
}

impl Filter {
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Filter, Error> {
        let field = get("field").ok_or_else(|| Error::new("config `field` is required"))?;
        let op = match get("op").as_deref().unwrap_or("eq") {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "contains" => Op::Contains,
            "prefix" => Op::Prefix,
            "in" => Op::In,
            "exists" => Op::Exists,
            "missing" => Op::Missing,
            other => return Err(Error::new(format!("unknown op {other:?}"))),
        };
        let value = get("value").unwrap_or_default();
        if !matches!(op, Op::Exists | Op::Missing) && get("value").is_none() {
            return Err(Error::new("config `value` is required for this op"));
        }
        let list = value.split(',').map(|s| s.trim().to_string()).collect();
        let keep_matching = match get("mode").as_deref().unwrap_or("keep") {
            "keep" => true,
            "drop" => false,
            other => {
                return Err(Error::new(format!(
                    "mode must be keep or drop, not {other:?}"
                )));
            }
        };
        let on_invalid = match get("on_invalid").as_deref().unwrap_or("reject") {
            "reject" => OnInvalid::Reject,
            "drop" => OnInvalid::Drop,
            "keep" => OnInvalid::Keep,
            other => {
                return Err(Error::new(format!(
                    "on_invalid must be reject, drop or keep, not {other:?}"
                )));
            }
        };
        Ok(Filter {
            field,
            op,
            value,
            list,
            keep_matching,
            on_invalid,
        })
    }

    fn compare(&self, found: &Value) -> Option<std::cmp::Ordering> {
        match (found.as_f64(), self.value.parse::<f64>()) {
            (Some(a), Ok(b)) => a.partial_cmp(&b),
            _ => Some(json::text(found).as_str().cmp(self.value.as_str())),
        }
    }

    pub fn matches(&self, doc: &Value) -> bool {
        use std::cmp::Ordering::*;
        let found = json::path(doc, &self.field).filter(|v| !v.is_null());
        let Some(found) = found else {
            return self.op == Op::Missing || self.op == Op::Ne;
        };
        match self.op {
            Op::Exists => true,
            Op::Missing => false,
            Op::Eq => self.compare(found) == Some(Equal),
            Op::Ne => self.compare(found) != Some(Equal),
            Op::Gt => self.compare(found) == Some(Greater),
            Op::Gte => matches!(self.compare(found), Some(Greater | Equal)),
            Op::Lt => self.compare(found) == Some(Less),
            Op::Lte => matches!(self.compare(found), Some(Less | Equal)),
            Op::Contains => match found {
                Value::Array(a) => a.iter().any(|v| json::text(v) == self.value),
                other => json::text(other).contains(self.value.as_str()),
            },
            Op::Prefix => json::text(found).starts_with(self.value.as_str()),
            Op::In => {
                let t = json::text(found);
                self.list.contains(&t)
            }
        }
    }
}

pub fn setup() -> Result<Filter, Error> {
    Filter::from_config(sluice_sdk::config)
}

pub fn filter(f: &Filter, record: &Record) -> Result<Outcome, Error> {
    let doc = match record.json() {
        Ok(doc) => doc,
        Err(e) => {
            return Ok(match f.on_invalid {
                OnInvalid::Reject => Outcome::reject(e.to_string()),
                OnInvalid::Drop => Outcome::drop(),
                OnInvalid::Keep => Outcome::keep(),
            });
        }
    };
    Ok(if f.matches(&doc) == f.keep_matching {
        Outcome::keep()
    } else {
        Outcome::drop()
    })
}

sluice_sdk::export_transform!(filter, init = setup);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn case_table() {
        Harness::with_init(setup, filter).run_suites(include_str!("../cases.json"));
    }

    #[test]
    fn missing_field_config_fails_init() {
        let e = Harness::with_init(setup, filter).try_run(&[]).unwrap_err();
        assert!(e.contains("field"), "{e}");
    }
}
