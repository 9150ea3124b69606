//! Batch execution: one component call per batch, and bisection to isolate poison records
//! when a call traps or breaks a limit.

use std::sync::Arc;

use bytes::Bytes;
use sluice_sdk::codec::{Reader, RecordView};
use sluice_sdk::entries::{Entries, Entry};
use wasmtime::{Store, Trap};

use super::bindings::{Transform, sluice::transform::types::BatchContext};
use super::sandbox::HostState;
use super::{Compiled, EPOCH_TICK, InstanceConfig, Runtime, RuntimeError};

/// The records section of a batch and where it comes from.
#[derive(Debug, Clone)]
pub struct BatchInput<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub base_offset: i64,
    pub base_timestamp: i64,
    /// `count` records in the Kafka v2 record layout, deltas relative to the bases above.
    pub records: Bytes,
    pub count: u32,
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

/// The results of one batch and what it cost. Emitted records are in input order; inputs
/// that are neither emitted, rejected nor failed were dropped. Kept flat (no allocation per
/// input record) because this is the hot path.
#[derive(Debug, Clone, Default)]
pub struct BatchOutput {
    pub emitted: Vec<Emitted>,
    pub rejected: Vec<(u32, String)>,
    pub failed: Vec<(u32, String)>,
    pub fuel_used: u64,
    /// Calls that trapped or broke a limit (each costs a fresh instance).
    pub traps: u32,
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

    /// One result per input record (convenient, allocates per record).
    pub fn per_record(&self, count: usize) -> Vec<RecordResult> {
        let mut v = vec![RecordResult::Dropped; count];
        for e in &self.emitted {
            let rec = EmittedRecord {
                input: e.input,
                output: e.output,
                raw: self.record_bytes(e),
                base_timestamp: self.base_timestamp,
            };
            match &mut v[e.input as usize] {
                RecordResult::Emitted(list) => list.push(rec),
                slot => *slot = RecordResult::Emitted(vec![rec]),
            }
        }
        for (i, r) in &self.rejected {
            v[*i as usize] = RecordResult::Rejected(r.clone());
        }
        for (i, r) in &self.failed {
            v[*i as usize] = RecordResult::Failed(r.clone());
        }
        v
    }
}

struct Instance {
    store: Store<HostState>,
    bindings: Transform,
    batches: u64,
}

/// Runs one plugin version for one partition, with a reusable instance.
pub struct Executor {
    rt: Arc<Runtime>,
    compiled: Arc<Compiled>,
    cfg: Arc<InstanceConfig>,
    partition: u32,
    instance: Option<Instance>,
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

/// Fuel for `init`: generous, since setup (compiling patterns, parsing config) is one-off.
const INIT_FUEL: u64 = 5_000_000_000;

/// What a failed call means to the operator.
fn describe_trap(
    e: &wasmtime::Error,
    cfg: &InstanceConfig,
    records: u32,
    panic: Option<&str>,
) -> String {
    let limits = &cfg.limits;
    let base = match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => format!(
            "fuel exhausted: limit {} per record ({} for this call of {records} record(s))",
            limits.fuel_per_record,
            limits.fuel_per_record.saturating_mul(u64::from(records))
        ),
        Some(Trap::Interrupt) => format!("timed out: limit {} ms per call", limits.timeout_ms),
        Some(Trap::StackOverflow) => "stack overflow (call stack limit 1 MiB)".to_string(),
        Some(Trap::UnreachableCodeReached) => "trap: unreachable code (the plugin panicked)".into(),
        Some(t) => format!("trap: {t}"),
        None => {
            let msg = format!("{e:#}");
            if msg.contains("grow") || msg.contains("memory") {
                format!("memory limit of {} bytes exceeded", limits.memory_bytes)
            } else {
                msg
            }
        }
    };
    match panic {
        Some(p) => format!("{base}: {p}"),
        None => base,
    }
}

impl Executor {
    pub(super) fn new(
        rt: Arc<Runtime>,
        compiled: Arc<Compiled>,
        cfg: Arc<InstanceConfig>,
        partition: u32,
    ) -> Result<Executor, RuntimeError> {
        let mut ex = Executor {
            rt,
            compiled,
            cfg,
            partition,
            instance: None,
        };
        ex.instance = Some(ex.instantiate()?);
        Ok(ex)
    }

    pub fn config(&self) -> &InstanceConfig {
        &self.cfg
    }

    fn deadline_ticks(&self) -> u64 {
        self.cfg.limits.timeout_ms / EPOCH_TICK.as_millis() as u64 + 1
    }

