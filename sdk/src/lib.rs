//! Write Sluice transforms: one function from a record to an outcome.
//!
//! ```
//! use sluice_sdk::{Error, Outcome, Record};
//!
//! /// Upper-cases every value; drops records without one.
//! fn shout(record: &Record) -> Result<Outcome, Error> {
//!     let Some(text) = record.value_str() else {
//!         return Ok(Outcome::drop());
//!     };
//!     Ok(Outcome::emit(record.to_owned().with_value(text.to_uppercase())))
//! }
//!
//! sluice_sdk::export_transform!(shout);
//!
//! // Test it natively with plain `cargo test`:
//! let out = sluice_sdk::testing::Harness::new(shout).run_values(&["hi", "there"]);
//! assert_eq!(out[0].values(), ["HI"]);
//! ```
//!
//! Build the plugin with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is a component ready for `sluice plugin push`.
//!
//! With per-instance state built once from the deployment's config:
//!
//! ```
//! use sluice_sdk::{Error, Outcome, Record};
//!
//! struct Settings { field: String }
//!
//! fn setup() -> Result<Settings, Error> {
//!     Ok(Settings { field: sluice_sdk::config("field").unwrap_or_else(|| "id".into()) })
//! }
//!
//! fn has_field(s: &Settings, record: &Record) -> Result<Outcome, Error> {
//!     let v = record.json()?;
//!     Ok(if v.get(&s.field).is_some() { Outcome::keep() } else { Outcome::drop() })
//! }
//!
//! sluice_sdk::export_transform!(has_field, init = setup);
//! ```
//!
//! Stateful: keyed state per input partition (`state`), event-time timers (`timers`) and
//! windows (`window`); the host calls the `timers` function when the watermark passes a
//! timer, and commits state with the outputs (effectively once, if the plugin is
//! deterministic). A count per key per minute:
//!
//! ```
//! use sluice_sdk::window::Windows;
//! use sluice_sdk::{Error, OutRecord, Outcome, Record, Timer};
//!
//! fn setup() -> Result<Windows<u64>, Error> { Ok(Windows::tumbling("count", 60_000)) }
//!
//! fn count(w: &Windows<u64>, r: &Record) -> Result<Outcome, Error> {
//!     w.add(r.key().unwrap_or_default(), r.event_time(), |n| *n += 1)?;
//!     Ok(Outcome::drop())
//! }
//!
//! fn close(w: &Windows<u64>, t: &Timer) -> Result<Outcome, Error> {
//!     let Some(c) = w.close(t)? else { return Ok(Outcome::drop()) };
//!     let v = format!("{}={}", c.key_str(), c.value);
//!     Ok(Outcome::emit(OutRecord::new(v).with_key(c.key)))
//! }
//!
//! sluice_sdk::export_transform!(count, init = setup, timers = close);
//!
//! // Natively, with a simulated watermark (allowed lateness 0: it follows the events).
//! use sluice_sdk::testing::{Harness, TestRecord};
//! let at = |ts| TestRecord { timestamp: ts, ..TestRecord::value("x").with_key("a") };
//! let h = Harness::with_init(setup, count).timers(close).allowed_lateness(0);
//! let mut s = h.stream().unwrap();
//! s.push(&[at(1_000)]).unwrap();
//! let p = s.push(&[at(61_000)]).unwrap();
//! assert_eq!(p.fired[0].values(), ["a=1"]);
//! ```
//!
//! A transform that returns `Err` rejects the record: it goes to the deployment's
//! dead-letter topic with the error as the reason. A panic traps the instance; the host finds
//! the record that caused it and dead-letters it too.
//!
//! ## Fast plugins
//!
//! A plugin runs as WebAssembly compiled by Cranelift: about half the speed of the same
//! Rust natively for scanning code. What keeps it near native:
//! - **Leave the scanning to the host**: [`text`] offers regular expressions (pattern sets
//!   compiled once in `init`), substring and byte-set search, a JSON structural index, JSON
//!   pointer get/set, base64, hex and SHA-256, run natively by the host. Their batch forms
//!   ([`text::Pattern::find_in`], [`text::Pattern::find_in_json`],
//!   [`text::json_index_in`]) do every record of the batch in
//!   one host call, on the records the host already holds: the plugin gets positions back
//!   and only writes replacements. `mask` built this way runs at 70–100% of its native
//!   speed (the same code natively, where the SDK runs the host's implementation).
//! - **Pass what you do not change**: `Outcome::keep()` does not copy the record; a new
//!   value with [`Outcome::keep_rewritten`] is written into a buffer the SDK reuses batch
//!   after batch (no allocation per record), and the input's key, headers and timestamp are
//!   re-emitted without re-encoding.
//! - **Fewer loop iterations, not fewer instructions** in your own loops: every loop
//!   back-edge in wasm checks the host's deadline. Scan eight bytes per step (SWAR: load a
//!   `u64`, test all lanes with arithmetic), or let LLVM vectorize simple byte loops —
//!   plugins here are built with `+simd128` (`.cargo/config.toml`; `sluice plugin new`
//!   writes the same), which wasmtime turns into SSE/AVX.
//! - **Calls out of the sandbox cost**: `memcpy`/`memset` of a few bytes are calls in wasm;
//!   write short runs with `push`/`extend_from_slice` of small arrays. A host primitive
//!   per record costs a call and a copy of its input; per batch, neither.
//! - **Regexes are slow in wasm** (no SIMD prefilters, a large automaton in linear memory):
//!   use [`text::Pattern`] instead of compiling the `regex` crate into the plugin. Prefer
//!   "start or non-word character" to a Unicode `\b` (which keeps the engine off its DFAs
//!   on non-ASCII input).
//! - **Fuel is not on the normal path**: calls run without fuel metering, bounded by
//!   `timeout_ms`; only calls that isolate a record after a failure are metered
//!   (`fuel_per_record`), so a plugin pays nothing for it while it behaves. Host
//!   primitives count one unit of a budget of `fuel_per_record` per record for each input
//!   byte they read.

