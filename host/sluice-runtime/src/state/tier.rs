//! The disk tier of a [`StateStore`](super::StateStore) (`"state_store": "disk"`): changes
//! since the last disk write, a bounded cache of clean values, and the disk.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use lru::LruCache;

use super::budget::{Entry, Prev, StateBudget, held_timer, held_value};
use super::disk::{Counts, DiskPart};
use crate::stop::Stop;

/// The disk tier of a store: what changed since the last disk write (authoritative), a
/// bounded cache of clean values, and the disk.
pub(super) struct Tier {
    pub(super) disk: DiskPart,
    /// Values changed since they were last written to disk (`None`: deleted), with the
    /// change's sequence number.
    pub(super) dirty: BTreeMap<Vec<u8>, (Option<Vec<u8>>, u64)>,
    /// Timers set, and timers removed, since the last disk write.
    pub(super) set: BTreeMap<(i64, Vec<u8>), u64>,
    pub(super) gone: BTreeMap<(i64, Vec<u8>), u64>,
    /// Clean values read from disk or written there, least recently used first.
    pub(super) cache: LruCache<Vec<u8>, Vec<u8>>,
    /// The memory of the deployment's disk-mode stores (their cache limit).
    pub(super) memory: Arc<StateBudget>,
    /// Bytes of `dirty`, `set`, `gone` and `cache` (counted in `memory`).
    pub(super) held: u64,
    pub(super) keys: u64,
    pub(super) timers: u64,
    /// Counts and change sequence as of the last disk write.
    pub(super) on_disk: Counts,
    pub(super) written_seq: u64,
    /// Every disk timer before this one is overridden by `set`/`gone` (where a search
    /// for the next disk timer starts).
    pub(super) cursor: Option<(i64, Vec<u8>)>,
}

impl std::fmt::Debug for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tier")
            .field("dirty", &self.dirty.len())
            .field("cache", &self.cache.len())
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

pub(super) fn disk_error(e: String) -> wasmtime::Error {
    wasmtime::Error::new(Stop::StateStore { message: e })
}

impl Tier {
    pub(super) fn hold(&mut self, n: u64) {
        self.memory.force(n);
        self.held += n;
    }

    pub(super) fn release(&mut self, n: u64) {
        self.memory.give(n);
        self.held = self.held.saturating_sub(n);
    }

    /// A key's value and its state: dirty, cached, or read from disk (and cached).
    pub(super) fn value(&mut self, key: &[u8]) -> Result<(Option<Vec<u8>>, Prev), String> {
        if let Some((v, seq)) = self.dirty.get(key) {
            return Ok((v.clone(), Prev::Dirty(*seq)));
        }
        if let Some(v) = self.cache.get(key) {
            return Ok((Some(v.clone()), Prev::Clean));
        }
        let v = self.disk.get(key)?;
        if let Some(v) = &v {
            self.hold(held_value(key, v));
            self.cache.put(key.to_vec(), v.clone());
        }
        Ok((v, Prev::Clean))
    }

    /// A key's value without caching it (readers outside the plugin).
    pub(super) fn peek(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if let Some((v, _)) = self.dirty.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.cache.peek(key) {
            return Ok(Some(v.clone()));
        }
        self.disk.get(key)
    }

    /// Makes `key` dirty with `value` at `seq`.
    pub(super) fn set_dirty(&mut self, key: &[u8], value: Option<Vec<u8>>, seq: u64) {
        if let Some(v) = self.cache.pop(key) {
            self.release(held_value(key, &v));
        }
        let cost = held_value(key, value.as_deref().unwrap_or_default());
        self.hold(cost);
        if let Some((old, _)) = self.dirty.insert(key.to_vec(), (value, seq)) {
            self.release(held_value(key, old.as_deref().unwrap_or_default()));
        }
    }

    /// Puts back what a key was before a change.
    pub(super) fn restore_entry(&mut self, key: Vec<u8>, value: Option<Vec<u8>>, prev: Prev) {
        if let Some((old, _)) = self.dirty.remove(&key) {
            self.release(held_value(&key, old.as_deref().unwrap_or_default()));
        }
        match prev {
            Prev::Dirty(seq) if seq > self.written_seq => {
                self.hold(held_value(&key, value.as_deref().unwrap_or_default()));
                self.dirty.insert(key, (value, seq));
            }
            // Clean, or dirty with a change the disk has since received.
            _ => {
                if let Some(v) = value {
                    self.hold(held_value(&key, &v));
                    if let Some(old) = self.cache.put(key.clone(), v) {
                        self.release(held_value(&key, &old));
                    }
                }
            }
        }
    }

    pub(super) fn has_timer(&self, t: &(i64, Vec<u8>)) -> Result<bool, String> {
        if self.set.contains_key(t) {
            return Ok(true);
        }
        if self.gone.contains_key(t) {
            return Ok(false);
        }
        self.disk.has_timer(t.0, &t.1)
    }

    /// A disk timer is visible again (its override went): searches start at it.
    pub(super) fn lower_cursor(&mut self, t: &(i64, Vec<u8>)) {
        if self.cursor.as_ref().is_some_and(|c| c > t) {
            self.cursor = Some(t.clone());
        }
    }

