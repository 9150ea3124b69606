//! The partition's leaf locks, and the one way every partition lock is taken.
//!
//! A leaf lock is held only inside one of its own methods, none of which takes another
//! lock or returns a guard: any other lock may be held while a leaf is taken, and nothing
//! is taken while a leaf is held, so a leaf can be in no lock-order cycle.

use std::io;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::batch::BatchHeader;
use crate::txn::{Aborted, TxnIndex};

// Every critical section leaves its state consistent before anything that can panic, so a
// poisoned lock is still safe to use.

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// A value replaced as a whole and read as a copy (the topic's settings, where tiered
/// segments go). A leaf lock: held only to clone or to replace the value.
#[derive(Debug)]
pub(super) struct Latest<T>(RwLock<T>);

impl<T: Clone> Latest<T> {
    pub(super) fn new(value: T) -> Latest<T> {
        Latest(RwLock::new(value))
    }

    pub(super) fn get(&self) -> T {
        read(&self.0).clone()
    }

    pub(super) fn set(&self, value: T) {
        *write(&self.0) = value;
    }
}

/// Open and aborted transactions of a partition (the last stable offset, `read_committed`
/// reads). A leaf lock; [`Txns::sync`] holds it across the index file's fsync, so an append
/// of a transactional batch waits for that fsync.
pub(super) struct Txns(Mutex<TxnIndex>);

impl Txns {
    pub(super) fn new(index: TxnIndex) -> Txns {
        Txns(Mutex::new(index))
    }

    /// Takes note of a batch just given its offsets (`batch`: its bytes).
    pub(super) fn observe(&self, batch: &[u8], h: &BatchHeader) -> io::Result<()> {
        lock(&self.0).observe(batch, h)
    }

    /// Makes the entries written so far durable.
    pub(super) fn sync(&self) -> io::Result<()> {
        lock(&self.0).sync()
    }

    /// The first offset of a transaction still open, if any.
    pub(super) fn first_open(&self) -> Option<u64> {
        lock(&self.0).first_open()
    }

    /// Aborted transactions with records in `from..=to`.
    pub(super) fn aborted_between(&self, from: u64, to: u64) -> Vec<Aborted> {
        lock(&self.0).aborted_between(from, to)
    }

    /// Whether a transactional batch of `producer_id` at `offset` was aborted.
    pub(super) fn is_aborted(&self, producer_id: i64, offset: u64) -> bool {
        lock(&self.0).is_aborted(producer_id, offset)
    }

    /// Forgets aborted ranges that end before `start`.
    pub(super) fn prune(&self, start: u64) {
        lock(&self.0).prune(start)
    }
}
