//! The output of one `process` call: entries that answer input records (see `wit/`).
//!
//! ```text
//! entry := kind u8 (0 emit, 1 reject, 2 pass, 3 splice) | input uvarint |
//!          emit:   output uvarint | record (v2 layout)
//!          reject: reasonLength uvarint | reason bytes
//!          pass:   output uvarint  (the input record, unchanged)
//!          splice: output uvarint | spanCount uvarint |
//!                  (start uvarint | end uvarint | replacementLength uvarint | bytes)*
//!                  (the input record with spans of its value replaced; 0.2.2)
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
pub const SPLICE: u8 = 3;

/// The replacements of a splice entry: spans of the input record's value (byte offsets,
/// in increasing order, not overlapping) and what replaces each. Their framing was
/// checked when the entry was read; whether they fit the value is [`Spans::check`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spans<'a> {
    raw: &'a [u8],
    count: u32,
}

/// One replacement: `value[start..end]` becomes `replacement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span<'a> {
    pub start: usize,
    pub end: usize,
    pub replacement: &'a [u8],
}

impl<'a> Spans<'a> {
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Span<'a>> + use<'a> {
        let mut r = Reader::new(self.raw);
        (0..self.count).map_while(move |_| Span::read(&mut r).ok())
    }

    /// The length of a value of `len` bytes once spliced, or why the spans do not fit it
    /// (out of order, overlapping, or past its end).
    pub fn check(&self, len: usize) -> Result<usize, String> {
        let (mut at, mut out) = (0usize, len);
        for s in self.iter() {
            if s.start < at || s.end < s.start || s.end > len {
                return Err(format!(
                    "splice span {}..{} of a {len}-byte value (spans must be in order, not overlapping, within the value)",
                    s.start, s.end
                ));
            }
            out = out - (s.end - s.start) + s.replacement.len();
            at = s.end;
        }
        Ok(out)
    }

    /// Appends `value` with the spans replaced (checked with [`Spans::check`] first).
    pub fn apply(&self, value: &[u8], out: &mut Vec<u8>) {
        let mut last = 0;
        for s in self.iter() {
            out.extend_from_slice(&value[last..s.start]);
            out.extend_from_slice(s.replacement);
            last = s.end;
        }
        out.extend_from_slice(&value[last..]);
    }
}

impl<'a> Span<'a> {
    fn read(r: &mut Reader<'a>) -> Result<Self, CodecError> {
        let start = usize::try_from(r.uvarint()?).map_err(|_| CodecError::BadLength)?;
        let end = usize::try_from(r.uvarint()?).map_err(|_| CodecError::BadLength)?;
        let n = usize::try_from(r.uvarint()?).map_err(|_| CodecError::BadLength)?;
        let replacement = r.bytes(n)?;
        Ok(Span {
            start,
            end,
            replacement,
        })
    }
}

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
    /// The input record goes to `output` with spans of its value replaced.
    Splice {
        input: u32,
        output: u32,
        spans: Spans<'a>,
    },
}

impl Entry<'_> {
    pub fn input(&self) -> u32 {
        match self {
            Entry::Emit { input, .. }
            | Entry::Reject { input, .. }
            | Entry::Pass { input, .. }
            | Entry::Splice { input, .. } => *input,
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
            SPLICE => {
                let output = u32::try_from(self.r.uvarint()?).map_err(|_| CodecError::BadVarint)?;
                let count = u32::try_from(self.r.uvarint()?).map_err(|_| CodecError::BadLength)?;
                let start = self.r.position();
                for _ in 0..count {
                    Span::read(&mut self.r)?;
                }
                let raw = self.r.since(start);
                Ok(Entry::Splice {
                    input,
                    output,
                    spans: Spans { raw, count },
                })
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

/// The input record `raw` (v2 layout) with the spans of its value replaced, in v2 layout;
/// an error when they do not fit its value (a null value takes no spans).
pub fn splice_record(raw: &[u8], spans: &Spans<'_>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    splice_record_into(raw, spans, &mut out)?;
    Ok(out)
}

/// [`splice_record`], appending to `out` (unchanged on an error).
pub fn splice_record_into(raw: &[u8], spans: &Spans<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    let rec = RecordView::read(&mut Reader::new(raw)).map_err(|e| e.to_string())?;
    match rec.value {
        None if spans.is_empty() => {
            out.extend_from_slice(raw);
            Ok(())
        }
        None => Err("a splice of a null value".into()),
        Some(value) => {
            let len = spans.check(value.len())?;
            codec::put_record_with_value_of(out, &rec, Some(len), |o| spans.apply(value, o));
            Ok(())
        }
    }
}

/// Appends a splice entry: the input record goes to `output` with each `(start, end,
/// replacement)` span of its value replaced (spans in increasing order, not overlapping);
/// the value's other bytes do not cross the boundary again (0.2.2).
pub fn put_splice<'s>(
    out: &mut Vec<u8>,
    input: u32,
    output: u32,
    spans: impl ExactSizeIterator<Item = (usize, usize, &'s [u8])>,
) {
    out.push(SPLICE);
    codec::put_uvarint(out, u64::from(input));
    codec::put_uvarint(out, u64::from(output));
    codec::put_uvarint(out, spans.len() as u64);
    for (start, end, replacement) in spans {
        codec::put_uvarint(out, start as u64);
        codec::put_uvarint(out, end as u64);
        codec::put_uvarint(out, replacement.len() as u64);
        out.extend_from_slice(replacement);
    }
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

    #[test]
    fn splices_apply_to_the_value_and_bad_spans_are_refused() {
        let h: Vec<(&[u8], Option<&[u8]>)> = vec![(b"h", Some(b"1"))];
        let mut input = Vec::new();
        codec::put_record(
            &mut input,
            7,
            0,
            Some(b"k"),
            Some(b"pw=secret;ok"),
            h.into_iter(),
        );
        let mut out = Vec::new();
        let spans: [(usize, usize, &[u8]); 2] = [(3, 9, b"***"), (12, 12, b"!")];
        put_splice(&mut out, 0, 0, spans.into_iter());
        let e = Entries::new(&out, 1).next().unwrap().unwrap();
        let Entry::Splice { spans, .. } = e else {
            panic!("{e:?}")
        };
        let rec = splice_record(&input, &spans).unwrap();
        let view = RawRecord(&rec).view().unwrap();
        assert_eq!(view.value, Some(&b"pw=***;ok!"[..]));
        assert_eq!((view.key, view.timestamp_delta), (Some(&b"k"[..]), 7));
        assert_eq!(view.header("h").and_then(|h| h.value), Some(&b"1"[..]));
        // Out of order, past the end, on a null value: refused, nothing written.
        for bad in [
            vec![(5usize, 6usize, &b"x"[..]), (1, 2, &b"y"[..])],
            vec![(3, 99, &b""[..])],
        ] {
            let mut out = Vec::new();
            put_splice(&mut out, 0, 0, bad.into_iter());
            let Some(Ok(Entry::Splice { spans, .. })) = Entries::new(&out, 1).next() else {
                panic!()
            };
            let mut into = Vec::new();
            assert!(splice_record_into(&input, &spans, &mut into).is_err());
            assert!(into.is_empty());
        }
        let mut null = Vec::new();
        codec::put_record(&mut null, 0, 0, None, None, std::iter::empty());
        assert!(splice_record(&null, &spans).is_err());
        // A truncated span is a framing error.
        assert!(matches!(
            Entries::new(&[SPLICE, 0, 0, 1, 0, 1, 5, b'a'], 1).next(),
            Some(Err(EntryError::Codec(_)))
        ));
    }
}