pub mod codec;
#[cfg(feature = "crypto")]
pub mod crypto;
pub mod entries;
mod host;
pub mod json;
mod native;
mod outcome;
pub mod state;
pub mod testing;
pub mod text;
pub mod window;

use std::borrow::Cow;
use std::fmt;

pub use host::{Level, config, log, lookup, outputs};
#[cfg(target_arch = "wasm32")]
pub(crate) use outcome::batch_number;
use outcome::{Emission, OutcomeKind, SCRATCH, reset_scratch};
pub use outcome::{Outcome, Splice, Target};

/// A config entry that is a positive number of milliseconds, or `default` when absent.
pub fn config_ms(name: &str, default: i64) -> Result<i64, Error> {
    match config(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                Error::new(format!("{name} must be a positive number of ms, not {v:?}"))
            }),
    }
}
pub use state::timers;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        world: "transform",
        path: "../wit/transform.wit",
        pub_export_macro: true,
        export_macro_name: "__export_transform_world",
        default_bindings_module: "::sluice_sdk::__bindings",
    });
}

/// The watermark of a partition that has seen no event yet.
pub const NO_WATERMARK: i64 = i64::MIN;

/// Where a batch comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchContext {
    pub topic: String,
    pub partition: u32,
    pub base_offset: i64,
    pub base_timestamp: i64,
    pub record_count: u32,
    /// The partition's watermark when the batch starts: event times before it are late
    /// (the host keeps late records from the plugin). [`NO_WATERMARK`] until there is one.
    pub watermark: i64,
    /// Event times by record when the deployment reads them from a JSON field; empty when
    /// a record's event time is its timestamp.
    pub event_times: Vec<i64>,
}

impl Default for BatchContext {
    fn default() -> Self {
        BatchContext {
            topic: String::new(),
            partition: 0,
            base_offset: 0,
            base_timestamp: 0,
            record_count: 0,
            watermark: NO_WATERMARK,
            event_times: Vec::new(),
        }
    }
}

/// An error from a transform. Returned from the transform function, it rejects the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_owned())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error(format!("invalid JSON: {e}"))
    }
}

/// One input record, borrowed from the batch. Nothing is copied to read it, and its fields
/// are decoded only when first asked for, so a transform that passes records through
/// unchanged never decodes them.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    raw: &'a [u8],
    view: std::cell::OnceCell<Option<codec::RecordView<'a>>>,
    ctx: &'a BatchContext,
    /// Position in the batch.
    index: u32,
}

