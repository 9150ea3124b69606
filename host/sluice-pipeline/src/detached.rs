//! A stateful deployment's partition outside this server's log: the operator `sluice serve`
//! runs (event time, the watermark, late records, keyed state, timers, the idle advance),
//! driven by a caller that keeps the input, the outputs and the changelog elsewhere —
//! `sluice worker`, on a Kafka cluster, which commits each read's outputs, dead letters,
//! changelog records and input offsets in one transaction.
//!
//! The caller restores the partition's state from its changelog (`restore_change` for
//! each committed record, then `restored`), runs reads (`process`) and turns without
//! input (`tick`), and commits what each returns — or, when its commit fails, drops this
//! partition and restores it again (the store is only ever ahead of the changelog by
//! uncommitted reads).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use sluice_log::batch::{self, StoredRecord};
use sluice_runtime::Executor;
use sluice_runtime::state::{StateStore, write_committed};

use crate::emit::{InputBatch, Layout, Outputs};
use crate::isolate::Isolator;
use crate::operator::{Cx, Operator, ProcessError, Stateful};
use crate::recover::Recovered;
use crate::shared::StateShared;
use crate::state::{self as durable, Commit, Replay};
use crate::{RestoreInfo, Transform};

/// Most records the operator takes as one batch. A consumer does not see the cluster's
/// record batches; the watermark moves after each run of this many records of a partition
/// at most (in `sluice serve`: after each stored batch), so how far it moves while a
/// backlog is read does not depend on how much one read gathers.
pub const BATCH_RECORDS: usize = 1000;

/// A record a read emits, for the topic in `slot` (see [`Layout`]) and partition.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub slot: usize,
    pub partition: u32,
    pub record: StoredRecord,
}

/// What a read (or a turn without input) leaves to commit, together.
#[derive(Debug, Default)]
pub struct Read {
    /// Outputs, dead letters and late records.
    pub records: Vec<Emitted>,
    /// Changelog records (key, value; `None` a tombstone), the meta record last.
    pub changelog: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Records in, out, rejected, failed.
    pub counts: [u64; 4],
    pub late: u64,
    /// The state changes, for a store on disk (written there once committed).
    commit: Option<Commit>,
}

impl Read {
    fn add(&mut self, out: Outputs, commit: Option<&Commit>, on_disk: bool) {
        for ((slot, partition), builders) in out.pending {
            for b in builders {
                let batch = b.finish().freeze();
                for record in batch::decode(&batch).unwrap_or_default() {
                    self.records.push(Emitted {
                        slot,
                        partition,
                        record,
                    });
                }
            }
        }
        for (c, n) in self.counts.iter_mut().zip(out.counts) {
            *c += n;
        }
        self.late += out.late;
        if let Some(commit) = commit {
            // A later meta record supersedes an earlier one of the same read.
            self.changelog.retain(|(k, _)| k.as_slice() != b"m");
            self.changelog.extend(durable::records(commit));
            if on_disk {
                match &mut self.commit {
                    Some(c) => c.merge(commit.clone()),
                    None => self.commit = Some(commit.clone()),
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.changelog.is_empty()
    }
}

/// Why a read produced nothing to commit.
#[derive(Debug, thiserror::Error)]
pub enum DetachedError {
    /// The executor was interrupted (the caller is stopping).
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Failed(String),
}

impl From<ProcessError> for DetachedError {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Interrupted => DetachedError::Interrupted,
            ProcessError::Failed(e) => DetachedError::Failed(e),
        }
    }
}

/// A partition's state followed from its changelog while another worker processes the
/// partition (a standby replica): what a restore would have replayed so far, ready to take
/// over with only the rest to read.
pub struct Warm {
    store: StateStore,
    replay: Replay,
    /// The next changelog offset to apply (-1: from the beginning).
    pub next: i64,
}

impl Warm {
    /// An empty state for `partition` (of `partitions`) as the deployment asks.
    pub fn new(t: &Transform, partition: u32, partitions: u32) -> Result<Warm, String> {
        let mut store = t.new_store(partition, partitions)?;
        if store.is_on_disk() {
            store.clear()?;
        }
        Ok(Warm {
            store,
            replay: Replay::default(),
            next: -1,
        })
    }

    /// Applies the committed changelog record at `offset`.
    pub fn apply(&mut self, offset: i64, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        self.replay.apply(&mut self.store, key, value)?;
        self.next = offset + 1;
        Ok(())
    }

    pub fn keys(&self) -> usize {
        self.store.keys()
    }

