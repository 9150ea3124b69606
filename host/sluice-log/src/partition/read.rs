//! Reads of a partition: whole batches from local or remote segments, committed records,
//! the time index, and waiting for data.

use std::time::Duration;

use bytes::Bytes;

use super::place::Place;
use super::{Partition, ReadBatches};
use crate::LogError;
use crate::batch::{self, BatchHeader};
use crate::segment::Segment;
use crate::tier::{PartitionTier, RemoteSegment};

impl Partition {
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
        self.txns.first_open().map_or(hw, |f| f.min(hw))
    }

    /// Like [`Partition::read`], but only below the last stable offset (`next_offset`
    /// and `high_watermark` then tell the LSO). The caller skips aborted batches
    /// ([`Partition::is_aborted`]) and control batches.
    pub fn read_committed(&self, offset: u64, max_bytes: usize) -> Result<ReadBatches, LogError> {
        let hw = self.high_watermark();
        if offset > hw {
            return Err(self.place.out_of_range(offset, self.start_offset(), hw));
        }
        let lso = self.last_stable_offset();
        self.read_below(offset.min(lso), max_bytes, lso)
    }

    /// Aborted transactions with records in `from..=to` (Fetch's `aborted_transactions`).
    pub fn aborted_between(&self, from: u64, to: u64) -> Vec<crate::txn::Aborted> {
        self.txns.aborted_between(from, to)
    }

    /// Whether a batch belongs to an aborted transaction (`read_committed` skips it).
    pub fn is_aborted(&self, h: &batch::BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.txns.is_aborted(h.producer_id, h.base_offset as u64)
    }

    /// Reads whole batches from `offset` that start below `hw`.
    pub(super) fn read_below(
        &self,
        offset: u64,
        max_bytes: usize,
        hw: u64,
    ) -> Result<ReadBatches, LogError> {
        let start = self.start_offset();
        if offset < start || offset > hw {
            return Err(self.place.out_of_range(offset, start, hw));
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
        let (remotes, locals) = self.segments.holders(offset);
        if !remotes.is_empty() {
            let tier = self.tiering.target().ok_or_else(|| {
                self.place.io_err(std::io::Error::other(
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
                if let Some(r) = read_segment(&self.place, &src, offset, max_bytes, hw)? {
                    return Ok(ReadBatches {
                        start_offset: start,
                        ..r
                    });
                }
            }
        }
        for seg in locals {
            if seg.base >= hw {
                break;
            }
            if let Some(r) = read_segment(&self.place, seg.as_ref(), offset, max_bytes, hw)? {
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

    /// The first offset whose record timestamp is at or after `ts`, if any.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>, LogError> {
        let hw = self.high_watermark();
        // (start scanning here, end of segment) for every segment that may hold `ts`:
        // remote ones below the first local segment, then the local ones.
        let (remotes, local) = self.segments.all();
        let mut spans: Vec<(u64, u64)> = Vec::new();
        if !remotes.is_empty() {
            let tier = self.tiering.target();
            for rs in remotes {
                if rs.meta.max_timestamp < ts {
                    continue;
                }
                let from = match &tier {
                    Some(t) => {
                        let (_, times) = rs.indexes(t).map_err(|e| self.place.io_err(e))?;
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
                for (h, b) in batch::split(r.data).map_err(|e| self.place.corrupt(offset, e))? {
                    if h.max_timestamp < ts {
                        continue;
                    }
                    for rec in batch::decode(&b).map_err(|e| self.place.corrupt(offset, e))? {
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
            let lso = self.txns.first_open().map_or(*hw, |f| f.min(*hw));
            lso > offset || self.is_deleted()
        });
        let _ = tokio::time::timeout(timeout, wait).await;
        if self.is_deleted() {
            return Err(LogError::TopicDeleted(self.topic.clone()));
        }
        Ok(())
    }
}

/// Reads whole batches of one segment from the batch holding `offset`, up to `max_bytes`
/// (at least one batch) and below `hw`; `None` when it holds none of them.
fn read_segment(
    place: &Place,
    seg: &dyn Source,
    offset: u64,
    max_bytes: usize,
    hw: u64,
) -> Result<Option<ReadBatches>, LogError> {
    let size = seg.size();
    let mut pos = seg.position_for(offset).map_err(|e| place.io_err(e))?;
    // Find the batch holding `offset`.
    let first = loop {
        if pos + batch::HEADER_LEN as u64 > size {
            return Ok(None);
        }
        let h = seg.read_header(pos).map_err(|e| match e {
            HeaderError::Io(e) => place.io_err(e),
            HeaderError::Batch(e) => place.corrupt(offset, e),
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
    let mut buf = seg.read_at(pos, want).map_err(|e| place.io_err(e))?;
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
                return Err(place.corrupt(h.base_offset as u64, e));
            }
            break;
        }
        end += h.size;
        next = h.last_offset() as u64 + 1;
    }
    if end == 0 {
        return Err(place.corrupt(
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
