//! What a stateless session takes from its consumer at a time: per input partition, the
//! records written straight into the plugin's batch layout as they are consumed (no copy
//! of their own per record), with where each one starts — dead letters and a run cut
//! short read them again from there.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use sluice_sdk::codec::{CodecError, Reader, RecordView, put_record};

/// How long a chunk waits for more records once it has one.
const CHUNK_WAIT: Duration = Duration::from_millis(5);

/// One input partition's records of a chunk.
pub(crate) struct Part {
    pub(crate) base_offset: i64,
    pub(crate) base_timestamp: i64,
    pub(crate) last_offset: i64,
    /// The records, in the batch layout (deltas from the first record's offset and time).
    pub(crate) section: Vec<u8>,
    /// Where each record starts in `section`.
    starts: Vec<usize>,
}

/// A part's records as the plugin takes them: the section frozen (shared with the
/// plugin's input, no copy), read back for dead letters and runs cut short.
pub(crate) struct Batch {
    pub(crate) base_offset: i64,
    pub(crate) base_timestamp: i64,
    pub(crate) section: Bytes,
    starts: Vec<usize>,
}

/// A record of a [`Batch`], read back.
pub(crate) struct Record<'a> {
    pub(crate) offset: i64,
    pub(crate) timestamp: i64,
    pub(crate) view: RecordView<'a>,
}

impl Part {
    fn new(m: &BorrowedMessage<'_>) -> Part {
        Part {
            base_offset: m.offset(),
            base_timestamp: timestamp(m),
            last_offset: m.offset(),
            section: Vec::with_capacity(64 << 10),
            starts: Vec::new(),
        }
    }

    fn push(&mut self, m: &BorrowedMessage<'_>) {
        self.starts.push(self.section.len());
        self.last_offset = m.offset();
        let headers = m.headers();
        let headers = headers.iter().flat_map(|h| {
            h.iter()
                .map(|x| (x.key.as_bytes(), x.value))
                .collect::<Vec<_>>()
        });
        put_record(
            &mut self.section,
            timestamp(m).wrapping_sub(self.base_timestamp),
            (m.offset() - self.base_offset) as i32,
            m.key(),
            m.payload(),
            headers,
        );
    }

    pub(crate) fn into_batch(self) -> Batch {
        Batch {
            base_offset: self.base_offset,
            base_timestamp: self.base_timestamp,
            section: Bytes::from(self.section),
            starts: self.starts,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }
}

impl Batch {
    pub(crate) fn len(&self) -> usize {
        self.starts.len()
    }

    /// Record `i`.
    pub(crate) fn record(&self, i: usize) -> Result<Record<'_>, CodecError> {
        let at = self.starts.get(i).copied().ok_or(CodecError::BadLength)?;
        let view = RecordView::read(&mut Reader::new(&self.section[at..]))?;
        Ok(Record {
            offset: self.base_offset + i64::from(view.offset_delta),
            timestamp: self.base_timestamp.wrapping_add(view.timestamp_delta),
            view,
        })
    }

    /// The records from `i` on, as a batch of their own (after a run cut short).
    pub(crate) fn rest(&self, i: usize) -> Result<Batch, CodecError> {
        let first = self.record(i)?;
        let (mut section, mut starts) = (
            Vec::with_capacity(self.section.len()),
            Vec::with_capacity(self.len() - i),
        );
        for j in i..self.len() {
            let r = self.record(j)?;
            starts.push(section.len());
            put_record(
                &mut section,
                r.timestamp.wrapping_sub(first.timestamp),
                (r.offset - first.offset) as i32,
                r.view.key,
                r.view.value,
                r.view.headers().map(|h| (h.key, h.value)),
            );
        }
        Ok(Batch {
            base_offset: first.offset,
            base_timestamp: first.timestamp,
            section: Bytes::from(section),
            starts,
        })
    }
}

fn timestamp(m: &BorrowedMessage<'_>) -> i64 {
    m.timestamp().to_millis().unwrap_or(0)
}

/// Records taken from the consumer, per input partition.
#[derive(Default)]
pub(crate) struct Chunk {
    pub(crate) parts: BTreeMap<i32, Part>,
    pub(crate) records: usize,
}

impl Chunk {
    fn push(&mut self, m: &BorrowedMessage<'_>) {
        self.parts
            .entry(m.partition())
            .or_insert_with(|| Part::new(m))
            .push(m);
        self.records += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Drops the records of the partitions `keep` does not keep.
    pub(crate) fn retain(&mut self, keep: impl Fn(i32) -> bool) {
        self.parts.retain(|p, _| keep(*p));
        self.records = self.parts.values().map(Part::len).sum();
    }
}

/// Up to `max` records: waits at most `wait` for the first, then takes what arrives within
/// [`CHUNK_WAIT`] (and before `wait` ends). While records are waiting in the consumer's
/// queue they are taken without a timeout (no clock read per record).
pub(crate) fn take<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    wait: Duration,
    max: usize,
) -> KafkaResult<Chunk> {
    let deadline = Instant::now() + wait;
    let mut chunk = Chunk::default();
    let Some(first) = consumer.poll(wait) else {
        return Ok(chunk);
    };
    chunk.push(&first?);
    let until = deadline.min(Instant::now() + CHUNK_WAIT);
    while chunk.records < max {
        let m = match consumer.poll(Duration::ZERO) {
            Some(m) => m,
            None => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match consumer.poll(left) {
                    Some(m) => m,
                    None => break,
                }
            }
        };
        chunk.push(&m?);
    }
    Ok(chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_reads_its_records_back_and_the_rest_from_any_record() {
        let mut part = Part {
            base_offset: 100,
            base_timestamp: 5_000,
            last_offset: 103,
            section: Vec::new(),
            starts: Vec::new(),
        };
        // Offsets 100, 101, 103 (a gap: a transaction marker), times around the first.
        for (off, ts, key, value) in [
            (100, 5_000, Some(&b"a"[..]), Some(&b"one"[..])),
            (101, 4_990, None, Some(&b"two"[..])),
            (103, 5_020, Some(&b"c"[..]), None),
        ] {
            part.starts.push(part.section.len());
            let headers = [(&b"h"[..], Some(&b"v"[..]))];
            put_record(
                &mut part.section,
                ts - 5_000,
                off - 100,
                key,
                value,
                headers.into_iter().take(usize::from(off == 101)),
            );
        }
        let part = part.into_batch();
        let r = part.record(1).unwrap();
        assert_eq!((r.offset, r.timestamp), (101, 4_990));
        assert_eq!((r.view.key, r.view.value), (None, Some(&b"two"[..])));
        assert_eq!(r.view.headers().count(), 1);
        assert!(part.record(3).is_err());
        let rest = part.rest(1).unwrap();
        assert_eq!(
            (rest.base_offset, rest.base_timestamp, rest.len()),
            (101, 4_990, 2)
        );
        let last = rest.record(1).unwrap();
        assert_eq!((last.offset, last.timestamp), (103, 5_020));
        assert_eq!((last.view.key, last.view.value), (Some(&b"c"[..]), None));
        assert_eq!(rest.record(0).unwrap().view.headers().count(), 1);
    }
}
