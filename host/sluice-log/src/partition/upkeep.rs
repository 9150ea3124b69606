//! Upkeep of a partition: retention, DeleteRecords and compaction.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::segments::Keep;
use super::{Partition, START_FILE};
use crate::LogError;
use crate::batch;
use crate::segment::{self, Segment};

/// Most keys one compaction pass maps (~50 MB of map).
pub const MAX_COMPACTION_KEYS: usize = 1 << 21;

/// A key's 128-bit hash (two SipHash-1-3 over different inputs). A collision would drop
/// the earlier key's record; among the ≤ 2^21 keys of a pass its odds are ~2^-87.
fn key_hash(k: &[u8]) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut a = std::hash::DefaultHasher::new();
    k.hash(&mut a);
    let mut b = std::hash::DefaultHasher::new();
    (0x5a_u8, k).hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

impl Partition {
    /// Deletes whole sealed segments that fall outside the retention limits.
    /// Returns the number of segments deleted.
    pub fn apply_retention(&self, now: i64) -> usize {
        let config = self.config();
        let keep = Keep {
            ms: config.retention_ms,
            bytes: config.retention_bytes,
        };
        if keep.ms.is_none() && keep.bytes.is_none() {
            return 0;
        }
        // Remote segments (older than every local one) go first, oldest first.
        let mut remote_deleted = 0;
        let below = self.segments.remote_expired_end(now, keep);
        if below > 0 {
            match self
                .tiering
                .drop_remote_below(below, &self.segments, &self.place)
            {
                Ok(n) => remote_deleted = n,
                Err(e) => {
                    tracing::error!(topic = %self.topic, partition = self.id, error = %e, "remote retention failed")
                }
            }
            self.segments.start_at_first();
        }
        let (deleted, first) = self.segments.expire(now, keep);
        if let Some(first) = first {
            self.txns.prune(first);
        }
        if let Some(last) = deleted.last() {
            // Local segments deleted by retention go from the object store too.
            if let Err(e) =
                self.tiering
                    .drop_remote_below(last.next_offset(), &self.segments, &self.place)
            {
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
            return Err(self.place.out_of_range(before, start, hw));
        }
        if before <= start {
            return Ok(start);
        }
        sluice_common::fs::write_file(
            &self.place.dir.join(START_FILE),
            before.to_string().as_bytes(),
        )
        .map_err(|e| self.place.io_err(e))?;
        self.segments.advance_start(before);
        self.txns.prune(before);
        let deleted = self.segments.delete_below(before);
        for seg in &deleted {
            seg.delete_files();
        }
        self.tiering
            .drop_remote_below(before, &self.segments, &self.place)?;
        tracing::info!(topic = %self.topic, partition = self.id, start = before, segments = deleted.len(), "records deleted");
        Ok(before)
    }

    /// Compaction of a `compact` topic: rewrites each sealed segment keeping, per key, only
    /// the latest record (and tombstones younger than `tombstone_retention_ms`). Offsets are
    /// kept (batches keep their offset span), so positions held by readers stay valid.
    /// Returns the number of segments rewritten.
    ///
    /// Memory is bounded as in Kafka's log cleaner: a pass maps (128-bit hash of the key →
    /// latest offset) the records from where the last pass stopped, at most
    /// [`MAX_COMPACTION_KEYS`] keys, and drops every earlier record of a mapped key; keys
    /// past the map are compacted by the next passes.
    pub fn compact(&self, now: i64) -> Result<usize, LogError> {
        self.compact_mapping(now, MAX_COMPACTION_KEYS, CLEAN_CHUNK)
    }

    /// [`Partition::compact`] with a map of at most `max_keys` keys, reading segments
    /// `chunk` bytes at a time.
    pub fn compact_mapping(
        &self,
        now: i64,
        max_keys: usize,
        chunk: usize,
    ) -> Result<usize, LogError> {
        let active_base = self.segments.active_base();
        // Only decided data is compacted: records of open transactions stay as they are,
        // aborted ones go.
        let lso = self.last_stable_offset();
        // Pass 1: the latest committed offset of each key from the dirty part on.
        let mut latest: std::collections::HashMap<u128, u64> = std::collections::HashMap::new();
        let start = self.start_offset();
        let mut off = self.compacted_to.load(Ordering::Relaxed).max(start);
        if off >= lso {
            // Everything was mapped: start over (tombstones age, aborted data goes).
            off = start;
        }
        let mut mapped_end = off;
        'map: while off < lso {
            let r = self.read_below(off, 4 << 20, lso)?;
            if r.data.is_empty() {
                break;
            }
            for (h, b) in batch::split(r.data)? {
                if self.is_aborted(&h) {
                    continue;
                }
                if latest.len() >= max_keys {
                    mapped_end = h.base_offset as u64;
                    break 'map;
                }
                for rec in batch::decode(&b)? {
                    if let Some(k) = rec.key {
                        latest.insert(key_hash(&k), rec.offset as u64);
                    }
                }
            }
            off = r.next_offset;
            mapped_end = off;
        }
        self.compacted_to.store(mapped_end, Ordering::Relaxed);
        let grace = self.config().tombstone_retention_ms as i64;
        let keep = |rec: &batch::StoredRecord| match &rec.key {
            None => true,
            Some(_) if rec.offset as u64 >= lso.min(mapped_end) => true,
            Some(k) => match latest.get(&key_hash(k)) {
                // A later record of the key: this one goes.
                Some(o) if *o > rec.offset as u64 => false,
                // The latest known: kept, a tombstone while young.
                _ => rec.value.is_some() || rec.timestamp >= now - grace,
            },
        };
        // Pass 2: rewrite sealed segments that hold anything to drop.
        let sealed = self.segments.local_below(active_base);
        let dir = &self.place.dir;
        let mut rewritten = 0;
        for seg in sealed {
            if !self.clean_segment(&seg, lso, &keep, chunk)? {
                continue;
            }
            for ext in ["index", "timeindex"] {
                let _ = std::fs::remove_file(dir.join(segment::file_name(seg.base, ext)));
            }
            let path = seg.path().to_path_buf();
            std::fs::rename(path.with_extension("cleaned"), &path)
                .map_err(|e| self.place.io_err(e))?;
            sluice_common::fs::sync_dir(dir).map_err(|e| self.place.io_err(e))?;
            let (fresh, _) = Segment::open(dir, seg.base, false, now)?;
            let _ = fresh.write_indexes();
            self.segments.insert_local(Arc::new(fresh));
            rewritten += 1;
        }
        Ok(rewritten)
    }

