//! The stateful operator: event time and the watermark, late records and records without
//! an event time, keyed state (undone when a read fails), timers fired as the watermark
//! passes them, the idle advance, restore from snapshot and changelog, and snapshots.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_log::Partition;
use sluice_log::batch::NewRecord;
use sluice_log::dead_letter;
use sluice_runtime::state::StateDelta;
use sluice_runtime::{BatchInput, BatchOutput, CallKind, Executor};
use sluice_sdk::NO_WATERMARK;
use sluice_sdk::codec::{Reader, RecordView, next_raw};

use super::{Cx, Operator, ProcessError};
use crate::emit::{Answered, InputBatch};
use crate::recover::{Recovered, SOURCE_HEADER, VERSION_HEADER};
use crate::schemas::SchemaCodec;
use crate::shared::{StateShared, TaskShared};
use crate::state::{self as durable, Commit, Meta};
use crate::{EventTimeSettings, RestoreInfo, Transform};

/// Timers one `on-timers` call gets at most.
const TIMERS_PER_CALL: usize = 10_000;
/// Rounds of firing in one read (a handler may set timers that are due at once): at most
/// 100,000 timers a commit, so a watermark that makes millions due at once fires them
/// over several commits, memory bounded; the next turn goes on.
const MAX_TIMER_ROUNDS: usize = 10;
/// Timers fired at one position and watermark beyond those pending when the firing
/// began, after which the firing stops as a loop (a handler re-arming timers at or
/// before the watermark). A hundred thousand is far more than any chain of timers a
/// handler means to fire at one instant, and a loop is caught within seconds.
const MAX_REARMED: u64 = 100_000;
/// Changelog records after which a drained task writes a new snapshot (or more when the
/// state has more keys than that: restore then replays at most about the state's size).
const SNAPSHOT_AFTER: u64 = 100_000;
/// How often an idle stateful task looks at its watermark.
const IDLE_CHECK: Duration = Duration::from_millis(100);

/// Event time of a partition as the task moves it (committed with each read's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EventClock {
    watermark: i64,
    max_event_time: i64,
    /// Over two inputs: the largest event time of each.
    inputs: Option<[i64; 2]>,
}

impl EventClock {
    const NONE: EventClock = EventClock {
        watermark: NO_WATERMARK,
        max_event_time: NO_WATERMARK,
        inputs: None,
    };

    fn meta(&self, position: u64) -> Meta {
        Meta {
            position,
            watermark: self.watermark,
            max_event_time: self.max_event_time,
            committed_at: sluice_log::now_ms(),
            fired: 0,
            input_times: self.inputs,
        }
    }

    /// Event times up to `max` were read (from input `input`, over two inputs).
    fn read(&mut self, max: i64, input: Option<usize>) {
        self.max_event_time = self.max_event_time.max(max);
        if let Some(i) = input {
            let times = self.inputs.get_or_insert([NO_WATERMARK; 2]);
            if let Some(t) = times.get_mut(i) {
                *t = (*t).max(max);
            }
        }
    }

