//! Kafka record batch v2: the on-disk and on-wire unit of the log.
//!
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8 (2)
//! 17 crc u32 (CRC32C of bytes 21..end) | 21 attributes i16 | 23 lastOffsetDelta i32
//! 27 baseTimestamp i64 | 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16
//! 53 baseSequence i32 | 57 recordCount i32 | 61 records
//! ```
//! The base offset is not covered by the CRC, so the log assigns offsets by rewriting the
//! first eight bytes of a batch exactly as it arrived.

use bytes::{Bytes, BytesMut};
use sluice_sdk::codec::{self, RecordView, Records};

pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
const CRC_START: usize = 21;
/// Upper bound on one batch; anything larger in a length field is corruption or an attack.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Why bytes are not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch is truncated (need {need} bytes, have {have})")]
    Truncated { need: usize, have: usize },
    #[error("batch length {0} is out of range")]
    BadLength(i64),
    #[error("unsupported record batch magic {0} (only v2)")]
    BadMagic(i8),
    #[error("batch crc mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Crc { stored: u32, computed: u32 },
    #[error("batch header is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("records do not decode: {0}")]
    Records(String),
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// The fixed-size header of one batch, read from its first 61 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, including the 12 leading bytes.
    pub size: usize,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `b`, checking lengths but not the CRC.
    pub fn parse(b: &[u8]) -> Result<Self, BatchError> {
        if b.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        let len = be_i32(b, 8) as i64;
        if len < (HEADER_LEN - LOG_OVERHEAD) as i64 || len as usize > MAX_BATCH_BYTES {
            return Err(BatchError::BadLength(len));
        }
        let magic = b[16] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        let h = BatchHeader {
            base_offset: be_i64(b, 0),
            size: len as usize + LOG_OVERHEAD,
            magic,
            crc: u32::from_be_bytes([b[17], b[18], b[19], b[20]]),
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            record_count: be_i32(b, 57),
        };
        if h.last_offset_delta < 0 || h.record_count < 0 {
            return Err(BatchError::Inconsistent(
                "negative offset delta or record count",
            ));
        }
        Ok(h)
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Number of offsets the batch occupies.
    pub fn offset_count(&self) -> u64 {
        self.last_offset_delta as u64 + 1
    }

    pub fn compression(&self) -> i16 {
        self.attributes & 0x7
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }
}

/// Checks a whole batch (header, length, CRC) and returns its header.
pub fn validate(b: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(b)?;
    if b.len() < h.size {
        return Err(BatchError::Truncated {
            need: h.size,
            have: b.len(),
        });
    }
    let computed = crc32c::crc32c(&b[CRC_START..h.size]);
    if computed != h.crc {
        return Err(BatchError::Crc {
            stored: h.crc,
            computed,
        });
    }
    Ok(h)
}

/// Rewrites the base offset of the batch at the start of `b` (not covered by the CRC).
pub fn set_base_offset(b: &mut [u8], base: i64) {
    b[0..8].copy_from_slice(&base.to_be_bytes());
}

/// One record to put in a batch.
#[derive(Debug, Clone, Default)]
pub struct NewRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Milliseconds since the epoch; `None` = now.
    pub timestamp: Option<i64>,
}

/// Encodes records as one uncompressed v2 batch with base offset 0 (the log assigns it).
pub fn build<'a>(records: impl IntoIterator<Item = &'a NewRecord>, now_ms: i64) -> BytesMut {
    let mut b = Builder::new();
    for r in records {
        b.push_record(r, now_ms);
    }
    b.finish()
}

/// Builds one uncompressed v2 batch record by record, encoding each straight into the
/// batch (base offset 0: the log assigns offsets). The base timestamp is the first
/// record's; later records may have negative deltas, which the format allows.
#[derive(Debug)]
pub struct Builder {
    buf: Vec<u8>,
    count: usize,
    base_ts: i64,
    max_ts: i64,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    pub fn new() -> Builder {
        let mut buf = Vec::with_capacity(16 << 10);
        buf.resize(HEADER_LEN, 0);
        Builder {
            buf,
            count: 0,
            base_ts: 0,
            max_ts: i64::MIN,
        }
    }