    /// Changelog records applied so far.
    pub fn replayed(&self) -> u64 {
        self.replay.replayed
    }
}

/// One input partition of a stateful deployment, run by a caller that keeps its topics.
pub struct Detached {
    op: Stateful,
    state: Arc<StateShared>,
    run: Parts,
    replay: Replay,
    restore_started: Instant,
    /// Records a standby copy had applied before this restore, and the changelog offset
    /// the restore went on from (none: the beginning).
    restore_base: u64,
    restore_from: Option<u64>,
    /// The state store is on disk.
    on_disk: bool,
}

/// What an operator's context borrows.
struct Parts {
    t: Arc<Transform>,
    executor: Executor,
    input: String,
    /// Over two inputs: which one the records of the next reads come from.
    input_index: Option<usize>,
    partition: u32,
    layout: Layout,
    version: u32,
    seen: Recovered,
    isolator: Isolator,
}

impl Parts {
    fn cx(&mut self) -> Cx<'_> {
        Cx {
            t: &self.t,
            input: &self.input,
            input_index: self.input_index,
            partition: self.partition,
            sinks: &self.layout,
            seen: &self.seen,
            out: Outputs::new(&self.t.name, self.partition, self.version),
            executor: &mut self.executor,
            codec: None,
            isolator: &self.isolator,
        }
    }
}

impl Detached {
    /// Partition `partition` of `input`, run by `executor` (of plugin version `version`)
    /// into the sinks of `layout`, with an empty state to restore into.
    /// A store on disk starts empty too (what a worker held of the partition before may
    /// be stale) — or from `warm`, a standby's state, which the restore goes on from.
    /// `partitions`: of the input, to size a disk store.
    pub fn new(
        t: Arc<Transform>,
        input: &str,
        (partition, partitions): (u32, u32),
        mut executor: Executor,
        version: u32,
        layout: Layout,
        warm: Option<Warm>,
    ) -> Result<Detached, String> {
        let (store, replay, from) = match warm {
            Some(w) => (w.store, w.replay, (w.next >= 0).then_some(w.next as u64)),
            None => (
                Warm::new(&t, partition, partitions)?.store,
                Replay::default(),
                None,
            ),
        };
        let on_disk = store.is_on_disk();
        let store = Arc::new(Mutex::new(store));
        let state = Arc::new(StateShared::new(store));
        let op = Stateful::new(None, state.clone(), &t);
        op.attach(&mut executor);
        Ok(Detached {
            op,
            state,
            run: Parts {
                t,
                executor,
                input: input.to_string(),
                input_index: None,
                partition,
                layout,
                version,
                seen: Recovered::default(),
                isolator: Isolator::default(),
            },
            restore_base: replay.replayed,
            replay,
            restore_started: Instant::now(),
            restore_from: from,
            on_disk,
        })
    }

    /// The partition's state and event clock, for status.
    pub fn state(&self) -> &Arc<StateShared> {
        &self.state
    }

    /// The interrupt that stops a plugin call in progress.
    pub fn interrupt(&self) -> &Arc<sluice_runtime::Interrupt> {
        self.run.executor.interrupt()
    }

    /// The caller committed `read` (none: a restore), up to input `position`: for status,
    /// and a store on disk takes its state changes.
    pub fn committed(&self, position: u64, read: Option<&Read>) {
        let st = &self.state;
        let late = read.map_or(0, |r| r.late);
        if let Some(c) = read.and_then(|r| r.commit.as_ref()) {
            let cp = durable::disk_checkpoint(None, &c.meta);
            if let Err(e) = write_committed(&st.store, &c.delta, &cp) {
                // Reads still see the changes (held in memory until written).
                tracing::warn!(transform = %self.run.t.name, partition = self.run.partition,
                    error = %e, "state changes not written to disk");
            }
        }
        st.committed_position.store(position, Ordering::Relaxed);
        st.committed_at
            .store(sluice_log::now_ms(), Ordering::Relaxed);
        st.late.fetch_add(late, Ordering::Relaxed);
    }

    /// Applies one committed changelog record to the state being restored.
    pub fn restore_change(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        let mut store = self.state.lock();
        self.replay.apply(&mut store, key, value)
    }

    /// The changelog is replayed: the event clock starts where it was committed, and the
    /// timers due at its watermark fire at the next read or turn.
    pub fn restored(&mut self) -> Result<RestoreInfo, String> {
        let replay = std::mem::take(&mut self.replay);
        let (keys, timers) = {
            let mut store = self.state.lock();
            replay.finish(&mut store)?;
            (store.keys() as u64, store.timer_count() as u64)
        };
        let info = RestoreInfo {
            took_ms: self.restore_started.elapsed().as_millis() as u64,
            keys,
            timers,
            snapshot_offset: self.restore_from,
            replayed: replay.replayed - self.restore_base,
        };
        *self.state.restore.lock().unwrap_or_else(|p| p.into_inner()) = Some(info.clone());
        self.op.start_at(replay.meta);
        Ok(info)
    }