    /// Moves the watermark to `lateness` behind the event time reached — over `inputs`
    /// inputs, the lower of theirs (nothing moves until both have had records).
    fn advance(&mut self, lateness: i64, inputs: usize) {
        let reached = match (inputs, self.inputs) {
            (2, Some([a, b])) => a.min(b),
            (2, None) => NO_WATERMARK,
            _ => self.max_event_time,
        };
        if reached != NO_WATERMARK {
            self.watermark = self.watermark.max(reached.saturating_sub(lateness));
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

/// A plugin with keyed state, event time and timers, on one input partition.
pub(crate) struct Stateful {
    /// The changelog in this server's log (none: the caller keeps the changelog, as
    /// `sluice worker` does on the cluster — see `detached`).
    changelog: Option<Arc<Partition>>,
    shared: Arc<StateShared>,
    /// The event-time settings of the read in progress.
    settings: EventTimeSettings,
    /// The event time reached by what was read (ahead of what is committed).
    clock: EventClock,
    /// The clock before the read in progress (restored when it fails).
    before: EventClock,
    /// Timers may be due at the watermark (after a restore or an idle advance).
    fire_due: bool,
    /// When input was last read, and the watermark then (idle advance).
    last_input: Instant,
    idle_base: i64,
    last_idle_check: Instant,
    /// Over two inputs: when each last had a record (an input silent for
    /// `idle_timeout_ms` while the other flows is left out of the watermark), and when
    /// that was last looked at.
    input_seen: [Instant; 2],
    input_idle_check: Instant,
    /// The firing in progress: its position, watermark, timers fired so far, and how
    /// many it may fire at most (those pending when it began, plus MAX_REARMED).
    firing: Firing,
    /// The firing before the read in progress (restored when it fails).
    firing_before: Firing,
}

#[derive(Debug, Clone, Copy, Default)]
struct Firing {
    position: u64,
    watermark: i64,
    fired: u32,
    most: u64,
}

impl Stateful {
    pub fn new(
        changelog: Option<Arc<Partition>>,
        shared: Arc<StateShared>,
        t: &Transform,
    ) -> Stateful {
        Stateful {
            changelog,
            shared,
            settings: t.event_time_settings(),
            clock: EventClock::NONE,
            before: EventClock::NONE,
            fire_due: false,
            last_input: Instant::now(),
            idle_base: NO_WATERMARK,
            last_idle_check: Instant::now(),
            input_seen: [Instant::now(); 2],
            input_idle_check: Instant::now(),
            firing: Firing::default(),
            firing_before: Firing::default(),
        }
    }

    /// Where a commit leaves the partition at `position`, with the firing in progress.
    fn meta(&self, position: u64) -> Meta {
        let mut m = self.clock.meta(position);
        let f = &self.firing;
        if f.position == position && f.watermark == m.watermark {
            m.fired = f.fired;
        }
        m
    }

    /// Publishes the clock for status and metrics.
    fn publish_clock(&self) {
        self.shared
            .watermark
            .store(self.clock.watermark, Ordering::Relaxed);
        self.shared
            .max_event_time
            .store(self.clock.max_event_time, Ordering::Relaxed);
    }

    /// Moves the watermark to `to` (if later) at `position`: the new watermark is committed
    /// on its own, and the timers it makes due fire next (`fire_due`). The idle advances
    /// come here, and callers that drive event time themselves (case tables run through
    /// the runtime).
    pub fn advance_to(&mut self, to: i64, position: u64) -> Option<Commit> {
        if to <= self.clock.watermark {
            return None;
        }
        self.clock.watermark = to;
        self.shared.watermark.store(to, Ordering::Relaxed);
        self.fire_due = true;
        Some(Commit {
            delta: StateDelta::default(),
            meta: self.meta(position),
        })
    }

    /// Starts from restored state committed at `meta` (none: nothing was committed): the
    /// event clock as committed, and the timers due at its watermark fire first.
    pub fn start_at(&mut self, meta: Option<Meta>) {
        self.clock = meta.map_or(EventClock::NONE, |m| EventClock {
            watermark: m.watermark,
            max_event_time: m.max_event_time,
            inputs: m.input_times,
        });
        self.publish_clock();
        if let Some(m) = meta {
            let st = &self.shared;
            st.committed_position.store(m.position, Ordering::Relaxed);
            st.committed_at.store(m.committed_at, Ordering::Relaxed);
        }
        self.fire_due = true;
        self.idle_base = self.clock.watermark;
        self.last_input = Instant::now();
        self.input_seen = [Instant::now(); 2];
        self.firing = meta.map_or(Firing::default(), |m| Firing {
            position: m.position,
            watermark: m.watermark,
            fired: m.fired,
            most: 0,
        });
    }

    /// Fires the timers due at `watermark` at input position `position`: calls
    /// `on-timers` (a round at a time: a handler may set more that are due) and collects
    /// what it emits, each output named by the position, watermark and the timer's place
    /// in the firing order, which a replay after a crash repeats.
    fn fire(&mut self, cx: &mut Cx<'_>, position: u64, watermark: i64) -> Result<(), ProcessError> {
        if watermark == NO_WATERMARK {
            return Ok(());
        }
        let shared = self.shared.clone();
        let f = self.firing;
        let mut first = if f.position == position && f.watermark == watermark {
            f.fired
        } else {
            0
        };
        let most = if first == 0 || f.most == 0 {
            shared.lock().timer_count() as u64 + MAX_REARMED
        } else {
            f.most
        };
        let mut rounds_left = true;
        for _ in 0..MAX_TIMER_ROUNDS {
            let (list, count) = shared
                .lock()
                .take_due(watermark, TIMERS_PER_CALL)
                .map_err(ProcessError::Failed)?;
            if count == 0 {
                rounds_left = false;
                break;
            }
            let list = Bytes::from(list);
            let batch = BatchInput {
                kind: CallKind::Timers,
                watermark,
                ..BatchInput::records(
                    cx.input,
                    cx.partition,
                    position as i64,
                    watermark,
                    list.clone(),
                    count,
                )
            };
            let result = cx.run(&batch)?;
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
            for (i, why) in cx.emit(&answered, &result, done, &[]) {
                // A timer's outputs that break their topic's contract: none is written.
                cx.out.counts[3] += 1;
                cx.t.set_last_error(format!(
                    "timer {} at watermark {watermark}: {why}",
                    first + i
                ));
            }
            timer_dead_letters(cx, &timers, &result, done, &answered);
            first += done as u32;
        }
        self.firing = Firing {
            position,
            watermark,
            fired: first,
            most,
        };
        if rounds_left && shared.lock().next_timer().is_some_and(|at| at <= watermark) {
            if u64::from(first) > most {
                // A handler that re-arms timers at or before the watermark would loop for ever.
                cx.t.fail(format!(
                    "timers keep coming due at watermark {watermark}: after {first} fired the rest wait until the watermark moves (does a timer handler set timers at or before the watermark?)"
                ));
            } else {
                // More are due than one read fires: the next turn goes on.
                self.fire_due = true;
            }
        }
        Ok(())
    }
}

impl Operator for Stateful {
    /// Rebuilds the state from snapshot and changelog and sets the event clock; the
    /// committed position, if there is one. An unfinished commit found at the end of the
    /// changelog is repaired by a commit sent now, before anything else.
    fn restore(&mut self, t: &Transform, task: &TaskShared) -> Option<u64> {
        let part = task.partition;
        let changelog = self.changelog.clone()?;
        let st = self.shared.clone();
        let restored = {
            let mut store = st.lock();
            let r = durable::restore(&mut store, &changelog, &t.dir, part);
            r.map(|r| (r, store.keys() as u64, store.timer_count() as u64))
        };
        let (restored, keys, timers) = match restored {
            Ok(r) => r,
            Err(e) => {
                // The changelog could not be read: run with what could be restored is
                // wrong; stop the partition with the reason.
                t.fail(format!("partition {part}: restoring state: {e}"));
                task.stop.store(true, Ordering::SeqCst);
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
        tracing::info!(transform = %t.name, partition = part, keys, timers,
            took_ms = info.took_ms, snapshot = ?restored.snapshot, replayed = restored.replayed,
            "state restored");
        *st.restore.lock().unwrap_or_else(|p| p.into_inner()) = Some(info);
        let meta = restored.meta;
        self.start_at(meta);
        st.changelog_end
            .store(changelog.high_watermark(), Ordering::Relaxed);
        if let Some(off) = restored.snapshot {
            st.snapshot_offset.store(off, Ordering::Relaxed);
        }
        if !restored.repair.is_empty() {
            tracing::warn!(transform = %t.name, partition = part, keys = restored.repair.values.len(),
                "state changelog ends in an unfinished commit; restating its keys");
            let position = meta.map_or(0, |m| m.position);
            let commit = Commit {
                delta: restored.repair,
                meta: meta.unwrap_or_else(|| Meta::starting_at(position)),
            };
            if let Err(e) = durable::append(&changelog, &commit) {
                t.fail(format!(
                    "partition {part}: repairing the state changelog: {e}"
                ));
                task.stop.store(true, Ordering::SeqCst);
            }
        }
        meta.map(|m| m.position)
    }

    fn attach(&self, executor: &mut Executor) {
        // Same keys across versions: a new version inherits the state.
        executor.set_state(self.shared.store.clone());
    }

    fn changelog(&self) -> Option<(Arc<Partition>, Arc<StateShared>)> {
        Some((self.changelog.clone()?, self.shared.clone()))
    }

    fn begin_read(&mut self, t: &Transform) {
        self.settings = t.event_time_settings();
        self.before = self.clock;
        self.firing_before = self.firing;
        self.shared.lock().begin_run();
    }

    fn process_batch(
        &mut self,
        cx: &mut Cx<'_>,
        input: &InputBatch,
        after: u64,
    ) -> Result<Option<u64>, ProcessError> {
        let settings = &self.settings;
        let prepared = prepare(input, settings, self.clock.watermark, cx.seen, cx.codec);
        let kept = prepared.kept.as_ref().unwrap_or(input);
        let field_times: &[i64] = if settings.field.is_some() {
            &prepared.times
        } else {
            &[]
        };
        if let Some(seen) = cx.input_index.and_then(|i| self.input_seen.get_mut(i))
            && !input.offsets.is_empty()
        {
            *seen = Instant::now();
        }
        let (seen_by_plugin, ids) = cx.plugin_input(kept);
        let result = if kept.offsets.is_empty() {
            BatchOutput::default()
        } else {
            let batch = BatchInput {
                kind: CallKind::Records,
                watermark: self.clock.watermark,
                event_times: field_times,
                ..BatchInput::records(
                    cx.input,
                    cx.partition,
                    kept.base_offset,
                    kept.base_timestamp,
                    seen_by_plugin.section.clone(),
                    kept.offsets.len() as u32,
                )
            };
            cx.run(&batch)?
        };
        let done = if kept.offsets.is_empty() {
            0
        } else {
            (result.done as usize).min(kept.offsets.len())
        };
        let broken = cx.emit(&Answered::Records(kept), &result, done, &ids);
        cx.dead_letters(kept, &result, done);
        cx.contract_breaches(kept, broken);
        // Records of the original batch before `cut` have their verdicts.
        let cut = prepared
            .kept_index
            .get(done)
            .copied()
            .unwrap_or(input.offsets.len());
        for (i, why) in &prepared.removed {
            if *i < cut {
                removed(cx, input, *i, why, self.clock.watermark);
            }
        }
        if let Some(max) = prepared.times.get(..done).and_then(|t| t.iter().max()) {
            self.clock.read(*max, cx.input_index);
        }
        if cut < input.offsets.len() {
            return Ok(Some(input.offsets[cut]));
        }
        // The whole stored batch is done: the watermark moves, due timers fire.
        self.clock
            .advance(self.settings.allowed_lateness_ms, self.settings.inputs);
        self.fire(cx, after, self.clock.watermark)?;
        Ok(None)
    }

    fn end_read(&mut self, done: Option<u64>) -> Option<Commit> {
        let mut store = self.shared.lock();
        match done {
            Some(position) => {
                let delta = store.end_run(true);
                drop(store);
                self.publish_clock();
                self.last_input = Instant::now();
                self.idle_base = self.clock.watermark;
                Some(Commit {
                    delta,
                    meta: self.meta(position),
                })
            }
            None => {
                store.end_run(false);
                drop(store);
                self.clock = self.before;
                self.firing = self.firing_before;
                self.publish_clock();
                None
            }
        }
    }

    /// Once no input has come for `idle_timeout_ms`, the watermark moves on with the
    /// clock. When that makes a timer due, the new watermark is committed on its own first
    /// (so that a crash cannot fire those timers at another watermark) and the timers fire
    /// at the next turn.
    fn idle(&mut self, t: &Transform, position: u64) -> Option<Commit> {
        if self.last_idle_check.elapsed() < IDLE_CHECK || self.idle_base == NO_WATERMARK {
            return None;
        }
        self.last_idle_check = Instant::now();
        let settings = t.event_time_settings();
        let idle = self.last_input.elapsed();
        let beyond = idle.checked_sub(Duration::from_millis(settings.idle_timeout_ms))?;
        let target = self.idle_base.saturating_add(beyond.as_millis() as i64);
        let due = self.shared.lock().next_timer().is_some_and(|t| t <= target);
        if !due {
            return None;
        }
        self.advance_to(target, position)
    }

    /// Over two inputs, one silent for `idle_timeout_ms` while the other flows: the
    /// watermark follows the other (less the lateness), committed on its own like the
    /// idle advance, so that a replay fires the same timers at the same watermark.
    fn input_idle(&mut self, t: &Transform, position: u64) -> Option<Commit> {
        if self.input_idle_check.elapsed() < IDLE_CHECK {
            return None;
        }
        self.input_idle_check = Instant::now();
        let settings = t.event_time_settings();
        let times = self.clock.inputs.filter(|_| settings.inputs == 2)?;
        let timeout = Duration::from_millis(settings.idle_timeout_ms);
        let silent = |i: usize| self.input_seen[i].elapsed() >= timeout;
        let target = (0..2)
            .filter(|&i| silent(i) && !silent(1 - i))
            .map(|i| times[1 - i])
            .filter(|t| *t != NO_WATERMARK)
            .max()?
            .saturating_sub(settings.allowed_lateness_ms);
        self.advance_to(target, position)
    }

    fn due(&self) -> bool {
        self.fire_due
    }

    /// Fires the timers due at the watermark now, at the current position (after a
    /// restore or an idle advance).
    fn fire_due(&mut self, cx: &mut Cx<'_>, position: u64) -> Result<Option<Commit>, ProcessError> {
        self.shared.lock().begin_run();
        // Set again by `fire` when more are due than one read fires.
        self.fire_due = false;
        let fired = self.fire(cx, position, self.clock.watermark);
        let mut store = self.shared.lock();
        match fired {
            Ok(()) => Ok(Some(Commit {
                delta: store.end_run(true),
                meta: self.meta(position),
            })),
            Err(e) => {
                store.end_run(false);
                self.fire_due = true;
                Err(e)
            }
        }
    }

    /// Writes a snapshot of the (fully committed) state when the changelog has grown well
    /// past the last one, or whenever `force`d and anything changed.
    fn checkpoint(&self, t: &Transform, partition: u32, position: u64, force: bool) {
        let st = &self.shared;
        let since = st.since_snapshot.load(Ordering::Relaxed);
        if since == 0 || (!force && since < SNAPSHOT_AFTER) {
            return;
        }
        let Some(changelog) = &self.changelog else {
            return;
        };
        let end = changelog.high_watermark();
        let store = st.lock();
        if store.is_on_disk() {
            // The disk store has every commit (the appender writes each one there): a
            // checkpoint makes them durable.
            drop(store);
            let Some(db) = t.state_db() else { return };
            match db.persist() {
                Ok(()) => {
                    st.since_snapshot.store(0, Ordering::Relaxed);
                    st.snapshot_offset.store(end, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(transform = %t.name, partition, error = %e,
                    "state store not persisted; a machine failure would replay more of the changelog"),
            }
            return;
        }
        if !force && since < store.keys() as u64 {
            return;
        }
        let started = Instant::now();
        let meta = Meta {
            committed_at: st.committed_at.load(Ordering::Relaxed),
            ..self.meta(position)
        };
        match durable::write_snapshot(&t.dir, partition, &store, &meta, end) {
            Ok(()) => {
                st.since_snapshot.store(0, Ordering::Relaxed);
                st.snapshot_offset.store(end, Ordering::Relaxed);
                tracing::debug!(transform = %t.name, partition,
                    keys = store.keys(), took_ms = started.elapsed().as_millis() as u64, "state snapshot written");
            }
            Err(e) => {
                tracing::warn!(transform = %t.name, partition, error = %e,
                    "state snapshot not written; restore replays more of the changelog");
            }
        }
    }
}

/// Collects a record that did not reach the plugin: a late one for the late output (or
/// the dead-letter topic) with `sluice-error: late`, one without an event time for the
/// dead-letter topic.
fn removed(cx: &mut Cx<'_>, input: &InputBatch, i: usize, why: &Removal, watermark: i64) {
    let offset = input.offsets[i];
    if matches!(why, Removal::Decided) || cx.seen.has_verdict(offset) {
        return;
    }
    cx.out.counts[0] += 1;
    match why {
        Removal::Late { event_time } => {
            cx.out.late += 1;
            let extra = [
                ("sluice-event-time", event_time.to_string()),
                ("sluice-watermark", watermark.to_string()),
            ];
            let slot = cx.sinks.late_slot();
            cx.dead_letter(input, i as u32, offset, "late", slot, &extra);
        }
        Removal::NoEventTime(reason) => {
            cx.out.counts[2] += 1;
            let slot = cx.sinks.dead_letter_slot();
            cx.dead_letter(input, i as u32, offset, reason, slot, &[]);
        }
        Removal::Decided => {}
    }
}

/// Collects rejected and failed timers among the first `done` for the dead-letter topic:
/// a record with the timer's key and no value.
fn timer_dead_letters(
    cx: &mut Cx<'_>,
    timers: &[(i64, Vec<u8>)],
    result: &BatchOutput,
    done: usize,
    answered: &Answered<'_>,
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
        if cx.seen.has_timer_verdict(*position, *watermark, first + i) {
            continue;
        }
        if trapped {
            cx.out.counts[3] += 1;
            cx.t.set_last_error(format!(
                "timer at {at} (key {}): {reason}",
                String::from_utf8_lossy(key)
            ));
        } else {
            cx.out.counts[2] += 1;
        }
        let mut src = cx.out.src_prefix.as_bytes().to_vec();
        answered.write_src(&mut src, i, 0);
        let header = |k: &str, v: String| (k.to_string(), Some(Bytes::from(v)));
        let rec = NewRecord {
            key: Some(Bytes::copy_from_slice(key)),
            value: None,
            headers: vec![
                header(dead_letter::ERROR_HEADER, reason.clone()),
                header(dead_letter::SOURCE_TOPIC_HEADER, cx.input.to_string()),
                header(
                    dead_letter::SOURCE_PARTITION_HEADER,
                    cx.partition.to_string(),
                ),
                header("sluice-timer-at", at.to_string()),
                header("sluice-plugin", cx.t.spec().plugin),
                header(VERSION_HEADER, cx.out.version.clone()),
                (SOURCE_HEADER.to_string(), Some(Bytes::from(src))),
            ],
            timestamp: Some(*at),
        };
        let slot = cx.sinks.dead_letter_slot();
        let p = cx.sinks.verdict_partition(slot, cx.partition);
        crate::emit::batch_for(&mut cx.out.pending, (slot, p)).push_record(&rec, *at);
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
    codec: Option<&SchemaCodec>,
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
            (Some(field), Ok(v)) => match codec.and_then(|c| c.json_value(v.value)) {
                // A framed value of a `decode` deployment: the field of its JSON.
                Some(json) => sluice_sdk::json::event_time(Some(json.as_bytes()), field),
                None => sluice_sdk::json::event_time(v.value, field),
            },
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
