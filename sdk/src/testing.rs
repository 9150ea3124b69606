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
//!
//! A case's input may name the topic it comes from (`"topic": "bids"`; default
//! [`DEFAULT_TOPIC`]), for plugins that read several inputs: as on the host, where each
//! batch comes from one input, consecutive records of one topic make one batch.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::entries::{Entries, Entry, RawRecord};
use crate::{
    BatchContext, Error, Level, NO_WATERMARK, Outcome, Record, Timer, codec, run_batch, run_timers,
};

pub use crate::native::Env;
use crate::native::with_env;

mod cases;
pub use cases::{
    Case, CaseInput, Expect, ExpectEmit, StreamSettings, Suite, load_suites, value_bytes,
};

/// The topic of test records that name none (what [`Record::topic`] returns).
pub const DEFAULT_TOPIC: &str = "test";

/// A record to feed a transform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
    /// The input topic it comes from; `None` is [`DEFAULT_TOPIC`].
    pub topic: Option<String>,
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

    pub fn with_topic(mut self, topic: &str) -> Self {
        self.topic = Some(topic.into());
        self
    }
}

/// Splits records into the batches the host would hand over: runs of one topic (each
/// batch comes from one input).
pub fn topic_runs(records: &[TestRecord]) -> impl Iterator<Item = &[TestRecord]> {
    records.chunk_by(|a, b| a.topic == b.topic)
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
    /// Kept from the plugin: its event time was before the watermark (the host sends it
    /// to the dead-letter topic with `sluice-error: late`).
    Late,
}