impl<'a> Record<'a> {
    /// The decoded fields; `None` if the record's bytes are malformed.
    fn view(&self) -> Option<&codec::RecordView<'a>> {
        self.view
            .get_or_init(|| codec::RecordView::read(&mut codec::Reader::new(self.raw)).ok())
            .as_ref()
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.view().and_then(|v| v.key)
    }

    pub fn key_str(&self) -> Option<&'a str> {
        self.key().and_then(|k| std::str::from_utf8(k).ok())
    }

    pub fn value(&self) -> Option<&'a [u8]> {
        self.view().and_then(|v| v.value)
    }

    /// The value as text, if it is valid UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        self.value().and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value parsed as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        Ok(serde_json::from_slice(self.value().unwrap_or(b"null"))?)
    }

    /// What a record is grouped by: its key, or (with `field`) the text of that JSON field
    /// of the value — a name, dotted path or JSON pointer ([`json::path`]). `None` when
    /// there is no key or no such field.
    pub fn key_or_field(&self, field: Option<&str>) -> Result<Option<Cow<'a, [u8]>>, Error> {
        match field {
            None => Ok(self.key().map(Cow::Borrowed)),
            Some(f) => {
                let v = self.json()?;
                Ok(json::path(&v, f).map(|v| Cow::Owned(json::text(v).into_bytes())))
            }
        }
    }

    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        self.view()
            .copied()
            .into_iter()
            .flat_map(|v| v.headers())
            .map(|h| (h.key_str(), h.value))
    }

    pub fn header(&self, key: &str) -> Option<&'a [u8]> {
        self.view()
            .and_then(|v| v.header(key))
            .and_then(|h| h.value)
    }

    fn timestamp_delta(&self) -> i64 {
        self.view().map_or(0, |v| v.timestamp_delta)
    }

    /// Milliseconds since the epoch.
    pub fn timestamp(&self) -> i64 {
        self.ctx.base_timestamp + self.timestamp_delta()
    }

    /// When the event happened (ms since the epoch): the JSON field the deployment names
    /// in `event_time.field`, or else the record's timestamp. Watermarks and windows go by
    /// this time.
    pub fn event_time(&self) -> i64 {
        self.ctx
            .event_times
            .get(self.index as usize)
            .copied()
            .unwrap_or_else(|| self.timestamp())
    }

    /// The partition's watermark for this batch (see [`BatchContext::watermark`]).
    pub fn watermark(&self) -> i64 {
        self.ctx.watermark
    }

    /// The record's offset in its partition.
    pub fn offset(&self) -> i64 {
        self.ctx.base_offset + self.view().map_or(0, |v| i64::from(v.offset_delta))
    }

    pub fn topic(&self) -> &'a str {
        &self.ctx.topic
    }

    pub fn partition(&self) -> u32 {
        self.ctx.partition
    }

    /// An owned copy to modify and emit.
    pub fn to_owned(&self) -> OutRecord {
        OutRecord {
            key: self.key().map(<[u8]>::to_vec),
            value: self.value().map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(k, v)| (k.to_owned(), v.map(<[u8]>::to_vec)))
                .collect(),
            timestamp: Some(self.timestamp()),
        }
    }
}

/// A record to emit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch; `None` keeps the input's timestamp.
    pub timestamp: Option<i64>,
}

impl OutRecord {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        OutRecord {
            value: Some(value.into()),
            ..Default::default()
        }
    }

    pub fn with_value(mut self, value: impl Into<Vec<u8>>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sets the value to the JSON text of `v`.
    pub fn with_json(mut self, v: &serde_json::Value) -> Self {
        self.value = Some(v.to_string().into_bytes());
        self
    }

    pub fn with_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds a header (or replaces one with the same key).
    pub fn with_header(mut self, key: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.retain(|(k, _)| k != key);
        self.headers.push((key.to_owned(), Some(value.into())));
        self
    }
}

/// A timer that fired: the watermark reached the time it was set for.
#[derive(Debug, Clone, Copy)]
pub struct Timer<'a> {
    key: &'a [u8],
    at: i64,
    watermark: i64,
}

impl<'a> Timer<'a> {
    /// A timer as the host hands it over (for tests and the window helpers).
    pub fn new(key: &'a [u8], at: i64, watermark: i64) -> Self {
        Timer { key, at, watermark }
    }

    /// The key it was set with.
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    pub fn key_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.key).ok()
    }

    /// The time it was set for (ms since the epoch).
    pub fn at(&self) -> i64 {
        self.at
    }

    /// The watermark that fired it (at least `at`).
    pub fn watermark(&self) -> i64 {
        self.watermark
    }
}

