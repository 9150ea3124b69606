//! Batch execution: one component call per batch; when a call traps or breaks a limit, the
//! records of that call are run one by one to find the poison records, within a time
//! budget per batch, and the host's interrupt ends any of it within milliseconds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_sdk::codec::{Reader, RecordView};
use wasmtime::{Store, Trap, UpdateDeadline};

mod collect;
use collect::item_bounds;

use super::sandbox::{CallBound, HostState, Interrupt, Stop, bound_str, bound_string};
use super::state::StateStore;
use super::{CHECK_TICKS, Compiled, InstanceConfig, Limits, Pre, Runtime, RuntimeError};
use super::{bindings, bindings_v2};

/// What a run calls: `process` over records, or `on-timers` over fired timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallKind {
    #[default]
    Records,
    /// `records` holds fired timers in the `on-timers` layout; `base_offset` is the input
    /// position and `base_timestamp` the watermark.
    Timers,
}

/// The records section of a batch (or a list of fired timers) and where it comes from.
#[derive(Debug, Clone)]
pub struct BatchInput<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub base_offset: i64,
    pub base_timestamp: i64,
    /// `count` records in the Kafka v2 record layout, deltas relative to the bases above.
    pub records: Bytes,
    pub count: u32,
    pub kind: CallKind,
    /// The partition's watermark (stateful deployments; `i64::MIN` otherwise).
    pub watermark: i64,
    /// Event times by record, when they come from a JSON field (else empty).
    pub event_times: &'a [i64],
}

impl<'a> BatchInput<'a> {
    /// Records of a stateless deployment: no watermark, no event times.
    pub fn records(
        topic: &'a str,
        partition: u32,
        base_offset: i64,
        base_timestamp: i64,
        records: Bytes,
        count: u32,
    ) -> Self {
        BatchInput {
            topic,
            partition,
            base_offset,
            base_timestamp,
            records,
            count,
            kind: CallKind::Records,
            watermark: i64::MIN,
            event_times: &[],
        }
    }
}

/// A record a plugin emitted: where its bytes (v2 record layout, length prefix included)
/// are in the batch output's buffers: no copy and no reference count per record. Read it
/// with `BatchOutput::record` and `BatchOutput::view`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    /// Index of the input record in the batch.
    pub input: u32,
    /// Index into the deployment's outputs.
    pub output: u32,
    buffer: u32,
    start: u32,
    end: u32,
}

/// An emitted record with its own handle on its bytes (see `BatchOutput::per_record`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmittedRecord {
    pub input: u32,
    pub output: u32,
    pub raw: Bytes,
    /// The batch's base timestamp (the record's timestamp delta is relative to it).
    pub base_timestamp: i64,
}

impl EmittedRecord {
    /// The record's fields. The plugin wrote these bytes, so they are untrusted: decoding
    /// checks every length.
    pub fn view(&self) -> Result<RecordView<'_>, sluice_sdk::codec::CodecError> {
        RecordView::read(&mut Reader::new(&self.raw))
    }

    pub fn timestamp(&self) -> i64 {
        self.base_timestamp + self.view().map_or(0, |v| v.timestamp_delta)
    }
}

/// What became of one input record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    Dropped,
    Emitted(Vec<EmittedRecord>),
    /// The plugin rejected it (or emitted to an undeclared output).
    Rejected(String),
    /// It made the plugin trap or break a limit, alone in its call.
    Failed(String),
}

/// Why a run ended before every record of the batch had a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Early {
    /// The host raised the executor's interrupt (pause, delete, redeploy, shutdown). The
    /// run's results must not be used: the batch is run again later.
    Interrupted,
    /// The batch spent its time budget isolating failing records; the verdicts of the
    /// first `done` records are final and the rest are left for the next run.
    Budget,
    /// A call failed and the executor was not isolating: the first `done` records are
    /// final, and the rest are left for the next run, which isolates (the caller may run
    /// it where a failing plugin hurts least, see [`Executor::isolating`]).
    Failed,
}

