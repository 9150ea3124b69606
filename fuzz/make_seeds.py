"""Writes the seed corpora of the fuzz targets (committed under seeds/): small valid inputs
of each format, from which libFuzzer mutates. Run from fuzz/: python3 make_seeds.py"""
import os
import struct


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n: int) -> bytes:
    return uvarint((n << 1) ^ (n >> 63))


def record(delta: int, key, value, headers=()) -> bytes:
    body = b"\x00" + zigzag(0) + zigzag(delta)
    body += zigzag(-1) if key is None else zigzag(len(key)) + key
    body += zigzag(-1) if value is None else zigzag(len(value)) + value
    body += zigzag(len(headers))
    for k, v in headers:
        body += zigzag(len(k)) + k + zigzag(len(v)) + v
    return zigzag(len(body)) + body


def batch(records, base_offset=0, attributes=0, producer_id=-1) -> bytes:
    recs = b"".join(record(i, *r) for i, r in enumerate(records))
    after_crc = struct.pack(">hiqqqhi", attributes, len(records) - 1, 1700000000000, 1700000000000,
                            producer_id, -1, -1) + struct.pack(">i", len(records)) + recs
    crc = crc32c(after_crc)
    tail = struct.pack(">ibI", 0, 2, crc) + after_crc
    return struct.pack(">qi", base_offset, len(tail)) + tail


def write(target: str, name: str, data: bytes):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data)


b = batch([(b"k1", b'{"id":1}', [(b"h", b"v")]), (None, b"two", [])])
write("record_batch", "two-records", b)
write("record_batch", "two-batches", b + batch([(b"k", b"v", [])], base_offset=2))
write("segment_recovery", "clean", b + batch([(b"k", b"v", [])], base_offset=2))
write("segment_recovery", "torn-tail", b + b[: len(b) // 2])


def string(s: bytes) -> bytes:
    return struct.pack(">h", len(s)) + s


# Produce v3: transactional id null, acks -1, timeout, one topic, one partition.
produce = string(b"fuzz")  # header v1 client id
produce = struct.pack(">hhi", 0, 3, 7) + produce
produce += struct.pack(">hhi", -1, -1, 30000) + struct.pack(">i", 1) + string(b"events")
produce += struct.pack(">i", 1) + struct.pack(">i", 0) + struct.pack(">i", len(b)) + b
write("kafka_request", "produce-v3", produce)
write("kafka_request", "api-versions-v0", struct.pack(">hhi", 18, 0, 1) + string(b"fuzz"))
write("kafka_request", "metadata-v1", struct.pack(">hhi", 3, 1, 2) + string(b"fuzz") + struct.pack(">i", 1) + string(b"events"))
write("kafka_request", "fetch-v4", struct.pack(">hhi", 1, 4, 3) + string(b"fuzz")
      + struct.pack(">iiiib", -1, 500, 1, 1 << 20, 0) + struct.pack(">i", 1) + string(b"events")
      + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20))

# Plugin output: count, then entries (emit, pass, reject).
rec = record(0, b"k", b"masked")
entries = bytes([3]) + b"\x00" + uvarint(0) + uvarint(0) + rec + b"\x02" + uvarint(1) + uvarint(0)
entries += b"\x01" + uvarint(2) + uvarint(3) + b"bad"
write("plugin_output", "emit-pass-reject", entries)
# State operations: put, delete, set timer (kind, key, value / at).
ops = bytes([1]) + b"\x00" + uvarint(3) + b"key" + uvarint(5) + b"value" + b"\x01" + uvarint(3) + b"key"
write("plugin_output", "state-ops", ops)

avro = b'{"type":"record","name":"Order","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"}]}'
write("schema", "avro-text", b"\x80" + avro)
write("schema", "proto-text", b"\x81" + b'syntax = "proto3"; message A { string s = 1; }')
write("schema", "json-text", b"\x82" + b'{"type":"object","properties":{"a":{"type":"string"}}}')
payload = zigzag(42) + zigzag(3) + b"pen" + zigzag(1) + zigzag(3) + b"red" + zigzag(0) + zigzag(1) + struct.pack("<d", 9.5)
write("schema", "avro-record", b"\x00" + b"\x00" + struct.pack(">i", 1) + payload)
write("schema", "proto-record", b"\x01" + b"\x00" + struct.pack(">i", 1) + b"\x00" + b"\x08\x2a\x12\x03pen")
write("schema", "json-record", b"\x02" + b"\x00" + struct.pack(">i", 1) + b'{"id":42,"item":"pen"}')
