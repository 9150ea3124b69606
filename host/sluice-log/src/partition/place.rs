//! Where a partition is: the names its errors and log lines carry, and its directory.

use std::path::PathBuf;

use crate::LogError;
use crate::batch::BatchError;

#[derive(Debug)]
pub(super) struct Place {
    pub(super) topic: String,
    pub(super) id: u32,
    pub(super) dir: PathBuf,
}

impl Place {
    pub(super) fn io_err(&self, e: std::io::Error) -> LogError {
        LogError::Io {
            path: self.dir.clone(),
            source: e,
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
