//! One partition of one transform: read → run the plugin → stage the outputs, on a thread
//! of its own (both the log and wasm block). The appender (`appender`) makes what is staged
//! durable and moves the position; `checkpoint` and `recover` say where to resume.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_log::batch::{self, BatchHeader, StoredRecord};
use sluice_log::{LogError, Partition, Topic, dead_letter, partition_for_key};
use sluice_runtime::{BatchInput, BatchOutput, Early, Executor, Interrupt};
use sluice_sdk::codec::Records;

use crate::appender::{Appended, Appender, Pending, STAGE_LIMIT, Staged, ToAppender};
use crate::checkpoint::{self, Checkpoint, CheckpointWriter};
use crate::recover::{self, Recovered, SOURCE_HEADER, VERSION_HEADER};
use crate::{CounterValues, Counters, HistoryEntry, Transform};

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

/// The state of a running task loop.
struct Loop {
    rt: tokio::runtime::Runtime,
    position: u64,
    seen: Recovered,
    work: SyncSender<ToAppender>,
    done: Receiver<Appended>,
    /// One append at a time is in flight; while it is, further reads are staged (and
    /// appended together next, with one sync per partition), up to STAGE_LIMIT.
    in_flight: bool,
    staged: Option<Staged>,
    /// The last read found nothing new.
    idle: bool,
    /// Small handovers (the task is caught up) are waited for at once: reading ahead then
    /// only adds latency.
    wait_now: bool,
}

/// What the loop does next.
enum Step {
    Again,
    End,
}

/// One input batch, from the position on, with the offset of each record.
struct InputBatch {
    section: Bytes,
    offsets: Vec<u64>,
    base_offset: i64,
    base_timestamp: i64,
}

/// Builds the output records of one read.
struct Outputs {
    pending: Pending,
    /// `sluice-src` value prefix: "<transform>:<partition>:".
    src_prefix: String,
    version: String,
    /// Records in, out, rejected, failed.
    counts: [u64; 4],
}

impl TaskCtx {
    fn all_outputs(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.outputs.iter().chain(std::iter::once(&self.dlq))
    }

    /// Where to resume and which outputs already exist.
    fn recover(&mut self) -> (u64, Recovered) {
        let part = self.shared.partition;
        let (position, ends) = match &self.checkpoint {
            Some(cp) => (cp.position, cp.output_ends.clone()),
            None if self.start_latest => (self.input.high_watermark(), BTreeMap::new()),
            None => (self.input.start_offset(), BTreeMap::new()),
        };
        let found = recover::scan(&self.t.name, part, &self.outputs, &self.dlq, &ends);
        if self.checkpoint.is_none() {
            // Record a `latest` start now (durably), so a restart does not skip what
            // arrives meanwhile.
            checkpoint::write(&self.t.dir, part, self.all_outputs(), position);
        }
        if !found.is_empty() {
            tracing::info!(transform = %self.t.name, partition = part, resume = position, "recovered");
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
        let part = self.shared.partition;
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return self.t.fail(format!("cannot start task: {e}")),
        };
        let (position, seen) = self.recover();
        self.executor.set_interrupt(self.shared.interrupt.clone());
        self.shared.position.store(position, Ordering::Release);
        // One read is appended while the next runs through the plugin.
        let (work, work_rx) = std::sync::mpsc::sync_channel::<ToAppender>(1);
        let (done_tx, done) = std::sync::mpsc::channel::<Appended>();
        let appender = Appender {
            t: self.t.clone(),
            outputs: self.outputs.clone(),
            dlq: self.dlq.clone(),
            shared: self.shared.clone(),
            checkpoints: CheckpointWriter::new(self.t.dir.clone(), part),
        };
        let appender = match std::thread::Builder::new()
            .name(format!("sluice-append-{}-{part}", self.t.name))
            .spawn(move || appender.run(work_rx, done_tx))
        {
            Ok(h) => h,
            Err(e) => return self.t.fail(format!("cannot start task: {e}")),
        };
        let mut l = Loop {
            rt,
            position,
            seen,
            work,
            done,
            in_flight: false,
            staged: None,
            idle: false,
            wait_now: false,
        };
        while let Step::Again = self.step(&mut l) {}
        // What was read and run is appended before the task ends.
        if let Some(s) = l.staged.take() {
            if l.in_flight {
                let _ = l.done.recv();
            }
            let _ = l.work.send(ToAppender::Batch(s));
        }
        drop(l);
        let _ = appender.join();
    }

