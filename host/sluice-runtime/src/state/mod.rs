//! The keyed state of one input partition of a stateful deployment, as plugins see it
//! through the `state` interface: values and timers in memory, every change of a run
//! recorded so that a failed call (or a run whose results are dropped) is undone, and what
//! a kept run changed handed to the pipeline for its changelog.
//!
//! Memory is accounted per deployment ([`StateBudget`]): a write past the limit traps the
//! call with [`Stop::StateLimit`], so a plugin that writes without bound is stopped and
//! reported, never the host's memory exhausted.
//!
//! With `"state_store": "disk"` the values and timers live in an embedded store on disk
//! ([`disk`]); the store keeps in memory only what changed since the last disk write and
//! a bounded cache of values ([`tier`]), and the pipeline writes each committed delta
//! there ([`write_committed`]).

mod budget;
pub mod disk;
#[cfg(test)]
mod tests;
mod tier;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use sluice_sdk::state::{MAX_KEY_BYTES, MAX_VALUE_BYTES, Op, put_entry, put_timer, read_ops};

use crate::stop::Stop;
pub use budget::{ENTRY_OVERHEAD, Entry, StateBudget, TIMER_OVERHEAD};
use budget::{Prev, timer_cost, value_cost};
use disk::{Change as DiskChange, Counts, DiskPart};
use tier::{Tier, disk_error};

/// Changes a restore holds in memory (disk mode) before writing them.
const WRITE_AFTER: usize = 100_000;
/// Most bytes of entries one `scan` call returns (at least one entry).
pub const SCAN_BYTES: usize = 1 << 20;
/// One change, with what it replaced.
#[derive(Debug)]
enum Undo {
    Value(Vec<u8>, Option<Vec<u8>>, Prev),
    /// The timer was absent before.
    TimerAdded(i64, Vec<u8>, Prev),
    /// The timer was present before.
    TimerRemoved(i64, Vec<u8>, Prev),
}

/// How a run changed a store's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CountsDiff {
    pub keys: i64,
    pub bytes: i64,
    pub timers: i64,
}

/// What a run changed: the new value (`None` = deleted) of every key it touched, and
/// whether every timer it touched is now set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateDelta {
    pub values: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub timers: BTreeMap<(i64, Vec<u8>), bool>,
    /// The store's change sequence at the end of the last run it covers (disk mode).
    pub seq: u64,
    /// How the runs it covers changed the counts (disk mode).
    pub counts: CountsDiff,
}

impl StateDelta {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.timers.is_empty()
    }

    /// Adds a later delta (its values win).
    pub fn merge(&mut self, later: StateDelta) {
        self.values.extend(later.values);
        self.timers.extend(later.timers);
        self.seq = self.seq.max(later.seq);
        self.counts.keys += later.counts.keys;
        self.counts.bytes += later.counts.bytes;
        self.counts.timers += later.counts.timers;
    }
}

/// The state of one input partition.
#[derive(Debug)]
pub struct StateStore {
    /// Memory mode: every value and timer.
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    timers: BTreeSet<(i64, Vec<u8>)>,
    /// Disk mode: the disk tier (`values` and `timers` stay empty).
    tier: Option<Box<Tier>>,
    /// Bytes this partition holds (also counted in the budget).
    bytes: u64,
    budget: std::sync::Arc<StateBudget>,
    /// Changes of the run in progress, oldest first.
    undo: Vec<Undo>,
    /// Where the call in progress started in `undo`.
    call_mark: usize,
    /// Sequence number of the last change.
    seq: u64,
    /// Counts when the run in progress began.
    run_start: Counts,
}

impl Drop for StateStore {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
        if let Some(t) = &mut self.tier {
            let held = t.held;
            t.release(held);
        }
    }
}

impl StateStore {
    pub fn new(budget: std::sync::Arc<StateBudget>) -> StateStore {
        StateStore {
            values: BTreeMap::new(),
            timers: BTreeSet::new(),
            tier: None,
            bytes: 0,
            budget,
            undo: Vec::new(),
            call_mark: 0,
            seq: 0,
            run_start: Counts::default(),
        }
    }

