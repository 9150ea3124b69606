//! What keyed state costs: the per-deployment budget, each entry's cost, and how an
//! entry stood before a change (for the disk tier's undo).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::stop::Stop;

/// What one value entry costs beyond its key and value bytes (map node and allocations).
pub const ENTRY_OVERHEAD: u64 = 64;
/// What one timer costs beyond its key bytes.
pub const TIMER_OVERHEAD: u64 = 56;

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
    pub(super) fn take(&self, n: u64) -> Result<(), Stop> {
        let limit = self.limit();
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > limit {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return Err(Stop::StateLimit { limit });
        }
        Ok(())
    }

    /// Takes `n` bytes whatever the limit (undoing a change, restoring).
    pub(super) fn force(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

pub(super) fn value_cost(k: &[u8], v: &[u8]) -> u64 {
    (k.len() + v.len()) as u64 + ENTRY_OVERHEAD
}

pub(super) fn timer_cost(k: &[u8]) -> u64 {
    k.len() as u64 + TIMER_OVERHEAD
}

/// What a value in the disk tier's memory (its changes and its cache) really takes: the
/// allocator's chunks for the key and the value plus the map's node and slot. The cache
/// limit bounds these, i.e. real memory; `state_bytes` counts [`value_cost`], a smaller,
/// allocator-independent figure.
pub(super) fn held_value(k: &[u8], v: &[u8]) -> u64 {
    chunk(k.len()) + chunk(v.len()) + HELD_ENTRY
}

/// What a timer in the disk tier's memory really takes (see [`held_value`]).
pub(super) fn held_timer(k: &[u8]) -> u64 {
    chunk(k.len()) + HELD_TIMER
}

/// An entry's own memory in the disk tier, beyond its key and value chunks: the cache's
/// node (two `Vec`s and two links, 64 bytes, in an 80-byte chunk) and its hash slot (16
/// bytes at a load of 0.44–0.88), or a B-tree slot of the changes (56 bytes in nodes
/// two-thirds full). Checked by `held_costs_match_the_allocator` within 25%.
const HELD_ENTRY: u64 = 112;
/// A timer's B-tree slot (`(i64, Vec)` and a sequence number, 40 bytes) in nodes
/// two-thirds full, and the node's share of the tree's inner nodes.
const HELD_TIMER: u64 = 80;

/// The heap chunk a `len`-byte allocation takes (glibc: 8 bytes of header, 16-byte
/// granules, at least 32).
fn chunk(len: usize) -> u64 {
    if len == 0 {
        0
    } else {
        ((len as u64 + 8 + 15) & !15).max(32)
    }
}

/// In disk mode, what an entry was before a change: clean (as on disk, or absent there)
/// or changed since the last disk write, at `seq`. Memory mode: always clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prev {
    Clean,
    Dirty(u64),
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

#[cfg(test)]
#[allow(unsafe_code)]
mod held_tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use lru::LruCache;

    use super::{held_timer, held_value};

    /// The heap this thread holds, in the allocator's chunks (usable size + header).
    struct Counting;

    thread_local! {
        static HELD: Cell<i64> = const { Cell::new(0) };
    }

    fn chunk_of(p: *mut u8) -> i64 {
        // SAFETY: `p` is a live allocation of the system allocator (malloc).
        unsafe { libc::malloc_usable_size(p.cast()) as i64 + 8 }
    }

    // SAFETY: every call goes to `System`; the counting only reads the pointers it returns.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY: forwarded as is.
            let p = unsafe { System.alloc(l) };
            if !p.is_null() && l.align() <= 16 {
                let _ = HELD.try_with(|h| h.set(h.get() + chunk_of(p)));
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            if l.align() <= 16 {
                let _ = HELD.try_with(|h| h.set(h.get() - chunk_of(p)));
            }
            // SAFETY: forwarded as is.
            unsafe { System.dealloc(p, l) }
        }
    }

    #[global_allocator]
    static ALLOC: Counting = Counting;

    fn held() -> i64 {
        HELD.with(Cell::get)
    }

    fn within(what: &str, real: i64, counted: u64) {
        let ratio = real as f64 / counted as f64;
        eprintln!("{what}: {real} held, {counted} counted ({ratio:.2})");
        assert!(
            (0.75..=1.25).contains(&ratio),
            "{what}: {real} bytes held, {counted} counted ({ratio:.2})"
        );
    }

    /// The disk tier's cache limit bounds real memory: what `held_value` and `held_timer`
    /// count for many entries of the tier's maps is within 25% of what the allocator gives.
    #[test]
    fn held_costs_match_the_allocator() {
        let n = 100_000u32;
        let entry = |i: u32| {
            let k = format!("user-{i:08}").into_bytes();
            let v = format!("{{\"count\":{i}}}").into_bytes();
            (k, v)
        };
        let counted: u64 = (0..n)
            .map(|i| {
                let (k, v) = entry(i);
                held_value(&k, &v)
            })
            .sum();

        let before = held();
        let mut cache = LruCache::unbounded();
        for i in 0..n {
            let (k, v) = entry(i);
            cache.put(k, v);
        }
        within("cache", held() - before, counted);
        drop(cache);

        let before = held();
        let mut dirty = BTreeMap::new();
        for i in 0..n {
            let (k, v) = entry(i);
            dirty.insert(k, (Some(v), u64::from(i)));
        }
        within("changes", held() - before, counted);
        drop(dirty);

        let before = held();
        let mut timers = BTreeMap::new();
        let mut counted = 0;
        for i in 0..n {
            let (k, _) = entry(i);
            counted += held_timer(&k);
            timers.insert((i64::from(i % 100), k), u64::from(i));
        }
        within("timers", held() - before, counted);
    }
}