    /// Marks a timer set (`true`) or removed, changed at `seq` (`Prev::Dirty`), or clean
    /// as on disk (`Prev::Clean`, or a change the disk has since received).
    pub(super) fn timer_to(&mut self, t: (i64, Vec<u8>), set: bool, state: Prev) {
        let cost = held_timer(&t.1);
        if self.set.remove(&t).is_some() {
            self.release(cost);
            self.lower_cursor(&t);
        }
        if self.gone.remove(&t).is_some() {
            self.release(cost);
            self.lower_cursor(&t);
        }
        let seq = match state {
            Prev::Dirty(seq) if seq > self.written_seq => seq,
            _ => return,
        };
        self.hold(cost);
        if set {
            self.set.insert(t, seq);
        } else {
            self.gone.insert(t, seq);
        }
    }

    /// The first disk timer not overridden by a change since the last disk write.
    pub(super) fn first_disk_timer(&mut self) -> Result<Option<(i64, Vec<u8>)>, String> {
        let mut last = None;
        for t in self.disk.timers(self.cursor.as_ref()) {
            let t = t?;
            if self.set.contains_key(&t) || self.gone.contains_key(&t) {
                last = Some(t);
                continue;
            }
            self.cursor = Some(t.clone());
            return Ok(Some(t));
        }
        if last.is_some() {
            self.cursor = last;
        }
        Ok(None)
    }

    /// Up to `max` timers due at `watermark`, from disk and from `set`, in firing order.
    /// The caller removes them all (which moves the search start past those from disk).
    pub(super) fn due(
        &mut self,
        watermark: i64,
        max: usize,
    ) -> Result<Vec<(i64, Vec<u8>)>, String> {
        let mut from_disk = Vec::new();
        let mut skipped = None;
        for t in self.disk.timers(self.cursor.as_ref()) {
            let t = t?;
            if t.0 > watermark || from_disk.len() >= max {
                break;
            }
            if self.set.contains_key(&t) || self.gone.contains_key(&t) {
                skipped = Some(t);
                continue;
            }
            from_disk.push(t);
        }
        let from_set: Vec<(i64, Vec<u8>)> = self
            .set
            .keys()
            .take_while(|t| t.0 <= watermark)
            .take(max)
            .cloned()
            .collect();
        let mut all: Vec<(i64, Vec<u8>)> = from_disk.iter().cloned().chain(from_set).collect();
        all.sort();
        all.truncate(max);
        // Disk timers before the first one not taken are overridden or taken.
        let not_taken = from_disk.iter().find(|t| all.binary_search(t).is_err());
        let next = not_taken.or(from_disk.last()).cloned().or(skipped);
        if next.is_some() {
            self.cursor = next;
        }
        Ok(all)
    }

    /// Current values with `prefix` from `from` on (dirty over disk), at most `limit`
    /// (and about `bytes`, at least one).
    pub(super) fn range(
        &self,
        prefix: &[u8],
        from: Bound<&[u8]>,
        limit: usize,
        bytes: usize,
    ) -> Result<Vec<Entry>, String> {
        let mut out = Vec::new();
        let mut size = 0usize;
        let mut disk = self.disk.values(prefix, from).peekable();
        let mut dirty = self
            .dirty
            .range::<[u8], _>((from, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .peekable();
        while out.len() < limit {
            let disk_key = match disk.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(e)) => return Err(e.clone()),
                None => None,
            };
            let (k, v) = match (disk_key, dirty.peek()) {
                (None, None) => break,
                (Some(dk), Some((k, _))) if dk.as_slice() >= k.as_slice() => {
                    if dk.as_slice() == k.as_slice() {
                        disk.next();
                    }
                    let Some((k, (v, _))) = dirty.next() else {
                        break;
                    };
                    let Some(v) = v else { continue };
                    (k.clone(), v.clone())
                }
                (None, Some(_)) => {
                    let Some((k, (v, _))) = dirty.next() else {
                        break;
                    };
                    let Some(v) = v else { continue };
                    (k.clone(), v.clone())
                }
                (Some(_), _) => match disk.next() {
                    Some(Ok(kv)) => kv,
                    Some(Err(e)) => return Err(e),
                    None => break,
                },
            };
            if !out.is_empty() && size + k.len() + v.len() > bytes {
                break;
            }
            size += k.len() + v.len();
            out.push((k, v));
        }
        Ok(out)
    }

    /// Everything changed is now on disk, as of `seq`.
    pub(super) fn all_written(&mut self, seq: u64) {
        let dirty = std::mem::take(&mut self.dirty);
        for (k, (v, _)) in dirty {
            self.release(held_value(&k, v.as_deref().unwrap_or_default()));
            if let Some(v) = v {
                self.hold(held_value(&k, &v));
                self.cache.put(k, v);
            }
        }
        for t in std::mem::take(&mut self.set).into_keys() {
            self.release(held_timer(&t.1));
        }
        for t in std::mem::take(&mut self.gone).into_keys() {
            self.release(held_timer(&t.1));
        }
        self.cursor = None;
        self.written_seq = self.written_seq.max(seq);
    }

    /// Drops clean values until the deployment's stores are within their memory.
    pub(super) fn evict(&mut self) {
        while self.memory.used() > self.memory.limit() {
            let Some((k, v)) = self.cache.pop_lru() else {
                break;
            };
            self.release(held_value(&k, &v));
        }
    }
}
