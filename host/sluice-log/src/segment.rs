//! One segment: a file of whole batches plus its sparse offset and time indexes.
//!
//! Indexes live in memory while the segment is active and are written beside it when it is
//! sealed. They are hints, never the truth: start-up validates them against the segment file
//! and rebuilds them by scanning when they disagree, so a crash while writing one costs only a
//! scan.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};

use sluice_common::fs::write_file;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::batch::{self, BatchError, BatchHeader, HEADER_LEN};

/// Bytes of log between two sparse index entries.
const INDEX_INTERVAL: u64 = 4096;

/// Offset index entry: (offset relative to the segment base, byte position).
type OffsetEntry = (u32, u32);
/// Time index entry: (max timestamp so far, relative offset of the batch that reached it).
type TimeEntry = (i64, u32);

#[derive(Debug, Default)]
struct Indexes {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    max_timestamp: i64,
    /// One past the last offset stored in this segment (= base when empty).
    next_offset: u64,
    since_offset_entry: u64,
    since_time_entry: u64,
}

impl Indexes {
    fn new(base: u64) -> Self {
        Indexes {
            max_timestamp: i64::MIN,
            next_offset: base,
            since_offset_entry: INDEX_INTERVAL,
            since_time_entry: INDEX_INTERVAL,
            ..Default::default()
        }
    }

    fn add(&mut self, base: u64, pos: u64, h: &BatchHeader) {
        let rel = (h.base_offset as u64 - base) as u32;
        if self.since_offset_entry >= INDEX_INTERVAL {
            self.offsets.push((rel, pos as u32));
            self.since_offset_entry = 0;
        }
        self.since_offset_entry += h.size as u64;
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            if self.since_time_entry >= INDEX_INTERVAL {
                self.times.push((h.max_timestamp, rel));
                self.since_time_entry = 0;
            }
        }
        self.since_time_entry += h.size as u64;
        self.next_offset = h.last_offset() as u64 + 1;
    }
}

/// A segment's end at one moment (see [`Segment::mark`]).
#[derive(Debug, Clone)]
pub struct Mark {
    size: u64,
    offsets: usize,
    times: usize,
    max_timestamp: i64,
    next_offset: u64,
    since_offset_entry: u64,
    since_time_entry: u64,
}

/// What a scan of a segment file found.
#[derive(Debug)]
pub struct ScanReport {
    /// Bytes of whole batches kept.
    pub valid_len: u64,
    /// Bytes cut off the tail (torn write or garbage).
    pub truncated: u64,
    /// Positions of batches in the middle that fail their CRC (kept, never served).
    pub corrupt: Vec<(u64, BatchError)>,
}

#[derive(Debug)]
pub struct Segment {
    pub base: u64,
    log_path: PathBuf,
    file: File,
    size: AtomicU64,
    index: Mutex<Indexes>,
    /// Wall-clock ms when the segment was created, for rolling by age.
    pub created_ms: i64,
}

pub fn file_name(base: u64, ext: &str) -> String {
    format!("{base:020}.{ext}")
}

