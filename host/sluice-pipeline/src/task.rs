//! One partition of one transform: read a batch, run the plugin once, append the outputs,
//! move the position — on a thread of its own, since both the log and wasm block.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_sdk::codec::Records;

use super::{Counters, HistoryEntry, Transform};
use sluice_common::fs::{sync_dir, write_file};
use sluice_log::batch::{self, NewRecord, StoredRecord};
use sluice_log::{LogError, Partition, Topic, partition_for_key};
use sluice_runtime::{BatchInput, Early, Executor, Interrupt};

/// Header that names the input record an output came from: `transform:partition:offset:k`
/// (k counts the outputs of one input). Recovery reads it back to skip outputs that were
/// already written before a crash.
pub const SOURCE_HEADER: &str = "sluice-src";
/// Header naming the plugin version that produced an output.
pub const VERSION_HEADER: &str = "sluice-version";

/// What one partition task shares with the control plane.
#[derive(Debug)]
pub struct TaskShared {
    pub partition: u32,
    pub position: AtomicU64,
    pub version: AtomicU32,
    pub stop: AtomicBool,
    /// A ready executor of another version, taken at the next batch boundary.
    pub pending: Mutex<Option<(u32, Executor)>>,
    /// Raised after `stop`, `pending` or the transform's `paused` changes, so that a call
    /// in progress ends now instead of at its deadline (the batch is run again later).
    pub interrupt: Arc<Interrupt>,
}

impl TaskShared {
    pub fn new(partition: u32, position: u64, version: u32) -> TaskShared {
        TaskShared {
            partition,
            position: AtomicU64::new(position),
            version: AtomicU32::new(version),
            stop: AtomicBool::new(false),
            pending: Mutex::new(None),
            interrupt: Arc::default(),
        }
    }

    /// Stops the task: the call in progress is interrupted, staged outputs are appended.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.interrupt.raise();
    }
}

/// Where a partition task stands, written after every batch it completes.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub position: u64,
    /// End offsets of the output and dead-letter partitions when the checkpoint was written.
    pub output_ends: BTreeMap<String, u64>,
}

/// Everything a task thread needs.
pub struct TaskCtx {
    pub t: Arc<Transform>,
    pub input: Arc<Partition>,
    pub outputs: Vec<Arc<Topic>>,
    pub dlq: Arc<Topic>,
    pub shared: Arc<TaskShared>,
    pub executor: Executor,
    pub checkpoint: Option<Checkpoint>,
    pub start_latest: bool,
}

fn key_of(topic: &str, p: u32) -> String {
    format!("{topic}/{p}")
}

/// Appends records to one partition per batch.
type Pending = BTreeMap<(usize, u32), batch::Builder>;

/// Outputs of one or more reads, built and waiting to be appended.
struct Staged {
    /// Per output (or dead-letter) partition, one batch per read.
    batches: BTreeMap<(usize, u32), Vec<batch::Builder>>,
    /// The input position once these are durable.
    next_position: u64,
    counts: [u64; 4], // in, out, rejected, failed
    /// Input bytes behind these outputs.
    input_bytes: usize,
    started: std::time::Instant,
}

impl Staged {
    /// Adds the outputs of the next read.
    fn merge(&mut self, next: Staged) {
        for (k, mut v) in next.batches {
            self.batches.entry(k).or_default().append(&mut v);
        }
        self.next_position = next.next_position;
        for (a, b) in self.counts.iter_mut().zip(next.counts) {
            *a += b;
        }
        self.input_bytes += next.input_bytes;
    }
}

/// Input bytes staged while the appender is busy before the task waits for it.
const STAGE_LIMIT: usize = 1 << 20;

enum ToAppender {
    Batch(Staged),
    /// The task has started over after a failure: append again.
    Resume,
}

enum Appended {
    Committed,
    Failed(String),
    /// Dropped unappended after an earlier failure.
    Discarded,
}

