//! Case tables: suites of cases in JSON (`cases.json`), shared by the Rust, Python and
//! JavaScript SDKs' harnesses and by the tests that run a plugin through the runtime.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Emitted, Env, TestOutcome, TestRecord};

/// One group of cases sharing config, tables and outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, Value>>,
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Stateful plugins: the cases are one stream (one batch per case, in order) with
    /// state, watermark and timers carried over; cases may expect what timers emit.
    #[serde(default)]
    pub stream: Option<StreamSettings>,
    pub cases: Vec<Case>,
}

/// How a stream suite runs (the deployment's event-time settings).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    #[serde(default)]
    pub allowed_lateness_ms: i64,
    #[serde(default)]
    pub event_time_field: Option<String>,
    /// A deployment over two inputs: their topics. The watermark is then the lower of the
    /// two inputs' (nothing moves until both have had a record), as on the host.
    #[serde(default)]
    pub inputs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub input: CaseInput,
    pub expect: Expect,
    /// Stream suites: what the timers fired after this case emit, in firing order.
    #[serde(default)]
    pub fired: Vec<ExpectEmit>,
    /// Stream suites: then move the watermark to this time (an idle partition), firing
    /// timers; what they emit is part of `fired`.
    #[serde(default)]
    pub advance_to: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseInput {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The record's timestamp (ms); default 1700000000000.
    #[serde(default)]
    pub timestamp: Option<i64>,
    /// The input topic it comes from; default [`DEFAULT_TOPIC`].
    #[serde(default)]
    pub topic: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Drop,
    Reject(String),
    Emit(Vec<ExpectEmit>),
    /// Stream suites: before the watermark, kept from the plugin.
    Late,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectEmit {
    pub value: Value,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Parses a case table: a list of suites.
pub fn load_suites(json: &str) -> Vec<Suite> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("invalid case table: {e}"))
}

/// A JSON value as record bytes: strings as their UTF-8, null as no value, others as text.
pub fn value_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

impl Suite {
    pub fn env(&self) -> Env {
        Env {
            config: self.config.clone().into_iter().collect(),
            tables: self
                .tables
                .iter()
                .map(|(t, kv)| {
                    let kv = kv
                        .iter()
                        .filter_map(|(k, v)| Some((k.clone().into_bytes(), value_bytes(v)?)))
                        .collect();
                    (t.clone(), kv)
                })
                .collect(),
            outputs: self.outputs.clone(),
            ..Env::default()
        }
    }

    pub fn records(&self) -> Vec<TestRecord> {
        self.cases
            .iter()
            .map(|c| TestRecord {
                key: c.input.key.clone().map(String::into_bytes),
                value: value_bytes(&c.input.value),
                headers: c
                    .input
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone().into_bytes())))
                    .collect(),
                timestamp: c.input.timestamp.unwrap_or(1_700_000_000_000),
                topic: c.input.topic.clone(),
            })
            .collect()
    }

    /// Compares outcomes (one per case, in order) with the expectations.
    pub fn check(&self, outcomes: &[TestOutcome]) -> Result<(), String> {
        if outcomes.len() != self.cases.len() {
            return Err(format!(
                "{} outcomes for {} cases",
                outcomes.len(),
                self.cases.len()
            ));
        }
        let default_output = self
            .outputs
            .first()
            .cloned()
            .unwrap_or_else(|| "output".into());
        for (case, got) in self.cases.iter().zip(outcomes) {
            self.check_one(case, got, &default_output)?;
        }
        Ok(())
    }

    /// Compares one case of a stream suite with its expectation: its outcome, and what
    /// the timers fired after it (and after its `advance_to`) emitted, in order.
    pub fn check_stream_case(
        &self,
        case: &Case,
        got: &TestOutcome,
        fired: &[Emitted],
    ) -> Result<(), String> {
        let default_output = self
            .outputs
            .first()
            .cloned()
            .unwrap_or_else(|| "output".into());
        self.check_one(case, got, &default_output)?;
        let described: Vec<String> = fired.iter().map(|e| e.value_str().to_owned()).collect();
        if fired.len() != case.fired.len() {
            return Err(format!(
                "case {:?}: expected {} records from timers, got {described:?}",
                case.name,
                case.fired.len()
            ));
        }
        for (want, have) in case.fired.iter().zip(fired) {
            if let Err(why) = check_emit(want, have, &default_output) {
                return Err(format!(
                    "case {:?}: from timers: {why}; got {described:?}",
                    case.name
                ));
            }
        }
        Ok(())
    }

    /// Compares one case's outcome with its expectation.
    fn check_one(
        &self,
        case: &Case,
        got: &TestOutcome,
        default_output: &str,
    ) -> Result<(), String> {
        let fail = |why: String| {
            Err(format!(
                "case {:?}: {why}; got {}",
                case.name,
                got.describe()
            ))
        };
        match (&case.expect, got) {
            (Expect::Drop, TestOutcome::Dropped) | (Expect::Late, TestOutcome::Late) => {}
            (Expect::Reject(part), TestOutcome::Rejected(reason)) => {
                if !reason.contains(part.as_str()) {
                    return fail(format!("reject reason should contain {part:?}"));
                }
            }
            (Expect::Emit(want), TestOutcome::Emitted(have)) => {
                if want.len() != have.len() {
                    return fail(format!("expected {} records", want.len()));
                }
                for (w, h) in want.iter().zip(have) {
                    if let Err(why) = check_emit(w, h, default_output) {
                        return fail(why);
                    }
                }
            }
            (want, _) => return fail(format!("expected {want:?}")),
        }
        Ok(())
    }
}

/// Compares an emitted record with an expectation.
fn check_emit(w: &ExpectEmit, h: &Emitted, default_output: &str) -> Result<(), String> {
    let value_ok = match &w.value {
        Value::String(s) => h.value.as_deref() == Some(s.as_bytes()),
        Value::Null => h.value.is_none(),
        other => h
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice::<Value>(v).ok())
            .is_some_and(|v| &v == other),
    };
    if !value_ok {
        return Err(format!("expected value {}", w.value));
    }
    let output = w.output.as_deref().unwrap_or(default_output);
    if h.output != output {
        return Err(format!("expected output {output:?}"));
    }
    if let Some(k) = &w.key
        && h.key.as_deref() != Some(k.as_bytes())
    {
        return Err(format!("expected key {k:?}"));
    }
    for (k, v) in &w.headers {
        let found = h
            .headers
            .iter()
            .any(|(hk, hv)| hk == k && hv.as_deref() == Some(v.as_bytes()));
        if !found {
            return Err(format!("expected header {k}={v}"));
        }
    }
    Ok(())
}