/// What an entry answers: an input record, or a fired timer (no record: an emitted
/// record's timestamp defaults to the timer's time, and there is nothing to pass on).
enum Source<'r, 'a> {
    Record(&'r Record<'a>),
    Timer(&'r Timer<'a>),
}

/// Resolves output names to indexes (the names are asked for once, on first use).
struct Resolver<'f> {
    names: Option<Vec<String>>,
    outputs: &'f dyn Fn() -> Vec<String>,
}

impl Resolver<'_> {
    fn resolve(&mut self, t: &Target) -> Result<u32, String> {
        match t {
            Target::Default => Ok(0),
            Target::Named(n) => {
                let names = self.names.get_or_insert_with(self.outputs);
                names
                    .iter()
                    .position(|x| x == n)
                    .map(|i| i as u32)
                    .ok_or_else(|| {
                        format!("output {n:?} is not one of the deployment's outputs {names:?}")
                    })
            }
        }
    }
}

/// Writes the entries of one answer.
fn answer(
    out: &mut Vec<u8>,
    i: u32,
    result: Result<Outcome, Error>,
    src: Source<'_, '_>,
    ctx: &BatchContext,
    names: &mut Resolver<'_>,
) {
    match result {
        Ok(Outcome(OutcomeKind::Drop)) => {}
        Ok(Outcome(OutcomeKind::Reject(reason))) => entries::put_reject(out, i, &reason),
        Err(e) => entries::put_reject(out, i, e.message()),
        // The pass-through fast path: no target lookup, no decoding.
        Ok(Outcome(OutcomeKind::One(Emission::Input(Target::Default))))
            if matches!(src, Source::Record(_)) =>
        {
            entries::put_pass(out, i, 0)
        }
        Ok(Outcome(OutcomeKind::One(em))) => emit_one(out, i, em, &src, ctx, names),
        Ok(Outcome(OutcomeKind::Many(emissions))) => {
            for em in emissions {
                emit_one(out, i, em, &src, ctx, names);
            }
        }
    }
}