/// Appends what the task built, in order, on a thread of its own, so that the task runs
/// the plugin over the next read while this one is written and synced. Moves the
/// position only when the outputs are durable.
struct Appender {
    t: Arc<Transform>,
    outputs: Vec<Arc<Topic>>,
    dlq: Arc<Topic>,
    shared: Arc<TaskShared>,
    checkpoints: CheckpointWriter,
}

impl Appender {
    fn run(
        mut self,
        rx: std::sync::mpsc::Receiver<ToAppender>,
        done: std::sync::mpsc::Sender<Appended>,
    ) {
        let mut broken = false;
        let mut committed = None;
        for msg in rx {
            let answer = match msg {
                ToAppender::Resume => {
                    broken = false;
                    continue;
                }
                ToAppender::Batch(_) if broken => Appended::Discarded,
                ToAppender::Batch(staged) => {
                    let position = staged.next_position;
                    match self.commit(staged) {
                        Ok(()) => {
                            committed = Some(position);
                            Appended::Committed
                        }
                        Err(e) => {
                            broken = true;
                            Appended::Failed(e)
                        }
                    }
                }
            };
            if done.send(answer).is_err() {
                break;
            }
        }
        // The task is ending: the last position reached goes to disk now.
        if let Some(position) = committed {
            self.checkpoints.write(
                &self.t,
                self.shared.partition,
                self.outputs.iter().chain(std::iter::once(&self.dlq)),
                position,
                true,
            );
        }
    }

    fn commit(&mut self, staged: Staged) -> Result<(), String> {
        // Outputs first, dead letters last (slot = outputs.len()); each append is durable
        // per its topic's flush policy before the position moves.
        for ((slot, p), builders) in staged.batches {
            let topic = self.outputs.get(slot).unwrap_or(&self.dlq);
            let Some(partition) = topic.partitions.get(p as usize) else {
                continue;
            };
            // Several batches for one partition go in one append: one write, one sync.
            let mut batches = builders.into_iter().map(batch::Builder::finish);
            let Some(mut data) = batches.next() else {
                continue;
            };
            for more in batches {
                data.extend_from_slice(&more);
            }
            partition
                .append(data)
                .map_err(|e| format!("appending to {}/{p}: {e}", topic.name))?;
        }
        self.shared
            .position
            .store(staged.next_position, Ordering::Release);
        self.checkpoints.write(
            &self.t,
            self.shared.partition,
            self.outputs.iter().chain(std::iter::once(&self.dlq)),
            staged.next_position,
            false,
        );
        let c = &self.t.counters;
        let [ins, outs, rejected, failed] = staged.counts;
        c.records_in.fetch_add(ins, Ordering::Relaxed);
        c.records_out.fetch_add(outs, Ordering::Relaxed);
        c.rejected.fetch_add(rejected, Ordering::Relaxed);
        c.failed.fetch_add(failed, Ordering::Relaxed);
        sluice_common::telemetry::telemetry()
            .transform_batch(&self.t.name, staged.started.elapsed());
        Ok(())
    }
}

fn checkpoint_path(t: &Transform, partition: u32) -> std::path::PathBuf {
    t.dir.join(format!("p{partition}.json"))
}

/// Reads a partition's checkpoint, if there is a readable one.
pub fn read_checkpoint(t: &Transform, partition: u32) -> Option<Checkpoint> {
    std::fs::read(checkpoint_path(t, partition))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// How often a moving position is written to disk. Every write is durable (fsync of the
/// file, then of the directory), so the file on disk is always a whole checkpoint; between
/// writes the position moves in memory only, and after a crash recovery scans the outputs
/// written since the last one (they name their source), so an older checkpoint costs a
/// longer scan, never a lost or doubled output.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Writes a partition's checkpoint durably, at most every [`CHECKPOINT_EVERY`].
struct CheckpointWriter {
    last: Option<(Instant, u64)>,
}

impl CheckpointWriter {
    fn new() -> CheckpointWriter {
        CheckpointWriter { last: None }
    }

    fn write<'a>(
        &mut self,
        t: &Transform,
        partition: u32,
        outputs: impl Iterator<Item = &'a Arc<Topic>>,
        position: u64,
        force: bool,
    ) {
        if let Some((at, pos)) = self.last
            && (pos == position || (!force && at.elapsed() < CHECKPOINT_EVERY))
        {
            return;
        }
        if write_checkpoint(t, partition, outputs, position) {
            self.last = Some((Instant::now(), position));
        }
    }
}

