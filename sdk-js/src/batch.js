// A whole batch at once, for transforms whose work per record must stay small: nothing is
// decoded until asked for, records the function does not answer pass on unchanged (their
// bytes never cross back), and `splice` sends only the edits of a value.
//
//   const CARD = new text.Pattern(['\\b[0-9]{16}\\b']);
//   export function redact(batch) {
//     const hits = CARD.findInBatch(text.VALUE); // one host call for the whole batch
//     for (let k = 0; k < hits.length; k += 4) {
//       batch.splice(hits[k], [[hits[k + 2], hits[k + 3], '################']]);
//     }
//   }
//   export const { init, process, onTimers } = transformBatch(redact);

import * as codec from './codec.js';
import * as text from './text.js';

const NULL = 2 ** 32 - 1;

const encoder = new TextEncoder();

let passTable = new codec.Writer(4096);
const passAt = [0];

/** Pass entries to output 0 for inputs 0, 1, ... back to back, and where each starts. */
function passes(n) {
  while (passAt.length <= n) {
    const i = passAt.length - 1;
    passTable.push(codec.PASS);
    codec.putUvarint(passTable, i);
    passTable.push(0);
    passAt.push(passTable.length);
  }
  return passTable.buf;
}

/** The records of one `process` call. Read with `value(i)`, `key(i)` (decoded when first
 * asked for); answer with `keep`, `splice`, `emit`, `reject` or `drop`. A record without
 * an answer is kept: it goes to the default output unchanged. Several keep/splice/emit
 * answers for one record fan out; `reject` and `drop` replace what it had. */
