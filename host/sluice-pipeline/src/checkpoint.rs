//! Checkpoints: where a partition task stands. Written durably (the file, then its
//! directory) at most every [`CHECKPOINT_EVERY`] and when the task stops, the first one
//! before any input is processed. Between writes the position moves in memory only; after a
//! crash recovery scans the outputs written since the last checkpoint (they name their
//! source, see `recover`), so an older checkpoint costs a longer scan, never a lost or
//! doubled output.
//!
//! The invariant: every output already written for an input at or after a checkpoint's
//! `position` lies at or after its `output_ends`. While a task replays inputs whose
//! outputs recovery found (and skips them), the ends a checkpoint records are therefore
//! those the recovery scanned from, not the partitions' current ends: otherwise a crash in
//! the replay would hide the outputs still ahead of the position from the next scan, and
//! they would be written twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_common::fs::{sync_dir, write_file};
use sluice_log::Topic;

/// How often a moving position is written to disk.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Where a partition task stands.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The next input offset to process.
    pub position: u64,
    /// End offsets of the output and dead-letter partitions when it was written: recovery
    /// scans from there.
    pub output_ends: BTreeMap<String, u64>,
}

/// The key of an output partition in `output_ends`.
pub fn key_of(topic: &str, p: u32) -> String {
    format!("{topic}/{p}")
}

fn path(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("p{partition}.json"))
}

/// Reads a partition's checkpoint, if there is a readable one.
pub fn read(dir: &Path, partition: u32) -> Option<Checkpoint> {
    std::fs::read(path(dir, partition))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Writes a partition's checkpoint durably now; false (and a warning) if it failed.
/// `replaying`: the ends the last recovery scanned from, while outputs it found lie ahead
/// of `position` (recorded instead of the current ends, whichever is lower).
pub fn write<'a>(
    dir: &Path,
    partition: u32,
    outputs: impl Iterator<Item = &'a Arc<Topic>>,
    position: u64,
    replaying: Option<&BTreeMap<String, u64>>,
) -> bool {
    let mut ends = BTreeMap::new();
    for topic in outputs {
        for p in &topic.partitions {
            let key = key_of(&topic.name, p.id);
            let end = match replaying {
                // A partition the scan started at its beginning has no entry.
                Some(from) => from.get(&key).copied().unwrap_or(0),
                None => u64::MAX,
            };
            ends.insert(key, end.min(p.high_watermark()));
        }
    }
    let cp = Checkpoint {
        position,
        output_ends: ends,
    };
    let ok = serde_json::to_vec(&cp)
        .map_err(std::io::Error::other)
        .and_then(|b| write_file(&path(dir, partition), &b))
        .and_then(|_| sync_dir(dir));
    if let Err(e) = &ok {
        tracing::warn!(dir = %dir.display(), partition, error = %e, "checkpoint write failed");
    }
    ok.is_ok()
}

/// Writes one partition's checkpoints, at most every [`CHECKPOINT_EVERY`] unless forced.
#[derive(Debug)]
pub struct CheckpointWriter {
    dir: PathBuf,
    partition: u32,
    last: Option<(Instant, u64)>,
}

impl CheckpointWriter {
    pub fn new(dir: PathBuf, partition: u32) -> CheckpointWriter {
        CheckpointWriter {
            dir,
            partition,
            last: None,
        }
    }

    /// Records that the position reached `position`; writes it when due (or `force`).
    /// `replaying` as for [`write`].
    pub fn write<'a>(
        &mut self,
        outputs: impl Iterator<Item = &'a Arc<Topic>>,
        position: u64,
        replaying: Option<&BTreeMap<String, u64>>,
        force: bool,
    ) {
        if let Some((at, pos)) = self.last
            && (pos == position || (!force && at.elapsed() < CHECKPOINT_EVERY))
        {
            return;
        }
        if write(&self.dir, self.partition, outputs, position, replaying) {
            self.last = Some((Instant::now(), position));
            if replaying.is_some() {
                sluice_log::tier::failpoint("checkpoint-while-replaying");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_written_when_due_or_forced_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), 0).is_none());
        let mut w = CheckpointWriter::new(dir.path().to_path_buf(), 0);
        w.write(std::iter::empty(), 10, None, false);
        assert_eq!(read(dir.path(), 0).unwrap().position, 10);
        // Not due yet: the file keeps the last durable position.
        w.write(std::iter::empty(), 20, None, false);
        assert_eq!(read(dir.path(), 0).unwrap().position, 10);
        w.write(std::iter::empty(), 30, None, true);
        assert_eq!(read(dir.path(), 0).unwrap().position, 30);
        std::thread::sleep(CHECKPOINT_EVERY);
        w.write(std::iter::empty(), 40, None, false);
        assert_eq!(read(dir.path(), 0).unwrap().position, 40);
    }
}
