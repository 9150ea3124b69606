//! The one writer of a partition: offsets, the active segment, and rolls.

use std::sync::{Arc, Mutex};

use bytes::BytesMut;

use super::locks::{Txns, lock};
use super::place::Place;
use super::segments::Segments;
use crate::batch::{self, BatchHeader};
use crate::segment::Segment;
use crate::{LogError, TopicConfig, now_ms};

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub base_offset: u64,
    pub last_offset: u64,
}

/// The end of the log, where the next batch goes.
struct Tail {
    next_offset: u64,
    active: Arc<Segment>,
}

/// The writer lock: one appender at a time assigns offsets and writes the active segment.
///
/// # Locks
///
/// Held only inside these methods. While [`Writer::append`] holds it, it takes the
/// segment set's lock (a roll adds the new segment) and the transaction index's (a
/// transactional batch), both through the arguments it is given, whose methods take and
/// release their lock before returning. It is given nothing that leads to a lock above it
/// (the group commit), and no guard leaves this type, so `writer → segments`,
/// `writer → txns` is the only order it can take part in.
pub(super) struct Writer(Mutex<Tail>);

impl Writer {
    pub(super) fn new(next_offset: u64, active: Arc<Segment>) -> Writer {
        Writer(Mutex::new(Tail {
            next_offset,
            active,
        }))
    }

    /// The next offset to be assigned.
    pub(super) fn next_offset(&self) -> u64 {
        lock(&self.0).next_offset
    }

    /// The next offset and the active segment, at one moment: every offset below it is in
    /// that segment or in a sealed one.
    pub(super) fn end(&self) -> (u64, Arc<Segment>) {
        let w = lock(&self.0);
        (w.next_offset, w.active.clone())
    }

    /// Writes validated batches (`headers` are theirs, in order), assigning offsets and
    /// rolling to a new segment when the active one is full or old.
    pub(super) fn append(
        &self,
        data: &mut BytesMut,
        headers: &mut [BatchHeader],
        config: &TopicConfig,
        segments: &Segments,
        txns: &Txns,
        place: &Place,
    ) -> Result<Appended, LogError> {
        let mut w = lock(&self.0);
        let first = w.next_offset;
        // One append goes whole into one segment (rolled first when it would not fit), so
        // a write that fails part way is undone in that segment alone.
        let active_size = w.active.size();
        if active_size > 0
            && (active_size + data.len() as u64 > config.segment_bytes
                || now_ms() - w.active.created_ms >= config.segment_ms as i64)
        {
            roll(&mut w, segments, place)?;
        }
        let mark = w.active.mark();
        let mut pos = 0;
        for h in headers.iter_mut() {
            let bytes = &mut data[pos..pos + h.size];
            batch::set_base_offset(bytes, w.next_offset as i64);
            h.base_offset = w.next_offset as i64;
            if let Err(e) = w.active.append(bytes, h) {
                // Nothing of a failed append stays: not even its earlier batches, which
                // a client's retry would otherwise write twice.
                if let Err(undo) = w.active.rollback(&mark) {
                    tracing::error!(topic = %place.topic, partition = place.id, error = %undo, "could not cut a failed append off the segment");
                }
                w.next_offset = first;
                return Err(place.io_err(e));
            }
            w.next_offset += h.offset_count();
            pos += h.size;
        }
        // Transaction markers are observed once every batch is in the segment.
        let mut pos = 0;
        for h in headers.iter() {
            if h.is_transactional() {
                txns.observe(&data[pos..pos + h.size], h)
                    .map_err(|e| place.io_err(e))?;
            }
            pos += h.size;
        }
        Ok(Appended {
            base_offset: first,
            last_offset: w.next_offset - 1,
        })
    }

    /// Writes the active segment's indexes (clean shutdown).
    pub(super) fn close(&self) -> std::io::Result<()> {
        lock(&self.0).active.write_indexes()
    }
}

/// Seals the active segment (fsync + index files) and starts a new one.
fn roll(w: &mut Tail, segments: &Segments, place: &Place) -> Result<(), LogError> {
    w.active.sync().map_err(|e| place.io_err(e))?;
    if let Err(e) = w.active.write_indexes() {
        tracing::warn!(topic = %place.topic, partition = place.id, error = %e, "index write failed; it will be rebuilt");
    }
    let seg = Arc::new(Segment::create(&place.dir, w.next_offset, now_ms())?);
    sluice_common::fs::sync_dir(&place.dir).map_err(|e| place.io_err(e))?;
    segments.insert_local(seg.clone());
    tracing::info!(topic = %place.topic, partition = place.id, base = seg.base, "segment rolled");
    w.active = seg;
    Ok(())
}
