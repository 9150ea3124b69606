//! The Kafka record (v2) layout, decoded zero-copy and encoded into a reusable buffer.
//!
//! This is the layout of one record inside a Kafka record batch v2 — the bytes Sluice's log
//! stores and the bytes that cross the plugin boundary. It is shared by the host (which builds
//! batches from HTTP produce requests) and by plugins (which read their input through it), so
//! both ends agree by construction.
//!
//! ```text
//! record:
//!   length          varint   (zigzag; bytes that follow)
//!   attributes      int8     (unused, 0)
//!   timestampDelta  varlong  (from the batch's base timestamp)
//!   offsetDelta     varint   (from the batch's base offset)
//!   keyLength       varint   (-1 = null)
//!   key             bytes
//!   valueLength     varint   (-1 = null)
//!   value           bytes
//!   headerCount     varint
//!   headers:        headerKeyLength varint, headerKey bytes (UTF-8),
//!                   headerValueLength varint (-1 = null), headerValue bytes
//! ```

use core::fmt;

/// Why bytes could not be read as records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The input ended inside a field.
    Truncated,
    /// A varint ran past 10 bytes or overflowed its width.
    BadVarint,
    /// A length was negative (other than the -1 null marker) or larger than the input.
    BadLength,
    /// A record's declared length disagrees with its fields.
    LengthMismatch,
    /// An operation or kind code that the layout does not define.
    UnknownCode(u8),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let CodecError::UnknownCode(c) = self {
            return write!(f, "unknown operation code {c}");
        }
        f.write_str(match self {
            CodecError::UnknownCode(_) => "unknown operation code",
            CodecError::Truncated => "record bytes end inside a field",
            CodecError::BadVarint => "malformed varint",
            CodecError::BadLength => "invalid length field",
            CodecError::LengthMismatch => "record length disagrees with its fields",
        })
    }
}

impl std::error::Error for CodecError {}

/// A cursor over borrowed bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The bytes read since position `start`.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start.min(self.pos)..self.pos]
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.buf.get(self.pos).ok_or(CodecError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).ok_or(CodecError::BadLength)?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    pub fn u32_le(&mut self) -> Result<u32, CodecError> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64_le(&mut self) -> Result<u64, CodecError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// An unsigned LEB128 varint of at most 64 bits.
    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, CodecError> {
        // Most deltas fit one byte and most record lengths two.
        match self.buf.get(self.pos..self.pos + 2) {
            Some(&[b0, _]) if b0 < 0x80 => {
                self.pos += 1;
                return Ok(u64::from(b0));
            }
            Some(&[b0, b1]) if b1 < 0x80 => {
                self.pos += 2;
                return Ok(u64::from(b0 & 0x7f) | (u64::from(b1) << 7));
            }
            _ => {}
        }
        self.uvarint_slow()
    }

    #[cold]
    fn uvarint_slow(&mut self) -> Result<u64, CodecError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            if i == 9 && b > 1 {
                return Err(CodecError::BadVarint);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::BadVarint)
    }

    /// A zigzag varlong (Kafka `varlong`).
    #[inline]
    pub fn varlong(&mut self) -> Result<i64, CodecError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// A zigzag varint (Kafka `varint`), which must fit 32 bits.
    #[inline]
    pub fn varint(&mut self) -> Result<i32, CodecError> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| CodecError::BadVarint)
    }

    /// A varint length followed by that many bytes; -1 is null.
    pub fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, CodecError> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err(CodecError::BadLength),
            n => self.bytes(n as usize).map(Some),
        }
    }
}

/// Appends an unsigned LEB128 varint.
#[inline]
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a zigzag varlong.
pub fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends a zigzag varint.
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_varlong(out, i64::from(v));
}

fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn varlong_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

fn nullable_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// One record header: a UTF-8 key and an optional value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderView<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

impl<'a> HeaderView<'a> {
    /// The key as text (header keys are UTF-8 in Kafka; invalid bytes read as empty).
    pub fn key_str(&self) -> &'a str {
        core::str::from_utf8(self.key).unwrap_or("")
    }
}

/// A record borrowed from a buffer in v2 layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub attributes: u8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    header_count: u32,
    headers_raw: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// Reads one record from the reader, checking every length against the input.
    #[inline]
    pub fn read(r: &mut Reader<'a>) -> Result<Self, CodecError> {
        let len = r.varint()?;
        if len < 0 {
            return Err(CodecError::BadLength);
        }
        let body = r.bytes(len as usize)?;
        let mut b = Reader::new(body);
        let attributes = b.u8()?;
        let timestamp_delta = b.varlong()?;
        let offset_delta = b.varint()?;
        let key = b.nullable_bytes()?;
        let value = b.nullable_bytes()?;
        let count = b.varint()?;
        if count < 0 {
            return Err(CodecError::BadLength);
        }
        let headers_start = b.position();
        if count > 0 {
            for _ in 0..count {
                match b.varint()? {
                    n if n < 0 => return Err(CodecError::BadLength),
                    n => {
                        b.bytes(n as usize)?;
                    }
                }
                b.nullable_bytes()?;
            }
        }
        if !b.is_empty() {
            return Err(CodecError::LengthMismatch);
        }
        Ok(RecordView {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            value,
            header_count: count as u32,
            headers_raw: &body[headers_start..],
        })
    }

    /// The headers, in order (validated when the record was read).
    pub fn headers(&self) -> impl Iterator<Item = HeaderView<'a>> + Clone + use<'a> {
        let mut r = Reader::new(self.headers_raw);
        (0..self.header_count).filter_map(move |_| {
            let key = r.nullable_bytes().ok()??;
            let value = r.nullable_bytes().ok()?;
            Some(HeaderView { key, value })
        })
    }

    /// The first header with this key.
    pub fn header(&self, key: &str) -> Option<HeaderView<'a>> {
        self.headers().find(|h| h.key == key.as_bytes())
    }

    pub fn header_count(&self) -> usize {
        self.header_count as usize
    }
}

