//! Run transforms natively, with config and lookup tables, under plain `cargo test`.
//!
//! The harness encodes test records exactly as the host does, runs the same batch code the
//! wasm export runs, and decodes the output entries, so a passing native test exercises
//! the real encoding on both sides.
//!
//! Case tables (`cases.json` beside a plugin) are shared with the host's end-to-end tests,
//! which run the same table through the compiled component:
//!
//! ```json
//! [{"config": {"mask_char": "#"}, "tables": {"users": {"u-1": {"name": "Ann"}}},
//!   "outputs": ["out"],
//!   "cases": [
//!     {"name": "masks", "input": {"value": "Password: x"}, "expect": {"emit": [{"value": "Password: #"}]}},
//!     {"name": "drops", "input": {"value": ""}, "expect": "drop"},
//!     {"name": "rejects", "input": {"value": "?"}, "expect": {"reject": "part of the reason"}}]}]
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::entries::{Entries, Entry};
use crate::{BatchContext, Error, Level, Outcome, Record, codec, run_batch};

/// What the host functions see during a native run.
#[derive(Debug, Default, Clone)]
pub struct Env {
    pub config: HashMap<String, String>,
    pub tables: HashMap<String, HashMap<Vec<u8>, Vec<u8>>>,
    pub outputs: Vec<String>,
    pub logs: Vec<(Level, String)>,
}

thread_local! {
    static ENV: RefCell<Env> = RefCell::new(Env::default());
}

pub(crate) fn with_env<R>(f: impl FnOnce(&mut Env) -> R) -> R {
    ENV.with(|e| f(&mut e.borrow_mut()))
}

/// A record to feed a transform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

impl TestRecord {
    pub fn value(v: impl Into<Vec<u8>>) -> Self {
        TestRecord {
            value: Some(v.into()),
            timestamp: 1_700_000_000_000,
            ..Default::default()
        }
    }

    pub fn json(v: &Value) -> Self {
        Self::value(v.to_string())
    }

    pub fn with_key(mut self, k: impl Into<Vec<u8>>) -> Self {
        self.key = Some(k.into());
        self
    }

    pub fn with_header(mut self, k: &str, v: impl Into<Vec<u8>>) -> Self {
        self.headers.push((k.to_owned(), Some(v.into())));
        self
    }
}

/// An emitted record, with its output resolved to a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    pub output: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

impl Emitted {
    pub fn value_str(&self) -> &str {
        self.value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .unwrap_or("")
    }
}

/// What a transform did with one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestOutcome {
    Emitted(Vec<Emitted>),
    Rejected(String),
    Dropped,
}

impl TestOutcome {
    /// A readable one-line summary (values as text, not bytes).
    pub fn describe(&self) -> String {
        match self {
            TestOutcome::Dropped => "dropped".into(),
            TestOutcome::Rejected(r) => format!("rejected ({r})"),
            TestOutcome::Emitted(v) => {
                let parts: Vec<String> = v
                    .iter()
                    .map(|e| {
                        let value = e
                            .value
                            .as_deref()
                            .map_or("null".into(), |b| String::from_utf8_lossy(b).into_owned());
                        format!("{} -> {value:?}", e.output)
                    })
                    .collect();
                format!("emitted [{}]", parts.join(", "))
            }
        }
    }