impl TestOutcome {
    /// A readable one-line summary (values as text, not bytes).
    pub fn describe(&self) -> String {
        match self {
            TestOutcome::Dropped => "dropped".into(),
            TestOutcome::Late => "late".into(),
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

/// Encodes records as the records section of one batch, the way the host does. A batch
/// comes from one topic, the first record's (split records of several with [`topic_runs`]).
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
    let topic = records.first().and_then(|r| r.topic.as_deref());
    let ctx = BatchContext {
        topic: topic.unwrap_or(DEFAULT_TOPIC).into(),
        partition: 0,
        base_offset: 0,
        base_timestamp: base_ts,
        record_count: records.len() as u32,
        ..BatchContext::default()
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
    decode_entries(ctx, Some(&inputs), out, outputs)
}

/// Decodes output entries into one outcome per input record (`inputs`, their bytes) or,
/// without inputs, per fired timer.
fn decode_entries(
    ctx: &BatchContext,
    inputs: Option<&[&[u8]]>,
    out: &[u8],
    outputs: &[String],
) -> Result<Vec<TestOutcome>, String> {
    let mut res = vec![TestOutcome::Dropped; ctx.record_count as usize];
    for e in Entries::new(out, ctx.record_count) {
        let (input, output, record) = match e.map_err(|e| e.to_string())? {
            Entry::Pass { input, output } => match inputs {
                Some(inputs) => (input, output, RawRecord(inputs[input as usize])),
                None => return Err(format!("timer {input}: a pass entry, but no record")),
            },
            Entry::Reject { input, reason } => {
                res[input as usize] = TestOutcome::Rejected(reason.into());
                continue;
            }
            Entry::Emit {
                input,
                output,
                record,
            } => (input, output, record),
            Entry::Splice {
                input,
                output,
                spans,
            } => {
                let Some(inputs) = inputs else {
                    return Err(format!("timer {input}: a splice entry, but no record"));
                };
                let spliced = crate::entries::splice_record(inputs[input as usize], &spans)
                    .map_err(|e| format!("input {input}: {e}"))?;
                add_emitted(
                    &mut res[input as usize],
                    RawRecord(&spliced),
                    output,
                    outputs,
                    ctx,
                )?;
                continue;
            }
        };
        add_emitted(&mut res[input as usize], record, output, outputs, ctx)?;
    }
    Ok(res)
}

/// Adds an emitted record (output entries are in input order) to its input's outcome.
fn add_emitted(
    slot: &mut TestOutcome,
    record: RawRecord<'_>,
    output: u32,
    outputs: &[String],
    ctx: &BatchContext,
) -> Result<(), String> {
    let record = record.view().map_err(|e| e.to_string())?;
    let em = Emitted {
        output: outputs
            .get(output as usize)
            .cloned()
            .unwrap_or_else(|| format!("#{output}")),
        key: record.key.map(<[u8]>::to_vec),
        value: record.value.map(<[u8]>::to_vec),
        headers: record
            .headers()
            .map(|h| (h.key_str().to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect(),
        timestamp: ctx.base_timestamp + record.timestamp_delta,
    };
    match slot {
        TestOutcome::Emitted(v) => v.push(em),
        slot => *slot = TestOutcome::Emitted(vec![em]),
    }
    Ok(())
}

/// Runs one call of the plugin as the host does: its state changes are applied when it
/// succeeds and dropped when it fails. Returns the output entries `body` wrote.
fn one_call(body: impl FnOnce(&mut Vec<u8>) -> Result<(), String>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    crate::state::begin_call();
    match body(&mut out) {
        Ok(()) => crate::state::end_call().map_err(|e| e.to_string())?,
        Err(e) => {
            crate::state::discard_call();
            return Err(e);
        }
    }
    Ok(out)
}

type Transform<S> = Box<dyn for<'a, 'b> Fn(&'a S, &'b Record<'_>) -> Result<Outcome, Error>>;
type TimerHandler<S> = Box<dyn for<'a, 'b> Fn(&'a S, &'b Timer<'_>) -> Result<Outcome, Error>>;

/// Runs a transform natively over records.
pub struct Harness<S> {
    init: Box<dyn Fn() -> Result<S, Error>>,
    f: Transform<S>,
    on_timer: Option<TimerHandler<S>>,
    env: Env,
    allowed_lateness: i64,
    event_time_field: Option<String>,
    /// A deployment over two inputs: their topics (the watermark follows the lower).
    inputs: Vec<String>,
}

impl Harness<()> {
    /// A harness for a stateless transform.
    pub fn new(f: for<'a, 'b> fn(&'a Record<'b>) -> Result<Outcome, Error>) -> Self {
        Harness {
            init: Box::new(|| Ok(())),
            f: Box::new(move |_, r| f(r)),
            on_timer: None,
            env: Env::default(),
            allowed_lateness: 0,
            event_time_field: None,
            inputs: Vec::new(),
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
            on_timer: None,
            env: Env::default(),
            allowed_lateness: 0,
            event_time_field: None,
            inputs: Vec::new(),
        }
    }

    /// The timer handler (what `export_transform!(…, timers = h)` names).
    pub fn timers(
        mut self,
        h: for<'a, 'b, 'c> fn(&'a S, &'b Timer<'c>) -> Result<Outcome, Error>,
    ) -> Self {
        self.on_timer = Some(Box::new(h));
        self
    }

    /// The deployment's `event_time.allowed_lateness_ms` (for [`Harness::stream`]).
    pub fn allowed_lateness(mut self, ms: i64) -> Self {
        self.allowed_lateness = ms;
        self
    }

    /// A deployment over two inputs (`"inputs"`): records name their topic
    /// ([`TestRecord::topic`]), and the watermark is the lower of the two inputs'.
    pub fn inputs(mut self, topics: [&str; 2]) -> Self {
        self.inputs = topics.iter().map(|t| t.to_string()).collect();
        self
    }

    /// The deployment's `event_time.field`: event times come from this JSON field.
    pub fn event_time_field(mut self, field: &str) -> Self {
        self.event_time_field = Some(field.into());
        self
    }

    /// Starts a stream of batches over one partition, as the host runs a stateful
    /// deployment: state, timers and the watermark carry over from batch to batch.
    pub fn stream(&self) -> Result<Stream<'_, S>, String> {
        let mut env = self.env.clone();
        if env.outputs.is_empty() {
            env.outputs.push("output".into());
        }
        with_env(|e| *e = env);
        let inst = (self.init)().map_err(|e| format!("init failed: {e}"))?;
        Ok(Stream {
            h: self,
            inst,
            env: with_env(std::mem::take),
            watermark: NO_WATERMARK,
            max_event_time: NO_WATERMARK,
            input_times: BTreeMap::new(),
            offset: 0,
        })
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

    /// Runs `init`, then the transform over `records` as one batch (one per run of
    /// records of one topic, in order, with state carried over).
    pub fn try_run(&self, records: &[TestRecord]) -> Result<Vec<TestOutcome>, String> {
        let mut env = self.env.clone();
        if env.outputs.is_empty() {
            env.outputs.push("output".into());
        }
        let outputs = env.outputs.clone();
        with_env(|e| *e = env);
        let state = (self.init)().map_err(|e| format!("init failed: {e}"))?;
        let mut outcomes = Vec::with_capacity(records.len());
        for run in topic_runs(records) {
            let (mut ctx, input) = encode_batch(run);
            ctx.base_offset = outcomes.len() as i64;
            let out = one_call(|out| {
                run_batch(&ctx, &input, out, &crate::outputs, |r| (self.f)(&state, r))
            })?;
            outcomes.extend(decode_outcomes(&ctx, &input, &out, &outputs)?);
        }
        Ok(outcomes)
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
            if let Some(stream) = &suite.stream {
                self.allowed_lateness = stream.allowed_lateness_ms;
                self.event_time_field = stream.event_time_field.clone();
                self.inputs = stream.inputs.clone();
                if let Err(e) = self.run_stream_suite(&suite) {
                    panic!("{e}");
                }
                continue;
            }
            let outcomes = self.run(&suite.records());
            if let Err(e) = suite.check(&outcomes) {
                panic!("{e}");
            }
        }
    }

    /// A stream suite: each case one batch of one record, then its timers.
    fn run_stream_suite(&self, suite: &Suite) -> Result<(), String> {
        let mut stream = self.stream()?;
        let records = suite.records();
        for (case, record) in suite.cases.iter().zip(records) {
            let pushed = stream.push(std::slice::from_ref(&record))?;
            let mut fired = pushed.fired;
            if let Some(to) = case.advance_to {
                fired.extend(stream.advance(to)?);
            }
            let emitted: Vec<Emitted> = fired
                .iter()
                .flat_map(|f| match &f.outcome {
                    TestOutcome::Emitted(v) => v.clone(),
                    _ => Vec::new(),
                })
                .collect();
            suite.check_stream_case(case, &pushed.outcomes[0], &emitted)?;
        }
        Ok(())
    }
}

/// A timer that fired in a [`Stream`], and what the handler made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub at: i64,
    pub key: Vec<u8>,
    pub outcome: TestOutcome,
}

impl Fired {
    /// The emitted values as text.
    pub fn values(&self) -> Vec<&str> {
        self.outcome.values()
    }
}

/// What one batch of a [`Stream`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// One per input record; late ones are [`TestOutcome::Late`].
    pub outcomes: Vec<TestOutcome>,
    /// Timers the batch's watermark fired, in firing order.
    pub fired: Vec<Fired>,
}

/// Most rounds of timer firing at one watermark (timers set by the handler at or before
/// the watermark fire in the next round), as on the host.
pub const MAX_TIMER_ROUNDS: usize = 100;

/// A stateful run over one simulated partition (see [`Harness::stream`]): event times,
/// late records, the watermark (max event time − allowed lateness, moved after each batch)
/// and timers behave as on the host.
pub struct Stream<'h, S> {
    h: &'h Harness<S>,
    inst: S,
    env: Env,
    watermark: i64,
    max_event_time: i64,
    /// Over two inputs: the largest event time of each, by topic.
    input_times: BTreeMap<String, i64>,
    offset: i64,
}

impl<S> Stream<'_, S> {
    /// Runs `f` with this stream's environment installed.
    fn with<R>(&mut self, f: impl FnOnce(&S) -> R) -> R {
        with_env(|e| std::mem::swap(e, &mut self.env));
        let r = f(&self.inst);
        with_env(|e| std::mem::swap(e, &mut self.env));
        r
    }

    /// The watermark now.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The value of a state key.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.env.state.get(key).map(Vec::as_slice)
    }

