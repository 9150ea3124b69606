//! Confluent's wire format: magic byte `0`, a big-endian 4-byte schema id, then (Protobuf only)
//! the message-index path, then the payload. Every reader is bounds-checked and never panics.

use crate::error::CodecError;

/// The magic byte of Confluent's payload-prefix framing.
pub const MAGIC: u8 = 0;

/// The longest message-index path accepted (confluent-kafka-python's limit).
pub const MAX_INDEXES: usize = 100_000;

/// A framed record split into its schema id and the rest (payload, or indexes + payload for
/// Protobuf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    pub id: i32,
    pub payload: &'a [u8],
}

impl<'a> Framed<'a> {
    /// Splits a Protobuf record's message-index path from its payload.
    pub fn protobuf(&self) -> Result<(Vec<i32>, &'a [u8]), CodecError> {
        read_message_indexes(self.payload)
    }
}

/// Frames a payload with a schema id (Avro, JSON Schema, or Protobuf without indexes).
pub fn frame(id: i32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Frames a Protobuf payload with its message-index path; `[0]` is written as the single byte
/// `0x00` as Confluent's serializers do.
pub fn frame_with_indexes(id: i32, indexes: &[i32], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(6 + indexes.len() + payload.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
    write_message_indexes(&mut out, indexes);
    out.extend_from_slice(payload);
    out
}

/// Reads the magic byte and the schema id.
pub fn unframe(bytes: &[u8]) -> Result<Framed<'_>, CodecError> {
    let Some((&magic, rest)) = bytes.split_first() else {
        return Err(CodecError::Framing("empty value".into()));
    };
    if magic != MAGIC {
        return Err(CodecError::Framing(format!(
            "magic byte is {magic}, expected 0"
        )));
    }
    let Some((id, payload)) = rest.split_first_chunk::<4>() else {
        return Err(CodecError::Framing(format!(
            "{} bytes, shorter than the 5-byte header",
            bytes.len()
        )));
    };
    Ok(Framed {
        id: i32::from_be_bytes(*id),
        payload,
    })
}

/// Writes a message-index path: the count then each index, as zigzag varints.
pub fn write_message_indexes(out: &mut Vec<u8>, indexes: &[i32]) {
    if indexes == [0] {
        out.push(0);
        return;
    }
    write_zigzag(out, i32::try_from(indexes.len()).unwrap_or(i32::MAX));
    for &i in indexes {
        write_zigzag(out, i);
    }
}

/// Reads a message-index path. A count of 0 is the path `[0]`. A negative count is taken as
/// "no indexes" (kafkajs writes none), the path `[0]` with nothing consumed — the heuristic of
/// confluent-kafka-javascript, right whenever the payload's first byte decodes negative.
pub fn read_message_indexes(bytes: &[u8]) -> Result<(Vec<i32>, &[u8]), CodecError> {
    let (count, mut rest) = read_zigzag(bytes)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if count < 0 {
        return Ok((vec![0], bytes));
    }
    let count = count as usize;
    // Each index takes at least one byte: a count beyond what is left is malformed, and checking
    // it first bounds the allocation by the input's length.
    if count > MAX_INDEXES || count > rest.len() {
        return Err(CodecError::Framing(format!(
            "invalid message index count {count}"
        )));
    }
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let (index, next) = read_zigzag(rest)?;
        if index < 0 {
            return Err(CodecError::Framing(format!(
                "negative message index {index}"
            )));
        }
        indexes.push(index);
        rest = next;
    }
    Ok((indexes, rest))
}

fn write_zigzag(out: &mut Vec<u8>, value: i32) {
    let mut v = ((value << 1) ^ (value >> 31)) as u32;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Kafka's `ByteUtils.readVarint`: a 32-bit zigzag varint of at most 5 bytes.
fn read_zigzag(bytes: &[u8]) -> Result<(i32, &[u8]), CodecError> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let decoded = ((value >> 1) as i32) ^ -((value & 1) as i32);
            return Ok((decoded, &bytes[i + 1..]));
        }
    }
    Err(CodecError::Framing(
        "truncated or overlong message index varint".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let f = frame(7, b"abc");
        assert_eq!(f, [0, 0, 0, 0, 7, b'a', b'b', b'c']);
        let u = unframe(&f).unwrap();
        assert_eq!((u.id, u.payload), (7, &b"abc"[..]));
        assert!(unframe(&[0, 0, 0]).is_err());
        assert!(unframe(&[1, 0, 0, 0, 1]).is_err());
        assert!(unframe(&[]).is_err());
    }

    #[test]
    fn message_indexes_match_confluent_bytes() {
        let cases: [(&[i32], &[u8]); 5] = [
            (&[0], &[0x00]),
            (&[1], &[0x02, 0x02]),
            (&[2], &[0x02, 0x04]),
            (&[0, 1], &[0x04, 0x00, 0x02]),
            (&[1, 0], &[0x04, 0x02, 0x00]),
        ];
        for (path, bytes) in cases {
            let mut out = Vec::new();
            write_message_indexes(&mut out, path);
            assert_eq!(out, bytes, "{path:?}");
            let (back, rest) = read_message_indexes(&[bytes, b"xy"].concat())
                .map(|(i, r)| (i, r.to_vec()))
                .unwrap();
            assert_eq!(back, path);
            assert_eq!(rest, b"xy");
        }
        // `[0]` written the long way is valid too.
        assert_eq!(read_message_indexes(&[0x02, 0x00]).unwrap().0, vec![0]);
        let framed = frame_with_indexes(3, &[1, 0], b"p");
        let u = unframe(&framed).unwrap();
        let (idx, payload) = u.protobuf().unwrap();
        assert_eq!((u.id, idx, payload), (3, vec![1, 0], &b"p"[..]));
    }

    #[test]
    fn hostile_index_counts_are_refused_cheaply() {
        // count = 2^30 with nothing behind it
        assert!(read_message_indexes(&[0x80, 0x80, 0x80, 0x80, 0x08]).is_err());
        assert!(read_message_indexes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(read_message_indexes(&[]).is_err());
        // negative count: no indexes
        let (idx, rest) = read_message_indexes(&[0x01, 0x08]).unwrap();
        assert_eq!((idx, rest), (vec![0], &[0x01, 0x08][..]));
    }
}