/// Reads the next record's bytes (length prefix included) without decoding its fields.
#[inline]
pub fn next_raw<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], CodecError> {
    let start = r.pos;
    let len = r.varint()?;
    if len < 0 {
        return Err(CodecError::BadLength);
    }
    r.bytes(len as usize)?;
    Ok(&r.buf[start..r.pos])
}

/// Iterates over `count` records in a records section.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Records<'a> {
    pub fn new(section: &'a [u8], count: usize) -> Self {
        Records {
            reader: Reader::new(section),
            left: count,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r = RecordView::read(&mut self.reader);
        if r.is_err() {
            self.left = 0;
        }
        Some(r)
    }
}

/// Appends one record in v2 layout. Header keys are written as given.
pub fn put_record<'h>(
    out: &mut Vec<u8>,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
) {
    let mut count = 0usize;
    let mut headers_len = 0usize;
    for (k, v) in headers.clone() {
        count += 1;
        headers_len += nullable_len(Some(k)) + nullable_len(v);
    }
    let body_len = 1
        + varlong_len(timestamp_delta)
        + varlong_len(i64::from(offset_delta))
        + nullable_len(key)
        + nullable_len(value)
        + varlong_len(count as i64)
        + headers_len;
    put_varlong(out, body_len as i64);
    out.push(0);
    put_varlong(out, timestamp_delta);
    put_varint(out, offset_delta);
    put_nullable(out, key);
    put_nullable(out, value);
    put_varlong(out, count as i64);
    for (k, v) in headers {
        put_nullable(out, Some(k));
        put_nullable(out, v);
    }
}

/// Appends `rec` in v2 layout with `value` in place of its own: its headers are copied as
/// they are encoded, not decoded and written again.
pub fn put_record_with_value(out: &mut Vec<u8>, rec: &RecordView<'_>, value: Option<&[u8]>) {
    let len = value.map(<[u8]>::len);
    put_record_with_value_of(out, rec, len, |out| {
        if let Some(v) = value {
            out.extend_from_slice(v);
        }
    });
}

/// Appends the record `rec` with a value of `len` bytes (None: null) that `write` appends.
pub fn put_record_with_value_of(
    out: &mut Vec<u8>,
    rec: &RecordView<'_>,
    len: Option<usize>,
    write: impl FnOnce(&mut Vec<u8>),
) {
    let count = i64::from(rec.header_count);
    let value_len = match len {
        None => 1,
        Some(n) => varlong_len(n as i64) + n,
    };
    let body_len = 1
        + varlong_len(rec.timestamp_delta)
        + 1 // offset delta 0: the host ignores it
        + nullable_len(rec.key)
        + value_len
        + varlong_len(count)
        + rec.headers_raw.len();
    out.reserve(body_len + 5);
    put_varlong(out, body_len as i64);
    out.push(0);
    put_varlong(out, rec.timestamp_delta);
    put_varint(out, 0);
    put_nullable(out, rec.key);
    match len {
        None => put_varint(out, -1),
        Some(n) => {
            put_varlong(out, n as i64);
            write(out);
        }
    }
    put_varlong(out, count);
    out.extend_from_slice(rec.headers_raw);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_headers_and_nulls() {
        let mut buf = Vec::new();
        let h: Vec<(&[u8], Option<&[u8]>)> = vec![(b"a", Some(b"1")), (b"b", None)];
        put_record(
            &mut buf,
            7,
            3,
            Some(b"key"),
            Some(b"value"),
            h.iter().copied(),
        );
        put_record(&mut buf, -5, 4, None, None, std::iter::empty());
        let recs: Vec<_> = Records::new(&buf, 2).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs[0].timestamp_delta, 7);
        assert_eq!(recs[0].offset_delta, 3);
        assert_eq!(recs[0].key, Some(&b"key"[..]));
        assert_eq!(recs[0].value, Some(&b"value"[..]));
        let hs: Vec<_> = recs[0].headers().collect();
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].key_str(), "a");
        assert_eq!(hs[1].value, None);
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].timestamp_delta, -5);
    }

    #[test]
    fn varints_match_kafka_zigzag() {
        for v in [0i64, 1, -1, 63, -64, 64, 300, i64::MAX, i64::MIN] {
            let mut b = Vec::new();
            put_varlong(&mut b, v);
            assert_eq!(b.len(), varlong_len(v));
            assert_eq!(Reader::new(&b).varlong().unwrap(), v);
        }
        let mut b = Vec::new();
        put_varint(&mut b, -1);
        assert_eq!(b, [1]);
    }

    #[test]
    fn hostile_lengths_are_errors_not_panics() {
        // length says 100 bytes, only 3 follow
        assert_eq!(
            RecordView::read(&mut Reader::new(&[200, 1, 0, 0])),
            Err(CodecError::Truncated)
        );
        // key length -7
        let mut b = Vec::new();
        put_varint(&mut b, 4);
        b.extend_from_slice(&[0, 0, 0]);
        put_varint(&mut b, -7);
        assert_eq!(
            RecordView::read(&mut Reader::new(&b)),
            Err(CodecError::BadLength)
        );
        // endless varint
        assert_eq!(
            Reader::new(&[0xff; 12]).uvarint(),
            Err(CodecError::BadVarint)
        );
        // header count far larger than the bytes
        let mut b = Vec::new();
        put_record(&mut b, 0, 0, None, None, std::iter::empty());
        let last = b.len() - 1;
        b[last] = 0x7e; // 63 headers claimed
        assert!(RecordView::read(&mut Reader::new(&b)).is_err());
    }
}
