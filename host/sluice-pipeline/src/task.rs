//! One partition of one transform: read → run the plugin → stage the outputs, on a thread
//! of its own (both the log and wasm block). The appender (`appender`) makes what is staged
//! durable and moves the position; `checkpoint` and `recover` say where to resume.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_log::batch::{self, BatchHeader, NewRecord, StoredRecord};
use sluice_log::{LogError, Partition, Topic, dead_letter, partition_for_key};
use sluice_runtime::state::{StateDelta, StateStore};
use sluice_runtime::{BatchInput, BatchOutput, CallKind, Early, Executor, Interrupt};
use sluice_sdk::NO_WATERMARK;
use sluice_sdk::codec::{Reader, RecordView, Records, next_raw};

use crate::appender::{Appended, Appender, Pending, STAGE_LIMIT, Staged, ToAppender};
use crate::checkpoint::{self, Checkpoint, CheckpointWriter};
use crate::recover::{self, Recovered, SOURCE_HEADER, VERSION_HEADER};
use crate::state::{self as durable, Commit, Meta};
use crate::{CounterValues, Counters, EventTimeSettings, HistoryEntry, RestoreInfo, Transform};

/// Timers one `on-timers` call gets at most.
const TIMERS_PER_CALL: usize = 10_000;
/// Rounds of firing at one point (a handler may set timers that are due at once); the
/// rest wait for the next batch or idle turn.
const MAX_TIMER_ROUNDS: usize = 100;
/// Changelog records after which a drained task writes a new snapshot (or more when the
/// state has more keys than that: restore then replays at most about the state's size).
const SNAPSHOT_AFTER: u64 = 100_000;
/// How often an idle stateful task looks at its watermark.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// What a stateful partition task shares with the control plane: its state (for the state
/// API) and where its event time and commits stand (for status and metrics).
#[derive(Debug)]
pub struct StateShared {
    pub store: Arc<Mutex<StateStore>>,
    pub watermark: AtomicI64,
    pub max_event_time: AtomicI64,
    /// Late records since the server started.
    pub late: AtomicU64,
    /// The input position of the last state commit, and when it was made (ms).
    pub committed_position: AtomicU64,
    pub committed_at: AtomicI64,
    /// The changelog's end after that commit.
    pub changelog_end: AtomicU64,
    /// Changelog records written since the last snapshot.
    pub since_snapshot: AtomicU64,
    /// Changelog offset of the last snapshot (`u64::MAX`: none yet).
    pub snapshot_offset: AtomicU64,
    /// How the last restore went.
    pub restore: Mutex<Option<RestoreInfo>>,
}

