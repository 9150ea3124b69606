//! Where a partition is: the names its errors and log lines carry, and its directory.

use std::path::PathBuf;
use std::sync::Arc;

use crate::LogError;
use crate::batch::BatchError;

#[derive(Debug)]
pub(super) struct Place {
    pub(super) topic: String,
    pub(super) id: u32,
    pub(super) dir: PathBuf,
    /// The free space of the filesystem the partition is on.
    pub(super) space: Arc<crate::space::Space>,
}

impl Place {
    /// An I/O error of this partition; a full disk is [`LogError::StorageFull`].
    pub(super) fn io_err(&self, e: std::io::Error) -> LogError {
        if crate::space::is_full(&e) {
            let st = self.space.status();
            return LogError::StorageFull {
                path: self.dir.clone(),
                free_bytes: st.free_bytes,
                needed_bytes: 0,
                min_free_bytes: st.min_free_bytes,
            };
        }
        LogError::Io {
            path: self.dir.clone(),
            source: e,
        }
    }

    /// An append refused for space.
    pub(super) fn full(&self, f: crate::space::Full) -> LogError {
        LogError::StorageFull {
            path: self.dir.clone(),
            free_bytes: f.free_bytes,
            needed_bytes: f.needed_bytes,
            min_free_bytes: f.min_free_bytes,
        }
    }

    pub(super) fn corrupt(&self, offset: u64, e: BatchError) -> LogError {
        LogError::Corrupt {
            topic: self.topic.clone(),
            partition: self.id,
            offset,
            reason: e.to_string(),
        }
    }

    pub(super) fn out_of_range(&self, offset: u64, start: u64, end: u64) -> LogError {
        LogError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.id,
            offset,
            start,
            end,
        }
    }
}
