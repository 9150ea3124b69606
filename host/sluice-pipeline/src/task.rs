//! One partition of one transform: the loop that reads, calls the operator, stages what
//! it collects, hands it to the appender (`appender`: durable, then the position moves),
//! pauses, stops, swaps plugin versions and starts over from what is durable after a
//! failure — on a thread of its own (both the log and wasm block). What happens to each
//! stored batch is the operator's (`operator`); where to resume is `checkpoint` and
//! `recover`'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

use bytes::Bytes;
use sluice_log::batch;
use sluice_log::{LogError, Partition};
use sluice_runtime::Executor;

use crate::appender::{Appended, Appender, ToAppender};
use crate::checkpoint::{self, Checkpoint, CheckpointWriter};
use crate::emit::{Layout, Outputs, STAGE_LIMIT, Sinks, Staged, input_from};
use crate::operator::{Cx, IDLE_WAIT, Operator, ProcessError};
use crate::recover::{self, Recovered};
use crate::schemas::SchemaCodec;
use crate::shared::TaskShared;
use crate::{HistoryEntry, Transform};

/// Everything a task thread needs.
pub struct TaskCtx {
    pub t: Arc<Transform>,
    pub input: Arc<Partition>,
    pub sinks: Sinks,
    /// The sinks' shape, as operators see it.
    pub layout: Layout,
    pub shared: Arc<TaskShared>,
    pub executor: Executor,
    pub checkpoint: Option<Checkpoint>,
    pub start_latest: bool,
    pub op: Box<dyn Operator>,
    /// Schema-aware deployments: decoding for the plugin, encoding and checks of outputs.
    pub codec: Option<Arc<SchemaCodec>>,
    /// Over two inputs (`input` is the topic they are merged into): their names.
    pub inputs: Vec<String>,
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

impl Loop {
    /// Adds a read's outputs to what waits for the appender, with the ends to checkpoint
    /// while a replay is under way.
    fn stage(&mut self, mut next: Staged) {
        next.replaying = self.seen.replaying(next.next_position);
        if next.replaying.is_none() && !self.seen.is_empty() {
            self.seen = Recovered::default();
        }
        match self.staged.as_mut() {
            Some(s) => s.merge(next),
            None => self.staged = Some(next),
        }
    }
}

/// What the loop does next.
enum Step {
    Again,
    End,
}

impl TaskCtx {
    /// Where to resume and which outputs already exist. An operator with state restores
    /// it first: its committed position is where it resumes.
    fn recover(&mut self) -> (u64, Recovered) {
        let part = self.shared.partition;
        let (mut position, ends) = match &self.checkpoint {
            Some(cp) => (cp.position, cp.output_ends.clone()),
            None if self.start_latest => (self.input.high_watermark(), BTreeMap::new()),
            None => (self.input.start_offset(), BTreeMap::new()),
        };
        if let Some(committed) = self.op.restore(&self.t, &self.shared) {
            position = committed;
        }
        let found = recover::scan(
            &self.t.name,
            part,
            &self.sinks.outputs,
            &self.sinks.verdict_topics(),
            &ends,
        );
        if self.checkpoint.is_none() {
            // Record a `latest` start now (durably), so a restart does not skip what
            // arrives meanwhile.
            let replaying = found.replaying(position);
            checkpoint::write(
                &self.t.dir,
                part,
                self.sinks.all(),
                position,
                replaying.as_deref(),
            );
        }
        if !found.is_empty() {
            tracing::info!(transform = %self.t.name, partition = part, resume = position, "recovered");
        }
        (position.max(self.input.start_offset()), found)
    }