/// The results of one batch and what it cost. Emitted records are in input order; inputs
/// among the first `done` that are neither emitted, rejected nor failed were dropped. Kept
/// flat (no allocation per input record) because this is the hot path.
#[derive(Debug, Clone, Default)]
pub struct BatchOutput {
    /// Records, from the start of the batch, whose verdicts are final.
    pub done: u32,
    /// Why `done` is less than the batch's count, if it is.
    pub early: Option<Early>,
    pub emitted: Vec<Emitted>,
    pub rejected: Vec<(u32, String)>,
    pub failed: Vec<(u32, String)>,
    pub fuel_used: u64,
    /// Calls that trapped or broke a limit (each costs a fresh instance).
    pub traps: u32,
    /// Why, for the first few of them (each also went to the plugin's log).
    pub trap_reasons: Vec<String>,
    pub calls: u32,
    /// What emitted records point into: the input records, then each call's output.
    buffers: Vec<Bytes>,
    base_timestamp: i64,
}

impl BatchOutput {
    /// The bytes of an emitted record (v2 layout, length prefix included).
    pub fn record(&self, e: &Emitted) -> &[u8] {
        self.buffers
            .get(e.buffer as usize)
            .and_then(|b| b.get(e.start as usize..e.end as usize))
            .unwrap_or_default()
    }

    /// The same bytes as a `Bytes` sharing the buffer.
    pub fn record_bytes(&self, e: &Emitted) -> Bytes {
        let range = e.start as usize..e.end as usize;
        match self.buffers.get(e.buffer as usize) {
            Some(b) if range.start <= range.end && range.end <= b.len() => b.slice(range),
            _ => Bytes::new(),
        }
    }

    /// An emitted record's fields. The plugin wrote these bytes, so they are untrusted:
    /// decoding checks every length.
    pub fn view(&self, e: &Emitted) -> Result<RecordView<'_>, sluice_sdk::codec::CodecError> {
        RecordView::read(&mut Reader::new(self.record(e)))
    }

    /// The batch's base timestamp (emitted timestamp deltas are relative to it).
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp
    }

    /// One result per input record among the first `count` (convenient, allocates per
    /// record); verdicts of later inputs are left out.
    pub fn per_record(&self, count: usize) -> Vec<RecordResult> {
        let mut v = vec![RecordResult::Dropped; count];
        for e in &self.emitted {
            let Some(slot) = v.get_mut(e.input as usize) else {
                continue;
            };
            let rec = EmittedRecord {
                input: e.input,
                output: e.output,
                raw: self.record_bytes(e),
                base_timestamp: self.base_timestamp,
            };
            match slot {
                RecordResult::Emitted(list) => list.push(rec),
                slot => *slot = RecordResult::Emitted(vec![rec]),
            }
        }
        for (i, r) in &self.rejected {
            if let Some(slot) = v.get_mut(*i as usize) {
                *slot = RecordResult::Rejected(r.clone());
            }
        }
        for (i, r) in &self.failed {
            if let Some(slot) = v.get_mut(*i as usize) {
                *slot = RecordResult::Failed(r.clone());
            }
        }
        v
    }
}

/// An instance's exports, in its world.
enum Bindings {
    V1(bindings::Transform),
    V2(bindings_v2::Transform),
}

struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    batches: u64,
}