impl StateShared {
    pub fn new(store: Arc<Mutex<StateStore>>) -> StateShared {
        StateShared {
            store,
            watermark: AtomicI64::new(NO_WATERMARK),
            max_event_time: AtomicI64::new(NO_WATERMARK),
            late: AtomicU64::new(0),
            committed_position: AtomicU64::new(0),
            committed_at: AtomicI64::new(0),
            changelog_end: AtomicU64::new(0),
            since_snapshot: AtomicU64::new(0),
            snapshot_offset: AtomicU64::new(u64::MAX),
            restore: Mutex::new(None),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, StateStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The stateful part of a partition task.
pub struct Stateful {
    pub changelog: Arc<Partition>,
    /// Where late records go (else the dead-letter topic).
    pub late_output: Option<Arc<Topic>>,
    pub shared: Arc<StateShared>,
}

/// Event time of a partition as the task moves it (committed with each read's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventClock {
    watermark: i64,
    max_event_time: i64,
}

impl EventClock {
    const NONE: EventClock = EventClock {
        watermark: NO_WATERMARK,
        max_event_time: NO_WATERMARK,
    };

    fn meta(&self, position: u64) -> Meta {
        Meta {
            position,
            watermark: self.watermark,
            max_event_time: self.max_event_time,
            committed_at: sluice_log::now_ms(),
        }
    }
}

/// Why a record of a stateful deployment does not reach the plugin.
enum Removal {
    /// Its event time is before the watermark.
    Late { event_time: i64 },
    /// It has no readable event time.
    NoEventTime(String),
    /// Recovery found its dead letter: its first run's verdict stands.
    Decided,
}

/// A stored batch made ready for a stateful plugin.
struct Prepared {
    /// The records that go to the plugin (the batch itself when none is removed).
    kept: Option<InputBatch>,
    /// Original index of each kept record.
    kept_index: Vec<usize>,
    /// Event time of each kept record.
    times: Vec<i64>,
    /// Removed records by original index.
    removed: Vec<(usize, Removal)>,
}

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
    /// Stateful deployments: the partition's state and event time.
    pub state: Option<Arc<StateShared>>,
}

impl TaskShared {
    pub fn new(
        partition: u32,
        position: u64,
        version: u32,
        state: Option<Arc<StateShared>>,
    ) -> TaskShared {
        TaskShared {
            partition,
            position: AtomicU64::new(position),
            version: AtomicU32::new(version),
            stop: AtomicBool::new(false),
            pending: Mutex::new(None),
            interrupt: Arc::default(),
            state,
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
    pub stateful: Option<Stateful>,
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
    /// Stateful: the event time reached by what was read (ahead of what is committed).
    clock: EventClock,
    /// Stateful: timers may be due at the watermark (after a restore or an idle advance).
    fire_due: bool,
    /// Stateful: when input was last read, and the watermark then (idle advance).
    last_input: Instant,
    idle_base: i64,
    last_idle_check: Instant,
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
    late: u64,
}

/// What emitted records answer, for their `sluice-src`.
enum Answered<'a> {
    /// Input records: `<offset>:<k>`.
    Records(&'a InputBatch),
    /// Fired timers: `~<position>:<watermark>:<n>:<k>`, n counting the timers fired at
    /// this position and watermark from `first`.
    Timers {
        position: u64,
        watermark: i64,
        first: u32,
    },
}

impl Answered<'_> {
    /// Writes the `sluice-src` tail of output `k` of item `i`.
    fn write_src(&self, buf: &mut Vec<u8>, i: u32, k: u32) {
        let mut num = itoa::Buffer::new();
        match self {
            Answered::Records(input) => {
                buf.extend_from_slice(num.format(input.offsets[i as usize]).as_bytes());
            }
            Answered::Timers {
                position,
                watermark,
                first,
            } => {
                buf.push(b'~');
                buf.extend_from_slice(num.format(*position).as_bytes());
                buf.push(b':');
                buf.extend_from_slice(num.format(*watermark).as_bytes());
                buf.push(b':');
                buf.extend_from_slice(num.format(first + i).as_bytes());
            }
        }
        buf.push(b':');
        buf.extend_from_slice(num.format(k).as_bytes());
    }

    /// Whether recovery found output `k` of item `i` already written.
    fn seen(&self, seen: &Recovered, i: u32, k: u32) -> bool {
        match self {
            Answered::Records(input) => seen.has_output(input.offsets[i as usize], k),
            Answered::Timers {
                position,
                watermark,
                first,
            } => seen.has_timer_output(*position, *watermark, first + i, k),
        }
    }
}

impl TaskCtx {
    fn all_outputs(&self) -> impl Iterator<Item = &Arc<Topic>> {
        let late = self.stateful.as_ref().and_then(|s| s.late_output.as_ref());
        self.outputs
            .iter()
            .chain(std::iter::once(&self.dlq))
            .chain(late)
    }

    /// Topics whose records are verdicts (dead letters and late records).
    fn verdict_topics(&self) -> Vec<Arc<Topic>> {
        let late = self.stateful.as_ref().and_then(|s| s.late_output.clone());
        std::iter::once(self.dlq.clone()).chain(late).collect()
    }