fn write_checkpoint<'a>(
    t: &Transform,
    partition: u32,
    outputs: impl Iterator<Item = &'a Arc<Topic>>,
    position: u64,
) -> bool {
    let mut ends = BTreeMap::new();
    for topic in outputs {
        for p in &topic.partitions {
            ends.insert(key_of(&topic.name, p.id), p.high_watermark());
        }
    }
    let cp = Checkpoint {
        position,
        output_ends: ends,
    };
    let path = checkpoint_path(t, partition);
    let ok = serde_json::to_vec(&cp)
        .map_err(std::io::Error::other)
        .and_then(|b| write_file(&path, &b))
        .and_then(|_| sync_dir(&t.dir));
    if let Err(e) = &ok {
        tracing::warn!(transform = %t.name, error = %e, "checkpoint write failed");
    }
    ok.is_ok()
}

/// What recovery found of this task's outputs written after its checkpoint. Outputs are
/// matched by their source slot (input offset, output index), wherever they are: a plugin
/// that is not deterministic may send a re-run's output to another partition than the
/// first run did, so where a re-run would put it is never the question.
#[derive(Debug, Default)]
struct Recovered {
    /// (input offset, k) of every output found.
    outputs: HashSet<(u64, u32)>,
    /// Inputs found in the dead-letter topic.
    dead: HashSet<u64>,
    /// Inputs with any output or dead letter found: their first run's verdict stands.
    touched: HashSet<u64>,
    /// The largest input offset found (nothing to skip past it).
    until: Option<u64>,
}

impl Recovered {
    fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }

    /// Whether output `k` of input `offset` was already written.
    fn has_output(&self, offset: u64, k: u32) -> bool {
        !self.is_empty() && (self.dead.contains(&offset) || self.outputs.contains(&(offset, k)))
    }

    /// Whether input `offset` already has a verdict (outputs or a dead letter).
    fn has_verdict(&self, offset: u64) -> bool {
        !self.is_empty() && self.touched.contains(&offset)
    }
}

/// Moves the calling thread to `SCHED_IDLE`: it runs only on CPU nobody else wants, and
/// any other thread that wakes up preempts it at once. (A low nice value is not enough:
/// the scheduler lets the running thread finish a slice of ~3 ms before a waking one
/// preempts it, which adds up over the hops of a record through the server.) An
/// unprivileged thread cannot leave `SCHED_IDLE`, so the caller is a thread of its own.
#[allow(unsafe_code)]
fn lowest_cpu_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `sched_setscheduler` only reads `param`, which lives across the call; pid 0
    // is the calling thread.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not move the isolating thread to SCHED_IDLE");
    }
}

/// Why `process` produced nothing.
enum ProcessError {
    /// The executor was interrupted: nothing moves, the read is run again.
    Interrupted,
    Failed(String),
}

impl TaskCtx {
    fn all_outputs(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.outputs.iter().chain(std::iter::once(&self.dlq))
    }

