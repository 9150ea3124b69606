//! One partition: an ordered set of segments, one writer, many readers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::batch::{self, BatchHeader};
use super::segment::{self, Segment};
use super::tier::{self, PartitionTier, RemoteMeta, RemoteSegment};
use super::txn::TxnIndex;
use super::{FlushPolicy, LogError, TopicConfig, now_ms};

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub last_offset: u64,
}

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

/// Where a tiered partition's data is.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierStats {
    /// Bytes of segments on local disk.
    pub local_bytes: u64,
    /// The first offset on local disk (below it, reads go to the object store).
    pub local_start_offset: u64,
    /// Bytes and segments in the object store.
    pub remote_bytes: u64,
    pub remote_segments: usize,
    /// Offsets below this are in the object store.
    pub remote_end_offset: u64,
    /// Sealed local segments not yet uploaded, and their bytes.
    pub pending_segments: usize,
    pub pending_bytes: u64,
    /// When the last upload finished (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upload_ms: Option<i64>,
    /// The last failure, while uploads keep failing (they retry with backoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Consecutive failures of the current attempt.
    pub failures: u32,
    /// A disk-full danger on the server (segments waiting for upload fill the disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_warning: Option<String>,
}

/// Upload progress and backoff of a tiered partition.
#[derive(Debug, Default)]
struct TierState {
    failures: u32,
    next_attempt_ms: i64,
    last_error: Option<String>,
    last_upload_ms: Option<i64>,
}

struct Writer {
    next_offset: u64,
    active: Arc<Segment>,
}