    /// A store on disk: what `disk` holds, with at most about `memory`'s limit in memory
    /// (shared by the deployment's stores). Also the checkpoint bytes of the last write.
    pub fn on_disk(
        budget: std::sync::Arc<StateBudget>,
        memory: Arc<StateBudget>,
        disk: DiskPart,
    ) -> Result<(StateStore, Option<Vec<u8>>), String> {
        let found = disk.checkpoint()?;
        let (counts, checkpoint) = match found {
            Some((c, b)) => (c, Some(b)),
            None => (Counts::default(), None),
        };
        let mut s = StateStore::new(budget);
        s.budget.force(counts.bytes);
        s.bytes = counts.bytes;
        s.tier = Some(Box::new(Tier {
            disk,
            dirty: BTreeMap::new(),
            set: BTreeMap::new(),
            gone: BTreeMap::new(),
            cache: LruCache::unbounded(),
            memory,
            held: 0,
            keys: counts.keys,
            timers: counts.timers,
            on_disk: counts,
            written_seq: 0,
            cursor: None,
        }));
        Ok((s, checkpoint))
    }

    pub fn is_on_disk(&self) -> bool {
        self.tier.is_some()
    }

    /// Disk mode: the checkpoint bytes of the last write to disk.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, String> {
        match &self.tier {
            Some(t) => Ok(t.disk.checkpoint()?.map(|(_, b)| b)),
            None => Ok(None),
        }
    }

    /// Memory held by a disk-mode store (its cache and unwritten changes).
    pub fn memory_held(&self) -> u64 {
        self.tier.as_ref().map_or(self.bytes, |t| t.held)
    }

    pub fn keys(&self) -> usize {
        match &self.tier {
            Some(t) => t.keys as usize,
            None => self.values.len(),
        }
    }

    pub fn timer_count(&self) -> usize {
        match &self.tier {
            Some(t) => t.timers as usize,
            None => self.timers.len(),
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn counts(&self) -> Counts {
        Counts {
            keys: self.keys() as u64,
            bytes: self.bytes,
            timers: self.timer_count() as u64,
        }
    }

    /// A key's value (disk mode: read through the cache).
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, wasmtime::Error> {
        match &mut self.tier {
            None => Ok(self.values.get(key).cloned()),
            Some(t) => {
                let v = t.value(key).map_err(disk_error)?.0;
                t.evict();
                Ok(v)
            }
        }
    }

    fn charge(&mut self, n: u64, enforce: bool) -> Result<(), Stop> {
        if enforce {
            self.budget.take(n)?;
        } else {
            self.budget.force(n);
        }
        self.bytes += n;
        Ok(())
    }

    fn refund(&mut self, n: u64) {
        self.budget.give(n);
        self.bytes = self.bytes.saturating_sub(n);
    }

    /// A key's value and what it was in disk terms.
    fn current(&mut self, key: &[u8]) -> Result<(Option<Vec<u8>>, Prev), wasmtime::Error> {
        match &mut self.tier {
            None => Ok((self.values.get(key).cloned(), Prev::Clean)),
            Some(t) => t.value(key).map_err(disk_error),
        }
    }

    /// Sets a value: within the budget (enforced), recorded for undo.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), wasmtime::Error> {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(wasmtime::Error::msg(format!(
                "state value of {} bytes: the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        if self.tier.is_none() {
            let new = value_cost(key, value);
            let old = self.values.get(key).map(|v| value_cost(key, v));
            if new > old.unwrap_or(0) {
                self.charge(new - old.unwrap_or(0), true)
                    .map_err(wasmtime::Error::new)?;
            } else {
                self.refund(old.unwrap_or(0) - new);
            }
            // An update reuses the key already in the map (one allocation less per put).
            let prev = match self.values.get_mut(key) {
                Some(v) => Some(std::mem::replace(v, value.to_vec())),
                None => self.values.insert(key.to_vec(), value.to_vec()),
            };
            self.undo.push(Undo::Value(key.to_vec(), prev, Prev::Clean));
            return Ok(());
        }
        let (old, prev) = self.current(key)?;
        let new = value_cost(key, value);
        let old_cost = old.as_ref().map_or(0, |v| value_cost(key, v));
        if new > old_cost {
            self.charge(new - old_cost, true)
                .map_err(wasmtime::Error::new)?;
        } else {
            self.refund(old_cost - new);
        }
        self.seq += 1;
        let seq = self.seq;
        if let Some(t) = &mut self.tier {
            if old.is_none() {
                t.keys += 1;
            }
            t.set_dirty(key, Some(value.to_vec()), seq);
            t.evict();
        }
        self.undo.push(Undo::Value(key.to_vec(), old, prev));
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<(), wasmtime::Error> {
        if self.tier.is_none() {
            if let Some(prev) = self.values.remove(key) {
                self.refund(value_cost(key, &prev));
                self.undo
                    .push(Undo::Value(key.to_vec(), Some(prev), Prev::Clean));
            }
            return Ok(());
        }
        let (old, prev) = self.current(key)?;
        let Some(old) = old else {
            return Ok(());
        };
        self.refund(value_cost(key, &old));
        self.seq += 1;
        let seq = self.seq;
        if let Some(t) = &mut self.tier {
            t.keys = t.keys.saturating_sub(1);
            t.set_dirty(key, None, seq);
            t.evict();
        }
        self.undo.push(Undo::Value(key.to_vec(), Some(old), prev));
        Ok(())
    }

    /// Whether a timer is set.
    pub fn has_timer(&self, at: i64, key: &[u8]) -> Result<bool, String> {
        let t = (at, key.to_vec());
        match &self.tier {
            None => Ok(self.timers.contains(&t)),
            Some(tier) => tier.has_timer(&t),
        }
    }

    /// Marks a timer set or removed (disk mode), with what it was.
    fn change_timer(&mut self, t: (i64, Vec<u8>), set: bool) -> Result<Prev, String> {
        self.seq += 1;
        let seq = self.seq;
        let Some(tier) = &mut self.tier else {
            return Ok(Prev::Clean);
        };
        let prev = if let Some(s) = tier.set.get(&t).or_else(|| tier.gone.get(&t)) {
            Prev::Dirty(*s)
        } else {
            Prev::Clean
        };
        if set {
            tier.timers += 1;
        } else {
            tier.timers = tier.timers.saturating_sub(1);
        }
        tier.timer_to(t, set, Prev::Dirty(seq));
        Ok(prev)
    }

    pub fn set_timer(&mut self, key: &[u8], at: i64) -> Result<(), wasmtime::Error> {
        check_key(key)?;
        if self.has_timer(at, key).map_err(disk_error)? {
            return Ok(());
        }
        self.charge(timer_cost(key), true)
            .map_err(wasmtime::Error::new)?;
        let t = (at, key.to_vec());
        let prev = if self.tier.is_some() {
            self.change_timer(t, true).map_err(disk_error)?
        } else {
            self.timers.insert(t);
            Prev::Clean
        };
        self.undo.push(Undo::TimerAdded(at, key.to_vec(), prev));
        Ok(())
    }

    pub fn cancel_timer(&mut self, key: &[u8], at: i64) -> Result<(), wasmtime::Error> {
        let t = (at, key.to_vec());
        if self.tier.is_none() {
            if self.timers.remove(&t) {
                self.refund(timer_cost(key));
                self.undo.push(Undo::TimerRemoved(at, t.1, Prev::Clean));
            }
            return Ok(());
        }
        if !self.has_timer(at, key).map_err(disk_error)? {
            return Ok(());
        }
        self.refund(timer_cost(key));
        let prev = self.change_timer(t, false).map_err(disk_error)?;
        self.undo.push(Undo::TimerRemoved(at, key.to_vec(), prev));
        Ok(())
    }

    /// Applies a plugin's batched operations (the `apply` import).
    pub fn apply(&mut self, ops: &[u8]) -> Result<(), wasmtime::Error> {
        for op in read_ops(ops) {
            match op
                .map_err(|e| wasmtime::Error::msg(format!("malformed state operations: {e}")))?
            {
                Op::Put(k, v) => self.put(k, v)?,
                Op::Delete(k) => self.delete(k)?,
                Op::SetTimer(k, at) => self.set_timer(k, at)?,
                Op::CancelTimer(k, at) => self.cancel_timer(k, at)?,
            }
        }
        Ok(())
    }

    /// Current entries with `prefix` from `from` on: at most `limit` and about `bytes`.
    fn entries(
        &self,
        prefix: &[u8],
        from: Bound<&[u8]>,
        limit: usize,
        bytes: usize,
    ) -> Result<Vec<Entry>, String> {
        if let Some(t) = &self.tier {
            return t.range(prefix, from, limit, bytes);
        }
        let mut out = Vec::new();
        let mut size = 0usize;
        for (k, v) in self
            .values
            .range::<[u8], _>((from, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
        {
            if !out.is_empty() && size + k.len() + v.len() > bytes {
                break;
            }
            size += k.len() + v.len();
            out.push((k.clone(), v.clone()));
        }
        Ok(out)
    }

    /// Entries with `prefix` after `after`: at most `limit` and about [`SCAN_BYTES`], in
    /// the `scan` layout.
    pub fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<u8>, wasmtime::Error> {
        let from = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut out = Vec::new();
        let found = self
            .entries(prefix, from, limit.max(1) as usize, SCAN_BYTES)
            .map_err(disk_error)?;
        for (k, v) in found {
            put_entry(&mut out, &k, &v);
        }
        Ok(out)
    }

    /// What the run in progress found for each key it changed (its first undo entry).
    fn before_run(&self) -> BTreeMap<&[u8], Option<&[u8]>> {
        let mut m = BTreeMap::new();
        for u in &self.undo {
            if let Undo::Value(k, prev, _) = u {
                m.entry(k.as_slice()).or_insert(prev.as_deref());
            }
        }
        m
    }

    /// A key's value as of the last completed run (what the state API shows: a run in
    /// progress may still be undone).
    pub fn committed_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if let Some(prev) = self.before_run().get(key) {
            return Ok(prev.map(<[u8]>::to_vec));
        }
        match &self.tier {
            None => Ok(self.values.get(key).cloned()),
            Some(t) => t.peek(key),
        }
    }

    /// Entries with `prefix` after `after` as of the last completed run, for the state
    /// API: at most `limit`.
    pub fn page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, String> {
        let from = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let in_range = |k: &[u8]| {
            k.starts_with(prefix)
                && match from {
                    Bound::Excluded(a) => k > a,
                    _ => true,
                }
        };
        let before = self.before_run();
        let touched: Vec<(&[u8], Option<&[u8]>)> = before
            .iter()
            .filter(|(k, _)| in_range(k))
            .map(|(k, v)| (*k, *v))
            .collect();
        // Current keys that the run did not touch, plus touched keys as they were.
        let current = self.entries(prefix, from, limit + touched.len(), usize::MAX)?;
        let mut out: BTreeMap<&[u8], &[u8]> = current
            .iter()
            .filter(|(k, _)| !before.contains_key(k.as_slice()))
            .take(limit)
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        for (k, v) in touched {
            if let Some(v) = v {
                out.insert(k, v);
            }
        }
        Ok(out
            .into_iter()
            .take(limit)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect())
    }

    /// The earliest pending timer's time.
    pub fn next_timer(&mut self) -> Option<i64> {
        match &mut self.tier {
            None => self.timers.first().map(|(at, _)| *at),
            Some(t) => {
                let mem = t.set.keys().next().map(|(at, _)| *at);
                let disk = match t.first_disk_timer() {
                    Ok(d) => d.map(|(at, _)| at),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading timers");
                        None
                    }
                };
                match (mem, disk) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Removes up to `max` timers due at `watermark` (recorded for undo) and returns them
    /// in firing order, in the `on-timers` layout with their count.
    pub fn take_due(&mut self, watermark: i64, max: usize) -> Result<(Vec<u8>, u32), String> {
        let mut list = Vec::new();
        let mut n = 0u32;
        let due = match &mut self.tier {
            Some(t) => Some(t.due(watermark, max)?),
            None => None,
        };
        if let Some(due) = due {
            for (at, key) in due {
                put_timer(&mut list, at, &key);
                self.refund(timer_cost(&key));
                let prev = self.change_timer((at, key.clone()), false)?;
                self.undo.push(Undo::TimerRemoved(at, key, prev));
                n += 1;
            }
            return Ok((list, n));
        }
        while (n as usize) < max {
            let Some(first) = self.timers.first() else {
                break;
            };
            if first.0 > watermark {
                break;
            }
            let Some((at, key)) = self.timers.pop_first() else {
                break;
            };
            put_timer(&mut list, at, &key);
            self.refund(timer_cost(&key));
            self.undo.push(Undo::TimerRemoved(at, key, Prev::Clean));
            n += 1;
        }
        Ok((list, n))
    }

    /// Puts back a timer that `take_due` removed but that did not fire (its call was cut
    /// short); recorded like any change.
    pub fn put_back_timer(&mut self, at: i64, key: &[u8]) {
        if self.has_timer(at, key).unwrap_or(true) {
            return;
        }
        let _ = self.charge(timer_cost(key), false);
        let t = (at, key.to_vec());
        let prev = if self.tier.is_some() {
            self.change_timer(t, true).unwrap_or(Prev::Clean)
        } else {
            self.timers.insert(t);
            Prev::Clean
        };
        self.undo.push(Undo::TimerAdded(at, key.to_vec(), prev));
    }

    /// Starts recording a run's changes.
    pub fn begin_run(&mut self) {
        self.undo.clear();
        self.call_mark = 0;
        self.run_start = self.counts();
    }

    /// Starts a call within the run.
    pub fn begin_call(&mut self) {
        self.call_mark = self.undo.len();
    }

    /// Ends a call: a failed call's changes are undone.
    pub fn end_call(&mut self, ok: bool) {
        if !ok {
            self.undo_to(self.call_mark);
        }
    }

    /// Ends a run: a kept run's changes come back as a delta; a dropped run is undone.
    pub fn end_run(&mut self, keep: bool) -> StateDelta {
        if !keep {
            self.undo_to(0);
            return StateDelta::default();
        }
        let mut delta = StateDelta::default();
        for u in std::mem::take(&mut self.undo) {
            match u {
                Undo::Value(k, _, _) => {
                    let now = match &self.tier {
                        None => self.values.get(&k).cloned(),
                        Some(t) => match t.dirty.get(&k) {
                            Some((v, _)) => v.clone(),
                            None => t.peek(&k).unwrap_or_default(),
                        },
                    };
                    delta.values.insert(k, now);
                }
                Undo::TimerAdded(at, k, _) | Undo::TimerRemoved(at, k, _) => {
                    let t = (at, k);
                    let set = match &self.tier {
                        None => self.timers.contains(&t),
                        Some(tier) => tier.has_timer(&t).unwrap_or_default(),
                    };
                    delta.timers.insert(t, set);
                }
            }
        }
        let now = self.counts();
        delta.seq = self.seq;
        delta.counts = CountsDiff {
            keys: now.keys as i64 - self.run_start.keys as i64,
            bytes: now.bytes as i64 - self.run_start.bytes as i64,
            timers: now.timers as i64 - self.run_start.timers as i64,
        };
        self.run_start = now;
        self.call_mark = 0;
        delta
    }

    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let Some(u) = self.undo.pop() else { break };
            match u {
                Undo::Value(k, prev, state) => {
                    let cur = match &mut self.tier {
                        None => self.values.remove(&k),
                        Some(t) => t.peek(&k).unwrap_or_default(),
                    };
                    if let Some(cur) = &cur {
                        self.refund(value_cost(&k, cur));
                    }
                    if let Some(p) = &prev {
                        let _ = self.charge(value_cost(&k, p), false);
                    }
                    match &mut self.tier {
                        None => {
                            if let Some(p) = prev {
                                self.values.insert(k, p);
                            }
                        }
                        Some(t) => {
                            t.keys = (t.keys + u64::from(prev.is_some()))
                                .saturating_sub(u64::from(cur.is_some()));
                            t.restore_entry(k, prev, state);
                        }
                    }
                }
                Undo::TimerAdded(at, k, state) => {
                    self.refund(timer_cost(&k));
                    match &mut self.tier {
                        None => {
                            self.timers.remove(&(at, k));
                        }
                        Some(t) => {
                            t.timers = t.timers.saturating_sub(1);
                            t.timer_to((at, k), false, state);
                        }
                    }
                }
                Undo::TimerRemoved(at, k, state) => {
                    let _ = self.charge(timer_cost(&k), false);
                    match &mut self.tier {
                        None => {
                            self.timers.insert((at, k));
                        }
                        Some(t) => {
                            t.timers += 1;
                            t.timer_to((at, k), true, state);
                        }
                    }
                }
            }
        }
    }

    /// Loads an entry while restoring (no undo, no limit: it was within it when written).
    pub fn restore_value(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), String> {
        if self.tier.is_none() {
            if let Some(old) = self.values.remove(&key) {
                self.refund(value_cost(&key, &old));
            }
            if let Some(v) = value {
                let _ = self.charge(value_cost(&key, &v), false);
                self.values.insert(key, v);
            }
            return Ok(());
        }
        let old = match &mut self.tier {
            Some(t) => t.value(&key)?.0,
            None => None,
        };
        if let Some(old) = &old {
            self.refund(value_cost(&key, old));
        }
        if let Some(v) = &value {
            let _ = self.charge(value_cost(&key, v), false);
        }
        self.seq += 1;
        let seq = self.seq;
        if let Some(t) = &mut self.tier {
            t.keys = (t.keys + u64::from(value.is_some())).saturating_sub(u64::from(old.is_some()));
            t.set_dirty(&key, value, seq);
            t.evict();
        }
        Ok(())
    }

    /// Loads a timer while restoring.
    pub fn restore_timer(&mut self, at: i64, key: Vec<u8>, set: bool) -> Result<(), String> {
        let cost = timer_cost(&key);
        if self.has_timer(at, &key)? == set {
            return Ok(());
        }
        if set {
            let _ = self.charge(cost, false);
        } else {
            self.refund(cost);
        }
        if self.tier.is_some() {
            self.change_timer((at, key), set)?;
        } else if set {
            self.timers.insert((at, key));
        } else {
            self.timers.remove(&(at, key));
        }
        Ok(())
    }

    /// Every value and timer (for a snapshot; memory mode).
    pub fn values(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.values.iter()
    }

    pub fn timers(&self) -> impl Iterator<Item = &(i64, Vec<u8>)> {
        self.timers.iter()
    }

    /// Disk mode: writes everything changed (no run may be in progress) with the
    /// checkpoint it reaches, as one batch (restore writes what it replayed this way).
    pub fn write_all(&mut self, checkpoint: &[u8]) -> Result<(), String> {
        let counts = self.counts();
        let seq = self.seq;
        let Some(t) = &mut self.tier else {
            return Ok(());
        };
        let values = t
            .dirty
            .iter()
            .map(|(k, (v, _))| DiskChange::Value(k, v.as_deref()));
        let set = t.set.keys().map(|(at, k)| DiskChange::Timer(*at, k, true));
        let gone = t
            .gone
            .keys()
            .map(|(at, k)| DiskChange::Timer(*at, k, false));
        t.disk
            .write(values.chain(set).chain(gone), counts, checkpoint)?;
        t.on_disk = counts;
        t.all_written(seq);
        t.evict();
        Ok(())
    }

    /// Disk mode: whether the changes not yet written have grown enough to write them
    /// (a restore writes what it replayed as it goes).
    pub fn should_write(&self) -> bool {
        self.tier.as_ref().is_some_and(|t| {
            t.dirty.len() + t.set.len() + t.gone.len() >= WRITE_AFTER
                || t.memory.used() > t.memory.limit()
        })
    }

    /// Empties the store (a reset; disk mode: the disk too).
    pub fn clear(&mut self) -> Result<(), String> {
        self.values.clear();
        self.timers.clear();
        self.undo.clear();
        self.call_mark = 0;
        self.budget.give(self.bytes);
        self.bytes = 0;
        if let Some(t) = &mut self.tier {
            t.disk.clear()?;
            let held = t.held;
            t.release(held);
            t.dirty.clear();
            t.set.clear();
            t.gone.clear();
            t.cache.clear();
            t.keys = 0;
            t.timers = 0;
            t.on_disk = Counts::default();
            t.written_seq = self.seq;
            t.cursor = None;
        }
        self.run_start = Counts::default();
        Ok(())
    }
}

/// Disk mode: writes a committed delta (the changes of runs the changelog has) to the
/// store's disk with `checkpoint`, outside the store's lock; what it covers becomes clean
/// (evictable).
pub fn write_committed(
    store: &Mutex<StateStore>,
    delta: &StateDelta,
    checkpoint: &[u8],
) -> Result<(), String> {
    let lock = || store.lock().unwrap_or_else(|p| p.into_inner());
    let (disk, counts) = {
        let s = lock();
        let Some(t) = &s.tier else {
            return Ok(());
        };
        let c = t.on_disk;
        let add = |n: u64, d: i64| n.saturating_add_signed(d);
        let counts = Counts {
            keys: add(c.keys, delta.counts.keys),
            bytes: add(c.bytes, delta.counts.bytes),
            timers: add(c.timers, delta.counts.timers),
        };
        (t.disk.clone(), counts)
    };
    let values = delta
        .values
        .iter()
        .map(|(k, v)| DiskChange::Value(k, v.as_deref()));
    let timers = delta
        .timers
        .iter()
        .map(|((at, k), set)| DiskChange::Timer(*at, k, *set));
    disk.write(values.chain(timers), counts, checkpoint)?;
    let mut s = lock();
    let Some(t) = &mut s.tier else {
        return Ok(());
    };
    t.on_disk = counts;
    t.written_seq = t.written_seq.max(delta.seq);
    for k in delta.values.keys() {
        if let Some((_, seq)) = t.dirty.get(k)
            && *seq <= delta.seq
            && let Some((v, _)) = t.dirty.remove(k)
        {
            t.release(budget::held_value(k, v.as_deref().unwrap_or_default()));
            if let Some(v) = v {
                t.hold(budget::held_value(k, &v));
                t.cache.put(k.clone(), v);
            }
        }
    }
    for tk in delta.timers.keys() {
        if t.set.get(tk).is_some_and(|s| *s <= delta.seq) {
            t.set.remove(tk);
            t.release(budget::held_timer(&tk.1));
            t.lower_cursor(tk);
        }
        if t.gone.get(tk).is_some_and(|s| *s <= delta.seq) {
            t.gone.remove(tk);
            t.release(budget::held_timer(&tk.1));
        }
    }
    t.evict();
    Ok(())
}

fn check_key(key: &[u8]) -> Result<(), wasmtime::Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(wasmtime::Error::msg(format!(
            "state key of {} bytes: the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}