    /// Finds where to resume and which outputs already exist: every output written after
    /// the last checkpoint names its source in a header.
    fn recover(&mut self) -> (u64, Recovered) {
        let me = format!("{}:{}:", self.t.name, self.shared.partition);
        let (position, ends) = match &self.checkpoint {
            Some(cp) => (cp.position, cp.output_ends.clone()),
            None => {
                let p = if self.start_latest {
                    self.input.high_watermark()
                } else {
                    self.input.start_offset()
                };
                (p, BTreeMap::new())
            }
        };
        let mut found = Recovered::default();
        let dlq_name = self.dlq.name.clone();
        for t in self.all_outputs() {
            let dead_letters = t.name == dlq_name;
            for p in &t.partitions {
                let k = key_of(&t.name, p.id);
                let mut off = ends.get(&k).copied().unwrap_or(0).max(p.start_offset());
                while off < p.high_watermark() {
                    let Ok(r) = p.read(off, 1 << 20) else { break };
                    if r.data.is_empty() {
                        break;
                    }
                    for (_, b) in batch::split(r.data).unwrap_or_default() {
                        for rec in batch::decode(&b).unwrap_or_default() {
                            let src = rec.headers.iter().find(|(h, _)| h == SOURCE_HEADER);
                            let Some((_, Some(v))) = src else { continue };
                            let Some(rest) = std::str::from_utf8(v)
                                .ok()
                                .and_then(|s| s.strip_prefix(&me))
                            else {
                                continue;
                            };
                            let mut it = rest.split(':');
                            if let (Some(Ok(o)), Some(Ok(n))) = (
                                it.next().map(str::parse::<u64>),
                                it.next().map(str::parse::<u32>),
                            ) {
                                if dead_letters {
                                    found.dead.insert(o);
                                } else {
                                    found.outputs.insert((o, n));
                                }
                                found.touched.insert(o);
                                found.until = found.until.max(Some(o));
                            }
                        }
                    }
                    off = r.next_offset;
                }
            }
        }
        if self.checkpoint.is_none() {
            // Record a `latest` start now (durably), so a restart does not skip what
            // arrives meanwhile.
            write_checkpoint(&self.t, self.shared.partition, self.all_outputs(), position);
        }
        if let Some(max) = found.until {
            tracing::info!(transform = %self.t.name, partition = self.shared.partition, resume = position,
                inputs_after_checkpoint = found.touched.len(), max_source = max, "recovered");
        }
        (position.max(self.input.start_offset()), found)
    }