pub struct Partition {
    pub topic: String,
    pub id: u32,
    dir: PathBuf,
    config: RwLock<TopicConfig>,
    writer: Mutex<Writer>,
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
    /// Held while an fsync runs so concurrent appenders share one (group commit).
    sync_lock: Mutex<()>,
    /// Offsets below this are on stable storage.
    durable: AtomicU64,
    start: AtomicU64,
    /// The high watermark: offsets below it are visible to readers.
    hw: watch::Sender<u64>,
    deleted: AtomicBool,
    /// Open and aborted transactions (the last stable offset, `read_committed` reads).
    txn: Mutex<TxnIndex>,
    /// Segments in the object store (the manifest), by base offset.
    remote: RwLock<BTreeMap<u64, Arc<RemoteSegment>>>,
    /// Where a tiered topic's objects go (none: not tiered, or no store configured).
    tier: RwLock<Option<PartitionTier>>,
    tier_state: Mutex<TierState>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent before anything that can panic,
    // so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Partition {
    /// Opens (or creates) the partition directory, recovering its segments.
    pub fn open(
        topic: &str,
        id: u32,
        dir: PathBuf,
        config: TopicConfig,
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
            dir,
            config: RwLock::new(config),
            writer: Mutex::new(Writer {
                next_offset: next,
                active,
            }),
            segments: RwLock::new(segments),
            sync_lock: Mutex::new(()),
            durable: AtomicU64::new(next),
            start: AtomicU64::new(start),
            hw,
            deleted: AtomicBool::new(false),
            txn: Mutex::new(txn),
            remote: RwLock::new(remote),
            tier: RwLock::new(None),
            tier_state: Mutex::default(),
        })
    }

    /// Sets where this partition's segments go (a tiered topic on a server with an object
    /// store), or `None`.
    pub fn set_tier(&self, tier: Option<PartitionTier>) {
        *self.tier.write().unwrap_or_else(|p| p.into_inner()) = tier;
    }

    /// The base offset of the first segment on local disk (below it, data is remote).
    fn local_first(&self) -> u64 {
        self.segments_read()
            .keys()
            .next()
            .copied()
            .unwrap_or(u64::MAX)
    }

    fn tier(&self) -> Option<PartitionTier> {
        self.tier.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn remote_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<RemoteSegment>>> {
        self.remote.read().unwrap_or_else(|p| p.into_inner())
    }

    fn remote_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Arc<RemoteSegment>>> {
        self.remote.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The manifest as stored (callers hold the write lock).
    fn persist_manifest(&self, map: &BTreeMap<u64, Arc<RemoteSegment>>) -> Result<(), LogError> {
        tier::store_manifest(&self.dir, map.values().map(|r| r.meta.clone()).collect())
            .map_err(|e| self.io_err(e))
    }

    fn segments_read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<Segment>>> {
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }

    fn segments_write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Arc<Segment>>> {
        self.segments.write().unwrap_or_else(|p| p.into_inner())
    }

    fn io_err(&self, e: std::io::Error) -> LogError {
        LogError::Io {
            path: self.dir.clone(),
            source: e,
        }
    }

    pub fn high_watermark(&self) -> u64 {
        *self.hw.borrow()
    }

    pub fn start_offset(&self) -> u64 {
        self.start.load(Ordering::Acquire)
    }

    pub fn config(&self) -> TopicConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes settings that apply as the partition runs (retention, segment size and age,
    /// cleanup); the partition count is the topic's.
    pub fn set_config(&self, config: TopicConfig) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
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
        let appended = {
            let mut w = lock(&self.writer);
            let first = w.next_offset;
            let mut pos = 0;
            for h in &mut headers {
                let bytes = &mut data[pos..pos + h.size];
                batch::set_base_offset(bytes, w.next_offset as i64);
                h.base_offset = w.next_offset as i64;
                let active_size = w.active.size();
                if active_size > 0
                    && (active_size + h.size as u64 > config.segment_bytes
                        || now_ms() - w.active.created_ms >= config.segment_ms as i64)
                {
                    self.roll(&mut w)?;
                }
                w.active.append(bytes, h).map_err(|e| self.io_err(e))?;
                if h.is_transactional() {
                    lock(&self.txn)
                        .observe(bytes, h)
                        .map_err(|e| self.io_err(e))?;
                }
                w.next_offset += h.offset_count();
                pos += h.size;
            }
            Appended {
                base_offset: first,
                last_offset: w.next_offset - 1,
            }
        };
        match config.flush {
            FlushPolicy::EveryBatch => self.sync_to(appended.last_offset + 1)?,
            FlushPolicy::Interval | FlushPolicy::Os => {
                self.hw.send_if_modified(|hw| {
                    let moved = appended.last_offset + 1 > *hw;
                    if moved {
                        *hw = appended.last_offset + 1;
                    }
                    moved
                });
            }
        }
        Ok(appended)
    }

    /// Seals the active segment (fsync + index files) and starts a new one.
    fn roll(&self, w: &mut Writer) -> Result<(), LogError> {
        w.active.sync().map_err(|e| self.io_err(e))?;
        if let Err(e) = w.active.write_indexes() {
            tracing::warn!(topic = %self.topic, partition = self.id, error = %e, "index write failed; it will be rebuilt");
        }
        let seg = Arc::new(Segment::create(&self.dir, w.next_offset, now_ms())?);
        sluice_common::fs::sync_dir(&self.dir).map_err(|e| self.io_err(e))?;
        self.segments_write().insert(seg.base, seg.clone());
        tracing::info!(topic = %self.topic, partition = self.id, base = seg.base, "segment rolled");
        w.active = seg;
        Ok(())
    }

    /// Makes every offset below `target` durable. Concurrent callers queue on `sync_lock`;
    /// the first one's fsync covers everything written before it started, so the others
    /// find their offsets already durable and return at once (group commit).
    pub fn sync_to(&self, target: u64) -> Result<(), LogError> {
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _g = lock(&self.sync_lock);
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let (end, active) = {
            let w = lock(&self.writer);
            (w.next_offset, w.active.clone())
        };
        // Sealed segments were synced when they rolled; only the active one can be dirty.
        active.sync().map_err(|e| self.io_err(e))?;
        lock(&self.txn).sync().map_err(|e| self.io_err(e))?;
        self.durable.fetch_max(end, Ordering::AcqRel);
        self.hw.send_if_modified(|hw| {
            let moved = end > *hw;
            if moved {
                *hw = end;
            }
            moved
        });
        Ok(())
    }

    /// Flushes everything written so far (interval policy, shutdown).
    pub fn flush(&self) -> Result<(), LogError> {
        let end = lock(&self.writer).next_offset;
        self.sync_to(end)
    }

    /// Flushes and writes the active segment's indexes (clean shutdown).
    pub fn close(&self) -> Result<(), LogError> {
        self.flush()?;
        let w = lock(&self.writer);
        w.active.write_indexes().map_err(|e| self.io_err(e))
    }

    fn out_of_range(&self, offset: u64, start: u64, end: u64) -> LogError {
        LogError::OffsetOutOfRange {
            topic: self.topic.clone(),
            partition: self.id,
            offset,
            start,
            end,
        }
    }

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes`
    /// (at least one batch, even a larger one). Offsets at the high watermark read empty.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadBatches, LogError> {
        self.read_below(offset, max_bytes, self.high_watermark())
    }

    /// The last stable offset: below it every transaction is decided (committed or
    /// aborted); `read_committed` readers stop there. The high watermark when no
    /// transaction is open.
    pub fn last_stable_offset(&self) -> u64 {
        let hw = self.high_watermark();
        lock(&self.txn).first_open().map_or(hw, |f| f.min(hw))
    }

    /// Like [`Partition::read`], but only below the last stable offset (`next_offset`
    /// and `high_watermark` then tell the LSO). The caller skips aborted batches
    /// ([`Partition::is_aborted`]) and control batches.
    pub fn read_committed(&self, offset: u64, max_bytes: usize) -> Result<ReadBatches, LogError> {
        let hw = self.high_watermark();
        if offset > hw {
            return Err(self.out_of_range(offset, self.start_offset(), hw));
        }
        let lso = self.last_stable_offset();
        self.read_below(offset.min(lso), max_bytes, lso)
    }

    /// Aborted transactions with records in `from..=to` (Fetch's `aborted_transactions`).
    pub fn aborted_between(&self, from: u64, to: u64) -> Vec<crate::txn::Aborted> {
        lock(&self.txn).aborted_between(from, to)
    }

    /// Whether a batch belongs to an aborted transaction (`read_committed` skips it).
    pub fn is_aborted(&self, h: &batch::BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && lock(&self.txn).is_aborted(h.producer_id, h.base_offset as u64)
    }

    /// Reads whole batches from `offset` that start below `hw`.
    fn read_below(&self, offset: u64, max_bytes: usize, hw: u64) -> Result<ReadBatches, LogError> {
        let start = self.start_offset();
        if offset < start || offset > hw {
            return Err(self.out_of_range(offset, start, hw));
        }
        let empty = |next| ReadBatches {
            data: Bytes::new(),
            next_offset: next,
            high_watermark: hw,
            start_offset: start,
        };
        if offset == hw {
            return Ok(empty(offset));
        }
        let local_first = self.local_first();
        if offset < local_first {
            let remotes = from_holder(&self.remote_read(), offset, local_first);
            if !remotes.is_empty() {
                let tier = self.tier().ok_or_else(|| {
                    self.io_err(std::io::Error::other(
                        "this offset is in the object store, and no store is configured ([tier] in the server's config)",
                    ))
                })?;
                for rs in remotes {
                    if rs.meta.base >= hw {
                        break;
                    }
                    let src = RemoteSource {
                        seg: &rs,
                        tier: &tier,
                    };
                    if let Some(r) = self.read_segment(&src, offset, max_bytes, hw)? {
                        return Ok(ReadBatches {
                            start_offset: start,
                            ..r
                        });
                    }
                }
            }
        }
        let segs = from_holder(&self.segments_read(), offset, u64::MAX);
        for seg in segs {
            if seg.base >= hw {
                break;
            }
            if let Some(r) = self.read_segment(seg.as_ref(), offset, max_bytes, hw)? {
                return Ok(ReadBatches {
                    start_offset: start,
                    ..r
                });
            }
        }
        Ok(empty(hw))
    }

    /// Reads up to `max` committed records at or after `offset` from what is already there
    /// (below the last stable offset, aborted transactions and markers left out); returns
    /// them with the next offset to read and the high watermark.
    pub fn read_records(
        &self,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<batch::StoredRecord>, u64, u64), LogError> {
        let mut out = Vec::new();
        let mut next = offset;
        let mut hw = self.high_watermark();
        while out.len() < max {
            let r = match self.read_committed(next, 1 << 20) {
                Ok(r) => r,
                // Serve what was read; the error shows on the next request, at its offset.
                Err(_) if !out.is_empty() => break,
                Err(e) => return Err(e),
            };
            hw = r.high_watermark;
            if r.data.is_empty() {
                break;
            }
            for (h, b) in batch::split(r.data)? {
                if self.is_aborted(&h) {
                    continue;
                }
                for rec in batch::decode(&b)? {
                    if (rec.offset as u64) < next {
                        continue;
                    }
                    if out.len() == max {
                        return Ok((out, next, hw));
                    }
                    next = rec.offset as u64 + 1;
                    out.push(rec);
                }
            }
            // Every record of this read was taken: continue after it (skips compaction gaps).
            next = r.next_offset;
        }
        Ok((out, next, hw))
    }

    fn corrupt(&self, offset: u64, e: batch::BatchError) -> LogError {
        LogError::Corrupt {
            topic: self.topic.clone(),
            partition: self.id,
            offset,
            reason: e.to_string(),
        }
    }

    fn read_segment(
        &self,
        seg: &dyn Source,
        offset: u64,
        max_bytes: usize,
        hw: u64,
    ) -> Result<Option<ReadBatches>, LogError> {
        let size = seg.size();
        let mut pos = seg.position_for(offset).map_err(|e| self.io_err(e))?;
        // Find the batch holding `offset`.
        let first = loop {
            if pos + batch::HEADER_LEN as u64 > size {
                return Ok(None);
            }
            let h = seg.read_header(pos).map_err(|e| match e {
                HeaderError::Io(e) => self.io_err(e),
                HeaderError::Batch(e) => self.corrupt(offset, e),
            })?;
            if h.base_offset as u64 >= hw {
                return Ok(None);
            }
            if h.last_offset() as u64 >= offset {
                break h;
            }
            pos += h.size as u64;
        };
        // Take following batches while they fit in max_bytes and are below the watermark.
        let want = (first.size.max(max_bytes) as u64).min(size - pos) as usize;
        let mut buf = seg.read_at(pos, want).map_err(|e| self.io_err(e))?;
        let mut end = 0usize;
        let mut next = offset;
        while end < buf.len() {
            let h = match batch::BatchHeader::parse(&buf[end..]) {
                Ok(h) => h,
                Err(_) => break, // cut by `want`; the next read continues here
            };
            if h.base_offset as u64 >= hw || end + h.size > buf.len() {
                break;
            }
            if let Err(e) = batch::validate(&buf[end..end + h.size]) {
                if end == 0 {
                    return Err(self.corrupt(h.base_offset as u64, e));
                }
                break;
            }
            end += h.size;
            next = h.last_offset() as u64 + 1;
        }
        if end == 0 {
            return Err(self.corrupt(
                offset,
                batch::BatchError::Truncated {
                    need: first.size,
                    have: buf.len(),
                },
            ));
        }
        buf.truncate(end);
        Ok(Some(ReadBatches {
            data: Bytes::from(buf),
            next_offset: next,
            high_watermark: hw,
            start_offset: 0,
        }))
    }

    /// The first offset whose record timestamp is at or after `ts`, if any.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>, LogError> {
        let hw = self.high_watermark();
        // (start scanning here, end of segment) for every segment that may hold `ts`:
        // remote ones below the first local segment, then the local ones.
        let local: Vec<Arc<Segment>> = self.segments_read().values().cloned().collect();
        let local_first = local.first().map_or(u64::MAX, |s| s.base);
        let mut spans: Vec<(u64, u64)> = Vec::new();
        let remotes: Vec<Arc<RemoteSegment>> = self
            .remote_read()
            .range(..local_first)
            .map(|(_, r)| r.clone())
            .collect();
        if !remotes.is_empty() {
            let tier = self.tier();
            for rs in remotes {
                if rs.meta.max_timestamp < ts {
                    continue;
                }
                let from = match &tier {
                    Some(t) => {
                        let (_, times) = rs.indexes(t).map_err(|e| self.io_err(e))?;
                        match times.partition_point(|(t, _)| *t < ts) {
                            0 => rs.meta.base,
                            i => rs.meta.base + u64::from(times[i - 1].1),
                        }
                    }
                    None => rs.meta.base,
                };
                spans.push((from, rs.meta.next_offset));
            }
        }
        for seg in local {
            if seg.max_timestamp() < ts {
                continue;
            }
            spans.push((seg.offset_for_time(ts), seg.next_offset()));
        }
        for (from, seg_end) in spans {
            let mut offset = from.max(self.start_offset());
            while offset < hw {
                let r = self.read(offset, 1 << 20)?;
                if r.data.is_empty() {
                    break;
                }
                for (h, b) in batch::split(r.data).map_err(|e| self.corrupt(offset, e))? {
                    if h.max_timestamp < ts {
                        continue;
                    }
                    for rec in batch::decode(&b).map_err(|e| self.corrupt(offset, e))? {
                        if rec.timestamp >= ts {
                            return Ok(Some(rec.offset as u64));
                        }
                    }
                }
                offset = r.next_offset;
                if offset >= seg_end {
                    break;
                }
            }
        }
        Ok(None)
    }

    /// Waits until data past `offset` is visible, the timeout passes, or the topic is deleted.
    pub async fn wait_for(&self, offset: u64, timeout: Duration) -> Result<(), LogError> {
        let mut rx = self.subscribe();
        // Past the last stable offset: data inside an open transaction does not count.
        let wait = rx.wait_for(|hw| {
            let lso = lock(&self.txn).first_open().map_or(*hw, |f| f.min(*hw));
            lso > offset || self.is_deleted()
        });
        let _ = tokio::time::timeout(timeout, wait).await;
        if self.is_deleted() {
            return Err(LogError::TopicDeleted(self.topic.clone()));
        }
        Ok(())
    }

    pub fn stats(&self) -> PartitionStats {
        let local_first = self.local_first();
        let remote_only: u64 = self
            .remote_read()
            .range(..local_first)
            .map(|(_, r)| r.meta.size)
            .sum();
        // Each guard is dropped before the next lock is taken (`tier_stats` takes the
        // writer, which an append holds while it takes the segments to roll).
        let local: u64 = self.segments_read().values().map(|s| s.size()).sum();
        let tier = self.tier_stats();
        PartitionStats {
            partition: self.id,
            start_offset: self.start_offset(),
            end_offset: self.high_watermark(),
            size_bytes: local + remote_only,
            tier,
        }
    }

    /// Deletes whole sealed segments that fall outside the retention limits.
    /// Returns the number of segments deleted.
    pub fn apply_retention(&self, now: i64) -> usize {
        let config = self.config();
        let (retention_ms, retention_bytes) = (config.retention_ms, config.retention_bytes);
        if retention_ms.is_none() && retention_bytes.is_none() {
            return 0;
        }
        let active_base = lock(&self.writer).active.base;
        // Remote segments (older than every local one) go first, oldest first.
        let mut remote_deleted = 0;
        {
            let local_first = self.local_first();
            let local_total: u64 = self.segments_read().values().map(|s| s.size()).sum();
            // Remote-only segments (below the first local one), oldest first.
            let remote: Vec<(u64, i64, u64)> = self
                .remote_read()
                .range(..local_first)
                .map(|(_, r)| (r.meta.size, r.meta.max_timestamp, r.meta.next_offset))
                .collect();
            let mut total = local_total + remote.iter().map(|r| r.0).sum::<u64>();
            let mut below = 0;
            for (size, max_ts, next) in remote {
                let too_old = retention_ms.is_some_and(|ms| max_ts < now - ms);
                let too_big = retention_bytes.is_some_and(|b| total > b);
                if !(too_old || too_big) {
                    break;
                }
                total -= size;
                below = next;
            }
            if below > 0 {
                match self.drop_remote_below(below) {
                    Ok(n) => remote_deleted = n,
                    Err(e) => {
                        tracing::error!(topic = %self.topic, partition = self.id, error = %e, "remote retention failed")
                    }
                }
                let start = self
                    .remote_read()
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(local_first)
                    .min(local_first);
                self.start.fetch_max(start, Ordering::AcqRel);
            }
        }
        let mut deleted = Vec::new();
        // The remote side, read before the segments are locked (locks are never nested).
        let remote_sizes: Vec<(u64, u64)> = self
            .remote_read()
            .values()
            .map(|r| (r.meta.base, r.meta.size))
            .collect();
        let remote_first = remote_sizes.first().map(|r| r.0);
        {
            let mut map = self.segments_write();
            let local_first = map.keys().next().copied().unwrap_or(u64::MAX);
            let remote_bytes: u64 = remote_sizes
                .iter()
                .filter(|r| r.0 < local_first)
                .map(|r| r.1)
                .sum();
            let mut total: u64 = map.values().map(|s| s.size()).sum::<u64>() + remote_bytes;
            while let Some((&base, seg)) = map.first_key_value() {
                if base == active_base {
                    break;
                }
                let too_old = retention_ms.is_some_and(|ms| seg.max_timestamp() < now - ms);
                let too_big = retention_bytes.is_some_and(|b| total > b);
                if !(too_old || too_big) {
                    break;
                }
                total -= seg.size();
                if let Some(seg) = map.remove(&base) {
                    deleted.push(seg);
                }
            }
            if let Some((&first, _)) = map.first_key_value() {
                let first = remote_first.map_or(first, |r| r.min(first));
                self.start.fetch_max(first, Ordering::AcqRel);
                lock(&self.txn).prune(first);
            }
        }
        if let Some(&last) = deleted.last().map(|s: &Arc<Segment>| &s.base) {
            // Local segments deleted by retention go from the object store too.
            let end = deleted.last().map_or(last, |s| s.next_offset());
            if let Err(e) = self.drop_remote_below(end) {
                tracing::error!(topic = %self.topic, partition = self.id, error = %e, "remote retention failed");
            }
        }
        for seg in &deleted {
            seg.delete_files();
            tracing::info!(topic = %self.topic, partition = self.id, base = seg.base, "segment deleted by retention");
        }
        deleted.len() + remote_deleted
    }

    /// Deletes the records before `before` (Kafka's DeleteRecords): the log start offset
    /// moves there (durably), whole segments below it are removed. Returns the new start.
    pub fn delete_records(&self, before: u64) -> Result<u64, LogError> {
        let hw = self.high_watermark();
        let start = self.start_offset();
        if before > hw {
            return Err(self.out_of_range(before, start, hw));
        }
        if before <= start {
            return Ok(start);
        }
        sluice_common::fs::write_file(&self.dir.join(START_FILE), before.to_string().as_bytes())
            .map_err(|e| self.io_err(e))?;
        self.start.fetch_max(before, Ordering::AcqRel);
        lock(&self.txn).prune(before);
        let active_base = lock(&self.writer).active.base;
        let mut deleted = Vec::new();
        {
            let mut map = self.segments_write();
            // A segment goes when the next one starts at or below the new start.
            let bases: Vec<u64> = map.keys().copied().collect();
            for pair in bases.windows(2) {
                if pair[1] <= before
                    && pair[0] != active_base
                    && let Some(seg) = map.remove(&pair[0])
                {
                    deleted.push(seg);
                }
            }
        }
        for seg in &deleted {
            seg.delete_files();
        }
        self.drop_remote_below(before)?;
        tracing::info!(topic = %self.topic, partition = self.id, start = before, segments = deleted.len(), "records deleted");
        Ok(before)
    }

    /// Compaction of a `compact` topic: rewrites each sealed segment keeping, per key, only
    /// the latest record (and tombstones younger than `tombstone_retention_ms`). Offsets are
    /// kept (batches keep their offset span), so positions held by readers stay valid.
    /// Returns the number of segments rewritten.
    pub fn compact(&self, now: i64) -> Result<usize, LogError> {
        let active_base = lock(&self.writer).active.base;
        // Only decided data is compacted: records of open transactions stay as they are,
        // aborted ones go.
        let lso = self.last_stable_offset();
        // Pass 1: the latest committed offset of every key.
        let mut latest: std::collections::HashMap<Bytes, u64> = std::collections::HashMap::new();
        let mut off = self.start_offset();
        while off < lso {
            let r = self.read_below(off, 4 << 20, lso)?;
            if r.data.is_empty() {
                break;
            }
            for (h, b) in batch::split(r.data)? {
                if self.is_aborted(&h) {
                    continue;
                }
                for rec in batch::decode(&b)? {
                    if let Some(k) = rec.key {
                        latest.insert(k, rec.offset as u64);
                    }
                }
            }
            off = r.next_offset;
        }
        let grace = self.config().tombstone_retention_ms as i64;
        let keep = |rec: &batch::StoredRecord| match &rec.key {
            None => true,
            Some(_) if rec.offset as u64 >= lso => true,
            Some(k) => {
                latest.get(k) == Some(&(rec.offset as u64))
                    && (rec.value.is_some() || rec.timestamp >= now - grace)
            }
        };
        // Pass 2: rewrite sealed segments that hold anything to drop.
        let sealed: Vec<Arc<Segment>> = self
            .segments_read()
            .values()
            .filter(|s| s.base < active_base)
            .cloned()
            .collect();
        let mut rewritten = 0;
        for seg in sealed {
            let data = Bytes::from(
                seg.read_at(0, seg.size() as usize)
                    .map_err(|e| self.io_err(e))?,
            );
            let batches = batch::split(data).map_err(|e| self.corrupt(seg.base, e))?;
            let mut out = Vec::new();
            let mut dropped = 0usize;
            for (h, b) in &batches {
                if self.is_aborted(h) {
                    dropped += h.record_count.max(0) as usize;
                    continue;
                }
                if h.last_offset() as u64 >= lso {
                    out.extend_from_slice(b);
                    continue;
                }
                let recs = batch::decode(b).map_err(|e| self.corrupt(h.base_offset as u64, e))?;
                let kept: Vec<&batch::StoredRecord> = recs.iter().filter(|r| keep(r)).collect();
                dropped += recs.len() - kept.len();
                if kept.is_empty() {
                    continue;
                }
                let mut section = Vec::new();
                for r in &kept {
                    sluice_sdk::codec::put_record(
                        &mut section,
                        r.timestamp - h.base_timestamp,
                        (r.offset - h.base_offset) as i32,
                        r.key.as_deref(),
                        r.value.as_deref(),
                        r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
                    );
                }
                out.extend_from_slice(&batch::build_section(
                    &section,
                    kept.len(),
                    h.base_offset,
                    h.last_offset_delta,
                    h.base_timestamp,
                    h.max_timestamp,
                ));
            }
            if dropped == 0 {
                continue;
            }
            let path = seg.path().to_path_buf();
            let tmp = path.with_extension("cleaned");
            {
                let mut f = std::fs::File::create(&tmp).map_err(|e| self.io_err(e))?;
                std::io::Write::write_all(&mut f, &out).map_err(|e| self.io_err(e))?;
                f.sync_all().map_err(|e| self.io_err(e))?;
            }
            for ext in ["index", "timeindex"] {
                let _ = std::fs::remove_file(self.dir.join(segment::file_name(seg.base, ext)));
            }
            std::fs::rename(&tmp, &path).map_err(|e| self.io_err(e))?;
            sluice_common::fs::sync_dir(&self.dir).map_err(|e| self.io_err(e))?;
            let (fresh, _) = Segment::open(&self.dir, seg.base, false, now)?;
            let _ = fresh.write_indexes();
            self.segments_write().insert(seg.base, Arc::new(fresh));
            rewritten += 1;
        }
        Ok(rewritten)
    }

    /// Marks the partition deleted and wakes every waiting reader.
    pub fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        self.hw.send_modify(|_| {});
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_count(&self) -> usize {
        self.segments_read().len()
    }

    /// Segments in the object store.
    pub fn remote_segment_count(&self) -> usize {
        self.remote_read().len()
    }
}

/// The segments of `map` (by base offset) from the one that holds `offset` up to (not
/// including) those based at `end`.
fn from_holder<T: Clone>(map: &BTreeMap<u64, T>, offset: u64, end: u64) -> Vec<T> {
    let first = map.range(..=offset).next_back().map_or(0, |(b, _)| *b);
    map.range(first..end.max(first))
        .map(|(_, s)| s.clone())
        .collect()
}

/// Why a batch header could not be read.
enum HeaderError {
    Io(std::io::Error),
    Batch(batch::BatchError),
}

/// Where a segment's bytes are read from: the local file, or the object store through the
/// cache.
trait Source {
    fn size(&self) -> u64;
    /// Byte position to start scanning from to find `offset`.
    fn position_for(&self, offset: u64) -> std::io::Result<u64>;
    fn read_header(&self, pos: u64) -> Result<BatchHeader, HeaderError>;
    fn read_at(&self, pos: u64, len: usize) -> std::io::Result<Vec<u8>>;
}

impl Source for Segment {
    fn size(&self) -> u64 {
        Segment::size(self)
    }
    fn position_for(&self, offset: u64) -> std::io::Result<u64> {
        Ok(Segment::position_for(self, offset))
    }
    fn read_header(&self, pos: u64) -> Result<BatchHeader, HeaderError> {
        Segment::read_header(self, pos).map_err(HeaderError::Batch)
    }
    fn read_at(&self, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
        Segment::read_at(self, pos, len)
    }
}

struct RemoteSource<'a> {
    seg: &'a RemoteSegment,
    tier: &'a PartitionTier,
}

impl Source for RemoteSource<'_> {
    fn size(&self) -> u64 {
        self.seg.meta.size
    }
    fn position_for(&self, offset: u64) -> std::io::Result<u64> {
        let (offsets, _) = self.seg.indexes(self.tier)?;
        let rel = offset
            .saturating_sub(self.seg.meta.base)
            .min(u64::from(u32::MAX)) as u32;
        Ok(match offsets.partition_point(|(r, _)| *r <= rel) {
            0 => 0,
            i => u64::from(offsets[i - 1].1),
        })
    }
    fn read_header(&self, pos: u64) -> Result<BatchHeader, HeaderError> {
        if pos + batch::HEADER_LEN as u64 > self.seg.meta.size {
            return Err(HeaderError::Batch(batch::BatchError::Truncated {
                need: batch::HEADER_LEN,
                have: 0,
            }));
        }
        let b = self
            .read_at(pos, batch::HEADER_LEN)
            .map_err(HeaderError::Io)?;
        BatchHeader::parse(&b).map_err(HeaderError::Batch)
    }
    fn read_at(&self, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let key = self.tier.object(self.seg.meta.base, "log");
        self.tier.read(&key, self.seg.meta.size, pos, len)
    }
}

/// What one pass of tiering did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TierProgress {
    pub uploaded: usize,
    pub evicted: usize,
}

impl Partition {
    /// One pass of tiering: uploads sealed segments not yet in the object store (oldest
    /// first, at most `max_uploads`), then removes local copies that are uploaded and past
    /// local retention. Failures back off (0.5 s doubling to 60 s) and are reported in
    /// [`Partition::stats`]; the local data stays until it is uploaded. Blocking.
    pub fn tier_step(&self, now: i64, max_uploads: usize) -> Result<TierProgress, LogError> {
        let Some(tier) = self.tier() else {
            return Ok(TierProgress::default());
        };
        let mut progress = TierProgress::default();
        if lock(&self.tier_state).next_attempt_ms > now {
            return Ok(progress);
        }
        let r = self.upload_pending(&tier, max_uploads, &mut progress);
        let mut st = lock(&self.tier_state);
        match &r {
            Ok(()) => {
                st.failures = 0;
                st.last_error = None;
                if progress.uploaded > 0 {
                    st.last_upload_ms = Some(now);
                }
            }
            Err(e) => {
                st.failures += 1;
                let backoff = (500i64 << st.failures.min(7)).min(60_000);
                st.next_attempt_ms = now + backoff;
                let mut msg = e.to_string();
                let mut cause = std::error::Error::source(e);
                while let Some(c) = cause {
                    msg = format!("{msg}: {c}");
                    cause = c.source();
                }
                st.last_error = Some(msg);
                if st.failures == 1 || st.failures.is_power_of_two() {
                    tracing::warn!(topic = %self.topic, partition = self.id, failures = st.failures,
                        retry_in_ms = backoff, error = st.last_error.as_deref().unwrap_or(""), "tier upload failed; the data stays on local disk");
                }
            }
        }
        drop(st);
        r?;
        progress.evicted = self.evict_local(&tier.settings, now);
        Ok(progress)
    }

    fn pending(&self) -> Vec<Arc<Segment>> {
        // Locks one at a time (never nested): see `tier_stats`.
        let active_base = lock(&self.writer).active.base;
        let remote: std::collections::HashSet<u64> = self.remote_read().keys().copied().collect();
        self.segments_read()
            .values()
            .filter(|s| s.base != active_base && s.size() > 0 && !remote.contains(&s.base))
            .cloned()
            .collect()
    }

    fn upload_pending(
        &self,
        tier: &PartitionTier,
        max_uploads: usize,
        progress: &mut TierProgress,
    ) -> Result<(), LogError> {
        let io = |e: std::io::Error| LogError::Io {
            path: PathBuf::from(format!("{}/{}", tier.bucket, tier.key)),
            source: e,
        };
        // The manifest is written once per pass for every segment uploaded in it (each
        // write is an fsync, which would queue behind and delay appends' own): a crash
        // before it only means those segments are uploaded again, under the same names.
        let mut done: Vec<RemoteMeta> = Vec::new();
        let mut result = Ok(());
        for seg in self.pending().into_iter().take(max_uploads) {
            match self.upload_one(tier, &seg, &io) {
                Ok(meta) => done.push(meta),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if !done.is_empty() {
            let mut map = self.remote_write();
            for meta in done {
                tracing::info!(topic = %self.topic, partition = self.id, base = meta.base, bytes = meta.size, "segment uploaded to the object store");
                map.insert(meta.base, Arc::new(RemoteSegment::new(meta)));
                progress.uploaded += 1;
            }
            self.persist_manifest(&map)?;
        }
        result
    }

    /// Uploads one sealed segment: its files, then its completion marker.
    fn upload_one(
        &self,
        tier: &PartitionTier,
        seg: &Segment,
        io: &dyn Fn(std::io::Error) -> LogError,
    ) -> Result<RemoteMeta, LogError> {
        // A sealed segment's indexes are written when it rolls; a crash may have lost
        // them (they are rebuilt on open), so write them again if they are missing.
        let index = self.dir.join(segment::file_name(seg.base, "index"));
        if !index.exists() {
            seg.write_indexes().map_err(|e| self.io_err(e))?;
        }
        let size = tier
            .put_file(&tier.object(seg.base, "log"), seg.path())
            .map_err(io)?;
        for ext in ["index", "timeindex"] {
            tier.put_file(
                &tier.object(seg.base, ext),
                &self.dir.join(segment::file_name(seg.base, ext)),
            )
            .map_err(io)?;
        }
        let meta = RemoteMeta {
            base: seg.base,
            next_offset: seg.next_offset(),
            size,
            max_timestamp: seg.max_timestamp(),
            uploaded_ms: now_ms(),
        };
        let marker = serde_json::to_vec(&meta).map_err(|e| io(std::io::Error::other(e)))?;
        tier.put(&tier.object(seg.base, "json"), Bytes::from(marker))
            .map_err(io)?;
        tier::failpoint("tier-after-upload");
        Ok(meta)
    }

    /// Removes local copies of uploaded segments past local retention.
    fn evict_local(&self, settings: &tier::TierSettings, now: i64) -> usize {
        let active_base = lock(&self.writer).active.base;
        let remote: std::collections::HashSet<u64> = self.remote_read().keys().copied().collect();
        let mut evicted = Vec::new();
        {
            let mut map = self.segments_write();
            let mut local: u64 = map.values().map(|s| s.size()).sum();
            while let Some((&base, seg)) = map.first_key_value() {
                if base == active_base || !remote.contains(&base) {
                    break;
                }
                let by_time = settings
                    .local_retention_ms
                    .map(|ms| seg.max_timestamp() < now - ms);
                let by_size = settings.local_retention_bytes.map(|b| local > b);
                let go = match (by_time, by_size) {
                    (None, None) => true,
                    (t, b) => t == Some(true) || b == Some(true),
                };
                if !go {
                    break;
                }
                local -= seg.size();
                if let Some(seg) = map.remove(&base) {
                    evicted.push(seg);
                }
            }
        }
        for seg in &evicted {
            seg.delete_files();
            tracing::debug!(topic = %self.topic, partition = self.id, base = seg.base, "local copy of an uploaded segment removed");
        }
        evicted.len()
    }

    /// Deletes remote segments that end at or below `before` (retention, DeleteRecords):
    /// first from the manifest, then their objects.
    fn drop_remote_below(&self, before: u64) -> Result<usize, LogError> {
        let gone: Vec<Arc<RemoteSegment>> = {
            let mut map = self.remote_write();
            let bases: Vec<u64> = map
                .values()
                .filter(|r| r.meta.next_offset <= before)
                .map(|r| r.meta.base)
                .collect();
            if bases.is_empty() {
                return Ok(0);
            }
            let gone = bases.iter().filter_map(|b| map.remove(b)).collect();
            self.persist_manifest(&map)?;
            gone
        };
        if let Some(tier) = self.tier() {
            for rs in &gone {
                // The marker first: a crash halfway leaves objects no restore will list.
                for ext in ["json", "log", "index", "timeindex"] {
                    let key = tier.object(rs.meta.base, ext);
                    if let Err(e) = tier.delete(&key) {
                        tracing::warn!(topic = %self.topic, partition = self.id, key, error = %e, "could not delete a remote object; it is no longer referenced");
                    }
                    tier.backend.cache.forget(&tier.bucket, &key);
                }
                tier::METRICS
                    .segments_deleted
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(gone.len())
    }

    fn tier_stats(&self) -> Option<TierStats> {
        if self.tier().is_none() && self.remote_read().is_empty() {
            return None;
        }
        // Lock order: the writer (inside `pending`) is never taken while a segment map is
        // held — an append holds the writer and then takes the segments to roll.
        let pending = self.pending();
        let (local_bytes, local_first) = {
            let segs = self.segments_read();
            (
                segs.values().map(|s| s.size()).sum(),
                segs.keys().next().copied().unwrap_or(0),
            )
        };
        let (remote_bytes, remote_segments, remote_end_offset) = {
            let remote = self.remote_read();
            (
                remote.values().map(|r| r.meta.size).sum(),
                remote.len(),
                remote
                    .values()
                    .next_back()
                    .map_or(0, |r| r.meta.next_offset),
            )
        };
        let st = lock(&self.tier_state);
        Some(TierStats {
            local_bytes,
            local_start_offset: local_first.max(self.start_offset()),
            remote_bytes,
            remote_segments,
            remote_end_offset,
            pending_segments: pending.len(),
            pending_bytes: pending.iter().map(|s| s.size()).sum(),
            last_upload_ms: st.last_upload_ms,
            last_error: st.last_error.clone(),
            failures: st.failures,
            disk_warning: tier::DISK_WARNING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        })
    }
}
