//! A deployment's state stores: in memory, or on disk in its directory (`"state_store":
//! "disk"`, the deployment's fjall database opened at first use).

use std::sync::Arc;

use sluice_runtime::state::disk::StateDb;
use sluice_runtime::state::{StateBudget, StateStore};

use crate::Transform;

/// Where a deployment's disk state store lives, in its directory.
const STATE_DB_DIR: &str = "state-db";

/// A deployment's disk state store and the memory its partitions' caches share.
pub(crate) struct DiskState {
    pub(crate) db: StateDb,
    pub(crate) memory: Arc<StateBudget>,
}

impl Transform {
    /// An empty state store for `partition` (of `partitions`) as the spec asks: in memory,
    /// or on disk (the deployment's store in `state-db/`, opened at first use, with half of
    /// `limits.state_cache_bytes` for cached values and half for the store itself).
    pub fn new_store(&self, partition: u32, partitions: u32) -> Result<StateStore, String> {
        let spec = self.spec();
        if spec.state_store.is_memory() {
            return Ok(StateStore::new(self.budget.clone()));
        }
        let mut disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        let d = match &mut *disk {
            Some(d) => d,
            None => {
                let half = spec.limits.state_cache_bytes / 2;
                let db = StateDb::open(&self.dir.join(STATE_DB_DIR), half, partitions)?;
                disk.insert(DiskState {
                    db,
                    memory: Arc::new(StateBudget::new(half)),
                })
            }
        };
        let (store, _) = StateStore::on_disk(
            self.budget.clone(),
            d.memory.clone(),
            d.db.partition(partition)?,
        )?;
        Ok(store)
    }

    /// The disk store, when the deployment's state is on disk and it is open.
    pub fn state_db(&self) -> Option<StateDb> {
        let disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        disk.as_ref().map(|d| d.db.clone())
    }

    /// Memory the disk store's cached values and unwritten changes hold.
    pub fn state_memory(&self) -> Option<u64> {
        let disk = self.disk.lock().unwrap_or_else(|p| p.into_inner());
        disk.as_ref().map(|d| d.memory.used())
    }

    /// Closes and removes the disk store (a reset, or a version without state).
    pub(crate) fn remove_state_db(&self) -> std::io::Result<()> {
        self.disk.lock().unwrap_or_else(|p| p.into_inner()).take();
        match std::fs::remove_dir_all(self.dir.join(STATE_DB_DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
