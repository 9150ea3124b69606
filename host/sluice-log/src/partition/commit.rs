//! Group commit: concurrent appenders wait for one fsync instead of one each.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::locks::{Txns, lock};
use super::place::Place;
use super::writer::Writer;
use crate::LogError;

/// Which offsets are on stable storage, and the lock held while an fsync runs.
///
/// # Locks
///
/// The outermost partition lock. It is held only inside [`GroupCommit::sync_to`], which is
/// given the [`Writer`] and the [`Txns`] and takes each through a method that takes and
/// releases it (`commit → writer`, `commit → txns`); neither of those types can reach this
/// one. Appends go on while an fsync runs: the writer is held only to read where the log
/// ends.
#[derive(Debug)]
pub(super) struct GroupCommit {
    lock: Mutex<()>,
    /// Offsets below this are on stable storage.
    durable: AtomicU64,
}

impl GroupCommit {
    pub(super) fn new(durable: u64) -> GroupCommit {
        GroupCommit {
            lock: Mutex::new(()),
            durable: AtomicU64::new(durable),
        }
    }

    /// Makes every offset below `target` durable, then visible (`hw`). Concurrent callers
    /// queue on the lock; the first one's fsync covers everything written before it
    /// started, so the others find their offsets already durable and return at once.
    pub(super) fn sync_to(
        &self,
        target: u64,
        writer: &Writer,
        txns: &Txns,
        hw: &watch::Sender<u64>,
        place: &Place,
    ) -> Result<(), LogError> {
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _g = lock(&self.lock);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let (end, active) = writer.end();
        // Sealed segments were synced when they rolled; only the active one can be dirty.
        active.sync().map_err(|e| place.io_err(e))?;
        txns.sync().map_err(|e| place.io_err(e))?;
        self.durable.fetch_max(end, Ordering::AcqRel);
        publish(hw, end);
        Ok(())
    }
}

/// Moves the high watermark up to `end` (never down), waking readers when it moves.
pub(super) fn publish(hw: &watch::Sender<u64>, end: u64) {
    hw.send_if_modified(|hw| {
        let moved = end > *hw;
        if moved {
            *hw = end;
        }
        moved
    });
}