    fn instantiate(&self) -> Result<Instance, RuntimeError> {
        let mut store = Store::new(
            self.rt.engine(),
            HostState::new(self.cfg.clone(), self.partition),
        );
        store.limiter(|s| &mut s.limits);
        if self.rt.meters_fuel() {
            store
                .set_fuel(INIT_FUEL)
                .map_err(|e| RuntimeError::Instantiate(format!("{e:#}")))?;
        }
        store.set_epoch_deadline(self.deadline_ticks());
        let bindings = self
            .compiled
            .pre
            .instantiate(&mut store)
            .map_err(|e| RuntimeError::Instantiate(describe_trap(&e, &self.cfg, 0, None)))?;
        let r = bindings.call_init(&mut store);
        let panic = store.data_mut().end_call();
        match r {
            Ok(Ok(())) => Ok(Instance {
                store,
                bindings,
                batches: 0,
            }),
            Ok(Err(msg)) => Err(RuntimeError::Init(msg)),
            Err(e) => Err(RuntimeError::Init(describe_trap(
                &e,
                &self.cfg,
                0,
                panic.as_deref(),
            ))),
        }
    }

    /// Runs a batch. Records that make the plugin trap or break a limit are found by
    /// re-running smaller slices on fresh instances, and come back as `Failed`.
    pub fn run(&mut self, input: &BatchInput<'_>) -> BatchOutput {
        let n = input.count as usize;
        let mut out = BatchOutput {
            // Buffer 0: pass entries point into the input.
            buffers: vec![input.records.clone()],
            base_timestamp: input.base_timestamp,
            ..BatchOutput::default()
        };
        if n == 0 {
            return out;
        }
        let mut bounds: Option<Vec<usize>> = None;
        self.run_range(input, 0, n, &mut bounds, &mut out);
        out
    }

    fn run_range(
        &mut self,
        input: &BatchInput<'_>,
        lo: usize,
        hi: usize,
        bounds: &mut Option<Vec<usize>>,
        out: &mut BatchOutput,
    ) {
        let bytes = if lo == 0 && hi == input.count as usize {
            &input.records[..]
        } else {
            let b = bounds.get_or_insert_with(|| record_bounds(&input.records, input.count));
            match (b.get(lo), b.get(hi)) {
                (Some(&s), Some(&e)) => &input.records[s..e],
                _ => {
                    for i in lo..hi {
                        out.failed.push((i as u32, "record does not decode".into()));
                    }
                    return;
                }
            }
        };
        match self.call(input, lo, (hi - lo) as u32, bytes, bounds, out) {
            Ok(()) => {}
            Err(reason) if hi - lo == 1 => out.failed.push((lo as u32, reason)),
            Err(_) => {
                let mid = lo + (hi - lo) / 2;
                self.run_range(input, lo, mid, bounds, out);
                self.run_range(input, mid, hi, bounds, out);
            }
        }
    }

    /// One component call over `count` records starting at input index `first`.
    fn call(
        &mut self,
        input: &BatchInput<'_>,
        first: usize,
        count: u32,
        bytes: &[u8],
        bounds: &mut Option<Vec<usize>>,
        out: &mut BatchOutput,
    ) -> Result<(), String> {
        out.calls += 1;
        if self.instance.is_none() {
            match self.instantiate() {
                Ok(i) => self.instance = Some(i),
                Err(e) => {
                    out.traps += 1;
                    return Err(e.to_string());
                }
            }
        }
        let ticks = self.deadline_ticks();
        let Some(inst) = self.instance.as_mut() else {
            return Err("no instance".into());
        };
        let budget = self
            .cfg
            .limits
            .fuel_per_record
            .saturating_mul(u64::from(count));
        let store = &mut inst.store;
        let metered = self.rt.meters_fuel();
        if metered {
            store.set_fuel(budget).map_err(|e| format!("{e:#}"))?;
        }
        store.set_epoch_deadline(ticks);
        store.set_hostcall_fuel(self.cfg.limits.max_output_bytes.saturating_add(1024));
        store.data_mut().offset = Some(input.base_offset);
        let ctx = BatchContext {
            topic: input.topic.to_string(),
            partition: input.partition,
            base_offset: input.base_offset,
            base_timestamp: input.base_timestamp,
            record_count: count,
        };
        let r = inst.bindings.call_process(&mut *store, &ctx, bytes);
        if metered {
            out.fuel_used += budget.saturating_sub(store.get_fuel().unwrap_or(0));
        }
        let panic = store.data_mut().end_call();
        inst.batches += 1;
        let result = match r {
            Ok(Ok(buf)) => {
                if buf.len() > self.cfg.limits.max_output_bytes {
                    out.traps += 1;
                    Err(format!(
                        "output of {} bytes exceeds the limit of {} bytes per batch",
                        buf.len(),
                        self.cfg.limits.max_output_bytes
                    ))
                } else {
                    self.collect(Bytes::from(buf), input, bounds, first, count, out)
                }
            }
            // The plugin refused the batch; its instance is still sound.
            Ok(Err(msg)) => Err(format!("plugin failed the batch: {msg}")),
            Err(e) => {
                // A trapped store refuses every later call: start over with a new one.
                self.instance = None;
                out.traps += 1;
                Err(describe_trap(&e, &self.cfg, count, panic.as_deref()))
            }
        };
        if self
            .instance
            .as_ref()
            .is_some_and(|i| i.batches >= self.cfg.recycle_after)
        {
            self.instance = None;
        }
        result
    }

