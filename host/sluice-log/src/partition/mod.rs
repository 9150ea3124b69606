//! One partition: an ordered set of segments, one writer, many readers.
//!
//! # Layout
//! - this module: the [`Partition`] type, opening, appends, flushes and stats;
//! - `read`: reads of batches and records, the time index, waiting for data;
//! - `upkeep`: retention, DeleteRecords, compaction;
//! - `tiering`: uploads, evictions and deletions in the object store (`Tiering`);
//! - `segments`, `writer`, `commit`, `locks`: the types that own the partition's locks;
//! - `place`: the partition's names and directory, for errors and log lines.

mod commit;
mod locks;
mod place;
mod read;
mod segments;
mod tiering;
mod upkeep;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use self::commit::GroupCommit;
use self::locks::{Latest, Txns};
use self::place::Place;
use self::segments::Segments;
use self::tiering::Tiering;
use self::writer::Writer;
use crate::batch::{self, BatchHeader};
use crate::segment::Segment;
use crate::tier::{self, PartitionTier, RemoteSegment};
use crate::txn::TxnIndex;
use crate::{FlushPolicy, LogError, TopicConfig, now_ms};

pub use self::tiering::{TierProgress, TierStats};
pub use self::upkeep::CLEAN_CHUNK;
pub use self::writer::Appended;

/// Whole batches read from one partition.
#[derive(Debug, Clone)]
pub struct ReadBatches {
    /// Concatenated whole batches (may be empty).
    pub data: Bytes,
    /// The next offset to ask for after these batches.
    pub next_offset: u64,
    pub high_watermark: u64,
    pub start_offset: u64,
}

/// Size and offsets of one partition.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionStats {
    pub partition: u32,
    pub start_offset: u64,
    pub end_offset: u64,
    /// Bytes of the partition's data, local and remote (each segment once).
    pub size_bytes: u64,
    /// Tiered topics: what is where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierStats>,
}

/// One partition of a topic.
///
/// # Locks
///
/// Each lock belongs to the type of one field and is taken only inside that type's
/// methods; no guard leaves them, and `Partition`'s own methods hold none (they cannot:
/// each lock is private to its type's module). Where two locks nest, the outer type's
/// method is handed the inner type as an argument and takes the inner lock through one of
/// its methods, which takes and releases it. So the arguments fix the order:
///
/// ```text
/// commit ──→ writer ──→ segments
///    │          │
///    └──────────┴─────→ txns
/// ```
///
/// - `commit` (`GroupCommit`, held across an fsync) is given the writer and the txns;
/// - `writer` (`Writer`, held through an append) is given the segments (a roll adds the
///   new segment) and the txns (transactional batches);
/// - `segments` (`Segments`: local and remote segments under one `RwLock`) and `txns`
///   (`Txns`) are given nothing: while held, they take no other partition lock;
/// - `config` and the tiering's target and backoff are leaves as well; `Tiering` is given
///   the segments and holds none of its own locks while it calls them.
///
/// Nothing waits for the writer while holding the segment set (stats and tier passes once
/// did, beside an append rolling a segment: a deadlock), and nothing waits for the group
/// commit while holding the writer. The high watermark (`hw`, a `watch` channel with a lock
/// inside) is moved under `commit`, and [`Partition::wait_for`] reads the txns while the
/// channel holds its lock; neither takes anything else.
pub struct Partition {
    pub topic: String,
    pub id: u32,
    place: Place,
    config: Latest<TopicConfig>,
    commit: GroupCommit,
    writer: Writer,
    segments: Segments,
    /// Open and aborted transactions (the last stable offset, `read_committed` reads).
    txns: Txns,
    tiering: Tiering,
    /// The high watermark: offsets below it are visible to readers.
    hw: watch::Sender<u64>,
    deleted: AtomicBool,
    /// Compacted topics: the first offset no compaction pass has mapped yet (passes go on
    /// from here, each mapping at most `upkeep::MAX_COMPACTION_KEYS` keys).
    compacted_to: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partition")
            .field("topic", &self.topic)
            .field("id", &self.id)
            .finish()
    }
}

/// The log start offset set by DeleteRecords, when it is inside a segment.
const START_FILE: &str = "start.offset";

