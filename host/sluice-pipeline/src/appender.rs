//! The appender: one thread per partition task that appends what the task built, in order,
//! and moves the position only when the outputs and dead letters are durable. The task runs
//! the plugin over the next read meanwhile; reads staged while an append is in flight go
//! out together (one append and one sync per partition).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};

use sluice_log::Partition;
use sluice_log::batch;

use crate::Transform;
use crate::checkpoint::CheckpointWriter;
use crate::emit::{Sinks, Staged};
use crate::shared::{StateShared, TaskShared};
use crate::state::{self, Commit};
use sluice_runtime::state::{StateDelta, write_committed};

pub enum ToAppender {
    Batch(Box<Staged>),
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
    pub sinks: Sinks,
    /// Stateful: the changelog partition and the task's state status.
    pub changelog: Option<(Arc<Partition>, Arc<StateShared>)>,
    pub shared: Arc<TaskShared>,
    pub checkpoints: CheckpointWriter,
    /// A disk state store's changes the changelog has but the disk does not (its write
    /// failed): written with the next commit's.
    pub unwritten: Option<StateDelta>,
}

impl Appender {
    /// Serves the task until it hangs up; writes the last position reached at the end.
    /// True when it ends with everything it was given committed (false after a failed
    /// append the task did not start over from).
    pub fn run(mut self, rx: Receiver<ToAppender>, done: Sender<Appended>) -> bool {
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
                    let at = (staged.next_position, staged.replaying.clone());
                    match self.commit(*staged) {
                        Ok(()) => {
                            committed = Some(at);
                            Appended::Committed
                        }
                        Err(e) => {
                            // The last commit's position with the current ends would
                            // cover this append's half: no final checkpoint from it.
                            broken = true;
                            committed = None;
                            Appended::Failed(e)
                        }
                    }
                }
            };
            if done.send(answer).is_err() {
                break;
            }
        }
        // After a failed append (`committed` dropped until the next good one), the
        // partitions' ends may hold part of it: the file keeps the last checkpoint written,
        // which the next recovery scans from.
        if let Some((position, replaying)) = committed {
            self.checkpoints
                .write(self.sinks.all(), position, replaying.as_deref(), true);
        }
        !broken
    }

    fn commit(&mut self, staged: Staged) -> Result<(), String> {
        // Outputs first, then dead letters and late records (slots outputs.len() and
        // after), then the state changes; each append is durable per its topic's flush
        // policy before the next, and the position moves last.
        for ((slot, p), builders) in staged.batches {
            let topic = self.sinks.topic(slot);
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
            let shared = shared.clone();
            self.write_to_disk(&shared, commit, end);
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
        self.checkpoints.write(
            self.sinks.all(),
            staged.next_position,
            staged.replaying.as_deref(),
            false,
        );
        sluice_common::telemetry::telemetry()
            .transform_batch(&self.t.name, staged.started.elapsed());
        Ok(())
    }

    /// A disk state store takes the changes of a commit the changelog now has, with the
    /// changelog offset after it: the disk is never ahead of the changelog, and a restore
    /// replays only what follows. A failed write is carried to the next commit (restore
    /// replays from the last written checkpoint meanwhile).
    fn write_to_disk(&mut self, shared: &StateShared, commit: &Commit, end: u64) {
        if !shared.lock().is_on_disk() {
            return;
        }
        let merged;
        let delta = match self.unwritten.take() {
            Some(mut earlier) => {
                earlier.merge(commit.delta.clone());
                merged = earlier;
                &merged
            }
            None => &commit.delta,
        };
        let cp = state::disk_checkpoint(Some(end), &commit.meta);
        if let Err(e) = write_committed(&shared.store, delta, &cp) {
            tracing::warn!(transform = %self.t.name, partition = self.shared.partition, error = %e,
                "state changes not written to disk; retried with the next commit");
            self.unwritten = Some(delta.clone());
        }
    }
}
