//! The appender: one thread per partition task that appends what the task built, in order,
//! and moves the position only when the outputs and dead letters are durable. The task runs
//! the plugin over the next read meanwhile; reads staged while an append is in flight go
//! out together (one append and one sync per partition).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::time::Instant;

use sluice_log::batch;
use sluice_log::{Partition, Topic};

use crate::Transform;
use crate::checkpoint::CheckpointWriter;
use crate::state::{self, Commit};
use crate::task::{StateShared, TaskShared};

/// Output batches being built, by (output slot, partition); slot = outputs.len() is the
/// dead-letter topic, outputs.len() + 1 the late output.
pub type Pending = BTreeMap<(usize, u32), batch::Builder>;

/// Input bytes staged while the appender is busy before the task waits for it.
pub const STAGE_LIMIT: usize = 1 << 20;

/// Outputs of one or more reads, built and waiting to be appended.
pub struct Staged {
    /// Per output (or dead-letter) partition, one batch per read.
    pub batches: BTreeMap<(usize, u32), Vec<batch::Builder>>,
    /// The input position once these are durable.
    pub next_position: u64,
    /// Records in, out, rejected, failed.
    pub counts: [u64; 4],
    /// Late records among them.
    pub late: u64,
    /// Input bytes behind these outputs.
    pub input_bytes: usize,
    pub started: Instant,
    /// Stateful: the state changes of these reads and where they leave the partition,
    /// committed after the outputs.
    pub state: Option<Commit>,
}

impl Staged {
    /// A commit of state alone (an idle watermark advance).
    pub fn state_only(commit: Commit) -> Staged {
        Staged {
            batches: BTreeMap::new(),
            next_position: commit.meta.position,
            counts: [0; 4],
            late: 0,
            input_bytes: 0,
            started: Instant::now(),
            state: Some(commit),
        }
    }

    /// Adds the outputs of the next read.
    pub fn merge(&mut self, next: Staged) {
        for (k, mut v) in next.batches {
            self.batches.entry(k).or_default().append(&mut v);
        }
        self.next_position = next.next_position;
        for (a, b) in self.counts.iter_mut().zip(next.counts) {
            *a += b;
        }
        self.late += next.late;
        self.input_bytes += next.input_bytes;
        match (&mut self.state, next.state) {
            (Some(mine), Some(later)) => mine.merge(later),
            (mine @ None, later) => *mine = later,
            (Some(_), None) => {}
        }
    }
}

pub enum ToAppender {
    Batch(Staged),
    /// The task has started over after a failure: append again.
    Resume,
}

pub enum Appended {
    Committed,
    Failed(String),
    /// Dropped unappended after an earlier failure.
    Discarded,
}

/// Appends what its task built and moves the position once it is durable.
pub struct Appender {
    pub t: Arc<Transform>,
    pub outputs: Vec<Arc<Topic>>,
    pub dlq: Arc<Topic>,
    /// Stateful: where late records go, if not to the dead-letter topic.
    pub late: Option<Arc<Topic>>,
    /// Stateful: the changelog partition and the task's state status.
    pub changelog: Option<(Arc<Partition>, Arc<StateShared>)>,
    pub shared: Arc<TaskShared>,
    pub checkpoints: CheckpointWriter,
}

impl Appender {
    /// Serves the task until it hangs up; writes the last position reached at the end.
    pub fn run(mut self, rx: Receiver<ToAppender>, done: Sender<Appended>) {
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
        if let Some(position) = committed {
            let outputs = self
                .outputs
                .iter()
                .chain(std::iter::once(&self.dlq))
                .chain(self.late.as_ref());
            self.checkpoints.write(outputs, position, true);
        }
    }

    fn commit(&mut self, staged: Staged) -> Result<(), String> {
        // Outputs first, then dead letters and late records (slots outputs.len() and
        // after), then the state changes; each append is durable per its topic's flush
        // policy before the next, and the position moves last.
        for ((slot, p), builders) in staged.batches {
            let topic = match self.outputs.get(slot) {
                Some(t) => t,
                None if slot == self.outputs.len() => &self.dlq,
                None => self.late.as_ref().unwrap_or(&self.dlq),
            };
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
        if let (Some((changelog, shared)), Some(commit)) = (&self.changelog, &staged.state) {
            let before = changelog.high_watermark();
            let end = state::append(changelog, commit)?;
            shared
                .since_snapshot
                .fetch_add(end.saturating_sub(before), Ordering::Relaxed);
            shared.changelog_end.store(end, Ordering::Relaxed);
            shared
                .committed_position
                .store(commit.meta.position, Ordering::Relaxed);
            shared
                .committed_at
                .store(commit.meta.committed_at, Ordering::Relaxed);
            shared.late.fetch_add(staged.late, Ordering::Relaxed);
        }
        self.shared
            .position
            .store(staged.next_position, Ordering::Release);
        let c = &self.t.counters;
        let [ins, outs, rejected, failed] = staged.counts;
        c.records_in.fetch_add(ins, Ordering::Relaxed);
        c.records_out.fetch_add(outs, Ordering::Relaxed);
        c.rejected.fetch_add(rejected, Ordering::Relaxed);
        c.failed.fetch_add(failed, Ordering::Relaxed);
        c.late.fetch_add(staged.late, Ordering::Relaxed);
        let outputs = self
            .outputs
            .iter()
            .chain(std::iter::once(&self.dlq))
            .chain(self.late.as_ref());
        self.checkpoints.write(outputs, staged.next_position, false);
        sluice_common::telemetry::telemetry()
            .transform_batch(&self.t.name, staged.started.elapsed());
        Ok(())
    }
}