impl Partition {
    /// Opens (or creates) the partition directory, recovering its segments.
    pub fn open(
        topic: &str,
        id: u32,
        dir: PathBuf,
        config: TopicConfig,
        space: Arc<crate::space::Space>,
    ) -> Result<Partition, LogError> {
        let io = |e: std::io::Error| LogError::Io {
            path: dir.clone(),
            source: e,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut bases: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(io)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse::<u64>().ok()
            })
            .collect();
        bases.sort_unstable();
        let now = now_ms();
        let mut segments = BTreeMap::new();
        for (i, &base) in bases.iter().enumerate() {
            let active = i + 1 == bases.len();
            let (seg, report) = Segment::open(&dir, base, active, now)?;
            if report.truncated > 0 {
                tracing::warn!(
                    topic,
                    partition = id,
                    segment = base,
                    kept_bytes = report.valid_len,
                    truncated_bytes = report.truncated,
                    "truncated torn or corrupt segment tail"
                );
            }
            for (pos, err) in &report.corrupt {
                tracing::error!(topic, partition = id, segment = base, position = pos, error = %err,
                    "corrupt batch inside segment; it will not be served");
            }
            segments.insert(base, Arc::new(seg));
        }
        let remote: BTreeMap<u64, Arc<RemoteSegment>> = tier::load_manifest(&dir)
            .map_err(io)?
            .into_iter()
            .map(|m| (m.base, Arc::new(RemoteSegment::new(m))))
            .collect();
        if segments.is_empty() {
            // After a restore from the object store, the log goes on where it ends.
            let base = remote
                .values()
                .next_back()
                .map_or(0, |r| r.meta.next_offset);
            let seg = Segment::create(&dir, base, now)?;
            sluice_common::fs::sync_dir(&dir).map_err(io)?;
            segments.insert(base, Arc::new(seg));
        }
        let (start, active) = match (segments.first_key_value(), segments.last_key_value()) {
            (Some((s, _)), Some((_, a))) => (*s, a.clone()),
            _ => unreachable!("at least one segment exists"),
        };
        let start = remote.keys().next().map_or(start, |r| (*r).min(start));
        let next = active.next_offset();
        // DeleteRecords may have moved the start inside the first segment.
        let start = match std::fs::read_to_string(dir.join(START_FILE)) {
            Ok(s) => s.trim().parse::<u64>().unwrap_or(start).clamp(start, next),
            Err(_) => start,
        };
        let txn = TxnIndex::open(&dir, start, next).map_err(io)?;
        let (hw, _) = watch::channel(next);
        Ok(Partition {
            topic: topic.to_string(),
            id,
            config: Latest::new(config),
            commit: GroupCommit::new(next),
            writer: Writer::new(next, active),
            segments: Segments::new(segments, remote, start, dir.clone()),
            txns: Txns::new(txn),
            tiering: Tiering::new(),
            hw,
            deleted: AtomicBool::new(false),
            compacted_to: std::sync::atomic::AtomicU64::new(0),
            place: Place {
                topic: topic.to_string(),
                id,
                dir,
                space,
            },
        })
    }

    /// Sets where this partition's segments go (a tiered topic on a server with an object
    /// store), or `None`.
    pub fn set_tier(&self, tier: Option<PartitionTier>) {
        self.tiering.set_target(tier);
    }

    pub fn high_watermark(&self) -> u64 {
        *self.hw.borrow()
    }

    pub fn start_offset(&self) -> u64 {
        self.segments.start()
    }

    pub fn config(&self) -> TopicConfig {
        self.config.get()
    }

    /// Changes settings that apply as the partition runs (retention, segment size and age,
    /// cleanup); the partition count is the topic's.
    pub fn set_config(&self, config: TopicConfig) {
        self.config.set(config);
    }

    /// A receiver that changes whenever the high watermark moves (or the topic is deleted).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.hw.subscribe()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Appends one or more concatenated v2 batches, assigning offsets. Blocks until the data
    /// is durable per the topic's flush policy. Call from a blocking thread.
    pub fn append(&self, mut data: BytesMut) -> Result<Appended, LogError> {
        if self.is_deleted() {
            return Err(LogError::TopicDeleted(self.topic.clone()));
        }
        // Validate every batch before writing any: an append is all or nothing.
        let mut headers: Vec<BatchHeader> = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let h = batch::validate(&data[at..])?;
            at += h.size;
            headers.push(h);
        }
        if headers.is_empty() {
            return Err(LogError::InvalidBatch(batch::BatchError::Truncated {
                need: batch::HEADER_LEN,
                have: 0,
            }));
        }
        let config = self.config();
        // Room first: a refusal before writing leaves nothing half written.
        self.place
            .space
            .reserve(data.len() as u64)
            .map_err(|full| self.place.full(full))?;
        let appended = self.writer.append(
            &mut data,
            &mut headers,
            &config,
            &self.segments,
            &self.txns,
            &self.place,
        )?;
        match config.flush {
            FlushPolicy::EveryBatch => self.sync_to(appended.last_offset + 1)?,
            FlushPolicy::Interval | FlushPolicy::Os => {
                commit::publish(&self.hw, appended.last_offset + 1);
            }
        }
        Ok(appended)
    }

    /// Makes every offset below `target` durable. Concurrent callers share one fsync
    /// (group commit): the first one's covers everything written before it started.
    pub fn sync_to(&self, target: u64) -> Result<(), LogError> {
        self.commit
            .sync_to(target, &self.writer, &self.txns, &self.hw, &self.place)
    }

    /// Flushes everything written so far (interval policy, shutdown).
    pub fn flush(&self) -> Result<(), LogError> {
        self.sync_to(self.writer.next_offset())
    }

    /// Flushes and writes the active segment's indexes (clean shutdown).
    pub fn close(&self) -> Result<(), LogError> {
        self.flush()?;
        self.writer.close().map_err(|e| self.place.io_err(e))
    }

    pub fn stats(&self) -> PartitionStats {
        let census = self.segments.census();
        PartitionStats {
            partition: self.id,
            start_offset: self.start_offset(),
            end_offset: self.high_watermark(),
            size_bytes: census.local_bytes + census.remote_only_bytes,
            tier: self.tiering.stats(&census, self.start_offset()),
        }
    }

    /// One pass of tiering: uploads sealed segments not yet in the object store (oldest
    /// first, at most `max_uploads`), then removes local copies that are uploaded and past
    /// local retention. Failures back off (0.5 s doubling to 60 s) and are reported in
    /// [`Partition::stats`]; the local data stays until it is uploaded. Blocking.
    pub fn tier_step(&self, now: i64, max_uploads: usize) -> Result<TierProgress, LogError> {
        self.tiering
            .step(now, max_uploads, &self.segments, &self.place)
    }

    /// Marks the partition deleted and wakes every waiting reader.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        self.hw.send_modify(|_| {});
    }

    pub fn dir(&self) -> &Path {
        &self.place.dir
    }

    /// The free space of the filesystem the partition is on.
    pub fn space(&self) -> &crate::space::Space {
        &self.place.space
    }

    pub fn segment_count(&self) -> usize {
        self.segments.local_count()
    }

    /// Segments in the object store.
    pub fn remote_segment_count(&self) -> usize {
        self.segments.remote_count()
    }
}
