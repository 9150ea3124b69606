//! The keyed state of one input partition of a stateful deployment, as plugins see it
//! through the `state` interface: values and timers in memory, every change of a run
//! recorded so that a failed call (or a run whose results are dropped) is undone, and what
//! a kept run changed handed to the pipeline for its changelog.
//!
//! Memory is accounted per deployment ([`StateBudget`]): a write past the limit traps the
//! call with [`Stop::StateLimit`], so a plugin that writes without bound is stopped and
//! reported, never the host's memory exhausted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_sdk::state::{MAX_KEY_BYTES, MAX_VALUE_BYTES, Op, put_entry, put_timer, read_ops};

use crate::stop::Stop;

/// What one value entry costs beyond its key and value bytes (map node and allocations).
pub const ENTRY_OVERHEAD: u64 = 64;
/// What one timer costs beyond its key bytes.
pub const TIMER_OVERHEAD: u64 = 56;
/// Most bytes of entries one `scan` call returns (at least one entry).
pub const SCAN_BYTES: usize = 1 << 20;

/// The state memory of one deployment, shared by its partitions.
#[derive(Debug)]
pub struct StateBudget {
    used: AtomicU64,
    limit: AtomicU64,
}

impl StateBudget {
    pub fn new(limit: u64) -> StateBudget {
        StateBudget {
            used: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    /// A redeploy may change the limit; state already held stays.
    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Takes `n` more bytes, or refuses if that passes the limit.
    fn take(&self, n: u64) -> Result<(), Stop> {
        let limit = self.limit();
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return Err(Stop::StateLimit { limit });
        }
        Ok(())
    }

    /// Takes `n` bytes whatever the limit (undoing a change, restoring).
    fn force(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

fn value_cost(k: &[u8], v: &[u8]) -> u64 {
    (k.len() + v.len()) as u64 + ENTRY_OVERHEAD
}

fn timer_cost(k: &[u8]) -> u64 {
    k.len() as u64 + TIMER_OVERHEAD
}

/// One change, with what it replaced.
#[derive(Debug)]
enum Undo {
    Value(Vec<u8>, Option<Vec<u8>>),
    /// The timer was absent before.
    TimerAdded(i64, Vec<u8>),
    /// The timer was present before.
    TimerRemoved(i64, Vec<u8>),
}

/// What a run changed: the new value (`None` = deleted) of every key it touched, and
/// whether every timer it touched is now set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StateDelta {
    pub values: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pub timers: BTreeMap<(i64, Vec<u8>), bool>,
}

impl StateDelta {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.timers.is_empty()
    }

    /// Adds a later delta (its values win).
    pub fn merge(&mut self, later: StateDelta) {
        self.values.extend(later.values);
        self.timers.extend(later.timers);
    }
}

/// The state of one input partition.
#[derive(Debug)]
pub struct StateStore {
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    timers: BTreeSet<(i64, Vec<u8>)>,
    /// Bytes this partition holds (also counted in the budget).
    bytes: u64,
    budget: std::sync::Arc<StateBudget>,
    /// Changes of the run in progress, oldest first.
    undo: Vec<Undo>,
    /// Where the call in progress started in `undo`.
    call_mark: usize,
}

impl Drop for StateStore {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

impl StateStore {
    pub fn new(budget: std::sync::Arc<StateBudget>) -> StateStore {
        StateStore {
            values: BTreeMap::new(),
            timers: BTreeSet::new(),
            bytes: 0,
            budget,
            undo: Vec::new(),
            call_mark: 0,
        }
    }

    pub fn keys(&self) -> usize {
        self.values.len()
    }

    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.values.get(key).map(Vec::as_slice)
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