    /// Where to resume and which outputs already exist. A stateful task restores its
    /// state first: its committed position is where it resumes.
    fn recover(&mut self, l: Option<&mut Loop>) -> (u64, Recovered) {
        let part = self.shared.partition;
        let (mut position, ends) = match &self.checkpoint {
            Some(cp) => (cp.position, cp.output_ends.clone()),
            None if self.start_latest => (self.input.high_watermark(), BTreeMap::new()),
            None => (self.input.start_offset(), BTreeMap::new()),
        };
        if let Some(meta) = self.restore_state(l) {
            position = meta.position;
        }
        let found = recover::scan(
            &self.t.name,
            part,
            &self.outputs,
            &self.verdict_topics(),
            &ends,
        );
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

    /// Stateful: rebuilds the state from snapshot and changelog and sets the loop's event
    /// clock; the committed meta, if there is one. An unfinished commit found at the end
    /// of the changelog is repaired by a commit sent now, before anything else.
    fn restore_state(&mut self, l: Option<&mut Loop>) -> Option<Meta> {
        let st = self.stateful.as_ref()?;
        let part = self.shared.partition;
        let restored = {
            let mut store = st.shared.lock();
            let r = durable::restore(&mut store, &st.changelog, &self.t.dir, part);
            r.map(|r| (r, store.keys() as u64, store.timer_count() as u64))
        };
        let (restored, keys, timers) = match restored {
            Ok(r) => r,
            Err(e) => {
                // The changelog could not be read: run with what could be restored is
                // wrong; stop the partition with the reason.
                self.t
                    .fail(format!("partition {part}: restoring state: {e}"));
                self.shared.stop.store(true, Ordering::SeqCst);
                return None;
            }
        };
        let info = RestoreInfo {
            took_ms: restored.took.as_millis() as u64,
            keys,
            timers,
            snapshot_offset: restored.snapshot,
            replayed: restored.replayed,
        };
        tracing::info!(transform = %self.t.name, partition = part, keys, timers,
            took_ms = info.took_ms, snapshot = ?restored.snapshot, replayed = restored.replayed,
            "state restored");
        *st.shared.restore.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
        let meta = restored.meta;
        let clock = meta.map_or(EventClock::NONE, |m| EventClock {
            watermark: m.watermark,
            max_event_time: m.max_event_time,
        });
        st.shared
            .watermark
            .store(clock.watermark, Ordering::Relaxed);
        st.shared
            .max_event_time
            .store(clock.max_event_time, Ordering::Relaxed);
        st.shared
            .changelog_end
            .store(st.changelog.high_watermark(), Ordering::Relaxed);
        if let Some(m) = meta {
            st.shared
                .committed_position
                .store(m.position, Ordering::Relaxed);
            st.shared
                .committed_at
                .store(m.committed_at, Ordering::Relaxed);
        }
        if let Some(off) = restored.snapshot {
            st.shared.snapshot_offset.store(off, Ordering::Relaxed);
        }
        if !restored.repair.is_empty() {
            tracing::warn!(transform = %self.t.name, partition = part, keys = restored.repair.values.len(),
                "state changelog ends in an unfinished commit; restating its keys");
            let position = meta.map_or(0, |m| m.position);
            let commit = Commit {
                delta: restored.repair,
                meta: meta.unwrap_or_else(|| Meta::starting_at(position)),
            };
            if let Err(e) = durable::append(&st.changelog, &commit) {
                self.t.fail(format!(
                    "partition {part}: repairing the state changelog: {e}"
                ));
                self.shared.stop.store(true, Ordering::SeqCst);
            }
        }
        if let Some(l) = l {
            l.clock = clock;
            l.fire_due = true;
            l.idle_base = clock.watermark;
            l.last_input = Instant::now();
        }
        meta
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
        let (work, work_rx) = std::sync::mpsc::sync_channel::<ToAppender>(1);
        let (done_tx, done) = std::sync::mpsc::channel::<Appended>();
        let mut l = Loop {
            rt,
            position: 0,
            seen: Recovered::default(),
            work,
            done,
            in_flight: false,
            staged: None,
            idle: false,
            wait_now: false,
            clock: EventClock::NONE,
            fire_due: false,
            last_input: Instant::now(),
            idle_base: NO_WATERMARK,
            last_idle_check: Instant::now(),
        };
        let (position, seen) = self.recover(Some(&mut l));
        (l.position, l.seen) = (position, seen);
        self.executor.set_interrupt(self.shared.interrupt.clone());
        if let Some(st) = &self.stateful {
            self.executor.set_state(st.shared.store.clone());
        }
        self.shared.position.store(l.position, Ordering::Release);
        // One read is appended while the next runs through the plugin.
        let appender = Appender {
            t: self.t.clone(),
            outputs: self.outputs.clone(),
            dlq: self.dlq.clone(),
            late: self.stateful.as_ref().and_then(|s| s.late_output.clone()),
            changelog: self
                .stateful
                .as_ref()
                .map(|s| (s.changelog.clone(), s.shared.clone())),
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
        while let Step::Again = self.step(&mut l) {}
        // What was read and run is appended before the task ends.
        if let Some(s) = l.staged.take() {
            if l.in_flight {
                let _ = l.done.recv();
            }
            let _ = l.work.send(ToAppender::Batch(s));
        }
        let position = l.position;
        let clock = l.clock;
        drop(l);
        let _ = appender.join();
        // Everything is committed: a snapshot now makes the next start quick.
        self.snapshot(position, clock, true);
    }

    /// Stateful: writes a snapshot of the (fully committed) state when the changelog has
    /// grown well past the last one, or whenever `force`d and anything changed.
    fn snapshot(&self, position: u64, clock: EventClock, force: bool) {
        let Some(st) = &self.stateful else { return };
        let since = st.shared.since_snapshot.load(Ordering::Relaxed);
        if since == 0 || (!force && since < SNAPSHOT_AFTER) {
            return;
        }
        let end = st.changelog.high_watermark();
        let store = st.shared.lock();
        if !force && since < store.keys() as u64 {
            return;
        }
        let started = Instant::now();
        let meta = Meta {
            committed_at: st.shared.committed_at.load(Ordering::Relaxed),
            ..clock.meta(position)
        };
        match durable::write_snapshot(&self.t.dir, self.shared.partition, &store, &meta, end) {
            Ok(()) => {
                st.shared.since_snapshot.store(0, Ordering::Relaxed);
                st.shared.snapshot_offset.store(end, Ordering::Relaxed);
                tracing::debug!(transform = %self.t.name, partition = self.shared.partition,
                    keys = store.keys(), took_ms = started.elapsed().as_millis() as u64, "state snapshot written");
            }
            Err(e) => {
                tracing::warn!(transform = %self.t.name, partition = self.shared.partition, error = %e,
                    "state snapshot not written; restore replays more of the changelog");
            }
        }
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
        if !l.in_flight && l.staged.is_none() {
            // Drained: everything read is committed.
            self.snapshot(l.position, l.clock, false);
        }
        self.take_swap(l.position);
        if self.t.paused.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
            return Step::Again;
        }
        if l.fire_due && !l.in_flight && l.staged.is_none() {
            self.fire_now(l);
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
    /// staged is dropped and read again; state is restored from the changelog.
    fn start_over(&mut self, l: &mut Loop, error: String) -> Step {
        l.staged = None;
        self.t.fail(error);
        self.pause_for(Duration::from_millis(500));
        if let Some(cp) = checkpoint::read(&self.t.dir, self.shared.partition) {
            self.checkpoint = Some(cp);
        }
        let (position, seen) = self.recover(Some(l));
        (l.position, l.seen) = (position, seen);
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
            if let Some(st) = &self.stateful {
                // Same keys: the new version inherits the state.
                ex.set_state(st.shared.store.clone());
            }
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
        // Committed data only: below the last stable offset, aborted batches skipped.
        let read = match self.input.read_committed(l.position, 1 << 20) {
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
                if self.stateful.is_some() && !l.in_flight && self.idle_advance(l) {
                    return;
                }
                let wait = if self.stateful.is_some() {
                    IDLE_CHECK
                } else {
                    Duration::from_millis(100)
                };
                let _ = l.rt.block_on(self.input.wait_for(l.position, wait));
            }
            return;
        }
        let before = l.clock;
        match self.process(
            read.data,
            l.position,
            read.next_offset,
            &l.seen,
            &mut l.clock,
        ) {
            Ok(next) => {
                l.position = next.next_position;
                if self.stateful.is_some() {
                    l.last_input = Instant::now();
                    l.idle_base = l.clock.watermark;
                }
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
            Err(ProcessError::Interrupted) => l.clock = before,
            Err(ProcessError::Failed(e)) => {
                l.clock = before;
                // Nothing moved: the same batch is retried after a pause.
                self.t.fail(e);
                self.pause_for(Duration::from_millis(500));
            }
        }
    }

    /// Stateful and idle: once no input has come for `idle_timeout_ms`, the watermark
    /// moves on with the clock. When that makes a timer due, the new watermark is
    /// committed on its own first (so that a crash cannot fire those timers at another
    /// watermark) and the timers fire at the next turn. Whether it staged that commit.
    fn idle_advance(&mut self, l: &mut Loop) -> bool {
        let Some(st) = &self.stateful else {
            return false;
        };
        if l.last_idle_check.elapsed() < IDLE_CHECK || l.idle_base == NO_WATERMARK {
            return false;
        }
        l.last_idle_check = Instant::now();
        let settings = self.t.event_time_settings();
        let idle = l.last_input.elapsed();
        let Some(beyond) = idle.checked_sub(Duration::from_millis(settings.idle_timeout_ms)) else {
            return false;
        };
        let target = l.idle_base.saturating_add(beyond.as_millis() as i64);
        let due = st.shared.lock().next_timer().is_some_and(|t| t <= target);
        if !due || target <= l.clock.watermark {
            return false;
        }
        l.clock.watermark = target;
        st.shared.watermark.store(target, Ordering::Relaxed);
        l.fire_due = true;
        l.staged = Some(Staged::state_only(Commit {
            delta: StateDelta::default(),
            meta: l.clock.meta(l.position),
        }));
        true
    }

    /// Fires the timers due at the watermark now, at the current position (after a restore
    /// or an idle advance), staging what they emit with their state changes.
    fn fire_now(&mut self, l: &mut Loop) {
        let Some(st) = &self.stateful else {
            l.fire_due = false;
            return;
        };
        let store = st.shared.store.clone();
        let mut out = self.new_outputs();
        store.lock().unwrap_or_else(|p| p.into_inner()).begin_run();
        let fired = self.fire(&mut out, l.position, l.clock.watermark, &l.seen);
        let mut store = store.lock().unwrap_or_else(|p| p.into_inner());
        match fired {
            Ok(()) => {
                l.fire_due = false;
                let delta = store.end_run(true);
                drop(store);
                if delta.is_empty() && out.pending.is_empty() {
                    return;
                }
                let staged = Staged {
                    batches: out.pending.into_iter().map(|(k, b)| (k, vec![b])).collect(),
                    next_position: l.position,
                    counts: out.counts,
                    late: out.late,
                    input_bytes: 0,
                    started: Instant::now(),
                    state: Some(Commit {
                        delta,
                        meta: l.clock.meta(l.position),
                    }),
                };
                match l.staged.as_mut() {
                    Some(s) => s.merge(staged),
                    None => l.staged = Some(staged),
                }
            }
            Err(ProcessError::Interrupted) => {
                store.end_run(false);
            }
            Err(ProcessError::Failed(e)) => {
                store.end_run(false);
                drop(store);
                self.t.fail(e);
                self.pause_for(Duration::from_millis(500));
            }
        }
    }

    fn new_outputs(&self) -> Outputs {
        Outputs {
            pending: BTreeMap::new(),
            src_prefix: format!("{}:{}:", self.t.name, self.shared.partition),
            version: self.shared.version.load(Ordering::Acquire).to_string(),
            counts: [0; 4],
            late: 0,
        }
    }

    /// Runs the plugin over the batches read and builds the output batches. Outputs and
    /// dead letters that recovery found already written (`seen`) are not written again.
    /// A stateful task also moves its event clock and fires timers, and the state changes
    /// of the read go with its outputs; when the read fails, they are undone.
    fn process(
        &mut self,
        data: Bytes,
        position: u64,
        next_position: u64,
        seen: &Recovered,
        clock: &mut EventClock,
    ) -> Result<Staged, ProcessError> {
        let started = Instant::now();
        let input_bytes = data.len();
        let mut out = self.new_outputs();
        let store = self.stateful.as_ref().map(|s| s.shared.store.clone());
        if let Some(s) = &store {
            s.lock().unwrap_or_else(|p| p.into_inner()).begin_run();
        }
        let result = self.process_batches(data, position, next_position, seen, clock, &mut out);
        let state = match (&store, &result) {
            (Some(s), Ok(next)) => Some(Commit {
                delta: s.lock().unwrap_or_else(|p| p.into_inner()).end_run(true),
                meta: clock.meta(*next),
            }),
            (Some(s), Err(_)) => {
                s.lock().unwrap_or_else(|p| p.into_inner()).end_run(false);
                None
            }
            (None, _) => None,
        };
        let next_position = result?;
        Ok(Staged {
            batches: out.pending.into_iter().map(|(k, b)| (k, vec![b])).collect(),
            next_position,
            counts: out.counts,
            late: out.late,
            input_bytes,
            started,
            state,
        })
    }

    /// The batches of one read; the position after what was done.
    fn process_batches(
        &mut self,
        data: Bytes,
        position: u64,
        mut next_position: u64,
        seen: &Recovered,
        clock: &mut EventClock,
        out: &mut Outputs,
    ) -> Result<u64, ProcessError> {
        let batches = batch::split(data).map_err(|e| ProcessError::Failed(e.to_string()))?;
        let settings = self
            .stateful
            .is_some()
            .then(|| self.t.event_time_settings());
        // The input's name, held apart from `self` (which runs the batches).
        let source = self.input.clone();
        for (h, raw) in batches {
            if h.is_control() || (h.last_offset() as u64) < position || self.input.is_aborted(&h) {
                continue;
            }
            let input = input_from(&raw, &h, position).map_err(ProcessError::Failed)?;
            let Some(settings) = &settings else {
                // Stateless: the batch as it is.
                let batch = BatchInput::records(
                    &source.topic,
                    self.shared.partition,
                    input.base_offset,
                    input.base_timestamp,
                    input.section.clone(),
                    input.offsets.len() as u32,
                );
                let result = self.run_input(&batch)?;
                let done = (result.done as usize).min(input.offsets.len());
                self.stage_emitted(out, &Answered::Records(&input), &result, done, seen);
                self.stage_dead_letters(out, &input, &result, done, seen);
                if done < input.offsets.len() {
                    // The run ended early (a failure to isolate, or its time budget): the
                    // rest of this read is the next's.
                    next_position = input.offsets[done];
                    break;
                }
                continue;
            };
            let prepared = prepare(&input, settings, clock.watermark, seen);
            let kept = prepared.kept.as_ref().unwrap_or(&input);
            let field_times: &[i64] = if settings.field.is_some() {
                &prepared.times
            } else {
                &[]
            };
            let result = if kept.offsets.is_empty() {
                BatchOutput::default()
            } else {
                let batch = BatchInput {
                    kind: CallKind::Records,
                    watermark: clock.watermark,
                    event_times: field_times,
                    ..BatchInput::records(
                        &source.topic,
                        self.shared.partition,
                        kept.base_offset,
                        kept.base_timestamp,
                        kept.section.clone(),
                        kept.offsets.len() as u32,
                    )
                };
                self.run_input(&batch)?
            };
            let done = if kept.offsets.is_empty() {
                0
            } else {
                (result.done as usize).min(kept.offsets.len())
            };
            self.stage_emitted(out, &Answered::Records(kept), &result, done, seen);
            self.stage_dead_letters(out, kept, &result, done, seen);
            // Records of the original batch before `cut` have their verdicts.
            let cut = prepared
                .kept_index
                .get(done)
                .copied()
                .unwrap_or(input.offsets.len());
            for (i, why) in &prepared.removed {
                if *i < cut {
                    self.stage_removed(out, &input, *i, why, clock.watermark, seen);
                }
            }
            if let Some(max) = prepared.times.get(..done).and_then(|t| t.iter().max()) {
                clock.max_event_time = clock.max_event_time.max(*max);
            }
            if cut < input.offsets.len() {
                next_position = input.offsets[cut];
                break;
            }
            // The whole stored batch is done: the watermark moves, due timers fire.
            if clock.max_event_time != NO_WATERMARK {
                clock.watermark = clock.watermark.max(
                    clock
                        .max_event_time
                        .saturating_sub(settings.allowed_lateness_ms),
                );
            }
            let after = (h.last_offset() + 1) as u64;
            self.fire(out, after, clock.watermark, seen)?;
        }
        if let Some(st) = &self.stateful {
            st.shared
                .watermark
                .store(clock.watermark, Ordering::Relaxed);
            st.shared
                .max_event_time
                .store(clock.max_event_time, Ordering::Relaxed);
        }
        Ok(next_position)
    }

    /// Fires the timers due at `watermark` at input position `position`: calls
    /// `on-timers` (a round at a time: a handler may set more that are due) and stages
    /// what it emits, each output named by the position, watermark and the timer's place
    /// in the firing order, which a replay after a crash repeats.
    fn fire(
        &mut self,
        out: &mut Outputs,
        position: u64,
        watermark: i64,
        seen: &Recovered,
    ) -> Result<(), ProcessError> {
        let Some(st) = &self.stateful else {
            return Ok(());
        };
        if watermark == NO_WATERMARK {
            return Ok(());
        }
        let shared = st.shared.clone();
        let source = self.input.clone();
        let mut first = 0u32;
        let mut rounds_left = true;
        for _ in 0..MAX_TIMER_ROUNDS {
            let (list, count) = shared.lock().take_due(watermark, TIMERS_PER_CALL);
            if count == 0 {
                rounds_left = false;
                break;
            }
            let list = Bytes::from(list);
            let batch = BatchInput {
                kind: CallKind::Timers,
                watermark,
                ..BatchInput::records(
                    &source.topic,
                    self.shared.partition,
                    position as i64,
                    watermark,
                    list.clone(),
                    count,
                )
            };
            let result = self.run_input(&batch)?;
            let done = (result.done as usize).min(count as usize);
            let timers = timer_list(&list);
            if done < count as usize {
                // The run was cut short: the rest did not fire.
                let mut store = shared.lock();
                for (at, key) in &timers[done..] {
                    store.put_back_timer(*at, key);
                }
            }
            let answered = Answered::Timers {
                position,
                watermark,
                first,
            };
            self.stage_emitted(out, &answered, &result, done, seen);
            self.stage_timer_dead_letters(out, &timers, &result, done, &answered, seen);
            first += done as u32;
        }
        if rounds_left && shared.lock().next_timer().is_some_and(|at| at <= watermark) {
            // A handler that re-arms timers at or before the watermark would loop for ever.
            self.t.fail(format!(
                "timers keep coming due at watermark {watermark}: after {MAX_TIMER_ROUNDS} rounds of on-timers the rest wait until the watermark moves (does a timer handler set timers at or before the watermark?)"
            ));
        }
        Ok(())
    }

    /// Runs one input through the executor — on a `SCHED_IDLE` thread of its own when
    /// the executor is isolating a plugin that failed, so a runaway gets only idle CPU and
    /// the transforms that behave keep their latency (a thread per run: cheap next to a
    /// failing call).
    fn run_input(&mut self, batch: &BatchInput<'_>) -> Result<BatchOutput, ProcessError> {
        let part = self.shared.partition;
        let out = if self.executor.isolating() {
            let executor = &mut self.executor;
            std::thread::scope(|s| {
                std::thread::Builder::new()
                    .name(format!("sluice-{}-{part}-isolating", self.t.name))
                    .spawn_scoped(s, || {
                        lowest_cpu_priority();
                        executor.run(batch)
                    })
                    .map_err(|e| e.to_string())?
                    .join()
                    .map_err(|_| "the isolating thread panicked".to_string())
            })
            .map_err(ProcessError::Failed)?
        } else {
            self.executor.run(batch)
        };
        let c = &self.t.counters;
        c.fuel.fetch_add(out.fuel_used, Ordering::Relaxed);
        c.traps.fetch_add(u64::from(out.traps), Ordering::Relaxed);
        if out.early == Some(Early::Interrupted) {
            return Err(ProcessError::Interrupted);
        }
        Ok(out)
    }

    /// Encodes the emitted records of the first `done` items into their output batches,
    /// each with `sluice-src` and `sluice-version`, minus those already written.
    fn stage_emitted(
        &self,
        out: &mut Outputs,
        answered: &Answered<'_>,
        result: &BatchOutput,
        done: usize,
        seen: &Recovered,
    ) {
        let part = self.shared.partition;
        let mut src = Vec::with_capacity(out.src_prefix.len() + 32);
        if let Answered::Records(_) = answered {
            out.counts[0] += done as u64;
        }
        // Outputs come in input order: count the outputs of the current input.
        let (mut cur_input, mut k) = (u32::MAX, 0u32);
        for e in &result.emitted {
            if e.input as usize >= done {
                continue;
            }
            if e.input == cur_input {
                k += 1;
            } else {
                (cur_input, k) = (e.input, 0);
            }
            if !seen.is_empty() && answered.seen(seen, e.input, k) {
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
            answered.write_src(&mut src, e.input, k);
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
            self.dead_letter(out, input, i, offset, reason, self.outputs.len(), &[]);
        }
    }

    /// Queues a record that did not reach the plugin: a late one for the late output (or
    /// the dead-letter topic) with `sluice-error: late`, one without an event time for the
    /// dead-letter topic.
    fn stage_removed(
        &self,
        out: &mut Outputs,
        input: &InputBatch,
        i: usize,
        why: &Removal,
        watermark: i64,
        seen: &Recovered,
    ) {
        let offset = input.offsets[i];
        if matches!(why, Removal::Decided) || seen.has_verdict(offset) {
            return;
        }
        out.counts[0] += 1;
        match why {
            Removal::Late { event_time } => {
                out.late += 1;
                let late_slot = self
                    .stateful
                    .as_ref()
                    .and_then(|s| s.late_output.as_ref())
                    .map_or(self.outputs.len(), |_| self.outputs.len() + 1);
                let extra = [
                    ("sluice-event-time", event_time.to_string()),
                    ("sluice-watermark", watermark.to_string()),
                ];
                self.dead_letter(out, input, i as u32, offset, "late", late_slot, &extra);
            }
            Removal::NoEventTime(reason) => {
                out.counts[2] += 1;
                self.dead_letter(
                    out,
                    input,
                    i as u32,
                    offset,
                    reason,
                    self.outputs.len(),
                    &[],
                );
            }
            Removal::Decided => {}
        }
    }

    /// Queues rejected and failed timers among the first `done` for the dead-letter topic:
    /// a record with the timer's key and no value.
    fn stage_timer_dead_letters(
        &self,
        out: &mut Outputs,
        timers: &[(i64, Vec<u8>)],
        result: &BatchOutput,
        done: usize,
        answered: &Answered<'_>,
        seen: &Recovered,
    ) {
        let Answered::Timers {
            position,
            watermark,
            first,
        } = answered
        else {
            return;
        };
        let rejects = result.rejected.iter().map(|(i, r)| (*i, r, false));
        let failures = result.failed.iter().map(|(i, r)| (*i, r, true));
        for (i, reason, trapped) in rejects.chain(failures) {
            let Some((at, key)) = timers.get(i as usize).filter(|_| (i as usize) < done) else {
                continue;
            };
            if seen.has_timer_verdict(*position, *watermark, first + i) {
                continue;
            }
            if trapped {
                out.counts[3] += 1;
                self.t.set_last_error(format!(
                    "timer at {at} (key {}): {reason}",
                    String::from_utf8_lossy(key)
                ));
            } else {
                out.counts[2] += 1;
            }
            let mut src = out.src_prefix.as_bytes().to_vec();
            answered.write_src(&mut src, i, 0);
            let header = |k: &str, v: String| (k.to_string(), Some(Bytes::from(v)));
            let rec = NewRecord {
                key: Some(Bytes::copy_from_slice(key)),
                value: None,
                headers: vec![
                    header(dead_letter::ERROR_HEADER, reason.clone()),
                    header(dead_letter::SOURCE_TOPIC_HEADER, self.input.topic.clone()),
                    header(
                        dead_letter::SOURCE_PARTITION_HEADER,
                        self.shared.partition.to_string(),
                    ),
                    header("sluice-timer-at", at.to_string()),
                    header("sluice-plugin", self.t.spec().plugin),
                    header(VERSION_HEADER, out.version.clone()),
                    (SOURCE_HEADER.to_string(), Some(Bytes::from(src))),
                ],
                timestamp: Some(*at),
            };
            out.pending
                .entry((
                    self.outputs.len(),
                    dead_letter::partition_for(self.shared.partition, &self.dlq),
                ))
                .or_default()
                .push_record(&rec, *at);
        }
    }

    /// Queues the original record for the dead-letter topic (or another verdict topic,
    /// `slot`) with why and where it failed.
    #[allow(clippy::too_many_arguments)]
    fn dead_letter(
        &self,
        out: &mut Outputs,
        input: &InputBatch,
        i: u32,
        offset: u64,
        reason: &str,
        slot: usize,
        extra: &[(&str, String)],
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
        let mut ours = vec![
            ("sluice-plugin", self.t.spec().plugin),
            (VERSION_HEADER, out.version.clone()),
            (SOURCE_HEADER, format!("{}{offset}:0", out.src_prefix)),
        ];
        ours.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let rec = dead_letter::record(original, reason, &self.input.topic, part, &ours);
        let topic = if slot == self.outputs.len() {
            &self.dlq
        } else {
            match self.stateful.as_ref().and_then(|s| s.late_output.as_ref()) {
                Some(t) => t,
                None => &self.dlq,
            }
        };
        out.pending
            .entry((slot, dead_letter::partition_for(part, topic)))
            .or_default()
            .push_record(&rec, timestamp);
    }
}

/// The (at, key) of each timer in an `on-timers` list.
fn timer_list(list: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut r = Reader::new(list);
    let mut v = Vec::new();
    while !r.is_empty() {
        match sluice_sdk::state::read_timer(&mut r) {
            Ok((at, k)) => v.push((at, k.to_vec())),
            Err(_) => break,
        }
    }
    v
}

/// Sorts a stored batch's records for a stateful plugin: each record's event time; late
/// ones (before `watermark`), ones without an event time, and ones whose dead letter
/// recovery found are kept from the plugin.
fn prepare(
    input: &InputBatch,
    settings: &EventTimeSettings,
    watermark: i64,
    seen: &Recovered,
) -> Prepared {
    let n = input.offsets.len();
    let mut times = Vec::with_capacity(n);
    let mut kept_index = Vec::with_capacity(n);
    let mut removed = Vec::new();
    let mut raws: Vec<&[u8]> = Vec::with_capacity(n);
    let mut r = Reader::new(&input.section);
    for i in 0..n {
        let Ok(raw) = next_raw(&mut r) else { break };
        raws.push(raw);
        if !seen.is_empty() && seen.has_dead_letter(input.offsets[i]) {
            removed.push((i, Removal::Decided));
            continue;
        }
        let view = RecordView::read(&mut Reader::new(raw));
        let time = match (&settings.field, view) {
            (_, Err(e)) => Err(format!("the record does not decode: {e}")),
            (None, Ok(v)) => Ok(input.base_timestamp.saturating_add(v.timestamp_delta)),
            (Some(field), Ok(v)) => sluice_sdk::json::event_time(v.value, field),
        };
        match time {
            Ok(t) if t < watermark => removed.push((i, Removal::Late { event_time: t })),
            Ok(t) => {
                times.push(t);
                kept_index.push(i);
            }
            Err(e) => removed.push((i, Removal::NoEventTime(format!("no event time: {e}")))),
        }
    }
    let kept = (!removed.is_empty()).then(|| {
        let mut section = Vec::with_capacity(input.section.len());
        for &i in &kept_index {
            section.extend_from_slice(raws[i]);
        }
        InputBatch {
            section: Bytes::from(section),
            offsets: kept_index.iter().map(|&i| input.offsets[i]).collect(),
            base_offset: input.base_offset,
            base_timestamp: input.base_timestamp,
        }
    });
    Prepared {
        kept,
        kept_index,
        times,
        removed,
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
            late: self.late.load(Ordering::Relaxed),
            ..CounterValues::default()
        }
    }
}
