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
#[derive(Debug, Clone, Copy, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionStats {
    pub partition: u32,
    pub start_offset: u64,
    pub end_offset: u64,
    pub size_bytes: u64,
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
        if segments.is_empty() {
            let seg = Segment::create(&dir, 0, now)?;
            sluice_common::fs::sync_dir(&dir).map_err(io)?;
            segments.insert(0, Arc::new(seg));
        }
        let (start, active) = match (segments.first_key_value(), segments.last_key_value()) {
            (Some((s, _)), Some((_, a))) => (*s, a.clone()),
            _ => unreachable!("at least one segment exists"),
        };
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
        })
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
        let segs: Vec<Arc<Segment>> = {
            let map = self.segments_read();
            let first = map
                .range(..=offset)
                .next_back()
                .map(|(b, _)| *b)
                .unwrap_or(0);
            map.range(first..).map(|(_, s)| s.clone()).collect()
        };
        for seg in segs {
            if seg.base >= hw {
                break;
            }
            if let Some(r) = self.read_segment(&seg, offset, max_bytes, hw)? {
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
        seg: &Segment,
        offset: u64,
        max_bytes: usize,
        hw: u64,
    ) -> Result<Option<ReadBatches>, LogError> {
        let size = seg.size();
        let mut pos = seg.position_for(offset);
        // Find the batch holding `offset`.
        let first = loop {
            if pos + batch::HEADER_LEN as u64 > size {
                return Ok(None);
            }
            let h = seg.read_header(pos).map_err(|e| self.corrupt(offset, e))?;
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
        let segs: Vec<Arc<Segment>> = self.segments_read().values().cloned().collect();
        for seg in segs {
            if seg.max_timestamp() < ts {
                continue;
            }
            let mut offset = seg.offset_for_time(ts).max(self.start_offset());
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
                if offset >= seg.next_offset() {
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
        PartitionStats {
            partition: self.id,
            start_offset: self.start_offset(),
            end_offset: self.high_watermark(),
            size_bytes: self.segments_read().values().map(|s| s.size()).sum(),
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
        let mut deleted = Vec::new();
        {
            let mut map = self.segments_write();
            let mut total: u64 = map.values().map(|s| s.size()).sum();
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
                self.start.fetch_max(first, Ordering::AcqRel);
                lock(&self.txn).prune(first);
            }
        }
        for seg in &deleted {
            seg.delete_files();
            tracing::info!(topic = %self.topic, partition = self.id, base = seg.base, "segment deleted by retention");
        }
        deleted.len()
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
}
