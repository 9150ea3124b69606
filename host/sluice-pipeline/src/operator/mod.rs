//! Operators: what a partition task does with each stored batch it reads, apart from the
//! loop that reads, calls, stages, commits, pauses, swaps and recovers (`task`) — as
//! Arroyo's run loop calls `process_batch`, `handle_watermark`, `handle_timer` and
//! `handle_checkpoint` on its operators.
//!
//! - `stateless` — the batch through the plugin, its verdicts staged.
//! - `stateful` — event time, late records, keyed state, timers, the changelog and
//!   snapshots.
//!
//! An operator reaches the plugin and the outputs through a `Cx`: one call per batch
//! (`Cx::run`, which isolates a failing plugin on an idle thread), and the collection of
//! its verdicts as output records and dead letters.

mod stateful;
mod stateless;

pub(crate) use stateful::Stateful;
pub(crate) use stateless::Stateless;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_log::batch::StoredRecord;
use sluice_log::{Partition, dead_letter, partition_for_key};
use sluice_runtime::{BatchInput, BatchOutput, Early, Executor};
use sluice_sdk::codec::Records;

use crate::Transform;
use crate::emit::{Answered, InputBatch, Layout, Outputs};
use crate::isolate::Isolator;
use crate::recover::{Recovered, SOURCE_HEADER, VERSION_HEADER};
use crate::schemas::SchemaCodec;
use crate::shared::{StateShared, TaskShared};
use crate::state::Commit;

/// Why a run produced nothing.
pub(crate) enum ProcessError {
    /// The executor was interrupted: nothing moves, the read is run again.
    Interrupted,
    Failed(String),
}

/// What a partition task does with what it reads. The loop calls, per read:
/// `begin_read`, then `process_batch` for each stored batch in order (until one is cut
/// short), then `end_read` with the outcome; and between reads `idle`, `fire_due` and
/// `checkpoint`.
pub(crate) trait Operator: Send {
    /// At start and when the task starts over after a failure: restores what the
    /// operator keeps; the input position it was committed at, if any.
    fn restore(&mut self, t: &Transform, task: &TaskShared) -> Option<u64>;
    /// Gives a new executor (at start, after a swap) what the operator keeps.
    fn attach(&self, executor: &mut Executor);
    /// The changelog a read's state changes are committed to, with the status they move.
    fn changelog(&self) -> Option<(Arc<Partition>, Arc<StateShared>)>;
    /// A read starts.
    fn begin_read(&mut self, t: &Transform);
    /// Runs one stored batch (its records at or past the position) and collects its
    /// verdicts; `after` is the offset after the stored batch. `Some(offset)`: the run
    /// ended early, and the read ends before `offset`.
    fn process_batch(
        &mut self,
        cx: &mut Cx<'_>,
        input: &InputBatch,
        after: u64,
    ) -> Result<Option<u64>, ProcessError>;
    /// The read ended: at `Some(position)` when it went through (its state changes, to
    /// commit with its outputs), or `None` when it failed or was interrupted (undone).
    fn end_read(&mut self, done: Option<u64>) -> Option<Commit>;
    /// The read found nothing: a commit to stage now (an idle watermark advance), if any.
    fn idle(&mut self, t: &Transform, position: u64) -> Option<Commit>;
    /// Over two inputs, one silent while the other flows: a commit to stage now (the
    /// watermark leaving the silent input out), if any.
    fn input_idle(&mut self, _t: &Transform, _position: u64) -> Option<Commit> {
        None
    }
    /// Whether work is due without input (timers after a restore or an idle advance).
    fn due(&self) -> bool;
    /// Does the due work at `position`; the state commit that goes with its outputs (none:
    /// nothing was due).
    fn fire_due(&mut self, cx: &mut Cx<'_>, position: u64) -> Result<Option<Commit>, ProcessError>;
    /// Everything read is committed (`force`: the task is stopping): a chance to write a
    /// snapshot.
    fn checkpoint(&self, t: &Transform, partition: u32, position: u64, force: bool);
}

/// What an operator reaches during a read: the plugin, the outputs being collected, and
/// what recovery found already written.
pub(crate) struct Cx<'a> {
    pub t: &'a Transform,
    /// The input topic's name (over two inputs: the one the batch in hand came from).
    pub input: &'a str,
    /// Over two inputs: which one the batch in hand came from.
    pub input_index: Option<usize>,
    pub partition: u32,
    pub sinks: &'a Layout,
    pub seen: &'a Recovered,
    pub out: Outputs,
    pub executor: &'a mut Executor,
    /// Schema-aware deployments: how values are decoded for the plugin and its outputs
    /// encoded or checked.
    pub codec: Option<&'a SchemaCodec>,
    /// Where the calls of a failing plugin run (see `Cx::run`).
    pub isolator: &'a Isolator,
}