    /// Sets a value: within the budget (enforced), recorded for undo.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), wasmtime::Error> {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(wasmtime::Error::msg(format!(
                "state value of {} bytes: the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
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
        self.undo.push(Undo::Value(key.to_vec(), prev));
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) {
        if let Some(prev) = self.values.remove(key) {
            self.refund(value_cost(key, &prev));
            self.undo.push(Undo::Value(key.to_vec(), Some(prev)));
        }
    }

    pub fn set_timer(&mut self, key: &[u8], at: i64) -> Result<(), wasmtime::Error> {
        check_key(key)?;
        let t = (at, key.to_vec());
        if self.timers.contains(&t) {
            return Ok(());
        }
        self.charge(timer_cost(key), true)
            .map_err(wasmtime::Error::new)?;
        self.timers.insert(t);
        self.undo.push(Undo::TimerAdded(at, key.to_vec()));
        Ok(())
    }

    pub fn cancel_timer(&mut self, key: &[u8], at: i64) {
        let t = (at, key.to_vec());
        if self.timers.remove(&t) {
            self.refund(timer_cost(key));
            self.undo.push(Undo::TimerRemoved(at, t.1));
        }
    }

    /// Applies a plugin's batched operations (the `apply` import).
    pub fn apply(&mut self, ops: &[u8]) -> Result<(), wasmtime::Error> {
        for op in read_ops(ops) {
            match op
                .map_err(|e| wasmtime::Error::msg(format!("malformed state operations: {e}")))?
            {
                Op::Put(k, v) => self.put(k, v)?,
                Op::Delete(k) => self.delete(k),
                Op::SetTimer(k, at) => self.set_timer(k, at)?,
                Op::CancelTimer(k, at) => self.cancel_timer(k, at),
            }
        }
        Ok(())
    }