    /// Writes sealed segment `seg` without the records `keep` rejects (and aborted
    /// batches) to `<segment>.cleaned`, synced; false (and no file) when nothing in it goes.
    /// Reads and writes `chunk` bytes of whole batches at a time: memory is bounded by the
    /// chunk (or one batch larger than it), not by the segment (up to 2 GiB).
    fn clean_segment(
        &self,
        seg: &Segment,
        lso: u64,
        keep: &dyn Fn(&batch::StoredRecord) -> bool,
        chunk: usize,
    ) -> Result<bool, LogError> {
        use std::io::Write;
        let place = &self.place;
        let io = |e: std::io::Error| place.io_err(e);
        let size = seg.size();
        let tmp = seg.path().with_extension("cleaned");
        // Opened at the first record that goes; what came before is copied then.
        let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut pos = 0u64;
        while pos < size {
            let want = chunk.max(1).min((size - pos) as usize);
            let mut data = Bytes::from(seg.read_at(pos, want).map_err(io)?);
            let mut whole = 0usize;
            let mut batches = Vec::new();
            while !data.is_empty() {
                match batch::validate(&data) {
                    Ok(h) => {
                        whole += h.size;
                        batches.push((h, data.split_to(h.size)));
                    }
                    Err(batch::BatchError::Truncated { need, .. })
                        if pos + (whole + need) as u64 <= size =>
                    {
                        if !batches.is_empty() {
                            // The rest of this batch is the next chunk's.
                            break;
                        }
                        // A batch longer than a chunk: read it whole.
                        data = Bytes::from(seg.read_at(pos, need).map_err(io)?);
                    }
                    Err(e) => return Err(place.corrupt(seg.base, e)),
                }
            }
            for (h, b) in batches {
                let kept = if self.is_aborted(&h) {
                    None
                } else if h.last_offset() as u64 >= lso {
                    Some(b.clone())
                } else {
                    let recs =
                        batch::decode(&b).map_err(|e| place.corrupt(h.base_offset as u64, e))?;
                    let kept: Vec<&batch::StoredRecord> = recs.iter().filter(|r| keep(r)).collect();
                    if kept.len() == recs.len() {
                        Some(b.clone())
                    } else if kept.is_empty() {
                        None
                    } else {
                        Some(rebuild(&h, &kept).freeze())
                    }
                };
                let unchanged = kept.as_ref().is_some_and(|k| k.len() == b.len());
                if out.is_none() && !unchanged {
                    // The first change: what came before it is copied as it is.
                    let mut w = std::io::BufWriter::with_capacity(
                        1 << 20,
                        std::fs::File::create(&tmp).map_err(io)?,
                    );
                    let mut at = 0u64;
                    while at < pos {
                        let n = chunk.max(1).min((pos - at) as usize);
                        w.write_all(&seg.read_at(at, n).map_err(io)?).map_err(io)?;
                        at += n as u64;
                    }
                    out = Some(w);
                }
                if let (Some(w), Some(k)) = (out.as_mut(), kept.as_ref()) {
                    w.write_all(k).map_err(io)?;
                }
                pos += b.len() as u64;
            }
        }
        let Some(w) = out else {
            return Ok(false);
        };
        let f = w.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
        Ok(true)
    }
}

/// How much of a segment compaction reads at a time.
pub const CLEAN_CHUNK: usize = 4 << 20;

/// Batch `h` with only the records `kept`, its offset span and timestamps as they were
/// (so positions held by readers stay valid).
fn rebuild(h: &batch::BatchHeader, kept: &[&batch::StoredRecord]) -> bytes::BytesMut {
    let mut section = Vec::new();
    for r in kept {
        sluice_sdk::codec::put_record(
            &mut section,
            r.timestamp - h.base_timestamp,
            (r.offset - h.base_offset) as i32,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
    }
    batch::build_section(
        &section,
        kept.len(),
        h.base_offset,
        h.last_offset_delta,
        h.base_timestamp,
        h.max_timestamp,
    )
}