export class Batch {
  constructor(ctx, records, outputIndex) {
    this.ctx = ctx;
    this.buf = records;
    this.length = ctx.recordCount;
    this.spans = null;
    this.parts = [null, null];
    this.outputIndex = outputIndex;
    // Answers go into one buffer as they come (no allocation per record): `at` holds
    // [record, start, end] per entry; `replaced` the records a reject or drop answered.
    this.w = new codec.Writer(4096);
    this.at = [];
    this.ordered = true;
    this.replaced = null;
  }
  /** Per record [start, end, keyStart, keyEnd, valueStart, valueEnd] (-1: null). */
  layout() {
    if (this.spans === null) this.spans = codec.recordSpans(this.buf, this.length);
    return this.spans;
  }
  /** Flat [start, end, ...] of each record's key (0) or value (1): the host's answer in a
   * component (no decoding here); a null part's start is -1 or 2**32 - 1. */
  partSpans(part) {
    let got = this.parts[part];
    if (got === null) {
      got = text.partSpansBatch(part);
      if (got === null) {
        const s = this.layout();
        got = new Int32Array(2 * this.length);
        for (let i = 0; i < this.length; i++) {
          got[2 * i] = s[6 * i + 2 + 2 * part];
          got[2 * i + 1] = s[6 * i + 3 + 2 * part];
        }
      }
      this.parts[part] = got;
    }
    return got;
  }
  value(i) {
    const p = this.parts[1] ?? this.partSpans(1);
    const s = p[2 * i];
    return s < 0 || s === NULL ? null : this.buf.subarray(s, p[2 * i + 1]);
  }
  key(i) {
    const p = this.parts[0] ?? this.partSpans(0);
    const s = p[2 * i];
    return s < 0 || s === NULL ? null : this.buf.subarray(s, p[2 * i + 1]);
  }
  output(name) {
    if (name === null || name === undefined) return 0;
    const o = this.outputIndex().indexOf(name);
    if (o < 0) throw new Error(`output ${JSON.stringify(name)} is not one of the deployment's outputs`);
    return o;
  }
  begin(i, kind) {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`record ${i} of a batch of ${this.length}`);
    if (this.replaced?.has(i)) {
      if (this.replaced.get(i) === 'reject') return null; // a reject is final
      this.replaced.delete(i); // emits after a drop count
    }
    const n = this.at.length;
    if (n && this.at[n - 3] > i) this.ordered = false;
    this.w.push(kind);
    codec.putUvarint(this.w, i);
    return this.w.length - 1 - uvLen(i);
  }
  end(i, start) {
    if (start !== null) this.at.push(i, start, this.w.length);
  }
  /** Pass record `i` on unchanged (to `output`, or the default output). */
  keep(i, output = null) {
    const o = this.output(output);
    const at = this.begin(i, codec.PASS);
    if (at === null) return;
    codec.putUvarint(this.w, o);
    this.end(i, at);
  }
  /** Pass record `i` on with spans of its value replaced: `[start, end, replacement]`
   * byte offsets into the value, in increasing order, not overlapping; the replacement a
   * string or bytes. Only the edits leave the plugin; the host builds the value. */
  splice(i, spans, output = null) {
    const o = this.output(output);
    const at = this.begin(i, codec.SPLICE);
    if (at === null) return;
    const w = this.w;
    codec.putUvarint(w, o);
    codec.putUvarint(w, spans.length);
    for (const [start, end, r] of spans) {
      const repl = typeof r === 'string' ? encoder.encode(r) : r;
      codec.putUvarint(w, start);
      codec.putUvarint(w, end);
      codec.putUvarint(w, repl.length);
      w.bytes(repl);
    }
    this.end(i, at);
  }
  /** Emit a new record (an OutRecord) for record `i`; without a timestamp it gets
   * record `i`'s. */
  emit(i, record, output = null) {
    const o = this.output(output);
    let delta;
    if (record.timestamp === null) {
      const s = this.layout();
      const [, body] = codec.readVarint(this.buf, s[6 * i]);
      [delta] = codec.readVarint(this.buf, body + 1); // after the attributes
    } else {
      delta = record.timestamp - Number(this.ctx.baseTimestamp);
    }
    const at = this.begin(i, codec.EMIT);
    if (at === null) return;
    codec.putUvarint(this.w, o);
    codec.putRecord(this.w, delta, record.key, record.value, record.headers);
    this.end(i, at);
  }
  /** Send record `i` to the dead-letter topic with a reason (what it had is dropped). */
  reject(i, reason) {
    this.replace(i, 'drop');
    const r = encoder.encode(String(reason));
    const at = this.begin(i, codec.REJECT);
    codec.putUvarint(this.w, r.length);
    this.w.bytes(r);
    this.end(i, at);
    this.replaced.set(i, 'reject');
  }
  /** Record `i` goes nowhere (what it had is dropped). */
  drop(i) {
    this.replace(i, 'drop');
  }
  replace(i, how) {
    if (!(i >= 0 && i < this.length)) throw new RangeError(`record ${i} of a batch of ${this.length}`);
    // Earlier answers of record i are dropped: their index entries are removed.
    for (let k = 0; k < this.at.length; k += 3) {
      if (this.at[k] === i) this.at[k] = -1;
    }
    (this.replaced ??= new Map()).set(i, how);
  }
  /** The output entries. */
  entries() {
    const n = this.length;
    const table = passes(n);
    let at = this.at;
    if (!this.ordered) {
      const order = [];
      for (let k = 0; k < at.length; k += 3) order.push(k);
      order.sort((a, b) => at[a] - at[b] || a - b); // stable by record
      at = order.flatMap((k) => [at[k], at[k + 1], at[k + 2]]);
    }
    const out = new codec.Writer(passAt[n] + this.w.length + 16);
    const answered = (i) => this.replaced?.has(i);
    let next = 0;
    for (let k = 0; k < at.length; k += 3) {
      const i = at[k];
      if (i < 0) continue;
      for (let g = next; g < i; g++) if (!answered(g)) out.bytes(table.subarray(passAt[g], passAt[g + 1]));
      if (i >= next) next = i + 1;
      out.bytes(this.w.buf.subarray(at[k + 1], at[k + 2]));
    }
    if (this.replaced === null) {
      if (next < n) out.bytes(table.subarray(passAt[next], passAt[n]));
    } else {
      for (let g = next; g < n; g++) if (!answered(g)) out.bytes(table.subarray(passAt[g], passAt[g + 1]));
    }
    return out.finish();
  }
}

function uvLen(n) {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}