    /// One turn of the loop: take the appender's answers, hand over what is staged, take
    /// a new version, then read and run.
    fn step(&mut self, l: &mut Loop) -> Step {
        // Whatever raised the interrupt (stop, swap, pause) is visible below; one raised
        // after this point interrupts the next call instead.
        self.shared.interrupt.clear();
        if self.shared.stop.load(Ordering::SeqCst) {
            return Step::End;
        }
        if let Some(e) = self.take_answers(l) {
            return self.start_over(l, e);
        }
        if !l.in_flight
            && let Some(s) = l.staged.take()
        {
            let small = s.input_bytes < STAGE_LIMIT / 4;
            if l.work.send(ToAppender::Batch(s)).is_err() {
                return Step::End;
            }
            l.in_flight = true;
            if small {
                l.wait_now = true;
                return Step::Again;
            }
        }
        self.take_swap(l.position);
        if self.t.paused.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
            return Step::Again;
        }
        self.read_and_run(l);
        Step::Again
    }

    /// Collects the appender's answers (waiting when it must); the first failure, if any.
    fn take_answers(&self, l: &mut Loop) -> Option<String> {
        let mut failure = None;
        loop {
            let full = l.wait_now
                || l.staged
                    .as_ref()
                    .is_some_and(|s| l.idle || s.input_bytes >= STAGE_LIMIT);
            let answer = if l.in_flight && full {
                l.done.recv().ok()
            } else {
                l.done.try_recv().ok()
            };
            let Some(a) = answer else { break };
            (l.in_flight, l.wait_now) = (false, false);
            if let Appended::Failed(e) = a {
                failure = Some(e);
            }
        }
        failure
    }

    /// Starts over from what is durable, as after a crash: an append that failed half way
    /// may have left records behind, and recovery finds them by their headers. What was
    /// staged is dropped and read again.
    fn start_over(&mut self, l: &mut Loop, error: String) -> Step {
        l.staged = None;
        self.t.fail(error);
        self.pause_for(Duration::from_millis(500));
        if let Some(cp) = checkpoint::read(&self.t.dir, self.shared.partition) {
            self.checkpoint = Some(cp);
        }
        (l.position, l.seen) = self.recover();
        self.shared.position.store(l.position, Ordering::Release);
        match l.work.send(ToAppender::Resume) {
            Ok(()) => Step::Again,
            Err(_) => Step::End,
        }
    }

    /// Switches to a staged new version, if there is one.
    fn take_swap(&mut self, position: u64) {
        let swap = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((version, mut ex)) = swap {
            let part = self.shared.partition;
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
    }

    /// Reads from the position and runs the plugin over what it finds, or waits for data.
    fn read_and_run(&mut self, l: &mut Loop) {
        let part = self.shared.partition;
        let read = match self.input.read(l.position, 1 << 20) {
            Ok(r) => r,
            Err(LogError::OffsetOutOfRange { start, .. }) if l.position < start => {
                tracing::warn!(transform = %self.t.name, partition = part, from = l.position, to = start,
                    "input deleted by retention before it was processed; skipping ahead");
                l.position = start;
                return;
            }
            Err(e) => {
                self.t
                    .fail(format!("reading {}/{part}: {e}", self.input.topic));
                self.pause_for(Duration::from_millis(500));
                return;
            }
        };
        l.idle = read.data.is_empty();
        if l.idle {
            // With outputs staged, wait for the appender (top of the loop) instead.
            if l.staged.is_none() {
                let _ =
                    l.rt.block_on(self.input.wait_for(l.position, Duration::from_millis(100)));
            }
            return;
        }
        match self.process(read.data, l.position, read.next_offset, &l.seen) {
            Ok(next) => {
                l.position = next.next_position;
                match l.staged.as_mut() {
                    Some(s) => s.merge(next),
                    None => l.staged = Some(next),
                }
                if !l.seen.is_empty() && l.seen.passed(l.position) {
                    l.seen = Recovered::default();
                }
            }
            // Stopped, paused or swapped mid-call: nothing moved; the top of the loop sees
            // why, and the read is run again when the task goes on.
            Err(ProcessError::Interrupted) => {}
            Err(ProcessError::Failed(e)) => {
                // Nothing moved: the same batch is retried after a pause.
                self.t.fail(e);
                self.pause_for(Duration::from_millis(500));
            }
        }
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
        let started = Instant::now();
        let input_bytes = data.len();
        let batches = batch::split(data).map_err(|e| ProcessError::Failed(e.to_string()))?;
        let mut out = Outputs {
            pending: BTreeMap::new(),
            src_prefix: format!("{}:{}:", self.t.name, self.shared.partition),
            version: self.shared.version.load(Ordering::Acquire).to_string(),
            counts: [0; 4],
        };
        for (h, raw) in batches {
            if h.is_control() || (h.last_offset() as u64) < position {
                continue;
            }
            let input = input_from(&raw, &h, position).map_err(ProcessError::Failed)?;
            let result = self.run_batch(&input)?;
            let done = (result.done as usize).min(input.offsets.len());
            self.stage_outputs(&mut out, &input, &result, done, seen);
            self.stage_dead_letters(&mut out, &input, &result, done, seen);
            if done < input.offsets.len() {
                // The run ended early (a failure to isolate, or its time budget): the rest
                // of this read is the next's.
                next_position = input.offsets[done];
                break;
            }
        }
        Ok(Staged {
            batches: out.pending.into_iter().map(|(k, b)| (k, vec![b])).collect(),
            next_position,
            counts: out.counts,
            input_bytes,
            started,
        })
    }

    /// Runs one input batch through the executor — on a `SCHED_IDLE` thread of its own when
    /// the executor is isolating a plugin that failed, so a runaway gets only idle CPU and
    /// the transforms that behave keep their latency (a thread per run: cheap next to a
    /// failing call).
    fn run_batch(&mut self, input: &InputBatch) -> Result<BatchOutput, ProcessError> {
        let part = self.shared.partition;
        let batch = BatchInput {
            topic: &self.input.topic,
            partition: part,
            base_offset: input.base_offset,
            base_timestamp: input.base_timestamp,
            records: input.section.clone(),
            count: input.offsets.len() as u32,
        };
        let out = if self.executor.isolating() {
            let executor = &mut self.executor;
            std::thread::scope(|s| {
                std::thread::Builder::new()
                    .name(format!("sluice-{}-{part}-isolating", self.t.name))
                    .spawn_scoped(s, || {
                        lowest_cpu_priority();
                        executor.run(&batch)
                    })
                    .map_err(|e| e.to_string())?
                    .join()
                    .map_err(|_| "the isolating thread panicked".to_string())
            })
            .map_err(ProcessError::Failed)?
        } else {
            self.executor.run(&batch)
        };
        let c = &self.t.counters;
        c.fuel.fetch_add(out.fuel_used, Ordering::Relaxed);
        c.traps.fetch_add(u64::from(out.traps), Ordering::Relaxed);
        if out.early == Some(Early::Interrupted) {
            return Err(ProcessError::Interrupted);
        }
        Ok(out)
    }

    /// Encodes the emitted records of the first `done` inputs into their output batches,
    /// each with `sluice-src` and `sluice-version`, minus those already written.
    fn stage_outputs(
        &self,
        out: &mut Outputs,
        input: &InputBatch,
        result: &BatchOutput,
        done: usize,
        seen: &Recovered,
    ) {
        let part = self.shared.partition;
        let mut src = Vec::with_capacity(out.src_prefix.len() + 32);
        out.counts[0] += done as u64;
        // Outputs come in input order: count the outputs of the current input.
        let (mut cur_input, mut k) = (u32::MAX, 0u32);
        for e in &result.emitted {
            if e.input as usize >= done {
                continue;
            }
            let src_off = input.offsets[e.input as usize];
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
            // The executor checked every emitted record; one that does not read is not
            // written (never reached).
            let Ok(view) = result.view(e) else { continue };
            let n = topic.partitions.len() as u32;
            let p = match view.key {
                Some(key) => partition_for_key(key, n),
                None => part % n,
            };
            src.clear();
            src.extend_from_slice(out.src_prefix.as_bytes());
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
                (VERSION_HEADER.as_bytes(), Some(out.version.as_bytes())),
            ];
            out.pending.entry((e.output as usize, p)).or_default().push(
                result.base_timestamp().saturating_add(view.timestamp_delta),
                view.key,
                view.value,
                theirs.chain(ours),
            );
            out.counts[1] += 1;
        }
    }

    /// Queues rejected and failed inputs among the first `done` for the dead-letter topic;
    /// failures also show as the transform's last error.
    fn stage_dead_letters(
        &self,
        out: &mut Outputs,
        input: &InputBatch,
        result: &BatchOutput,
        done: usize,
        seen: &Recovered,
    ) {
        let rejects = result.rejected.iter().map(|(i, r)| (*i, r, false));
        let failures = result.failed.iter().map(|(i, r)| (*i, r, true));
        for (i, reason, trapped) in rejects.chain(failures) {
            let Some(&offset) = input
                .offsets
                .get(i as usize)
                .filter(|_| (i as usize) < done)
            else {
                continue;
            };
            if seen.has_verdict(offset) {
                continue;
            }
            if trapped {
                out.counts[3] += 1;
                self.t.set_last_error(format!("offset {offset}: {reason}"));
            } else {
                out.counts[2] += 1;
            }
            self.dead_letter(out, input, i, offset, reason);
        }
    }

    /// Queues the original record for the dead-letter topic with why and where it failed.
    fn dead_letter(
        &self,
        out: &mut Outputs,
        input: &InputBatch,
        i: u32,
        offset: u64,
        reason: &str,
    ) {
        let part = self.shared.partition;
        let section = &input.section;
        let original: Option<StoredRecord> = Records::new(section, input.offsets.len())
            .nth(i as usize)
            .and_then(|r| r.ok())
            .map(|r| StoredRecord {
                offset: offset as i64,
                timestamp: input.base_timestamp + r.timestamp_delta,
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
        let Some(original) = original else { return };
        let timestamp = original.timestamp;
        let rec = dead_letter::record(
            original,
            reason,
            &self.input.topic,
            part,
            &[
                ("sluice-plugin", self.t.spec().plugin),
                (VERSION_HEADER, out.version.clone()),
                (SOURCE_HEADER, format!("{}{offset}:0", out.src_prefix)),
            ],
        );
        out.pending
            .entry((
                self.outputs.len(),
                dead_letter::partition_for(part, &self.dlq),
            ))
            .or_default()
            .push_record(&rec, timestamp);
    }
}

/// The records of a stored batch at or past `position`, with their offsets: the plugin
/// sees only those, so a batch that a stopped run, a crash or an early end left half done
/// goes on where it was left.
fn input_from(raw: &Bytes, h: &BatchHeader, position: u64) -> Result<InputBatch, String> {
    let section = batch::records_section(raw, h).map_err(|e| e.to_string())?;
    // Offsets by index (dense unless the batch was compacted).
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
    let first = offsets.iter().take_while(|o| **o < position).count();
    let section = if first > 0 {
        let mut r = sluice_sdk::codec::Reader::new(&section);
        for _ in 0..first {
            sluice_sdk::codec::next_raw(&mut r).map_err(|e| e.to_string())?;
        }
        offsets.drain(..first);
        section.slice(r.position()..)
    } else {
        section
    };
    Ok(InputBatch {
        section,
        offsets,
        base_offset: h.base_offset,
        base_timestamp: h.base_timestamp,
    })
}

impl Counters {
    pub fn values(&self) -> CounterValues {
        CounterValues {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            fuel: self.fuel.load(Ordering::Relaxed),
        }
    }
}