    /// Appends a record; `headers` are written in order.
    pub fn push<'h>(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
    ) {
        if self.count == 0 {
            self.base_ts = timestamp;
        }
        self.max_ts = self.max_ts.max(timestamp);
        codec::put_record(
            &mut self.buf,
            timestamp.wrapping_sub(self.base_ts),
            self.count as i32,
            key,
            value,
            headers,
        );
        self.count += 1;
    }

    /// Appends a `NewRecord` (no timestamp = `now_ms`).
    pub fn push_record(&mut self, r: &NewRecord, now_ms: i64) {
        self.push(
            r.timestamp.unwrap_or(now_ms),
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Bytes of the batch so far.
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The batch, ready to append.
    pub fn finish(mut self) -> BytesMut {
        let now = crate::now_ms();
        let (base, max) = if self.count == 0 {
            (now, now)
        } else {
            (self.base_ts, self.max_ts)
        };
        finish_header(&mut self.buf, self.count, base, max);
        BytesMut::from(Bytes::from(self.buf))
    }
}

/// Fills the header of an uncompressed batch whose records follow byte 61.
pub fn finish_header(buf: &mut [u8], count: usize, base_ts: i64, max_ts: i64) {
    let len = (buf.len() - LOG_OVERHEAD) as i32;
    buf[0..8].copy_from_slice(&0i64.to_be_bytes());
    buf[8..12].copy_from_slice(&len.to_be_bytes());
    buf[12..16].copy_from_slice(&0i32.to_be_bytes());
    buf[16] = 2;
    buf[21..23].copy_from_slice(&0i16.to_be_bytes());
    let delta = count.saturating_sub(1) as i32;
    buf[23..27].copy_from_slice(&delta.to_be_bytes());
    buf[27..35].copy_from_slice(&base_ts.to_be_bytes());
    buf[35..43].copy_from_slice(&max_ts.to_be_bytes());
    buf[43..51].copy_from_slice(&(-1i64).to_be_bytes());
    buf[51..53].copy_from_slice(&(-1i16).to_be_bytes());
    buf[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    buf[57..61].copy_from_slice(&(count as i32).to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A transaction marker: the control batch a coordinator writes to every partition of a
/// transaction when it ends (`commit` or abort), for `producer_id` at `epoch`.
pub fn control_batch(producer_id: i64, epoch: i16, commit: bool, now_ms: i64) -> BytesMut {
    let kind: i16 = if commit { 1 } else { 0 };
    let mut key = [0u8; 4];
    key[2..4].copy_from_slice(&kind.to_be_bytes());
    // Value: version 0, coordinator epoch 0.
    let value = [0u8; 6];
    let mut b = Builder::new();
    b.push(now_ms, Some(&key), Some(&value), std::iter::empty());
    let mut buf = b.finish();
    // Transactional (0x10) and control (0x20), the producer's id and epoch, no sequence.
    buf[21..23].copy_from_slice(&0x30i16.to_be_bytes());
    buf[43..51].copy_from_slice(&producer_id.to_be_bytes());
    buf[51..53].copy_from_slice(&epoch.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf
}

/// Builds an uncompressed batch from an encoded records section with explicit offsets and
/// timestamps (compaction keeps a batch's offset span while dropping records from it).
pub fn build_section(
    section: &[u8],
    count: usize,
    base_offset: i64,
    last_offset_delta: i32,
    base_ts: i64,
    max_ts: i64,
) -> BytesMut {
    let mut buf = Vec::with_capacity(HEADER_LEN + section.len());
    buf.resize(HEADER_LEN, 0);
    buf.extend_from_slice(section);
    finish_header(&mut buf, count, base_ts, max_ts);
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
    buf[23..27].copy_from_slice(&last_offset_delta.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    BytesMut::from(Bytes::from(buf))
}

/// A record read back from the log, with absolute offset and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The records section of a batch, decompressed if needed.
pub fn records_section(batch: &Bytes, h: &BatchHeader) -> Result<Bytes, BatchError> {
    if h.compression() == 0 {
        return Ok(batch.slice(HEADER_LEN..h.size));
    }
    // Compressed: let the kafka-protocol crate decompress, then re-encode plain records.
    // Cap the record count first: the decoder reserves capacity from it.
    if h.record_count as usize > h.size * 8 {
        return Err(BatchError::Inconsistent(
            "record count larger than the batch can hold",
        ));
    }
    let mut src = batch.slice(0..h.size);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut src)
        .map_err(|e| BatchError::Records(format!("{e:#}")))?;
    let mut out = Vec::new();
    for r in &set.records {
        codec::put_record(
            &mut out,
            r.timestamp - h.base_timestamp,
            (r.offset - h.base_offset) as i32,
            r.key.as_deref(),
            r.value.as_deref(),
            r.headers.iter().map(|(k, v)| (k.as_bytes(), v.as_deref())),
        );
    }
    Ok(Bytes::from(out))
}

/// Decodes every record of one batch.
pub fn decode(batch: &Bytes) -> Result<Vec<StoredRecord>, BatchError> {
    let h = validate(batch)?;
    if h.is_control() {
        return Ok(Vec::new());
    }
    let section = records_section(batch, &h)?;
    let mut out = Vec::with_capacity((h.record_count as usize).min(section.len()));
    for r in Records::new(&section, h.record_count as usize) {
        out.push(stored(&h, &section, r)?);
    }
    Ok(out)
}

/// A record of `section` (the records of the batch `h` heads) as stored, sharing its bytes.
fn stored(
    h: &BatchHeader,
    section: &Bytes,
    r: Result<RecordView<'_>, sluice_sdk::codec::CodecError>,
) -> Result<StoredRecord, BatchError> {
    let r = r.map_err(|e| BatchError::Records(e.to_string()))?;
    let slice = |s: &[u8]| section.slice_ref(s);
    Ok(StoredRecord {
        offset: h.base_offset + i64::from(r.offset_delta),
        timestamp: h.base_timestamp + r.timestamp_delta,
        key: r.key.map(slice),
        value: r.value.map(slice),
        headers: r
            .headers()
            .map(|hv| (hv.key_str().to_owned(), hv.value.map(slice)))
            .collect(),
    })
}

/// Decodes the first record of one batch only (none for a control or empty batch): what a
/// search that skips whole batches needs.
pub fn first_record(batch: &Bytes) -> Result<Option<StoredRecord>, BatchError> {
    let h = validate(batch)?;
    if h.is_control() {
        return Ok(None);
    }
    let section = records_section(batch, &h)?;
    Records::new(&section, h.record_count as usize)
        .next()
        .map(|r| stored(&h, &section, r))
        .transpose()
}

/// Splits concatenated batches into `(header, bytes)` pairs, validating each.
pub fn split(mut data: Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let h = validate(&data)?;
        out.push((h, data.split_to(h.size)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &str, v: &str) -> NewRecord {
        NewRecord {
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![("h".into(), Some(Bytes::from_static(b"x")))],
            timestamp: None,
        }
    }

    #[test]
    fn build_validate_decode() {
        let b = build(&[rec("a", "1"), rec("b", "2")], 1000).freeze();
        let h = validate(&b).unwrap();
        assert_eq!(h.record_count, 2);
        assert_eq!(h.size, b.len());
        let rs = decode(&b).unwrap();
        assert_eq!(rs[1].offset, 1);
        assert_eq!(rs[1].value.as_deref(), Some(&b"2"[..]));
        assert_eq!(rs[0].headers[0].0, "h");
        assert_eq!(rs[0].timestamp, 1000);
    }

    #[test]
    fn the_first_record_alone_is_the_first_of_a_full_decode() {
        let b = build(&[rec("a", "1"), rec("b", "2")], 1000).freeze();
        let first = first_record(&b).unwrap().unwrap();
        let all = decode(&b).unwrap();
        assert_eq!(
            (first.offset, &first.key, &first.value, &first.headers),
            (all[0].offset, &all[0].key, &all[0].value, &all[0].headers)
        );
        let control = control_batch(7, 0, true, 1000).freeze();
        assert!(first_record(&control).unwrap().is_none());
    }

    #[test]
    fn kafka_protocol_reads_our_batches() {
        let b = build(&[rec("a", "1")], 5).freeze();
        let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut b.clone()).unwrap();
        assert_eq!(set.records[0].value.as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn corruption_is_detected() {
        let mut b = build(&[rec("a", "1")], 5);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(validate(&b), Err(BatchError::Crc { .. })));
        assert!(matches!(
            validate(&b[..30]),
            Err(BatchError::Truncated { .. })
        ));
        let mut b = build(&[rec("a", "1")], 5);
        b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(validate(&b), Err(BatchError::BadLength(-5))));
    }

    #[test]
    fn compressed_batches_decode() {
        use kafka_protocol::records::*;
        let recs: Vec<Record> = (0..3)
            .map(|i| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: i as i32,
                timestamp: 100 + i,
                key: None,
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &recs,
                &RecordEncodeOptions {
                    version: 2,
                    compression: c,
                },
            )
            .unwrap();
            let got = decode(&buf.freeze()).unwrap();
            assert_eq!(got.len(), 3);
            assert_eq!(got[2].value.as_deref(), Some(&b"v2"[..]));
            assert_eq!(got[2].timestamp, 102);
        }
    }
}