    /// Sleeps up to `d`, waking early when the task is stopped.
    fn pause_for(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.shared.stop.load(Ordering::Acquire) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn run(mut self) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                self.t.fail(format!("cannot start task: {e}"));
                return;
            }
        };
        let (mut position, mut seen) = self.recover();
        self.executor.set_interrupt(self.shared.interrupt.clone());
        self.shared.position.store(position, Ordering::Release);
        let part = self.shared.partition;
        // One read is appended while the next runs through the plugin.
        let (work, work_rx) = std::sync::mpsc::sync_channel::<ToAppender>(1);
        let (done_tx, done) = std::sync::mpsc::channel::<Appended>();
        let appender = Appender {
            t: self.t.clone(),
            outputs: self.outputs.clone(),
            dlq: self.dlq.clone(),
            shared: self.shared.clone(),
            checkpoints: CheckpointWriter::new(),
        };
        let appender = match std::thread::Builder::new()
            .name(format!("sluice-append-{}-{part}", self.t.name))
            .spawn(move || appender.run(work_rx, done_tx))
        {
            Ok(h) => h,
            Err(e) => {
                self.t.fail(format!("cannot start task: {e}"));
                return;
            }
        };
        // One append at a time is in flight. While it is, further reads are staged (and
        // appended together next, with one sync per partition), up to STAGE_LIMIT.
        let mut in_flight = false;
        let mut staged: Option<Staged> = None;
        let mut idle = false; // the last read found nothing new
        // Small handovers (the task is caught up) are waited for at once: reading ahead
        // then only adds latency.
        let mut wait_now = false;
        loop {
            // Whatever raised the interrupt (stop, swap, pause) is visible below; one
            // raised after this point interrupts the next call instead.
            self.shared.interrupt.clear();
            if self.shared.stop.load(Ordering::SeqCst) {
                break;
            }
            let mut failure = None;
            loop {
                let full = wait_now
                    || staged
                        .as_ref()
                        .is_some_and(|s| idle || s.input_bytes >= STAGE_LIMIT);
                let answer = if in_flight && full {
                    done.recv().ok()
                } else {
                    done.try_recv().ok()
                };
                let Some(a) = answer else { break };
                (in_flight, wait_now) = (false, false);
                if let Appended::Failed(e) = a {
                    failure = Some(e);
                }
            }
            if let Some(e) = failure {
                // Start over from what is durable, as after a crash: an append that failed
                // half way may have left records behind, and recovery finds them by their
                // headers. What was staged is dropped and read again.
                staged = None;
                self.t.fail(e);
                self.pause_for(Duration::from_millis(500));
                if let Some(cp) = read_checkpoint(&self.t, part) {
                    self.checkpoint = Some(cp);
                }
                (position, seen) = self.recover();
                self.shared.position.store(position, Ordering::Release);
                if work.send(ToAppender::Resume).is_err() {
                    break;
                }
                continue;
            }
            if !in_flight && let Some(s) = staged.take() {
                let small = s.input_bytes < STAGE_LIMIT / 4;
                if work.send(ToAppender::Batch(s)).is_err() {
                    break;
                }
                in_flight = true;
                if small {
                    wait_now = true;
                    continue;
                }
            }
            let swap = self
                .shared
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some((version, mut ex)) = swap {
                ex.set_interrupt(self.shared.interrupt.clone());
                self.executor = ex;
                self.shared.version.store(version, Ordering::Release);
                self.t.record_history(HistoryEntry {
                    version,
                    partition: part,
                    from_offset: position,
                });
                tracing::info!(transform = %self.t.name, partition = part, version, from_offset = position, "plugin version activated");
            }
            if self.t.paused.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let read = match self.input.read(position, 1 << 20) {
                Ok(r) => r,
                Err(LogError::OffsetOutOfRange { start, .. }) if position < start => {
                    tracing::warn!(transform = %self.t.name, partition = part, from = position, to = start,
                        "input deleted by retention before it was processed; skipping ahead");
                    position = start;
                    continue;
                }
                Err(e) => {
                    self.t
                        .fail(format!("reading {}/{part}: {e}", self.input.topic));
                    self.pause_for(Duration::from_millis(500));
                    continue;
                }
            };
            idle = read.data.is_empty();
            if idle {
                // With outputs staged, wait for the appender (top of the loop) instead.
                if staged.is_none() {
                    let _ = rt.block_on(self.input.wait_for(position, Duration::from_millis(100)));
                }
                continue;
            }
            match self.process(read.data, position, read.next_offset, &seen) {
                Ok(next) => {
                    position = next.next_position;
                    match staged.as_mut() {
                        Some(s) => s.merge(next),
                        None => staged = Some(next),
                    }
                    if seen.until.is_some_and(|d| position > d) && !seen.is_empty() {
                        seen = Recovered::default();
                    }
                }
                // Stopped, paused or swapped mid-call: nothing moved; the top of the loop
                // sees why, and the read is run again when the task goes on.
                Err(ProcessError::Interrupted) => {}
                Err(ProcessError::Failed(e)) => {
                    // Nothing moved: the same batch is retried after a pause.
                    self.t.fail(e);
                    self.pause_for(Duration::from_millis(500));
                }
            }
        }
        // What was read and run is appended before the task ends.
        if let Some(s) = staged.take() {
            if in_flight {
                let _ = done.recv();
            }
            let _ = work.send(ToAppender::Batch(s));
        }
        drop(work);
        let _ = appender.join();
    }

    /// Runs the plugin over the batches read and builds the output batches. Outputs and
    /// dead letters that recovery found already written (`seen`) are not written again.
    fn process(
        &mut self,
        data: Bytes,
        position: u64,
        mut next_position: u64,
        seen: &Recovered,
    ) -> Result<Staged, ProcessError> {
        let started = std::time::Instant::now();
        let input_bytes = data.len();
        let batches = batch::split(data).map_err(|e| ProcessError::Failed(e.to_string()))?;
        let mut pending: Pending = BTreeMap::new();
        let version = self.shared.version.load(Ordering::Acquire);
        let mut version_buf = itoa::Buffer::new();
        let version_bytes = version_buf.format(version).as_bytes();
        let part = self.shared.partition;
        // `sluice-src` values: "<transform>:<partition>:<source offset>:<output index>".
        let src_prefix = format!("{}:{part}:", self.t.name);
        let mut src = Vec::with_capacity(src_prefix.len() + 32);
        let (mut ins, mut outs, mut rejected, mut failed) = (0u64, 0u64, 0u64, 0u64);
        for (h, raw) in batches {
            if h.is_control() || (h.last_offset() as u64) < position {
                continue;
            }
            let section = batch::records_section(&raw, &h)
                .map_err(|e| ProcessError::Failed(e.to_string()))?;
            // Offsets of the inputs by index (dense unless the batch was compacted).
            let mut offsets: Vec<u64> = if h.record_count as u64 == h.offset_count() {
                (0..h.record_count as u64)
                    .map(|i| h.base_offset as u64 + i)
                    .collect()
            } else {
                Records::new(&section, h.record_count as usize)
                    .map(|r| {
                        r.map_or(u64::MAX, |r| {
                            (h.base_offset + i64::from(r.offset_delta)) as u64
                        })
                    })
                    .collect()
            };
            // The plugin sees only records at or past the position: a batch that a stopped
            // run, a crash or an early end left half done goes on where it was left.
            let first = offsets.iter().take_while(|o| **o < position).count();
            let section = if first > 0 {
                let mut r = sluice_sdk::codec::Reader::new(&section);
                for _ in 0..first {
                    sluice_sdk::codec::next_raw(&mut r)
                        .map_err(|e| ProcessError::Failed(e.to_string()))?;
                }
                offsets.drain(..first);
                section.slice(r.position()..)
            } else {
                section
            };
            let count = offsets.len() as u32;
            let input = BatchInput {
                topic: &self.input.topic,
                partition: part,
                base_offset: h.base_offset,
                base_timestamp: h.base_timestamp,
                records: section.clone(),
                count,
            };
            let out = if self.executor.isolating() {
                // A plugin whose calls keep failing runs on a thread of the lowest CPU
                // priority: a runaway gets only idle CPU, and the transforms that behave
                // keep their latency. (A thread per run: cheap next to a failing call.)
                let executor = &mut self.executor;
                std::thread::scope(|s| {
                    std::thread::Builder::new()
                        .name(format!("sluice-{}-{part}-isolating", self.t.name))
                        .spawn_scoped(s, || {
                            lowest_cpu_priority();
                            executor.run(&input)
                        })
                        .map_err(|e| e.to_string())?
                        .join()
                        .map_err(|_| "the isolating thread panicked".to_string())
                })
                .map_err(ProcessError::Failed)?
            } else {
                self.executor.run(&input)
            };
            self.t
                .counters
                .fuel
                .fetch_add(out.fuel_used, Ordering::Relaxed);
            self.t
                .counters
                .traps
                .fetch_add(u64::from(out.traps), Ordering::Relaxed);
            if out.early == Some(Early::Interrupted) {
                return Err(ProcessError::Interrupted);
            }
            // Records from `done` on were not run (the batch spent its time budget): the
            // position stops at the first of them.
            let done = (out.done as usize).min(offsets.len());
            let skip = |i: u32| i as usize >= done;
            ins += done as u64;
            // Outputs come in input order: count the outputs of the current input.
            let (mut cur_input, mut k) = (u32::MAX, 0u32);
            for e in &out.emitted {
                if skip(e.input) {
                    continue;
                }
                let src_off = offsets[e.input as usize];
                if e.input == cur_input {
                    k += 1;
                } else {
                    (cur_input, k) = (e.input, 0);
                }
                if seen.has_output(src_off, k) {
                    continue;
                }
                let Some(topic) = self.outputs.get(e.output as usize) else {
                    continue;
                };
                // The executor checked every emitted record; one that does not read is
                // not written (never reached).
                let Ok(view) = out.view(e) else { continue };
                let n = topic.partitions.len() as u32;
                let p = match view.key {
                    Some(key) => partition_for_key(key, n),
                    None => part % n,
                };
                src.clear();
                src.extend_from_slice(src_prefix.as_bytes());
                src.extend_from_slice(itoa::Buffer::new().format(src_off).as_bytes());
                src.push(b':');
                src.extend_from_slice(itoa::Buffer::new().format(k).as_bytes());
                // The plugin's headers, minus any it set under our names, then ours.
                let theirs = view
                    .headers()
                    .filter(|hv| {
                        hv.key != SOURCE_HEADER.as_bytes() && hv.key != VERSION_HEADER.as_bytes()
                    })
                    .map(|hv| (hv.key, hv.value));
                let ours = [
                    (SOURCE_HEADER.as_bytes(), Some(&src[..])),
                    (VERSION_HEADER.as_bytes(), Some(version_bytes)),
                ];
                pending.entry((e.output as usize, p)).or_default().push(
                    out.base_timestamp().saturating_add(view.timestamp_delta),
                    view.key,
                    view.value,
                    theirs.chain(ours),
                );
                outs += 1;
            }
            // Rejected and failed inputs both go to the dead-letter topic; failures also
            // show as the transform's last error.
            let rejects = out.rejected.iter().map(|(i, r)| (*i, r, false));
            let failures = out.failed.iter().map(|(i, r)| (*i, r, true));
            for (i, reason, trapped) in rejects.chain(failures) {
                if skip(i) || seen.has_verdict(offsets[i as usize]) {
                    continue;
                }
                if trapped {
                    failed += 1;
                    self.t
                        .set_last_error(format!("offset {}: {reason}", offsets[i as usize]));
                } else {
                    rejected += 1;
                }
                self.dead_letter(
                    &mut pending,
                    &section,
                    (count, h.base_timestamp),
                    i,
                    offsets[i as usize],
                    reason,
                );
            }
            if done < count as usize {
                // Run out of time isolating failures: the rest of this read is the next's.
                if let Some(&o) = offsets.get(done) {
                    next_position = o;
                }
                break;
            }
        }
        Ok(Staged {
            batches: pending.into_iter().map(|(k, b)| (k, vec![b])).collect(),
            next_position,
            counts: [ins, outs, rejected, failed],
            input_bytes,
            started,
        })
    }

    /// Queues the original record for the dead-letter topic with why and where it failed.
    fn dead_letter(
        &self,
        pending: &mut Pending,
        section: &Bytes,
        (count, base_timestamp): (u32, i64),
        i: u32,
        offset: u64,
        reason: &str,
    ) {
        let part = self.shared.partition;
        let p = part % self.dlq.partitions.len().max(1) as u32;
        let original: Option<StoredRecord> = Records::new(section, count as usize)
            .nth(i as usize)
            .and_then(|r| r.ok())
            .map(|r| StoredRecord {
                offset: offset as i64,
                timestamp: base_timestamp + r.timestamp_delta,
                key: r.key.map(|k| section.slice_ref(k)),
                value: r.value.map(|v| section.slice_ref(v)),
                headers: r
                    .headers()
                    .map(|hv| {
                        (
                            hv.key_str().to_owned(),
                            hv.value.map(|v| section.slice_ref(v)),
                        )
                    })
                    .collect(),
            });
        let Some(orig) = original else { return };
        let mut headers = orig.headers;
        let version = self.shared.version.load(Ordering::Acquire);
        for (k, v) in [
            ("sluice-error", reason.to_string()),
            ("sluice-source-topic", self.input.topic.clone()),
            ("sluice-source-partition", part.to_string()),
            ("sluice-source-offset", offset.to_string()),
            ("sluice-plugin", self.t.spec().plugin.clone()),
            (VERSION_HEADER, version.to_string()),
            (SOURCE_HEADER, format!("{}:{part}:{offset}:0", self.t.name)),
        ] {
            headers.push((k.to_string(), Some(Bytes::from(v))));
        }
        pending
            .entry((self.outputs.len(), p))
            .or_default()
            .push_record(
                &NewRecord {
                    key: orig.key,
                    value: orig.value,
                    headers,
                    timestamp: Some(orig.timestamp),
                },
                orig.timestamp,
            );
    }
}

impl Counters {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "records_in": self.records_in.load(Ordering::Relaxed),
            "records_out": self.records_out.load(Ordering::Relaxed),
            "rejected": self.rejected.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
            "traps": self.traps.load(Ordering::Relaxed),
            "fuel": self.fuel.load(Ordering::Relaxed),
        })
    }
}