/// Runs a transform over one batch, writing output entries into `out`. This is the code
/// the wasm export and the native test harness both run.
pub fn run_batch<F>(
    ctx: &BatchContext,
    records: &[u8],
    out: &mut Vec<u8>,
    outputs: &dyn Fn() -> Vec<String>,
    mut f: F,
) -> Result<(), String>
where
    F: FnMut(&Record<'_>) -> Result<Outcome, Error>,
{
    let mut r = codec::Reader::new(records);
    let mut names = Resolver {
        names: None,
        outputs,
    };
    reset_scratch();
    for i in 0..ctx.record_count {
        let raw = codec::next_raw(&mut r)
            .map_err(|e| format!("input record {i} does not decode: {e}"))?;
        let rec = Record {
            raw,
            view: std::cell::OnceCell::new(),
            ctx,
            index: i,
        };
        let result = f(&rec);
        answer(out, i, result, Source::Record(&rec), ctx, &mut names);
    }
    Ok(())
}

/// Runs a timer handler over fired timers (the `on-timers` layout), writing output entries
/// into `out`.
pub fn run_timers<F>(
    ctx: &BatchContext,
    timers: &[u8],
    out: &mut Vec<u8>,
    outputs: &dyn Fn() -> Vec<String>,
    mut f: F,
) -> Result<(), String>
where
    F: FnMut(&Timer<'_>) -> Result<Outcome, Error>,
{
    let mut r = codec::Reader::new(timers);
    let mut names = Resolver {
        names: None,
        outputs,
    };
    for i in 0..ctx.record_count {
        let (at, key) = state::read_timer(&mut r)
            .map_err(|e| format!("fired timer {i} does not decode: {e}"))?;
        let timer = Timer {
            key,
            at,
            watermark: ctx.base_timestamp,
        };
        let result = f(&timer);
        answer(out, i, result, Source::Timer(&timer), ctx, &mut names);
    }
    Ok(())
}

fn emit_one(
    out: &mut Vec<u8>,
    i: u32,
    em: Emission,
    src: &Source<'_, '_>,
    ctx: &BatchContext,
    names: &mut Resolver<'_>,
) {
    let target = match &em {
        Emission::Input(t)
        | Emission::InputValue(t, _)
        | Emission::InputScratch(t, ..)
        | Emission::InputSplice(t, ..)
        | Emission::Record(t, _) => t,
    };
    let output = match names.resolve(target) {
        Ok(o) => o,
        Err(e) => return entries::put_reject(out, i, &e),
    };
    match (em, src) {
        // Unchanged input: the host already has its bytes.
        (Emission::Input(_), Source::Record(_)) => entries::put_pass(out, i, output),
        (Emission::InputValue(_, value), Source::Record(rec)) => match rec.view() {
            Some(view) => entries::put_emit_with_value(out, i, output, view, Some(&value)),
            None => entries::put_reject(out, i, "the input record does not decode"),
        },
        (Emission::InputScratch(_, start, end), Source::Record(rec)) => match rec.view() {
            Some(view) => SCRATCH.with(|s| {
                let s = s.borrow();
                match s.get(start..end) {
                    Some(value) => entries::put_emit_with_value(out, i, output, view, Some(value)),
                    None => entries::put_reject(out, i, "a rewritten value from another batch"),
                }
            }),
            None => entries::put_reject(out, i, "the input record does not decode"),
        },
        (Emission::InputSplice(_, start, end, count), Source::Record(_)) => SCRATCH.with(|s| {
            let s = s.borrow();
            match s.get(start..end) {
                Some(spans) => {
                    out.push(entries::SPLICE);
                    codec::put_uvarint(out, u64::from(i));
                    codec::put_uvarint(out, u64::from(output));
                    codec::put_uvarint(out, u64::from(count));
                    out.extend_from_slice(spans);
                }
                None => entries::put_reject(out, i, "a splice from another batch"),
            }
        }),
        (
            Emission::Input(_)
            | Emission::InputValue(..)
            | Emission::InputScratch(..)
            | Emission::InputSplice(..),
            Source::Timer(_),
        ) => entries::put_reject(out, i, "a timer has no input record to keep; emit a record"),
        (Emission::Record(_, r), src) => {
            let default_delta = match src {
                Source::Record(rec) => rec.timestamp_delta(),
                Source::Timer(t) => t.at - ctx.base_timestamp,
            };
            entries::put_emit(
                out,
                i,
                output,
                r.timestamp
                    .map_or(default_delta, |ts| ts - ctx.base_timestamp),
                r.key.as_deref(),
                r.value.as_deref(),
                r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
            )
        }
    }
}

#[doc(hidden)]
pub mod __rt {
    //! Glue the export macro expands to; not part of the API.
    use super::*;
    use std::any::Any;
    use std::cell::RefCell;

    thread_local! {
        static STATE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    pub fn init<S: 'static>(init: fn() -> Result<S, Error>) -> Result<(), String> {
        state::begin_call();
        let s = init().map_err(|e| e.0)?;
        // `init` runs for every instance the host starts (per partition, after a reload,
        // when it recycles or isolates), so state written there would be written again
        // and again: refuse it loudly instead of dropping it.
        if state::call_has_changes() {
            state::discard_call();
            return Err(
                "init wrote state: state can only be written while processing records or \
                 timers (init runs again for every instance of the plugin); set initial \
                 values when a record first needs them (e.g. with state::update)"
                    .into(),
            );
        }
        STATE.with(|st| *st.borrow_mut() = Some(Box::new(s)));
        Ok(())
    }

    /// Runs `body` with the instance's value, inside one call's state cache: its changes go
    /// to the host when `body` succeeds and are dropped when it fails.
    fn call<S: 'static>(
        body: impl FnOnce(&S, &mut Vec<u8>) -> Result<(), String>,
        capacity: usize,
    ) -> Result<Vec<u8>, String> {
        STATE.with(|st| {
            let st = st.borrow();
            let s = st
                .as_ref()
                .and_then(|b| b.downcast_ref::<S>())
                .ok_or("called before init")?;
            let mut out = Vec::with_capacity(capacity);
            state::begin_call();
            match body(s, &mut out) {
                Ok(()) => {
                    state::end_call().map_err(|e| e.0)?;
                    Ok(out)
                }
                Err(e) => {
                    state::discard_call();
                    Err(e)
                }
            }
        })
    }

    pub fn process<S: 'static>(
        ctx: BatchContext,
        records: Vec<u8>,
        f: fn(&S, &Record<'_>) -> Result<Outcome, Error>,
    ) -> Result<Vec<u8>, String> {
        call(
            |s, out| run_batch(&ctx, &records, out, &outputs, |r| f(s, r)),
            records.len() + records.len() / 8 + 64,
        )
    }

    /// `init` only names the instance type (the timer handler may be generic over it).
    pub fn on_timers<S: 'static>(
        _init: fn() -> Result<S, Error>,
        ctx: BatchContext,
        timers: Vec<u8>,
        f: fn(&S, &Timer<'_>) -> Result<Outcome, Error>,
    ) -> Result<Vec<u8>, String> {
        call(
            |s, out| run_timers(&ctx, &timers, out, &outputs, |t| f(s, t)),
            64 + 64 * ctx.record_count as usize,
        )
    }

    pub fn no_init() -> Result<(), Error> {
        Ok(())
    }

    /// The timer handler of a transform that sets no timers: fired timers are dropped.
    pub fn no_timers<S>(_: &S, _: &Timer<'_>) -> Result<Outcome, Error> {
        Ok(Outcome::drop())
    }
}

/// Exports a transform function as the plugin's entry point.
///
/// `export_transform!(f)` takes `fn f(&Record) -> Result<Outcome, Error>`;
/// `export_transform!(f, init = g)` takes `fn g() -> Result<S, Error>` (run once per instance,
/// with access to `config`) and `fn f(&S, &Record) -> Result<Outcome, Error>`;
/// `export_transform!(f, init = g, timers = h)` also takes
/// `fn h(&S, &Timer) -> Result<Outcome, Error>`, called for each timer that fires (see
/// [`state::timers`]), whose outcome is emitted like a record's.
#[macro_export]
macro_rules! export_transform {
    ($f:path) => {
        const _: () = {
            const __SLUICE_TRANSFORM: for<'a, 'b> fn(
                &'a $crate::Record<'b>,
            ) -> ::core::result::Result<
                $crate::Outcome,
                $crate::Error,
            > = $f;
            fn __sluice_stateless(
                _: &(),
                r: &$crate::Record<'_>,
            ) -> ::core::result::Result<$crate::Outcome, $crate::Error> {
                __SLUICE_TRANSFORM(r)
            }
            $crate::__export_impl!(
                __sluice_stateless,
                $crate::__rt::no_init,
                $crate::__rt::no_timers
            );
        };
    };
    ($f:path, init = $init:path) => {
        const _: () = {
            $crate::__export_impl!($f, $init, $crate::__rt::no_timers);
        };
    };
    ($f:path, init = $init:path, timers = $timers:path) => {
        const _: () = {
            $crate::__export_impl!($f, $init, $timers);
        };
    };
}

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! __export_impl {
    ($f:path, $init:path, $timers:path) => {
        struct __SluicePlugin;
        fn __sluice_ctx(ctx: $crate::__bindings::BatchContext) -> $crate::BatchContext {
            $crate::BatchContext {
                topic: ctx.topic,
                partition: ctx.partition,
                base_offset: ctx.base_offset,
                base_timestamp: ctx.base_timestamp,
                record_count: ctx.record_count,
                watermark: ctx.watermark,
                event_times: ctx.event_times,
            }
        }
        impl $crate::__bindings::Guest for __SluicePlugin {
            fn init() -> ::core::result::Result<(), ::std::string::String> {
                $crate::__rt::init($init)
            }
            fn process(
                ctx: $crate::__bindings::BatchContext,
                records: ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::__rt::process(__sluice_ctx(ctx), records, $f)
            }
            fn on_timers(
                ctx: $crate::__bindings::BatchContext,
                timers: ::std::vec::Vec<u8>,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::__rt::on_timers($init, __sluice_ctx(ctx), timers, $timers)
            }
        }
        $crate::__bindings::__export_transform_world!(__SluicePlugin with_types_in $crate::__bindings);
    };
}

#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! __export_impl {
    ($f:path, $init:path, $timers:path) => {
        // Natively there is nothing to export; check the signatures so mistakes show in
        // `cargo test` as well as in the wasm build.
        fn __sluice_check<S: 'static>(
            _: fn() -> ::core::result::Result<S, $crate::Error>,
            _: for<'a, 'b, 'c> fn(
                &'a S,
                &'b $crate::Record<'c>,
            ) -> ::core::result::Result<$crate::Outcome, $crate::Error>,
            _: for<'a, 'b, 'c> fn(
                &'a S,
                &'b $crate::Timer<'c>,
            ) -> ::core::result::Result<$crate::Outcome, $crate::Error>,
        ) {
        }
        #[allow(dead_code)]
        fn __sluice_use() {
            __sluice_check($init, $f, $timers);
        }
    };
}