    /// Every state key and value.
    pub fn state(&self) -> &BTreeMap<Vec<u8>, Vec<u8>> {
        &self.env.state
    }

    /// Pending timers: (at, key).
    pub fn timers(&self) -> Vec<(i64, Vec<u8>)> {
        self.env.timers.iter().cloned().collect()
    }

    /// Log lines so far.
    pub fn logs(&self) -> &[(Level, String)] {
        &self.env.logs
    }

    /// One batch (one per run of records of one topic, as the host hands them over):
    /// records before the watermark are late (not processed), the rest go through the
    /// transform; then the watermark moves and due timers fire.
    pub fn push(&mut self, records: &[TestRecord]) -> Result<Pushed, String> {
        if records.is_empty() {
            return self.push_batch(records);
        }
        let mut all = Pushed {
            outcomes: Vec::with_capacity(records.len()),
            fired: Vec::new(),
        };
        for run in topic_runs(records) {
            let p = self.push_batch(run)?;
            all.outcomes.extend(p.outcomes);
            all.fired.extend(p.fired);
        }
        Ok(all)
    }

    fn push_batch(&mut self, records: &[TestRecord]) -> Result<Pushed, String> {
        let field = self.h.event_time_field.clone();
        let mut times = Vec::with_capacity(records.len());
        for r in records {
            times.push(match &field {
                Some(f) => crate::json::event_time(r.value.as_deref(), f)?,
                None => r.timestamp,
            });
        }
        let on_time: Vec<usize> = (0..records.len())
            .filter(|i| times[*i] >= self.watermark)
            .collect();
        let batch: Vec<TestRecord> = on_time.iter().map(|i| records[*i].clone()).collect();
        let (mut ctx, input) = encode_batch(&batch);
        ctx.base_offset = self.offset;
        ctx.watermark = self.watermark;
        if field.is_some() {
            ctx.event_times = on_time.iter().map(|i| times[*i]).collect();
        }
        self.offset += records.len() as i64;
        let outputs = self.env.outputs.clone();
        let h = self.h;
        let out = self.with(|inst| {
            one_call(|out| run_batch(&ctx, &input, out, &crate::outputs, |r| (h.f)(inst, r)))
        })?;
        let processed = decode_outcomes(&ctx, &input, &out, &outputs)?;
        let mut outcomes = vec![TestOutcome::Late; records.len()];
        for (i, o) in on_time.iter().zip(processed) {
            outcomes[*i] = o;
        }
        if let Some(max) = on_time.iter().map(|i| times[*i]).max() {
            self.max_event_time = self.max_event_time.max(max);
            let topic = records[0].topic.as_deref().unwrap_or(DEFAULT_TOPIC);
            let t = self.input_times.entry(topic.into()).or_insert(NO_WATERMARK);
            *t = (*t).max(max);
        }
        let reached = match self.h.inputs.as_slice() {
            [a, b] => match (self.input_times.get(a), self.input_times.get(b)) {
                (Some(a), Some(b)) => *a.min(b),
                _ => NO_WATERMARK,
            },
            _ => self.max_event_time,
        };
        let fired = if reached == NO_WATERMARK {
            Vec::new()
        } else {
            self.advance(reached.saturating_sub(self.h.allowed_lateness))?
        };
        Ok(Pushed { outcomes, fired })
    }