fn io_err(path: &Path, e: io::Error) -> super::LogError {
    super::LogError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

impl Segment {
    /// Creates an empty segment file.
    pub fn create(dir: &Path, base: u64, now_ms: i64) -> Result<Segment, super::LogError> {
        let log_path = dir.join(file_name(base, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .map_err(|e| io_err(&log_path, e))?;
        Ok(Segment {
            base,
            log_path,
            file,
            size: AtomicU64::new(0),
            index: Mutex::new(Indexes::new(base)),
            created_ms: now_ms,
        })
    }

    /// Opens an existing segment. The active (last) one is always scanned and its torn tail
    /// truncated; sealed ones trust their index files when those check out.
    pub fn open(
        dir: &Path,
        base: u64,
        active: bool,
        now_ms: i64,
    ) -> Result<(Segment, ScanReport), super::LogError> {
        let log_path = dir.join(file_name(base, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| io_err(&log_path, e))?;
        let len = file.metadata().map_err(|e| io_err(&log_path, e))?.len();
        let created_ms = file
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(now_ms, |d| d.as_millis() as i64);
        let seg = Segment {
            base,
            log_path,
            file,
            size: AtomicU64::new(len),
            index: Mutex::new(Indexes::new(base)),
            created_ms,
        };
        if !active && let Some(ix) = seg.load_indexes(len) {
            *seg.lock_index() = ix;
            let report = ScanReport {
                valid_len: len,
                truncated: 0,
                corrupt: Vec::new(),
            };
            return Ok((seg, report));
        }
        let report = seg.scan(len, active)?;
        Ok((seg, report))
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, Indexes> {
        // A panic while holding this lock cannot leave the indexes half-updated in a way
        // that matters (they are hints), so a poisoned lock is still usable.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Walks every batch, rebuilding the indexes. With `truncate`, a torn or garbage tail
    /// is cut back to the last valid batch.
    fn scan(&self, len: u64, truncate: bool) -> Result<ScanReport, super::LogError> {
        let mut reader = BufReader::with_capacity(1 << 20, &self.file);
        let mut ix = Indexes::new(self.base);
        let mut pos = 0u64;
        let mut good_end = 0u64;
        let mut good_ix_next = self.base;
        let mut corrupt: Vec<(u64, BatchError)> = Vec::new();
        let mut buf = Vec::new();
        let mut header = [0u8; HEADER_LEN];
        while pos < len {
            if len - pos < HEADER_LEN as u64 || reader.read_exact(&mut header).is_err() {
                break;
            }
            let h = match BatchHeader::parse(&header) {
                Ok(h) => h,
                Err(_) => break,
            };
            if pos + h.size as u64 > len
                || h.base_offset < ix.next_offset as i64
                || h.base_offset < self.base as i64
            {
                break;
            }
            buf.clear();
            buf.extend_from_slice(&header);
            buf.resize(h.size, 0);
            if reader.read_exact(&mut buf[HEADER_LEN..]).is_err() {
                break;
            }
            match batch::validate(&buf) {
                Ok(h) => {
                    ix.add(self.base, pos, &h);
                    pos += h.size as u64;
                    good_end = pos;
                    good_ix_next = ix.next_offset;
                }
                Err(e) => {
                    // Structurally whole but the CRC fails: keep going to learn whether
                    // valid data follows (mid-segment damage) or this is the tail.
                    ix.add(self.base, pos, &h);
                    corrupt.push((pos, e));
                    pos += h.size as u64;
                }
            }
        }
        // Damage at the tail (nothing valid after it) is a torn write: drop it.
        corrupt.retain(|(p, _)| *p < good_end);
        if good_end < pos || pos < len {
            ix.offsets.retain(|(_, p)| u64::from(*p) < good_end);
            ix.times
                .retain(|(_, rel)| u64::from(*rel) + self.base < good_ix_next);
            ix.next_offset = good_ix_next;
        }
        let truncated = len - good_end;
        if truncated > 0 && truncate {
            self.file
                .set_len(good_end)
                .map_err(|e| io_err(&self.log_path, e))?;
            self.file
                .sync_all()
                .map_err(|e| io_err(&self.log_path, e))?;
            self.size.store(good_end, Ordering::Release);
        }
        if ix.max_timestamp == i64::MIN && !ix.times.is_empty() {
            ix.max_timestamp = ix.times.last().map_or(i64::MIN, |t| t.0);
        }
        *self.lock_index() = ix;
        Ok(ScanReport {
            valid_len: good_end,
            truncated,
            corrupt,
        })
    }

    /// Loads `.index` / `.timeindex` if they exist and agree with the segment file.
    fn load_indexes(&self, len: u64) -> Option<Indexes> {
        let dir = self.log_path.parent()?;
        let offs = std::fs::read(dir.join(file_name(self.base, "index"))).ok()?;
        let times = std::fs::read(dir.join(file_name(self.base, "timeindex"))).ok()?;
        // Trailer of the time index: next_offset (8 bytes).
        if offs.len() % 8 != 0 || times.len() < 8 || (times.len() - 8) % 12 != 0 {
            return None;
        }
        let mut ix = Indexes::new(self.base);
        for c in offs.chunks_exact(8) {
            let rel = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let pos = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if let Some(&(r0, p0)) = ix.offsets.last()
                && (rel <= r0 || pos <= p0)
            {
                return None;
            }
            if u64::from(pos) >= len {
                return None;
            }
            ix.offsets.push((rel, pos));
        }
        let (body, trailer) = times.split_at(times.len() - 8);
        for c in body.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            let ts = i64::from_be_bytes(t);
            let rel = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if let Some(&(t0, r0)) = ix.times.last()
                && (ts < t0 || rel < r0)
            {
                return None;
            }
            ix.times.push((ts, rel));
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(trailer);
        ix.next_offset = u64::from_be_bytes(t);
        ix.max_timestamp = ix.times.last().map_or(i64::MIN, |t| t.0);
        // The last offset entry must point at a batch with the offset it claims.
        if let Some(&(rel, pos)) = ix.offsets.last() {
            let mut hb = [0u8; HEADER_LEN];
            self.file.read_exact_at(&mut hb, u64::from(pos)).ok()?;
            let h = BatchHeader::parse(&hb).ok()?;
            if h.base_offset as u64 != self.base + u64::from(rel)
                || ix.next_offset <= h.last_offset() as u64
            {
                return None;
            }
        } else if len > 0 {
            return None;
        }
        ix.since_offset_entry = INDEX_INTERVAL;
        ix.since_time_entry = INDEX_INTERVAL;
        Some(ix)
    }

    /// Writes the indexes beside the segment (on seal and clean shutdown).
    pub fn write_indexes(&self) -> io::Result<()> {
        let Some(dir) = self.log_path.parent() else {
            return Ok(());
        };
        let ix = self.lock_index();
        let mut offs = Vec::with_capacity(ix.offsets.len() * 8);
        for (rel, pos) in &ix.offsets {
            offs.extend_from_slice(&rel.to_be_bytes());
            offs.extend_from_slice(&pos.to_be_bytes());
        }
        let mut times = Vec::with_capacity(ix.times.len() * 12 + 20);
        let mut entries = ix.times.clone();
        // Always end with the segment's max timestamp so retention sees it after a restart.
        if ix.max_timestamp != i64::MIN && entries.last().map(|t| t.0) != Some(ix.max_timestamp) {
            let rel = entries.last().map_or(0, |t| t.1);
            entries.push((ix.max_timestamp, rel));
        }
        for (ts, rel) in &entries {
            times.extend_from_slice(&ts.to_be_bytes());
            times.extend_from_slice(&rel.to_be_bytes());
        }
        times.extend_from_slice(&ix.next_offset.to_be_bytes());
        drop(ix);
        write_file(&dir.join(file_name(self.base, "index")), &offs)?;
        write_file(&dir.join(file_name(self.base, "timeindex")), &times)
    }

    /// Where the segment ends now, to [`Segment::rollback`] to.
    pub fn mark(&self) -> Mark {
        let ix = self.lock_index();
        Mark {
            size: self.size.load(Ordering::Acquire),
            offsets: ix.offsets.len(),
            times: ix.times.len(),
            max_timestamp: ix.max_timestamp,
            next_offset: ix.next_offset,
            since_offset_entry: ix.since_offset_entry,
            since_time_entry: ix.since_time_entry,
        }
    }

    /// Cuts the segment back to `mark` (an append that failed part way): the file, its
    /// size and its indexes are as they were, so nothing of the failed append is ever
    /// read, and no torn tail waits for the next restart.
    pub fn rollback(&self, mark: &Mark) -> io::Result<()> {
        let mut ix = self.lock_index();
        ix.offsets.truncate(mark.offsets);
        ix.times.truncate(mark.times);
        ix.max_timestamp = mark.max_timestamp;
        ix.next_offset = mark.next_offset;
        ix.since_offset_entry = mark.since_offset_entry;
        ix.since_time_entry = mark.since_time_entry;
        self.size.store(mark.size, Ordering::Release);
        drop(ix);
        // Shrinking needs no space.
        self.file.set_len(mark.size)
    }

    /// Appends one validated batch (offsets already assigned) at the end of the file.
    pub fn append(&self, bytes: &[u8], h: &BatchHeader) -> io::Result<()> {
        let pos = self.size.load(Ordering::Acquire);
        if let Err(e) = self.file.write_all_at(bytes, pos) {
            // Part of it may be on disk: cut it off now rather than at the next restart.
            let _ = self.file.set_len(pos);
            return Err(e);
        }
        self.lock_index().add(self.base, pos, h);
        self.size.store(pos + bytes.len() as u64, Ordering::Release);
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    pub fn next_offset(&self) -> u64 {
        self.lock_index().next_offset
    }

    pub fn max_timestamp(&self) -> i64 {
        self.lock_index().max_timestamp
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn path(&self) -> &Path {
        &self.log_path
    }

    /// Byte position to start scanning from to find `offset`.
    pub fn position_for(&self, offset: u64) -> u64 {
        let rel = offset.saturating_sub(self.base).min(u64::from(u32::MAX)) as u32;
        let ix = self.lock_index();
        match ix.offsets.partition_point(|(r, _)| *r <= rel) {
            0 => 0,
            i => u64::from(ix.offsets[i - 1].1),
        }
    }

    /// Offset to start scanning from to find the first record at or after `ts`.
    pub fn offset_for_time(&self, ts: i64) -> u64 {
        let ix = self.lock_index();
        match ix.times.partition_point(|(t, _)| *t < ts) {
            0 => self.base,
            i => self.base + u64::from(ix.times[i - 1].1),
        }
    }

    pub fn read_header(&self, pos: u64) -> Result<BatchHeader, BatchError> {
        let mut hb = [0u8; HEADER_LEN];
        self.file
            .read_exact_at(&mut hb, pos)
            .map_err(|_| BatchError::Truncated {
                need: HEADER_LEN,
                have: 0,
            })?;
        BatchHeader::parse(&hb)
    }

    pub fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, pos)?;
        Ok(buf)
    }

    /// Removes the segment's files (the open handle keeps serving readers that hold it).
    pub fn delete_files(&self) {
        if let Some(dir) = self.log_path.parent() {
            for ext in ["log", "index", "timeindex"] {
                let _ = std::fs::remove_file(dir.join(file_name(self.base, ext)));
            }
        }
    }
}
