"""The batch layouts of `wit/transform.wit`: Kafka v2 records in, entries out.

Plugin authors never see these bytes; `sluice_sdk` decodes the input and encodes the
outcomes. Varints in records are zigzag LEB128; integers in entry headers are unsigned.
"""

from __future__ import annotations


class CodecError(ValueError):
    pass


def read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise CodecError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CodecError("varint too long")


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = read_uvarint(buf, pos)
    return (n >> 1) ^ -(n & 1), pos


def put_uvarint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def put_varint(out: bytearray, n: int) -> None:
    put_uvarint(out, (n << 1) ^ (n >> 63))


def _nullable(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    n, pos = read_varint(buf, pos)
    if n < 0:
        return None, pos
    end = pos + n
    if end > len(buf):
        raise CodecError("length past the end")
    return buf[pos:end], end


class RawRecord:
    """One decoded input record (the fields of the Kafka v2 record layout)."""

    __slots__ = ("timestamp_delta", "offset_delta", "key", "value", "headers")

    def __init__(self, timestamp_delta, offset_delta, key, value, headers):
        self.timestamp_delta = timestamp_delta
        self.offset_delta = offset_delta
        self.key = key
        self.value = value
        self.headers = headers


def read_records(buf: bytes, count: int) -> list[RawRecord]:
    records = []
    pos = 0
    for i in range(count):
        length, pos = read_varint(buf, pos)
        end = pos + length
        if length < 0 or end > len(buf):
            raise CodecError(f"input record {i} does not decode")
        p = pos + 1  # attributes
        ts, p = read_varint(buf, p)
        od, p = read_varint(buf, p)
        key, p = _nullable(buf, p)
        value, p = _nullable(buf, p)
        n, p = read_varint(buf, p)
        headers = []
        for _ in range(max(n, 0)):
            hk, p = _nullable(buf, p)
            hv, p = _nullable(buf, p)
            headers.append(((hk or b"").decode("utf-8", "replace"), hv))
        records.append(RawRecord(ts, od, key, value, headers))
        pos = end
    return records


def _length(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint length (one byte in the common case)."""
    b = buf[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    c = buf[pos + 1]
    if c < 0x80:
        n = (b & 0x7F) | (c << 7)
        return (n >> 1) ^ -(n & 1), pos + 2
    return read_varint(buf, pos)


def record_spans(buf: bytes, count: int) -> list[tuple[int, int, int, int, int, int]]:
    """Where each record lies, without copying a byte: (start, end, key start, key end,
    value start, value end) per record, the key's or value's start -1 when it is null."""
    spans = []
    pos = 0
    n = len(buf)
    try:
        for i in range(count):
            length, p = _length(buf, pos)
            end = p + length
            if length < 0 or end > n:
                raise CodecError(f"input record {i} does not decode")
            q = p + 1  # attributes
            while buf[q] & 0x80:  # timestamp delta
                q += 1
            q += 1
            while buf[q] & 0x80:  # offset delta
                q += 1
            kl, q = _length(buf, q + 1)
            if kl < 0:
                ks = ke = -1
            else:
                ks = q
                q = ke = q + kl
            vl, q = _length(buf, q)
            if vl < 0:
                vs = ve = -1
            else:
                vs = q
                ve = q + vl
            if ke > end or ve > end:
                raise CodecError(f"input record {i} does not decode")
            spans.append((pos, end, ks, ke, vs, ve))
            pos = end
    except IndexError:
        raise CodecError(f"input record {len(spans)} does not decode") from None
    return spans


def _put_nullable(out: bytearray, b: bytes | None) -> None:
    if b is None:
        put_varint(out, -1)
    else:
        put_varint(out, len(b))
        out += b


def put_record(out: bytearray, timestamp_delta: int, key, value, headers) -> None:
    body = bytearray([0])
    put_varint(body, timestamp_delta)
    put_varint(body, 0)
    _put_nullable(body, key)
    _put_nullable(body, value)
    put_varint(body, len(headers))
    for k, v in headers:
        _put_nullable(body, k.encode("utf-8"))
        _put_nullable(body, v)
    put_varint(out, len(body))
    out += body


EMIT, REJECT, PASS, SPLICE = 0, 1, 2, 3


def read_timers(buf: bytes, count: int) -> list[tuple[int, bytes]]:
    """Fired timers of `on-timers`: `at` (8 bytes, signed, little-endian), key."""
    timers = []
    pos = 0
    for i in range(count):
        if pos + 8 > len(buf):
            raise CodecError(f"fired timer {i} does not decode")
        at = int.from_bytes(buf[pos : pos + 8], "little", signed=True)
        n, pos = read_uvarint(buf, pos + 8)
        if pos + n > len(buf):
            raise CodecError(f"fired timer {i} does not decode")
        timers.append((at, bytes(buf[pos : pos + n])))
        pos += n
    return timers


def put_timer(out: bytearray, at: int, key: bytes) -> None:
    out += at.to_bytes(8, "little", signed=True)
    put_uvarint(out, len(key))
    out += key
