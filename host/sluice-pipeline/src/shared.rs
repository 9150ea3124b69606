//! What a partition task shares with the control plane (status, swaps, pause, stop) and,
//! for stateful deployments, its state and where its event time and commits stand.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sluice_runtime::state::StateStore;
use sluice_runtime::{Executor, Interrupt};
use sluice_sdk::NO_WATERMARK;

use crate::RestoreInfo;

/// What a stateful partition task shares with the control plane: its state (for the state
/// API) and where its event time and commits stand (for status and metrics).
#[derive(Debug)]
pub struct StateShared {
    pub store: Arc<Mutex<StateStore>>,
    pub watermark: AtomicI64,
    pub max_event_time: AtomicI64,
    /// Late records since the server started.
    pub late: AtomicU64,
    /// The input position of the last state commit, and when it was made (ms).
    pub committed_position: AtomicU64,
    pub committed_at: AtomicI64,
    /// The changelog's end after that commit.
    pub changelog_end: AtomicU64,
    /// Changelog records written since the last snapshot.
    pub since_snapshot: AtomicU64,
    /// Changelog offset of the last snapshot (`u64::MAX`: none yet).
    pub snapshot_offset: AtomicU64,
    /// How the last restore went.
    pub restore: Mutex<Option<RestoreInfo>>,
}

impl StateShared {
    pub fn new(store: Arc<Mutex<StateStore>>) -> StateShared {
        StateShared {
            store,
            watermark: AtomicI64::new(NO_WATERMARK),
            max_event_time: AtomicI64::new(NO_WATERMARK),
            late: AtomicU64::new(0),
            committed_position: AtomicU64::new(0),
            committed_at: AtomicI64::new(0),
            changelog_end: AtomicU64::new(0),
            since_snapshot: AtomicU64::new(0),
            snapshot_offset: AtomicU64::new(u64::MAX),
            restore: Mutex::new(None),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, StateStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What one partition task shares with the control plane.
#[derive(Debug)]
pub struct TaskShared {
    pub partition: u32,
    pub position: AtomicU64,
    pub version: AtomicU32,
    pub stop: AtomicBool,
    /// A ready executor of another version, taken at the next batch boundary.
    pub pending: Mutex<Option<(u32, Executor)>>,
    /// Raised after `stop`, `pending` or the transform's `paused` changes, so that a call
    /// in progress ends now instead of at its deadline (the batch is run again later).
    pub interrupt: Arc<Interrupt>,
    /// Stateful deployments: the partition's state and event time.
    pub state: Option<Arc<StateShared>>,
    /// Where the calls of a failing plugin run.
    pub isolator: crate::isolate::Isolator,
}

impl TaskShared {
    pub fn new(
        partition: u32,
        position: u64,
        version: u32,
        state: Option<Arc<StateShared>>,
    ) -> TaskShared {
        TaskShared {
            partition,
            position: AtomicU64::new(position),
            version: AtomicU32::new(version),
            stop: AtomicBool::new(false),
            pending: Mutex::new(None),
            interrupt: Arc::default(),
            state,
            isolator: crate::isolate::Isolator::default(),
        }
    }

    /// Stops the task: the call in progress is interrupted, staged outputs are appended.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.interrupt.raise();
    }
}
