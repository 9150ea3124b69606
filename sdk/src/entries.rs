//! The output of one `process` call: entries that answer input records (see `wit/`).
//!
//! ```text
//! entry := kind u8 (0 emit, 1 reject, 2 pass) | input uvarint |
//!          emit:   output uvarint | record (v2 layout)
//!          reject: reasonLength uvarint | reason bytes
//!          pass:   output uvarint  (the input record, unchanged)
//! ```

use crate::codec::{self, CodecError, Reader, RecordView};

/// An emitted record's bytes (v2 layout, length prefix included), decoded on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a>(pub &'a [u8]);

impl<'a> RawRecord<'a> {
    pub fn view(&self) -> Result<RecordView<'a>, CodecError> {
        RecordView::read(&mut Reader::new(self.0))
    }
}

pub const EMIT: u8 = 0;
pub const REJECT: u8 = 1;
pub const PASS: u8 = 2;

/// One decoded entry, borrowing from the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    Emit {
        input: u32,
        output: u32,
        record: RawRecord<'a>,
    },
    Reject {
        input: u32,
        reason: &'a str,
    },
    /// The input record goes to `output` unchanged.
    Pass {
        input: u32,
        output: u32,
    },
}

impl Entry<'_> {
    pub fn input(&self) -> u32 {
        match self {
            Entry::Emit { input, .. } | Entry::Reject { input, .. } | Entry::Pass { input, .. } => {
                *input
            }
        }
    }
}

/// Why an output buffer is not a valid entry sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryError {
    Codec(CodecError),
    UnknownKind(u8),
    InputOutOfRange { input: u64, count: u32 },
    OutOfOrder { input: u32, after: u32 },
    ReasonNotUtf8,
}

impl core::fmt::Display for EntryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EntryError::Codec(e) => write!(f, "malformed output: {e}"),
            EntryError::UnknownKind(k) => write!(f, "malformed output: unknown entry kind {k}"),
            EntryError::InputOutOfRange { input, count } => write!(
                f,
                "malformed output: entry for input {input} but the batch has {count} records"
            ),
            EntryError::OutOfOrder { input, after } => write!(
                f,
                "malformed output: entry for input {input} after one for input {after}"
            ),
            EntryError::ReasonNotUtf8 => write!(f, "malformed output: reject reason is not UTF-8"),
        }
    }
}

impl std::error::Error for EntryError {}

impl From<CodecError> for EntryError {
    fn from(e: CodecError) -> Self {
        EntryError::Codec(e)
    }
}

/// Iterates over the entries of an output buffer for a batch of `count` inputs,
/// checking every index and length.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    r: Reader<'a>,
    count: u32,
    last: u32,
    failed: bool,
}

impl<'a> Entries<'a> {
    pub fn new(buf: &'a [u8], count: u32) -> Self {
        Entries {
            r: Reader::new(buf),
            count,
            last: 0,
            failed: false,
        }
    }

    fn read(&mut self) -> Result<Entry<'a>, EntryError> {
        let kind = self.r.u8()?;
        let input = self.r.uvarint()?;
        if input >= u64::from(self.count) {
            return Err(EntryError::InputOutOfRange {
                input,
                count: self.count,
            });
        }
        let input = input as u32;
        if input < self.last {
            return Err(EntryError::OutOfOrder {
                input,
                after: self.last,
            });
        }
        self.last = input;
        match kind {
            EMIT => {
                let output = u32::try_from(self.r.uvarint()?).map_err(|_| CodecError::BadVarint)?;
                let record = RawRecord(codec::next_raw(&mut self.r)?);
                Ok(Entry::Emit {
                    input,
                    output,
                    record,
                })
            }
            PASS => {
                let output = u32::try_from(self.r.uvarint()?).map_err(|_| CodecError::BadVarint)?;
                Ok(Entry::Pass { input, output })
            }
            REJECT => {
                let len = usize::try_from(self.r.uvarint()?).map_err(|_| CodecError::BadLength)?;
                let reason = core::str::from_utf8(self.r.bytes(len)?)
                    .map_err(|_| EntryError::ReasonNotUtf8)?;
                Ok(Entry::Reject { input, reason })
            }
            k => Err(EntryError::UnknownKind(k)),
        }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, EntryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let e = self.read();
        self.failed = e.is_err();
        Some(e)
    }
}

/// Appends a pass entry: the input record goes to `output` unchanged, without its bytes
/// crossing the boundary a second time.
#[inline]
pub fn put_pass(out: &mut Vec<u8>, input: u32, output: u32) {
    out.push(PASS);
    codec::put_uvarint(out, u64::from(input));
    codec::put_uvarint(out, u64::from(output));
}

/// Appends an emit entry whose record bytes are already in v2 layout.
#[inline]
pub fn put_emit_raw(out: &mut Vec<u8>, input: u32, output: u32, record: &[u8]) {
    out.reserve(record.len() + 11);
    out.push(EMIT);
    codec::put_uvarint(out, u64::from(input));
    codec::put_uvarint(out, u64::from(output));
    out.extend_from_slice(record);
}

/// Appends an emit entry for a new record.
#[allow(clippy::too_many_arguments)]
pub fn put_emit<'h>(
    out: &mut Vec<u8>,
    input: u32,
    output: u32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: impl Iterator<Item = (&'h [u8], Option<&'h [u8]>)> + Clone,
) {
    out.push(EMIT);
    codec::put_uvarint(out, u64::from(input));
    codec::put_uvarint(out, u64::from(output));
    codec::put_record(out, timestamp_delta, 0, key, value, headers);
}

/// Appends an emit entry: the input record `rec` with another value.
pub fn put_emit_with_value(
    out: &mut Vec<u8>,
    input: u32,
    output: u32,
    rec: &codec::RecordView<'_>,
    value: Option<&[u8]>,
) {
    out.push(EMIT);
    codec::put_uvarint(out, u64::from(input));
    codec::put_uvarint(out, u64::from(output));
    codec::put_record_with_value(out, rec, value);
}

/// Appends a reject entry.
pub fn put_reject(out: &mut Vec<u8>, input: u32, reason: &str) {
    out.push(REJECT);
    codec::put_uvarint(out, u64::from(input));
    codec::put_uvarint(out, reason.len() as u64);
    out.extend_from_slice(reason.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_reject_bad_input() {
        let mut out = Vec::new();
        put_emit(
            &mut out,
            0,
            1,
            5,
            Some(b"k"),
            Some(b"v"),
            std::iter::empty(),
        );
        put_reject(&mut out, 2, "bad");
        let es: Vec<_> = Entries::new(&out, 3).collect::<Result<_, _>>().unwrap();
        assert!(
            matches!(es[0], Entry::Emit { input: 0, output: 1, record } if record.view().unwrap().value == Some(&b"v"[..]))
        );
        assert_eq!(
            es[1],
            Entry::Reject {
                input: 2,
                reason: "bad"
            }
        );
        assert!(matches!(
            Entries::new(&out, 2).nth(1),
            Some(Err(EntryError::InputOutOfRange { .. }))
        ));
        let mut bad = Vec::new();
        put_reject(&mut bad, 2, "x");
        put_reject(&mut bad, 1, "y");
        assert!(matches!(
            Entries::new(&bad, 3).nth(1),
            Some(Err(EntryError::OutOfOrder { .. }))
        ));
        assert!(matches!(
            Entries::new(&[7, 0], 3).next(),
            Some(Err(EntryError::UnknownKind(7)))
        ));
        assert!(matches!(
            Entries::new(&[0, 0, 0, 99], 3).next(),
            Some(Err(EntryError::Codec(_)))
        ));
    }
}
