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

/// In disk mode, what an entry was before a change: clean (as on disk, or absent there)
/// or changed since the last disk write, at `seq`. Memory mode: always clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prev {
    Clean,
    Dirty(u64),
}

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);