    /// Moves the watermark to `to` (if that is later), as the host does for an idle
    /// partition, and fires the timers due.
    pub fn advance(&mut self, to: i64) -> Result<Vec<Fired>, String> {
        self.watermark = self.watermark.max(to);
        let mut fired = Vec::new();
        for _ in 0..MAX_TIMER_ROUNDS {
            let due: Vec<(i64, Vec<u8>)> = self
                .env
                .timers
                .iter()
                .take_while(|(at, _)| *at <= self.watermark)
                .cloned()
                .collect();
            if due.is_empty() {
                break;
            }
            for t in &due {
                self.env.timers.remove(t);
            }
            let mut list = Vec::new();
            for (at, key) in &due {
                crate::state::put_timer(&mut list, *at, key);
            }
            let ctx = BatchContext {
                topic: DEFAULT_TOPIC.into(),
                base_offset: self.offset,
                base_timestamp: self.watermark,
                record_count: due.len() as u32,
                watermark: self.watermark,
                ..BatchContext::default()
            };
            let outputs = self.env.outputs.clone();
            let h = self.h;
            let Some(handler) = &h.on_timer else {
                continue;
            };
            let out = self.with(|inst| {
                one_call(|out| run_timers(&ctx, &list, out, &crate::outputs, |t| handler(inst, t)))
            })?;
            // Timers have no input records: a pass entry is an error.
            let outcomes = decode_entries(&ctx, None, &out, &outputs)?;
            for ((at, key), outcome) in due.into_iter().zip(outcomes) {
                fired.push(Fired { at, key, outcome });
            }
        }
        Ok(fired)
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

    fn topic_of(r: &Record) -> Result<Outcome, Error> {
        Ok(Outcome::keep_with_value(r.topic()))
    }

    #[test]
    fn each_run_of_one_topic_is_a_batch_of_its_own() {
        let rec = |topic: &str, t| TestRecord {
            timestamp: t,
            ..TestRecord::value("x").with_topic(topic)
        };
        let out = Harness::new(topic_of).run(&[TestRecord::value("x"), rec("a", 1), rec("b", 2)]);
        let topics: Vec<&str> = out.iter().flat_map(TestOutcome::values).collect();
        assert_eq!(topics, [DEFAULT_TOPIC, "a", "b"]);
        // In a stream the watermark moves after each batch: `a` at 3 comes after `b`'s.
        let h = Harness::new(topic_of);
        let mut s = h.stream().unwrap();
        let recs = [rec("a", 1), rec("b", 5), rec("a", 3)];
        let o = s.push(&recs).unwrap().outcomes;
        assert_eq!((o[1].values(), &o[2]), (vec!["b"], &TestOutcome::Late));
        let table = r#"[{"cases": [
            {"name": "a", "input": {"value": "x", "topic": "bids"}, "expect": {"emit": [{"value": "bids"}]}},
            {"name": "b", "input": {"value": "x"}, "expect": {"emit": [{"value": "test"}]}}]}]"#;
        Harness::new(topic_of).run_suites(table);
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