    /// Entries with `prefix` after `after`: at most `limit` and about [`SCAN_BYTES`], in
    /// the `scan` layout.
    pub fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let from = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a.to_vec()),
            _ => std::ops::Bound::Included(prefix.to_vec()),
        };
        for (k, v) in self
            .values
            .range((from, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit.max(1) as usize)
        {
            if !out.is_empty() && out.len() + k.len() + v.len() > SCAN_BYTES {
                break;
            }
            put_entry(&mut out, k, v);
        }
        out
    }

    /// What the run in progress found for each key it changed (its first undo entry).
    fn before_run(&self) -> BTreeMap<&[u8], Option<&[u8]>> {
        let mut m = BTreeMap::new();
        for u in &self.undo {
            if let Undo::Value(k, prev) = u {
                m.entry(k.as_slice()).or_insert(prev.as_deref());
            }
        }
        m
    }

    /// A key's value as of the last completed run (what the state API shows: a run in
    /// progress may still be undone).
    pub fn committed_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        match self.before_run().get(key) {
            Some(prev) => prev.map(<[u8]>::to_vec),
            None => self.get(key).map(<[u8]>::to_vec),
        }
    }

    /// Entries with `prefix` after `after` as of the last completed run, for the state
    /// API: at most `limit`.
    pub fn page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let from = match after {
            Some(a) if a >= prefix => std::ops::Bound::Excluded(a),
            _ => std::ops::Bound::Included(prefix),
        };
        let in_range = |k: &[u8]| {
            k.starts_with(prefix)
                && match from {
                    std::ops::Bound::Excluded(a) => k > a,
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
        let mut out: BTreeMap<&[u8], &[u8]> = self
            .values
            .range::<[u8], _>((from, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| !before.contains_key(k.as_slice()))
            .take(limit)
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
            .collect();
        for (k, v) in touched {
            if let Some(v) = v {
                out.insert(k, v);
            }
        }
        out.into_iter()
            .take(limit)
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect()
    }

    pub fn has_timer(&self, at: i64, key: &[u8]) -> bool {
        self.timers.contains(&(at, key.to_vec()))
    }

    /// The earliest pending timer's time.
    pub fn next_timer(&self) -> Option<i64> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Removes up to `max` timers due at `watermark` (recorded for undo) and returns them
    /// in firing order, in the `on-timers` layout with their count.
    pub fn take_due(&mut self, watermark: i64, max: usize) -> (Vec<u8>, u32) {
        let mut list = Vec::new();
        let mut n = 0u32;
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
            self.undo.push(Undo::TimerRemoved(at, key));
            n += 1;
        }
        (list, n)
    }

    /// Puts back a timer that `take_due` removed but that did not fire (its call was cut
    /// short); recorded like any change.
    pub fn put_back_timer(&mut self, at: i64, key: &[u8]) {
        let t = (at, key.to_vec());
        if !self.timers.contains(&t) {
            let _ = self.charge(timer_cost(key), false);
            self.timers.insert(t);
            self.undo.push(Undo::TimerAdded(at, key.to_vec()));
        }
    }

    /// Starts recording a run's changes.
    pub fn begin_run(&mut self) {
        self.undo.clear();
        self.call_mark = 0;
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
                Undo::Value(k, _) => {
                    let now = self.values.get(&k).cloned();
                    delta.values.insert(k, now);
                }
                Undo::TimerAdded(at, k) | Undo::TimerRemoved(at, k) => {
                    let set = self.timers.contains(&(at, k.clone()));
                    delta.timers.insert((at, k), set);
                }
            }
        }
        self.call_mark = 0;
        delta
    }

    fn undo_to(&mut self, mark: usize) {
        while self.undo.len() > mark {
            let Some(u) = self.undo.pop() else { break };
            match u {
                Undo::Value(k, prev) => {
                    if let Some(cur) = self.values.remove(&k) {
                        self.refund(value_cost(&k, &cur));
                    }
                    if let Some(p) = prev {
                        let _ = self.charge(value_cost(&k, &p), false);
                        self.values.insert(k, p);
                    }
                }
                Undo::TimerAdded(at, k) => {
                    if self.timers.remove(&(at, k.clone())) {
                        self.refund(timer_cost(&k));
                    }
                }
                Undo::TimerRemoved(at, k) => {
                    let _ = self.charge(timer_cost(&k), false);
                    self.timers.insert((at, k));
                }
            }
        }
    }

    /// Loads an entry while restoring (no undo, no limit: it was within it when written).
    pub fn restore_value(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if let Some(old) = self.values.remove(&key) {
            self.refund(value_cost(&key, &old));
        }
        if let Some(v) = value {
            let _ = self.charge(value_cost(&key, &v), false);
            self.values.insert(key, v);
        }
    }

    /// Loads a timer while restoring.
    pub fn restore_timer(&mut self, at: i64, key: Vec<u8>, set: bool) {
        let cost = timer_cost(&key);
        if set {
            if self.timers.insert((at, key)) {
                let _ = self.charge(cost, false);
            }
        } else if self.timers.remove(&(at, key)) {
            self.refund(cost);
        }
    }

    /// Every value and timer (for a snapshot).
    pub fn values(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.values.iter()
    }

    pub fn timers(&self) -> impl Iterator<Item = &(i64, Vec<u8>)> {
        self.timers.iter()
    }

    /// Empties the store (a reset).
    pub fn clear(&mut self) {
        self.values.clear();
        self.timers.clear();
        self.undo.clear();
        self.call_mark = 0;
        self.budget.give(self.bytes);
        self.bytes = 0;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn failed_calls_and_dropped_runs_are_undone_and_kept_runs_give_their_delta() {
        let budget = Arc::new(StateBudget::new(1 << 20));
        let mut s = StateStore::new(budget.clone());
        s.begin_run();
        s.begin_call();
        s.put(b"a", b"1").unwrap();
        s.set_timer(b"a", 10).unwrap();
        s.end_call(true);
        s.begin_call();
        s.put(b"a", b"2").unwrap();
        s.put(b"b", b"x").unwrap();
        s.cancel_timer(b"a", 10);
        s.end_call(false);
        assert_eq!(s.get(b"a"), Some(&b"1"[..]));
        assert_eq!(s.get(b"b"), None);
        assert_eq!(s.timer_count(), 1);
        let d = s.end_run(true);
        assert_eq!(d.values.get(&b"a"[..]), Some(&Some(b"1".to_vec())));
        assert_eq!(d.timers.get(&(10, b"a".to_vec())), Some(&true));
        assert_eq!(budget.used(), s.bytes());

        s.begin_run();
        s.begin_call();
        s.delete(b"a");
        let (due, n) = s.take_due(10, 100);
        assert_eq!(n, 1);
        assert!(!due.is_empty());
        s.end_call(true);
        assert!(s.end_run(false).is_empty());
        assert_eq!((s.get(b"a"), s.timer_count()), (Some(&b"1"[..]), 1));
        assert_eq!(budget.used(), s.bytes());
        drop(s);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn readers_see_the_state_of_the_last_completed_run() {
        let mut s = StateStore::new(Arc::new(StateBudget::new(1 << 20)));
        s.begin_run();
        for k in [&b"p1"[..], b"p2", b"p3", b"q"] {
            s.put(k, b"old").unwrap();
        }
        s.end_run(true);
        s.begin_run();
        s.begin_call();
        s.put(b"p1", b"new").unwrap();
        s.delete(b"p2");
        s.put(b"p0", b"added").unwrap();
        let page = s.page(b"p", None, 10);
        let keys: Vec<&[u8]> = page.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(keys, [&b"p1"[..], b"p2", b"p3"]);
        assert!(page.iter().all(|(_, v)| v == b"old"));
        assert_eq!(
            s.page(b"p", Some(b"p1"), 1),
            [(b"p2".to_vec(), b"old".to_vec())]
        );
        assert_eq!(s.committed_get(b"p2"), Some(b"old".to_vec()));
        assert_eq!(s.committed_get(b"p0"), None);
        s.end_call(true);
        s.end_run(true);
        assert_eq!(s.committed_get(b"p1"), Some(b"new".to_vec()));
        let keys: Vec<Vec<u8>> = s.page(b"p", None, 10).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [b"p0".to_vec(), b"p1".to_vec(), b"p3".to_vec()]);
    }

    #[test]
    fn the_budget_is_shared_and_enforced() {
        let budget = Arc::new(StateBudget::new(300));
        let mut a = StateStore::new(budget.clone());
        let mut b = StateStore::new(budget.clone());
        a.put(b"k", &[0; 100]).unwrap();
        let e = b.put(b"k", &[0; 100]).unwrap_err();
        assert!(matches!(
            e.downcast_ref::<Stop>(),
            Some(Stop::StateLimit { limit: 300 })
        ));
        // Shrinking a value always works.
        a.put(b"k", b"").unwrap();
        b.put(b"k", &[0; 100]).unwrap();
        assert!(b.put(&vec![0; MAX_KEY_BYTES + 1], b"").is_err());
    }

    #[test]
    fn scans_page_by_prefix() {
        let mut s = StateStore::new(Arc::new(StateBudget::new(1 << 20)));
        for k in ["a1", "b1", "b2", "b3", "c"] {
            s.put(k.as_bytes(), b"v").unwrap();
        }
        let keys = |buf: Vec<u8>| -> Vec<String> {
            sluice_sdk::state::read_entries(&buf)
                .map(|e| String::from_utf8(e.unwrap().0.to_vec()).unwrap())
                .collect()
        };
        assert_eq!(keys(s.scan(b"b", None, 2)), ["b1", "b2"]);
        assert_eq!(keys(s.scan(b"b", Some(b"b2"), 10)), ["b3"]);
        assert_eq!(keys(s.scan(b"b", Some(b"a"), 10)), ["b1", "b2", "b3"]);
        assert!(keys(s.scan(b"d", None, 10)).is_empty());
    }
}