/// Runs one plugin version for one partition, with a reusable instance.
pub struct Executor {
    rt: Arc<Runtime>,
    compiled: Arc<Compiled>,
    cfg: Arc<InstanceConfig>,
    partition: u32,
    interrupt: Arc<Interrupt>,
    instance: Option<Instance>,
    /// An instance on the fuel-metered engine, for isolation calls (see
    /// [`crate::Metering`]); dropped when isolation ends.
    metered: Option<Instance>,
    /// Records per call. Whole batches normally; after a failed call it restarts at one
    /// and doubles with every call that succeeds, so a stream where many records fail
    /// never pays for a large failing call twice in a row.
    chunk: usize,
    /// Calls that failed in a row. From two on, each call waits its turn in the runtime's
    /// isolation queue: a plugin that fails on every record gets one call at a time
    /// among all such plugins of the server, while one that failed on a single record
    /// (whose neighbours then succeed) never waits.
    fail_streak: u32,
    /// The partition's keyed state (stateful deployments): each call's changes are
    /// undone when the call fails.
    state: Option<Arc<Mutex<StateStore>>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("plugin", &self.cfg.plugin)
            .field("version", &self.cfg.version)
            .field("partition", &self.partition)
            .finish()
    }
}

/// Fuel for instantiation and `init`: generous, since setup (compiling patterns, parsing
/// config) is one-off.
pub const INIT_FUEL: u64 = 5_000_000_000;

/// Most records one call may carry (positions in the batch are `u32`).
const MAX_CHUNK: usize = u32::MAX as usize;

/// What a failed call was doing, for its message.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Init,
    Batch { records: u32 },
}

/// What a failed call means to the operator. The cause is read from the error's type —
/// the host's own [`Stop`] (deadline, interrupt, memory and table limits) or wasmtime's
/// trap code — never guessed from message text.
fn describe_failure(
    e: &wasmtime::Error,
    limits: &Limits,
    phase: Phase,
    panic: Option<&str>,
) -> String {
    let base = if let Some(stop) = e.downcast_ref::<Stop>() {
        match (stop, phase) {
            (Stop::Deadline { limit_ms, blocked }, Phase::Init) => format!(
                "timed out during init: limit {limit_ms} ms (init_timeout_ms){}",
                if *blocked {
                    " (blocked in a WASI call)"
                } else {
                    ""
                }
            ),
            _ => stop.to_string(),
        }
    } else if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        format!("the plugin exited (status {})", exit.0)
    } else if let Some(trap) = e.downcast_ref::<Trap>() {
        match (trap, phase) {
            (Trap::OutOfFuel, Phase::Init) => {
                format!("fuel exhausted during init: limit {INIT_FUEL}")
            }
            (Trap::OutOfFuel, Phase::Batch { records }) => format!(
                "fuel exhausted: limit {} per record ({} for this call of {records} record(s))",
                limits.fuel_per_record,
                limits.fuel_per_record.saturating_mul(u64::from(records))
            ),
            (Trap::StackOverflow, _) => "stack overflow (call stack limit 1 MiB)".into(),
            (Trap::UnreachableCodeReached, _) => {
                "trap: unreachable code reached (the plugin panicked or aborted)".into()
            }
            (Trap::MemoryOutOfBounds, _) => "trap: out-of-bounds memory access".into(),
            (Trap::TableOutOfBounds, _) => "trap: out-of-bounds table access".into(),
            (Trap::IndirectCallToNull, _) => "trap: indirect call to a null table entry".into(),
            (Trap::BadSignature, _) => "trap: indirect call with the wrong signature".into(),
            (Trap::IntegerOverflow, _) => "trap: integer overflow".into(),
            (Trap::IntegerDivisionByZero, _) => "trap: integer division by zero".into(),
            (Trap::BadConversionToInteger, _) => "trap: invalid conversion to integer".into(),
            (Trap::Interrupt, _) => "trap: interrupted".into(),
            (t, _) => format!("trap: {t}"),
        }
    } else {
        // Not a trap: the plugin broke the component ABI (a bad `cabi_realloc`, a list or
        // string out of bounds, a refused host call). Its message names what.
        format!(
            "plugin broke the call's contract: {}",
            bound_str(&e.root_cause().to_string())
        )
    };
    match panic {
        Some(p) => format!("{base}: {p}"),
        None => base,
    }
}

