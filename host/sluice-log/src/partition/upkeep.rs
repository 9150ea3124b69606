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
        self.compact_mapping(now, MAX_COMPACTION_KEYS)
    }

    /// [`Partition::compact`] with a map of at most `max_keys` keys.
    pub fn compact_mapping(&self, now: i64, max_keys: usize) -> Result<usize, LogError> {
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
        let (place, dir) = (&self.place, &self.place.dir);
        let mut rewritten = 0;
        for seg in sealed {
            let data = Bytes::from(
                seg.read_at(0, seg.size() as usize)
                    .map_err(|e| place.io_err(e))?,
            );
            let batches = batch::split(data).map_err(|e| place.corrupt(seg.base, e))?;
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
                let recs = batch::decode(b).map_err(|e| place.corrupt(h.base_offset as u64, e))?;
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
                let mut f = std::fs::File::create(&tmp).map_err(|e| place.io_err(e))?;
                std::io::Write::write_all(&mut f, &out).map_err(|e| place.io_err(e))?;
                f.sync_all().map_err(|e| place.io_err(e))?;
            }
            for ext in ["index", "timeindex"] {
                let _ = std::fs::remove_file(dir.join(segment::file_name(seg.base, ext)));
            }
            std::fs::rename(&tmp, &path).map_err(|e| place.io_err(e))?;
            sluice_common::fs::sync_dir(dir).map_err(|e| place.io_err(e))?;
            let (fresh, _) = Segment::open(dir, seg.base, false, now)?;
            let _ = fresh.write_indexes();
            self.segments.insert_local(Arc::new(fresh));
            rewritten += 1;
        }
        Ok(rewritten)
    }
}