    /// The emitted values as text (empty when dropped or rejected).
    pub fn values(&self) -> Vec<&str> {
        match self {
            TestOutcome::Emitted(v) => v.iter().map(Emitted::value_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// Encodes records as the records section of one batch, the way the host does.
pub fn encode_batch(records: &[TestRecord]) -> (BatchContext, Vec<u8>) {
    let base_ts = records.iter().map(|r| r.timestamp).min().unwrap_or(0);
    let mut buf = Vec::new();
    for (i, r) in records.iter().enumerate() {
        codec::put_record(
            &mut buf,
            r.timestamp - base_ts,
            i as i32,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
    }
    let ctx = BatchContext {
        topic: "test".into(),
        partition: 0,
        base_offset: 0,
        base_timestamp: base_ts,
        record_count: records.len() as u32,
    };
    (ctx, buf)
}

/// Decodes output entries into one outcome per input record.
pub fn decode_outcomes(
    ctx: &BatchContext,
    input: &[u8],
    out: &[u8],
    outputs: &[String],
) -> Result<Vec<TestOutcome>, String> {
    let mut inputs = Vec::with_capacity(ctx.record_count as usize);
    let mut r = codec::Reader::new(input);
    for _ in 0..ctx.record_count {
        inputs.push(codec::next_raw(&mut r).map_err(|e| e.to_string())?);
    }
    let mut res = vec![TestOutcome::Dropped; ctx.record_count as usize];
    for e in Entries::new(out, ctx.record_count) {
        let e = e.map_err(|e| e.to_string())?;
        let e = match e {
            Entry::Pass { input, output } => Entry::Emit {
                input,
                output,
                record: crate::entries::RawRecord(inputs[input as usize]),
            },
            other => other,
        };
        match e {
            Entry::Pass { .. } => unreachable!("mapped above"),
            Entry::Reject { input, reason } => {
                res[input as usize] = TestOutcome::Rejected(reason.into())
            }
            Entry::Emit {
                input,
                output,
                record,
            } => {
                let record = record.view().map_err(|e| e.to_string())?;
                let name = outputs
                    .get(output as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("#{output}"));
                let em = Emitted {
                    output: name,
                    key: record.key.map(<[u8]>::to_vec),
                    value: record.value.map(<[u8]>::to_vec),
                    headers: record
                        .headers()
                        .map(|h| (h.key_str().to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect(),
                    timestamp: ctx.base_timestamp + record.timestamp_delta,
                };
                match &mut res[input as usize] {
                    TestOutcome::Emitted(v) => v.push(em),
                    slot => *slot = TestOutcome::Emitted(vec![em]),
                }
            }
        }
    }
    Ok(res)
}

type Transform<S> = Box<dyn for<'a, 'b> Fn(&'a S, &'b Record<'_>) -> Result<Outcome, Error>>;

/// Runs a transform natively over records.
pub struct Harness<S> {
    init: Box<dyn Fn() -> Result<S, Error>>,
    f: Transform<S>,
    env: Env,
}

impl Harness<()> {
    /// A harness for a stateless transform.
    pub fn new(f: for<'a, 'b> fn(&'a Record<'b>) -> Result<Outcome, Error>) -> Self {
        Harness {
            init: Box::new(|| Ok(())),
            f: Box::new(move |_, r| f(r)),
            env: Env::default(),
        }
    }
}

impl<S: 'static> Harness<S> {
    /// A harness for a transform with per-instance state built by `init`.
    pub fn with_init(
        init: fn() -> Result<S, Error>,
        f: for<'a, 'b, 'c> fn(&'a S, &'b Record<'c>) -> Result<Outcome, Error>,
    ) -> Self {
        Harness {
            init: Box::new(init),
            f: Box::new(f),
            env: Env::default(),
        }
    }

    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.env.config.insert(key.into(), value.into());
        self
    }

    pub fn table(mut self, table: &str, key: &[u8], value: &[u8]) -> Self {
        self.env
            .tables
            .entry(table.into())
            .or_default()
            .insert(key.to_vec(), value.to_vec());
        self
    }

    pub fn outputs(mut self, outputs: &[&str]) -> Self {
        self.env.outputs = outputs.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Runs `init`, then the transform over `records` as one batch.
    pub fn try_run(&self, records: &[TestRecord]) -> Result<Vec<TestOutcome>, String> {
        let mut env = self.env.clone();
        if env.outputs.is_empty() {
            env.outputs.push("output".into());
        }
        let outputs = env.outputs.clone();
        with_env(|e| *e = env);
        let state = (self.init)().map_err(|e| format!("init failed: {e}"))?;
        let (ctx, input) = encode_batch(records);
        let mut out = Vec::new();
        run_batch(&ctx, &input, &mut out, &crate::outputs, |r| {
            (self.f)(&state, r)
        })?;
        decode_outcomes(&ctx, &input, &out, &outputs)
    }

    /// Like `try_run`, panicking on an init or batch error.
    pub fn run(&self, records: &[TestRecord]) -> Vec<TestOutcome> {
        self.try_run(records).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn run_values(&self, values: &[&str]) -> Vec<TestOutcome> {
        let recs: Vec<_> = values.iter().map(|v| TestRecord::value(*v)).collect();
        self.run(&recs)
    }

    /// Log lines written during the last run on this thread.
    pub fn logs(&self) -> Vec<(Level, String)> {
        with_env(|e| e.logs.clone())
    }

    /// Runs every suite of a case table (see the module docs), panicking with the
    /// name of the first case that fails.
    pub fn run_suites(mut self, table_json: &str) {
        for suite in load_suites(table_json) {
            self.env = suite.env();
            let outcomes = self.run(&suite.records());
            if let Err(e) = suite.check(&outcomes) {
                panic!("{e}");
            }
        }
    }
}

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
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub input: CaseInput,
    pub expect: Expect,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Drop,
    Reject(String),
    Emit(Vec<ExpectEmit>),
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
            logs: Vec::new(),
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
                timestamp: 1_700_000_000_000,
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
            let fail = |why: String| {
                Err(format!(
                    "case {:?}: {why}; got {}",
                    case.name,
                    got.describe()
                ))
            };
            match (&case.expect, got) {
                (Expect::Drop, TestOutcome::Dropped) => {}
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
                            return fail(format!("expected value {}", w.value));
                        }
                        let output = w.output.as_ref().unwrap_or(&default_output);
                        if &h.output != output {
                            return fail(format!("expected output {output:?}"));
                        }
                        if let Some(k) = &w.key
                            && h.key.as_deref() != Some(k.as_bytes())
                        {
                            return fail(format!("expected key {k:?}"));
                        }
                        for (k, v) in &w.headers {
                            let found = h
                                .headers
                                .iter()
                                .any(|(hk, hv)| hk == k && hv.as_deref() == Some(v.as_bytes()));
                            if !found {
                                return fail(format!("expected header {k}={v}"));
                            }
                        }
                    }
                }
                (want, _) => return fail(format!("expected {want:?}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OutRecord, Target};

    fn upper(r: &Record) -> Result<Outcome, Error> {
        match r.value_str() {
            Some("") => Ok(Outcome::drop()),
            Some("bad") => Err(Error::new("bad record")),
            Some("keep") => Ok(Outcome::keep()),
            Some("two") => Ok(Outcome::emit(OutRecord::new("a"))
                .and_emit(Target::Named("side".into()), OutRecord::new("b"))),
            Some("nowhere") => Ok(Outcome::keep_to("missing")),
            Some(v) if v.starts_with("same ") => Ok(Outcome::keep_with_value(&v.as_bytes()[5..])),
            Some(v) => Ok(Outcome::emit(
                r.to_owned()
                    .with_value(v.to_uppercase())
                    .with_header("seen", "1"),
            )),
            None => Ok(Outcome::reject("no value")),
        }
    }

    #[test]
    fn harness_runs_every_outcome_kind() {
        let h = Harness::new(upper).outputs(&["main", "side"]);
        let out = h.run(&[
            TestRecord::value("hi").with_key("k"),
            TestRecord::value(""),
            TestRecord::value("bad"),
            TestRecord::value("keep").with_header("h", "v"),
            TestRecord::value("two"),
            TestRecord::value("nowhere"),
            TestRecord::default(),
        ]);
        assert_eq!(out[0].values(), ["HI"]);
        let TestOutcome::Emitted(e) = &out[0] else {
            panic!()
        };
        assert_eq!(e[0].key.as_deref(), Some(&b"k"[..]));
        assert!(e[0].headers.iter().any(|(k, _)| k == "seen"));
        assert_eq!(out[1], TestOutcome::Dropped);
        assert_eq!(out[2], TestOutcome::Rejected("bad record".into()));
        let TestOutcome::Emitted(e) = &out[3] else {
            panic!()
        };
        assert_eq!(e[0].headers, [("h".to_string(), Some(b"v".to_vec()))]);
        let TestOutcome::Emitted(e) = &out[4] else {
            panic!()
        };
        assert_eq!(
            (e[0].output.as_str(), e[1].output.as_str()),
            ("main", "side")
        );
        assert!(matches!(&out[5], TestOutcome::Rejected(r) if r.contains("missing")));
        assert_eq!(out[6], TestOutcome::Rejected("no value".into()));
    }

    #[test]
    fn keep_with_value_keeps_key_headers_and_timestamp() {
        let mut input = TestRecord::value("same new")
            .with_key("k1")
            .with_header("a", "1")
            .with_header("b", "");
        input.headers.push(("c".into(), None));
        input.timestamp = 1_700_000_000_123;
        let older = TestRecord {
            timestamp: 1_700_000_000_000,
            ..TestRecord::value("first")
        };
        let out = Harness::new(upper).run(&[older, input]);
        let TestOutcome::Emitted(e) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(e[0].value_str(), "new");
        assert_eq!(e[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(
            e[0].headers,
            [
                ("a".to_string(), Some(b"1".to_vec())),
                ("b".to_string(), Some(Vec::new())),
                ("c".to_string(), None)
            ]
        );
        assert_eq!(e[0].timestamp, 1_700_000_000_123);
    }

    #[test]
    fn suites_check_expectations() {
        let table = r#"[{"outputs": ["main", "side"], "cases": [
            {"name": "upper", "input": {"value": "hi"}, "expect": {"emit": [{"value": "HI"}]}},
            {"name": "drop", "input": {"value": ""}, "expect": "drop"},
            {"name": "reject", "input": {"value": "bad"}, "expect": {"reject": "bad"}},
            {"name": "fan", "input": {"value": "two"}, "expect": {"emit": [{"value": "a"}, {"value": "b", "output": "side"}]}}
        ]}]"#;
        Harness::new(upper).run_suites(table);
        let wrong = r#"[{"cases": [{"name": "w", "input": {"value": "hi"}, "expect": {"emit": [{"value": "hi"}]}}]}]"#;
        let r = std::panic::catch_unwind(|| Harness::new(upper).run_suites(wrong));
        assert!(r.is_err(), "a wrong expectation must fail");
    }
}