/// Why one call failed.
enum CallError {
    /// The host's interrupt: not the records' fault; the batch is run again later.
    Interrupted,
    /// The records of the call are suspects.
    Failed(String),
}

impl Executor {
    pub(super) fn new(
        rt: Arc<Runtime>,
        compiled: Arc<Compiled>,
        cfg: Arc<InstanceConfig>,
        partition: u32,
        interrupt: Arc<Interrupt>,
    ) -> Result<Executor, RuntimeError> {
        let mut ex = Executor {
            rt,
            compiled,
            cfg,
            partition,
            interrupt,
            instance: None,
            metered: None,
            chunk: MAX_CHUNK,
            fail_streak: 0,
            state: None,
        };
        ex.instance = Some(ex.instantiate(false)?);
        Ok(ex)
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    /// Whether the executor is isolating failures: a recent call failed, and calls are
    /// small until enough succeed. A plugin that fails on every record stays so.
    pub fn isolating(&self) -> bool {
        self.chunk < MAX_CHUNK
    }

    /// The input partition this executor runs for.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// What stops this executor's calls (the partition task's interrupt once set).
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// Makes this executor's calls obey `interrupt` from now on (executors are built under
    /// the deployer's interrupt and run under their partition task's).
    pub fn set_interrupt(&mut self, interrupt: Arc<Interrupt>) {
        for i in [self.instance.as_mut(), self.metered.as_mut()]
            .into_iter()
            .flatten()
        {
            i.store.data_mut().interrupt = interrupt.clone();
        }
        self.interrupt = interrupt;
    }

    /// Gives this executor's calls the partition's keyed state.
    pub fn set_state(&mut self, state: Arc<Mutex<StateStore>>) {
        for i in [self.instance.as_mut(), self.metered.as_mut()]
            .into_iter()
            .flatten()
        {
            i.store.data_mut().state = Some(state.clone());
        }
        self.state = Some(state);
    }

    /// The plugin this executor runs.
    /// The linear memory of the current (fast-path) instance, in bytes: the most it has
    /// grown to. 0 without an instance.
    pub fn memory_bytes(&self) -> usize {
        self.instance
            .as_ref()
            .map_or(0, |i| i.store.data().limits.peak)
    }

    pub fn compiled(&self) -> &Arc<Compiled> {
        &self.compiled
    }

    /// Where the instance for normal calls, or the one for metered (isolation) calls, lives.
    fn slot(&mut self, metered: bool) -> &mut Option<Instance> {
        if metered {
            &mut self.metered
        } else {
            &mut self.instance
        }
    }

    /// Counts a call that trapped or broke a limit, and says why where a user looks: the
    /// plugin's log (`GET …/logs`), the server log, and the batch output (the deployment's
    /// `last_error`), even when every record then passes on its own.
    fn trapped(&self, out: &mut BatchOutput, input: &BatchInput<'_>, count: u32, why: &str) {
        out.traps += 1;
        if out.trap_reasons.len() < 4 {
            out.trap_reasons.push(why.to_string());
        }
        let message = format!("a call of {count} record(s) failed: {why}");
        tracing::warn!(plugin = %self.cfg.plugin, version = self.cfg.version,
            partition = input.partition, offset = input.base_offset, "{message}");
        self.cfg.logs.log(crate::LogLine {
            level: "error".into(),
            message,
            plugin: self.cfg.plugin.clone(),
            version: self.cfg.version,
            partition: input.partition,
            offset: Some(input.base_offset),
        });
    }

    /// A new instance, `init`-ed, on the fast engine or the fuel-metered one.
    fn instantiate(&self, metered: bool) -> Result<Instance, RuntimeError> {
        let limits = &self.cfg.limits;
        // The component for this engine first: the metered one may still be compiling in
        // the background, and that wait is not the plugin's `init` time.
        let pre = self.compiled.pre(metered)?;
        let (engine, fuel) = self.rt.engine_for(metered);
        // No state during `init`: state belongs to records, and init runs for every new
        // instance.
        let mut store = Store::new(
            engine,
            HostState::new(self.cfg.clone(), self.partition, self.interrupt.clone()),
        );
        store.limiter(|s| &mut s.limits);
        // Wasm checks its deadline and the interrupt every CHECK_TICKS epochs; blocking
        // WASI calls check both themselves (`sandbox::BoundedPoll`).
        store.epoch_deadline_callback(|ctx| match ctx.data().should_stop() {
            Some(stop) => Err(wasmtime::Error::new(stop)),
            None => Ok(UpdateDeadline::Continue(CHECK_TICKS)),
        });
        if fuel {
            store
                .set_fuel(INIT_FUEL)
                .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        }
        store.data_mut().bound = CallBound::starting_now(limits.init_timeout_ms);
        store.set_epoch_deadline(CHECK_TICKS);
        let interrupted =
            |e: &wasmtime::Error| matches!(e.downcast_ref::<Stop>(), Some(Stop::Interrupted));
        let instantiated = match pre {
            Pre::V1(pre) => pre.instantiate(&mut store).map(Bindings::V1),
            Pre::V2(pre) => pre.instantiate(&mut store).map(Bindings::V2),
        };
        let bindings = match instantiated {
            Ok(b) => b,
            Err(e) if interrupted(&e) => return Err(RuntimeError::Interrupted),
            Err(e) => {
                return Err(RuntimeError::Instantiate(describe_failure(
                    &e,
                    limits,
                    Phase::Init,
                    None,
                )));
            }
        };
        let r = match &bindings {
            Bindings::V1(b) => b.call_init(&mut store),
            Bindings::V2(b) => b.call_init(&mut store),
        };
        let panic = store.data_mut().end_call();
        match r {
            Ok(Ok(())) => {
                store.data_mut().state = self.state.clone();
                Ok(Instance {
                    store,
                    bindings,
                    batches: 0,
                })
            }
            Ok(Err(msg)) => Err(RuntimeError::Init(bound_string(msg))),
            Err(e) if interrupted(&e) => Err(RuntimeError::Interrupted),
            Err(e) => Err(RuntimeError::Init(describe_failure(
                &e,
                limits,
                Phase::Init,
                panic.as_deref(),
            ))),
        }
    }

    /// Runs a batch. When a call fails (trap, limit, malformed output), the run stops with
    /// `Early::Failed` after the records before it, and the executor starts isolating:
    /// the next runs call records one at a time, each with its own limits (the ones that
    /// fail alone come back as failed), and then in calls that double with each success.
    /// Isolation may take `2 × timeout_ms` per batch; past that the run stops with
    /// `Early::Budget` after the records done so far (at least one), and the rest are the
    /// next run's. The interrupt stops it at once with `Early::Interrupted`.
    pub fn run(&mut self, input: &BatchInput<'_>) -> BatchOutput {
        let n = input.count as usize;
        let mut out = BatchOutput {
            // Buffer 0: pass entries point into the input.
            buffers: vec![input.records.clone()],
            base_timestamp: input.base_timestamp,
            ..BatchOutput::default()
        };
        let started = Instant::now();
        let budget = Duration::from_millis(self.cfg.limits.timeout_ms.saturating_mul(2));
        let mut bounds: Option<Vec<usize>> = None;
        // Records before `isolate_until` run alone: they were in a call that failed.
        let (mut i, mut isolate_until) = (0usize, 0usize);
        while i < n {
            if self.interrupt.is_raised() {
                out.early = Some(Early::Interrupted);
                break;
            }
            if i > 0 && started.elapsed() >= budget {
                out.early = Some(Early::Budget);
                break;
            }
            let k = if i < isolate_until {
                1
            } else {
                self.chunk.min(n - i)
            };
            let rt = self.rt.clone();
            let permit = if self.fail_streak >= 2 {
                match rt.isolation().acquire(&self.interrupt) {
                    Some(p) => Some(p),
                    None => {
                        out.early = Some(Early::Interrupted);
                        break;
                    }
                }
            } else {
                None
            };
            let result = self.call_range(input, i, i + k, &mut bounds, &mut out);
            drop(permit);
            match &result {
                Ok(()) => self.fail_streak = 0,
                Err(CallError::Failed(_)) => self.fail_streak = self.fail_streak.saturating_add(1),
                Err(CallError::Interrupted) => {}
            }
            match result {
                Ok(()) => {
                    if i >= isolate_until {
                        self.chunk = self.chunk.saturating_mul(2).min(MAX_CHUNK);
                    }
                    i += k;
                }
                Err(CallError::Interrupted) => {
                    out.early = Some(Early::Interrupted);
                    break;
                }
                Err(CallError::Failed(reason)) => {
                    let was_isolating = self.isolating();
                    self.chunk = 1;
                    if !was_isolating && k > 1 {
                        out.early = Some(Early::Failed);
                        break;
                    }
                    if k == 1 {
                        out.failed.push((i as u32, reason));
                        i += 1;
                    } else {
                        isolate_until = i + k;
                    }
                }
            }
        }
        out.done = i as u32;
        if !self.isolating() {
            // Isolation is over: its metered instance's memory goes back to the pool.
            self.metered = None;
        }
        out
    }

    /// One component call over the input records `lo..hi`.
    fn call_range(
        &mut self,
        input: &BatchInput<'_>,
        lo: usize,
        hi: usize,
        bounds: &mut Option<Vec<usize>>,
        out: &mut BatchOutput,
    ) -> Result<(), CallError> {
        let bytes = if lo == 0 && hi == input.count as usize {
            input.records.clone()
        } else {
            let b = bounds.get_or_insert_with(|| item_bounds(input));
            match (b.get(lo), b.get(hi)) {
                (Some(&s), Some(&e)) => input.records.slice(s..e),
                _ => return Err(CallError::Failed("record does not decode".into())),
            }
        };
        self.call(input, lo, (hi - lo) as u32, &bytes, bounds, out)
    }

    /// One component call over `count` records starting at input index `first`.
    fn call(
        &mut self,
        input: &BatchInput<'_>,
        first: usize,
        count: u32,
        bytes: &Bytes,
        bounds: &mut Option<Vec<usize>>,
        out: &mut BatchOutput,
    ) -> Result<(), CallError> {
        out.calls += 1;
        // Calls that isolate suspect records run on the fuel-metered engine, so a
        // record's CPU verdict is deterministic; the others run without fuel.
        let use_metered = self.isolating() && self.rt.metering() == crate::Metering::Isolation;
        if self.slot(use_metered).is_none() {
            match self.instantiate(use_metered) {
                Ok(i) => *self.slot(use_metered) = Some(i),
                Err(RuntimeError::Interrupted) => return Err(CallError::Interrupted),
                Err(e) => {
                    let why = e.to_string();
                    self.trapped(out, input, count, &why);
                    return Err(CallError::Failed(why));
                }
            }
        }
        let (_, metered) = self.rt.engine_for(use_metered);
        // Field by field (not `slot`): the call below also reads the config and the state.
        let inst = if use_metered {
            self.metered.as_mut()
        } else {
            self.instance.as_mut()
        };
        let Some(inst) = inst else {
            return Err(CallError::Failed("no instance".into()));
        };
        let limits = &self.cfg.limits;
        let budget = limits.fuel_per_record.saturating_mul(u64::from(count));
        let store = &mut inst.store;
        if metered {
            store
                .set_fuel(budget)
                .map_err(|e| CallError::Failed(format!("{e:#}")))?;
        }
        store.data_mut().bound = CallBound::starting_now(limits.timeout_ms);
        store.set_epoch_deadline(CHECK_TICKS);
        store.set_hostcall_fuel(limits.max_output_bytes.saturating_add(1024));
        store.data_mut().offset = Some(input.base_offset);
        store.data_mut().work = crate::sandbox::Work::of(budget);
        store.data_mut().batch = match input.kind {
            CallKind::Records => Some(Arc::new(crate::sandbox::text::CallBatch::new(
                bytes.clone(),
            ))),
            CallKind::Timers => None,
        };
        let event_times = input
            .event_times
            .get(first..first + count as usize)
            .unwrap_or_default();
        if let Some(st) = &self.state {
            st.lock().unwrap_or_else(|p| p.into_inner()).begin_call();
        }
        let r = match (&inst.bindings, input.kind) {
            (Bindings::V1(b), CallKind::Records) => {
                let ctx = bindings::sluice::transform::types::BatchContext {
                    topic: input.topic.to_string(),
                    partition: input.partition,
                    base_offset: input.base_offset,
                    base_timestamp: input.base_timestamp,
                    record_count: count,
                };
                b.call_process(&mut *store, &ctx, bytes)
            }
            (Bindings::V1(_), CallKind::Timers) => Ok(Err(
                "a sluice:transform@0.1.0 plugin has no timers".to_string(),
            )),
            (Bindings::V2(b), kind) => {
                let ctx = bindings_v2::sluice::transform::types::BatchContext {
                    topic: input.topic.to_string(),
                    partition: input.partition,
                    base_offset: input.base_offset,
                    base_timestamp: input.base_timestamp,
                    record_count: count,
                    watermark: input.watermark,
                    event_times: event_times.to_vec(),
                };
                match kind {
                    CallKind::Records => b.call_process(&mut *store, &ctx, bytes),
                    CallKind::Timers => b.call_on_timers(&mut *store, &ctx, bytes),
                }
            }
        };
        if metered {
            out.fuel_used += budget.saturating_sub(store.get_fuel().unwrap_or(0));
        }
        store.data_mut().batch = None;
        let panic = store.data_mut().end_call();
        inst.batches += 1;
        let recycle = inst.batches >= self.cfg.recycle_after;
        let mut trapped = false;
        let result = match r {
            Ok(Ok(buf)) => {
                if buf.len() > limits.max_output_bytes {
                    let why = format!(
                        "output of {} bytes exceeds the limit of {} bytes per batch",
                        buf.len(),
                        limits.max_output_bytes
                    );
                    self.trapped(out, input, count, &why);
                    Err(CallError::Failed(why))
                } else {
                    self.collect(Bytes::from(buf), input, bounds, first, count, out)
                        .map_err(CallError::Failed)
                }
            }
            // The plugin refused the batch; its instance is still sound.
            Ok(Err(msg)) => Err(CallError::Failed(format!(
                "plugin failed the batch: {}",
                bound_string(msg)
            ))),
            Err(e) => {
                // A trapped store refuses every later call: start over with a new one.
                trapped = true;
                if let Some(Stop::StateStore { message }) = e.downcast_ref::<Stop>() {
                    // Not the records' fault: nothing is decided and the read is retried.
                    tracing::error!(error = %message, "state store failed; retrying the read");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    Err(CallError::Interrupted)
                } else if matches!(e.downcast_ref::<Stop>(), Some(Stop::Interrupted)) {
                    Err(CallError::Interrupted)
                } else {
                    let why = describe_failure(
                        &e,
                        limits,
                        Phase::Batch { records: count },
                        panic.as_deref(),
                    );
                    self.trapped(out, input, count, &why);
                    Err(CallError::Failed(why))
                }
            }
        };
        if let Some(st) = &self.state {
            st.lock()
                .unwrap_or_else(|p| p.into_inner())
                .end_call(result.is_ok());
        }
        if trapped || recycle {
            *self.slot(use_metered) = None;
        }
        result
    }
}