impl Cx<'_> {
    /// Runs one input through the executor — on the partition's isolating thread, at idle
    /// priority, when the executor is isolating a plugin that failed, so a runaway gets
    /// only idle CPU and the transforms that behave keep their latency.
    pub fn run(&mut self, batch: &BatchInput<'_>) -> Result<BatchOutput, ProcessError> {
        let part = self.partition;
        let out = if self.executor.isolating() {
            let name = || format!("sluice-{}-{part}-isolating", self.t.name);
            let (out, fired) = self
                .isolator
                .run(name, self.executor, batch)
                .map_err(ProcessError::Failed)?;
            if fired {
                // The run stops (interrupted: nothing moves) and runs again, at once.
                tracing::warn!(transform = %self.t.name, partition = part, "isolating a failing plugin got no CPU at idle priority: its records run again at background priority");
                self.isolator.starved.store(true, Ordering::Release);
            }
            out
        } else {
            self.isolator.starved.store(false, Ordering::Release);
            self.executor.run(batch)
        };
        let c = &self.t.counters;
        c.fuel.fetch_add(out.fuel_used, Ordering::Relaxed);
        c.traps.fetch_add(u64::from(out.traps), Ordering::Relaxed);
        // A trap shows in the status even when every record then passed on its own
        // (records that fail alone set their own, more precise, error next).
        if let Some(why) = out.trap_reasons.last() {
            self.t.set_last_error(format!(
                "a plugin call failed (its records were run again one at a time): {why}"
            ));
        }
        if out.early == Some(Early::Interrupted) {
            return Err(ProcessError::Interrupted);
        }
        Ok(out)
    }

    /// The batch the plugin gets for `input`, and each record's schema id: framed values
    /// decoded to JSON for a `decode` deployment, else `input` itself.
    pub fn plugin_input(&self, input: &InputBatch) -> (InputBatch, Vec<Option<i32>>) {
        match self.codec {
            Some(c) => c.plugin_input(input),
            None => (input.clone(), Vec::new()),
        }
    }

    /// Encodes the emitted records of the first `done` items into their output batches,
    /// each with `sluice-src` and `sluice-version`, minus those already written. A
    /// schema-aware deployment's outputs are encoded or checked first (`ids`: each input's
    /// schema id): an item with any output that breaks its topic's contract emits nothing
    /// and is returned, with why, for its dead letter.
    pub fn emit(
        &mut self,
        answered: &Answered<'_>,
        result: &BatchOutput,
        done: usize,
        ids: &[Option<i32>],
    ) -> Vec<(u32, String)> {
        let mut encoded: Vec<Option<Vec<u8>>> = Vec::new();
        let mut broken: Vec<(u32, String)> = Vec::new();
        if let Some(codec) = self.codec {
            encoded = Vec::with_capacity(result.emitted.len());
            for e in &result.emitted {
                let value = result.view(e).ok().and_then(|v| v.value);
                let id = ids.get(e.input as usize).copied().flatten();
                match codec.output(e.output as usize, id, value) {
                    Ok(v) => encoded.push(v),
                    Err(why) => {
                        encoded.push(None);
                        if (e.input as usize) < done && broken.last().is_none_or(|b| b.0 != e.input)
                        {
                            broken.push((e.input, why));
                        }
                    }
                }
            }
        }
        let part = self.partition;
        let out = &mut self.out;
        let mut src = Vec::with_capacity(out.src_prefix.len() + 32);
        if let Answered::Records(_) = answered {
            out.counts[0] += done as u64;
        }
        // Outputs come in input order: count the outputs of the current input.
        let (mut cur_input, mut k) = (u32::MAX, 0u32);
        for (n, e) in result.emitted.iter().enumerate() {
            if e.input as usize >= done {
                continue;
            }
            if e.input == cur_input {
                k += 1;
            } else {
                (cur_input, k) = (e.input, 0);
            }
            if broken.iter().any(|b| b.0 == e.input) {
                continue;
            }
            if !self.seen.is_empty() && answered.seen(self.seen, e.input, k) {
                continue;
            }
            let Some(&n_parts) = self.sinks.outputs.get(e.output as usize) else {
                continue;
            };
            // The executor checked every emitted record; one that does not read is not
            // written (never reached).
            let Ok(view) = result.view(e) else { continue };
            let value = match encoded.get(n) {
                Some(Some(v)) => Some(v.as_slice()),
                _ => view.value,
            };
            let p = match view.key {
                Some(key) => partition_for_key(key, n_parts),
                None => part % n_parts,
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
            crate::emit::batch_for(&mut out.pending, (e.output as usize, p)).push(
                result.base_timestamp().saturating_add(view.timestamp_delta),
                view.key,
                value,
                theirs.chain(ours),
            );
            out.counts[1] += 1;
        }
        broken
    }

    /// Dead-letters the inputs whose outputs broke their topics' contracts (see `emit`).
    pub fn contract_breaches(&mut self, input: &InputBatch, broken: Vec<(u32, String)>) {
        for (i, why) in broken {
            let Some(&offset) = input.offsets.get(i as usize) else {
                continue;
            };
            if self.seen.has_verdict(offset) {
                continue;
            }
            self.out.counts[3] += 1;
            self.t.set_last_error(format!("offset {offset}: {why}"));
            let slot = self.sinks.dead_letter_slot();
            self.dead_letter(input, i, offset, &why, slot, &[]);
        }
    }

    /// Queues rejected and failed inputs among the first `done` for the dead-letter topic;
    /// failures also show as the transform's last error.
    pub fn dead_letters(&mut self, input: &InputBatch, result: &BatchOutput, done: usize) {
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
            if self.seen.has_verdict(offset) {
                continue;
            }
            if trapped {
                self.out.counts[3] += 1;
                self.t.set_last_error(format!("offset {offset}: {reason}"));
            } else {
                self.out.counts[2] += 1;
            }
            let slot = self.sinks.dead_letter_slot();
            self.dead_letter(input, i, offset, reason, slot, &[]);
        }
    }

    /// Queues the original record for the dead-letter topic (or another verdict topic,
    /// `slot`) with why and where it failed.
    pub fn dead_letter(
        &mut self,
        input: &InputBatch,
        i: u32,
        offset: u64,
        reason: &str,
        slot: usize,
        extra: &[(&str, String)],
    ) {
        let part = self.partition;
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
            (VERSION_HEADER, self.out.version.clone()),
            (SOURCE_HEADER, format!("{}{offset}:0", self.out.src_prefix)),
        ];
        ours.extend(extra.iter().map(|(k, v)| (*k, v.clone())));
        let rec = dead_letter::record(original, reason, self.input, part, &ours);
        let key = (slot, self.sinks.verdict_partition(slot, part));
        crate::emit::batch_for(&mut self.out.pending, key).push_record(&rec, timestamp);
    }
}

/// How long an idle task waits for input before it looks again.
pub(crate) const IDLE_WAIT: Duration = Duration::from_millis(100);