    /// Turns output entries into results, appended to `out` only if the whole output is
    /// valid (a malformed output fails the call and its records are retried).
    fn collect(
        &self,
        buf: Bytes,
        input: &BatchInput<'_>,
        bounds: &mut Option<Vec<usize>>,
        first: usize,
        count: u32,
        out: &mut BatchOutput,
    ) -> Result<(), String> {
        let outputs = self.cfg.outputs.len() as u32;
        // Positions are u32: an input or output section past 4 GiB is refused.
        if buf.len() > u32::MAX as usize || input.records.len() > u32::MAX as usize {
            return Err("batch larger than 4 GiB".into());
        }
        let buffer = out.buffers.len() as u32;
        let max_per = self.cfg.limits.max_outputs_per_record as usize;
        let mut emitted = Vec::with_capacity(count as usize);
        let mut rejected = Vec::new();
        let mut failed = Vec::new();
        // Emits of the current input so far, and whether it was rejected or failed.
        let (mut cur, mut cur_emits, mut cur_done) = (u32::MAX, 0usize, false);
        let mut cur_start = 0usize;
        for e in Entries::new(&buf, count) {
            let e = e.map_err(|e| e.to_string())?;
            let idx = e.input();
            if idx != cur {
                (cur, cur_emits, cur_done, cur_start) = (idx, 0, false, emitted.len());
            }
            if cur_done {
                continue;
            }
            let abs = first as u32 + idx;
            match e {
                Entry::Reject { reason, .. } => {
                    emitted.truncate(cur_start);
                    rejected.push((abs, reason.to_string()));
                    cur_done = true;
                }
                Entry::Emit { output, .. } | Entry::Pass { output, .. } if output >= outputs => {
                    emitted.truncate(cur_start);
                    rejected.push((
                        abs,
                        format!("emitted to output {output}, but the deployment declares {outputs} output(s)"),
                    ));
                    cur_done = true;
                }
                Entry::Emit { .. } | Entry::Pass { .. } if cur_emits >= max_per => {
                    emitted.truncate(cur_start);
                    failed.push((
                        abs,
                        format!("emitted more than {max_per} records for one input (max_outputs_per_record)"),
                    ));
                    cur_done = true;
                }
                Entry::Pass { output, .. } => {
                    let b =
                        bounds.get_or_insert_with(|| record_bounds(&input.records, input.count));
                    let (Some(&s), Some(&e)) = (b.get(abs as usize), b.get(abs as usize + 1))
                    else {
                        return Err(format!("pass entry for input {abs}, which does not decode"));
                    };
                    cur_emits += 1;
                    emitted.push(Emitted {
                        input: abs,
                        output,
                        buffer: 0,
                        start: s as u32,
                        end: e as u32,
                    });
                }
                Entry::Emit { output, record, .. } => {
                    // Decoded (and checked) by whoever uses it.
                    cur_emits += 1;
                    let start = offset_in(&buf, record.0)
                        .ok_or("emitted record outside the output buffer")?;
                    emitted.push(Emitted {
                        input: abs,
                        output,
                        buffer,
                        start: start as u32,
                        end: (start + record.0.len()) as u32,
                    });
                }
            }
        }
        out.buffers.push(buf);
        out.emitted.append(&mut emitted);
        out.rejected.append(&mut rejected);
        out.failed.append(&mut failed);
        Ok(())
    }
}

/// Where `part`, a subslice of `whole`, starts in it.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

/// Byte offsets where each record starts, plus the end: `count + 1` entries.
fn record_bounds(records: &[u8], count: u32) -> Vec<usize> {
    let mut r = Reader::new(records);
    let mut bounds = Vec::with_capacity(count as usize + 1);
    bounds.push(0);
    for _ in 0..count {
        if sluice_sdk::codec::next_raw(&mut r).is_err() {
            break;
        }
        bounds.push(r.position());
    }
    bounds
}
