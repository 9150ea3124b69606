// The batch layouts of wit/transform.wit: Kafka v2 records in, entries out. Plugin authors
// never see these bytes. Varints in records are zigzag LEB128; entry headers unsigned.

export const EMIT = 0;
export const REJECT = 1;
export const PASS = 2;
export const SPLICE = 3;

export class CodecError extends Error {}

/** A growable byte buffer: bytes are copied with `set`, not pushed one by one (in the
 * component, JavaScript is interpreted: per-byte loops dominate otherwise). */
export class Writer {
  constructor(capacity = 1024) {
    this.buf = new Uint8Array(capacity);
    this.length = 0;
  }
  reserve(n) {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }
  push(b) {
    this.reserve(1);
    this.buf[this.length++] = b;
  }
  bytes(b) {
    this.reserve(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  finish() {
    return this.buf.subarray(0, this.length);
  }
}

export function readUvarint(buf, pos) {
  let result = 0;
  let mul = 1;
  for (;;) {
    if (pos >= buf.length) throw new CodecError('truncated varint');
    const b = buf[pos++];
    result += (b & 0x7f) * mul;
    if (b < 0x80) return [result, pos];
    mul *= 128;
    if (mul > 2 ** 63) throw new CodecError('varint too long');
  }
}

export function readVarint(buf, pos) {
  const [n, p] = readUvarint(buf, pos);
  return [n % 2 === 0 ? n / 2 : -(n + 1) / 2, p];
}

export function putUvarint(out, n) {
  while (n >= 0x80) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

export function putVarint(out, n) {
  putUvarint(out, n >= 0 ? n * 2 : -n * 2 - 1);
}

/** Where each record lies, without copying: six numbers per record (start, end, key
 * start, key end, value start, value end; a null key's or value's -1). */
export function recordSpans(buf, count) {
  const spans = new Int32Array(6 * count);
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const [length, start] = readVarint(buf, pos);
    const end = start + length;
    if (length < 0 || end > buf.length) throw new CodecError(`input record ${i} does not decode`);
    let p = start + 1; // attributes
    while (buf[p] & 0x80) p++; // timestamp delta
    p++;
    while (buf[p] & 0x80) p++; // offset delta
    p++;
    let kl, vl;
    [kl, p] = readVarint(buf, p);
    spans[6 * i + 2] = kl < 0 ? -1 : p;
    spans[6 * i + 3] = kl < 0 ? -1 : p + kl;
    if (kl > 0) p += kl;
    [vl, p] = readVarint(buf, p);
    spans[6 * i + 4] = vl < 0 ? -1 : p;
    spans[6 * i + 5] = vl < 0 ? -1 : p + vl;
    if (p > end || (vl > 0 && p + vl > end)) throw new CodecError(`input record ${i} does not decode`);
    spans[6 * i] = pos;
    spans[6 * i + 1] = end;
    pos = end;
  }
  return spans;
}

function nullable(buf, pos) {
  const [n, p] = readVarint(buf, pos);
  if (n < 0) return [null, p];
  if (p + n > buf.length) throw new CodecError('length past the end');
  return [buf.subarray(p, p + n), p + n];
}

const utf8 = new TextDecoder();
const utf8Encoder = new TextEncoder();

export function readRecords(buf, count) {
  const records = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const [length, start] = readVarint(buf, pos);
    const end = start + length;
    if (length < 0 || end > buf.length) throw new CodecError(`input record ${i} does not decode`);
    let p = start + 1; // attributes
    let timestampDelta, offsetDelta, key, value, n;
    [timestampDelta, p] = readVarint(buf, p);
    [offsetDelta, p] = readVarint(buf, p);
    [key, p] = nullable(buf, p);
    [value, p] = nullable(buf, p);
    [n, p] = readVarint(buf, p);
    const headers = [];
    for (let h = 0; h < n; h++) {
      let hk, hv;
      [hk, p] = nullable(buf, p);
      [hv, p] = nullable(buf, p);
      headers.push([hk ? utf8.decode(hk) : '', hv]);
    }
    records.push({ timestampDelta, offsetDelta, key, value, headers });
    pos = end;
  }
  return records;
}

function putBytes(out, b) {
  if (b === null || b === undefined) {
    putVarint(out, -1);
  } else {
    putVarint(out, b.length);
    out.bytes(b);
  }
}

/** Appends one record (the Kafka v2 layout) to the Writer `out`. */
export function putRecord(out, timestampDelta, key, value, headers) {
  const body = new Writer(32 + (key?.length ?? 0) + (value?.length ?? 0));
  body.push(0);
  putVarint(body, timestampDelta);
  putVarint(body, 0);
  putBytes(body, key);
  putBytes(body, value);
  putVarint(body, headers.length);
  for (const [k, v] of headers) {
    putBytes(body, utf8Encoder.encode(k));
    putBytes(body, v);
  }
  putVarint(out, body.length);
  out.bytes(body.finish());
}