    /// Sleeps up to `d`, waking early when the task is stopped.
    fn pause_for(&self, d: Duration) {
        let until = std::time::Instant::now() + d;
        while !self.shared.stop.load(Ordering::Acquire) && std::time::Instant::now() < until {
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
        let (position, seen) = self.recover();
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
        self.executor.set_interrupt(self.shared.interrupt.clone());
        self.op.attach(&mut self.executor);
        self.shared.position.store(l.position, Ordering::Release);
        // One read is appended while the next runs through the plugin.
        let appender = Appender {
            t: self.t.clone(),
            sinks: self.sinks.clone(),
            changelog: self.op.changelog(),
            shared: self.shared.clone(),
            checkpoints: CheckpointWriter::new(self.t.dir.clone(), part),
            unwritten: None,
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
            let _ = l.work.send(ToAppender::Batch(Box::new(s)));
        }
        let position = l.position;
        drop(l);
        // Everything is committed (unless the last append failed: then the state in
        // memory is ahead of the changelog, and no snapshot may record it): a snapshot
        // now makes the next start quick.
        if let Ok(true) = appender.join() {
            self.op.checkpoint(&self.t, part, position, true);
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
            if l.work.send(ToAppender::Batch(Box::new(s))).is_err() {
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
            self.op
                .checkpoint(&self.t, self.shared.partition, l.position, false);
        }
        self.take_swap(l.position);
        if self.t.paused.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
            return Step::Again;
        }
        if let Some(commit) = self.op.input_idle(&self.t, l.position) {
            l.stage(Staged::state_only(commit));
        }
        if self.op.due() {
            // Due timers fire before anything new is read, once what is staged is durable:
            // their outputs are named by the position and watermark they fire at, which a
            // replay after a crash repeats only if no read came in between.
            if !l.in_flight && l.staged.is_none() {
                self.fire_due(l);
            } else {
                l.wait_now = true;
            }
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
        if self.input.space().status().state == sluice_log::space::DiskState::Full {
            // The data disk is full: not the deployment's failure. It waits (the reason in
            // its status) and goes on by itself once space returns; nothing is dead-lettered.
            self.t.set_blocked(Some(format!(
                "waiting for disk space: {error}; it resumes by itself once space is freed"
            )));
            while !self.shared.stop.load(Ordering::Acquire)
                && self.input.space().check(STAGE_LIMIT as u64).is_err()
            {
                self.pause_for(Duration::from_millis(250));
            }
            self.t.set_blocked(None);
        } else {
            self.t.fail(error);
            self.pause_for(Duration::from_millis(500));
        }
        if let Some(cp) = checkpoint::read(&self.t.dir, self.shared.partition) {
            self.checkpoint = Some(cp);
        }
        let (position, seen) = self.recover();
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
            self.op.attach(&mut ex);
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

    /// An operator's context for one read (or one firing).
    fn cx<'a>(
        t: &'a Transform,
        input: &'a str,
        shared: &'a TaskShared,
        sinks: &'a Layout,
        seen: &'a Recovered,
        executor: &'a mut Executor,
        codec: Option<&'a SchemaCodec>,
    ) -> Cx<'a> {
        Cx {
            t,
            input,
            input_index: None,
            partition: shared.partition,
            sinks,
            seen,
            out: Outputs::new(
                &t.name,
                shared.partition,
                shared.version.load(Ordering::Acquire),
            ),
            executor,
            codec,
            isolator: &shared.isolator,
        }
    }

    /// Does what the operator has due without input (timers after a restore or an idle
    /// advance), staging what it emits with its state changes.
    fn fire_due(&mut self, l: &mut Loop) {
        let mut cx = Self::cx(
            &self.t,
            &self.input.topic,
            &self.shared,
            &self.layout,
            &l.seen,
            &mut self.executor,
            self.codec.as_deref(),
        );
        match self.op.fire_due(&mut cx, l.position) {
            Ok(None) => {}
            Ok(Some(commit)) => {
                if commit.delta.is_empty() && cx.out.pending.is_empty() {
                    return;
                }
                let staged = cx.out.into_staged(l.position, 0, Some(commit));
                l.stage(staged);
            }
            Err(ProcessError::Interrupted) => {}
            Err(ProcessError::Failed(e)) => {
                self.t.fail(e);
                self.pause_for(Duration::from_millis(500));
            }
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
                if !l.in_flight
                    && let Some(commit) = self.op.idle(&self.t, l.position)
                {
                    l.stage(Staged::state_only(commit));
                    return;
                }
                let _ = l.rt.block_on(self.input.wait_for(l.position, IDLE_WAIT));
            }
            return;
        }
        match self.process(read.data, l.position, read.next_offset, &l.seen) {
            Ok(next) => {
                l.position = next.next_position;
                l.stage(next);
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

    /// Runs the operator over the stored batches of one read and stages what it collects.
    /// Outputs and dead letters that recovery found already written (`seen`) are not
    /// written again. The operator's state changes go with the read's outputs; when the
    /// read fails, they are undone.
    fn process(
        &mut self,
        data: Bytes,
        position: u64,
        next_position: u64,
        seen: &Recovered,
    ) -> Result<Staged, ProcessError> {
        let input_bytes = data.len();
        let mut cx = Self::cx(
            &self.t,
            &self.input.topic,
            &self.shared,
            &self.layout,
            seen,
            &mut self.executor,
            self.codec.as_deref(),
        );
        self.op.begin_read(&self.t);
        let result = run_batches(
            &mut *self.op,
            &mut cx,
            (&self.input, &self.inputs),
            data,
            position,
            next_position,
        );
        let state = self.op.end_read(result.as_ref().ok().copied());
        let next_position = result?;
        Ok(cx.out.into_staged(next_position, input_bytes, state))
    }
}

/// The stored batches of one read through the operator, in order, until one is cut
/// short; the position after what was done. Over two inputs (`inputs` names them), each
/// batch of the merged topic goes to the plugin as coming from its own input.
fn run_batches<'a>(
    op: &mut dyn Operator,
    cx: &mut Cx<'a>,
    (partition, inputs): (&Partition, &'a [String]),
    data: Bytes,
    position: u64,
    mut next_position: u64,
) -> Result<u64, ProcessError> {
    let batches = batch::split(data).map_err(|e| ProcessError::Failed(e.to_string()))?;
    for (h, raw) in batches {
        if h.is_control() || (h.last_offset() as u64) < position || partition.is_aborted(&h) {
            continue;
        }
        if !inputs.is_empty() {
            let i = crate::merge::input_of(&raw).ok_or_else(|| {
                ProcessError::Failed(format!(
                    "batch at {}/{} without a {} header: not written by the merge",
                    partition.topic,
                    h.base_offset,
                    crate::merge::INPUT_HEADER
                ))
            })?;
            cx.input = inputs.get(i).map_or(cx.input, String::as_str);
            cx.input_index = Some(i);
        }
        let input = input_from(&raw, &h, position).map_err(ProcessError::Failed)?;
        let after = (h.last_offset() + 1) as u64;
        if let Some(cut) = op.process_batch(cx, &input, after)? {
            next_position = cut;
            break;
        }
    }
    Ok(next_position)
}