    /// Fires what is due without input (after a restore or an idle advance) at `position`.
    fn fire_due(&mut self, position: u64, read: &mut Read) -> Result<(), DetachedError> {
        if !self.op.due() {
            return Ok(());
        }
        let mut cx = self.run.cx();
        let fired = self.op.fire_due(&mut cx, position);
        let out = cx.out;
        let commit = fired?;
        read.add(out, commit.as_ref(), self.on_disk);
        Ok(())
    }

    /// Runs records of the partition (in offset order, from the committed position on)
    /// through the plugin; `after` is the position after them. What it emits and the state
    /// changes are for one commit; on an error, the state is as before the call.
    pub fn process(&mut self, records: &[StoredRecord], after: u64) -> Result<Read, DetachedError> {
        let mut read = Read::default();
        let Some(first) = records.first() else {
            return Ok(read);
        };
        self.fire_due(first.offset as u64, &mut read)?;
        self.op.begin_read(&self.run.t);
        let mut cx = self.run.cx();
        let mut result = Ok(());
        // Runs of at most BATCH_RECORDS records, each like a stored batch in `sluice serve`:
        // the watermark moves after each.
        let mut rest = records;
        while !rest.is_empty() {
            let run = &rest[..rest.len().min(BATCH_RECORDS)];
            let run_after = rest.get(run.len()).map_or(after, |next| next.offset as u64);
            let input = input_batch(run);
            match self.op.process_batch(&mut cx, &input, run_after) {
                Ok(None) => rest = &rest[run.len()..],
                Ok(Some(cut)) => {
                    // The run was cut short (its time budget): the rest is run next.
                    let done = run.iter().take_while(|r| (r.offset as u64) < cut).count();
                    rest = &rest[done.clamp(1, run.len())..];
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let out = cx.out;
        let commit = self.op.end_read(result.is_ok().then_some(after));
        result?;
        read.add(out, commit.as_ref(), self.on_disk);
        Ok(read)
    }

    /// Over two inputs: the records of the next `process` calls come from input `index`
    /// (none: neither), topic `topic` (the plugin sees that topic; the watermark follows
    /// the lower input).
    pub fn from_input(&mut self, index: Option<usize>, topic: &str) {
        self.run.input_index = index;
        self.run.input = topic.to_string();
    }

    /// Moves the watermark to `to` at `position` (if later), as an idle advance would, and
    /// fires what that makes due: event time driven by the caller (case tables run
    /// through the runtime).
    pub fn advance(&mut self, position: u64, to: i64) -> Result<Read, DetachedError> {
        let mut read = Read::default();
        if let Some(commit) = self.op.advance_to(to, position) {
            let nothing = Outputs::new(&self.run.t.name, self.run.partition, self.run.version);
            read.add(nothing, Some(&commit), self.on_disk);
        }
        self.fire_due(position, &mut read)?;
        Ok(read)
    }

    /// A turn without input at `position`: the timers a restore made due and, when the
    /// partition is `caught_up` (no input waits: a turn without records is not idleness
    /// while the consumer is still positioning or behind), the idle advance of the
    /// watermark and the timers it makes due.
    pub fn tick(&mut self, position: u64, caught_up: bool) -> Result<Read, DetachedError> {
        let mut read = Read::default();
        let idle = if caught_up {
            self.op.idle(&self.run.t, position)
        } else {
            None
        };
        if let Some(commit) = idle {
            let nothing = Outputs::new(&self.run.t.name, self.run.partition, self.run.version);
            read.add(nothing, Some(&commit), self.on_disk);
        }
        self.fire_due(position, &mut read)?;
        Ok(read)
    }
}

/// The plugin's input for `records`: one section, offsets as they are (gaps allowed).
fn input_batch(records: &[StoredRecord]) -> InputBatch {
    let base_offset = records.first().map_or(0, |r| r.offset);
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let mut section = Vec::new();
    for r in records {
        sluice_sdk::codec::put_record(
            &mut section,
            r.timestamp - base_timestamp,
            (r.offset - base_offset) as i32,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
    }
    InputBatch {
        section: Bytes::from(section),
        offsets: records.iter().map(|r| r.offset as u64).collect(),
        base_offset,
        base_timestamp,
    }
}
