// Runs a transform natively, batch by batch through the same encoding a component uses,
// and checks it against a case table (`cases.json`, the Rust SDK's format).
//
//   import { Harness } from 'sluice-sdk/testing';
//   new Harness(filter, { init: setup }).runSuites(readFileSync('cases.json', 'utf8'));

import * as codec from './codec.js';
import { ENV } from './env.js';
import { runBatch } from './index.js';

const DEFAULT_TIMESTAMP = 1_700_000_000_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function asBytes(v) {
  return typeof v === 'string' ? encoder.encode(v) : (v ?? null);
}

function valueBytes(v) {
  if (v === null || v === undefined) return null;
  return encoder.encode(typeof v === 'string' ? v : JSON.stringify(v));
}

export class Harness {
  constructor(fn, { init = null } = {}) {
    this.fn = fn;
    this.init = init;
    this.env = { config: {}, outputs: ['output'], tables: {}, logs: [] };
  }

  config(key, value) {
    this.env.config[key] = value;
    return this;
  }

  outputs(...names) {
    this.env.outputs = names;
    return this;
  }

  runValues(values) {
    return this.run(values.map((v) => ({ value: asBytes(v) })));
  }

  /** Runs records ({value, key, headers, timestamp}) as one batch; one outcome each. */
  run(records) {
    Object.assign(ENV, this.env);
    const state = this.init === null ? null : this.init();
    const ctx = {
      topic: 'input',
      partition: 0,
      baseOffset: 0n,
      baseTimestamp: BigInt(DEFAULT_TIMESTAMP),
      recordCount: records.length,
    };
    const batch = new codec.Writer();
    for (const r of records) {
      codec.putRecord(
        batch,
        (r.timestamp ?? DEFAULT_TIMESTAMP) - DEFAULT_TIMESTAMP,
        asBytes(r.key),
        asBytes(r.value),
        (r.headers ?? []).map(([k, v]) => [k, asBytes(v)]),
      );
    }
    const bytes = batch.finish();
    const entries = runBatch(ctx, bytes, this.fn, state, this.init !== null);
    return decodeEntries(entries, codec.readRecords(bytes, records.length), this.env.outputs);
  }

  /** Runs every suite of a case table; throws at the first mismatch. */
  runSuites(tableJson) {
    for (const suite of JSON.parse(tableJson)) {
      if (suite.stream) throw new Error('stream suites (stateful plugins) are not supported yet');
      this.env = {
        config: { ...(suite.config ?? {}) },
        outputs: suite.outputs?.length ? suite.outputs : ['output'],
        tables: Object.fromEntries(
          Object.entries(suite.tables ?? {}).map(([t, kv]) => [
            t,
            Object.fromEntries(Object.entries(kv).map(([k, v]) => [k, valueBytes(v)])),
          ]),
        ),
        logs: [],
      };
      const records = suite.cases.map((c) => ({
        value: valueBytes(c.input.value),
        key: asBytes(c.input.key ?? null),
        headers: Object.entries(c.input.headers ?? {}),
        timestamp: c.input.timestamp ?? DEFAULT_TIMESTAMP,
      }));
      const got = this.run(records);
      suite.cases.forEach((c, i) => check(c, got[i], this.env.outputs[0]));
    }
  }
}

function decodeEntries(buf, inputs, outputs) {
  const got = inputs.map(() => ({ kind: 'drop', reason: null, emitted: [] }));
  let pos = 0;
  while (pos < buf.length) {
    const kind = buf[pos];
    let i, o;
    [i, pos] = codec.readUvarint(buf, pos + 1);
    if (kind === codec.REJECT) {
      let n;
      [n, pos] = codec.readUvarint(buf, pos);
      got[i] = { kind: 'reject', reason: decoder.decode(buf.subarray(pos, pos + n)), emitted: [] };
      pos += n;
      continue;
    }
    [o, pos] = codec.readUvarint(buf, pos);
    let r;
    if (kind === codec.PASS) {
      r = inputs[i];
    } else {
      const [length, body] = codec.readVarint(buf, pos);
      [r] = codec.readRecords(buf.subarray(pos, body + length), 1);
      pos = body + length;
    }
    if (got[i].kind !== 'emit') got[i] = { kind: 'emit', reason: null, emitted: [] };
    got[i].emitted.push({ output: outputs[o], key: r.key, value: r.value, headers: r.headers });
  }
  return got.map((g) => ({
    ...g,
    values: () => g.emitted.map((e) => (e.value === null ? null : decoder.decode(e.value))),
  }));
}

function check(c, got, defaultOutput) {
  const fail = `case ${JSON.stringify(c.name)}: expected ${JSON.stringify(c.expect)}, got ${got.kind} ${got.reason ?? JSON.stringify(got.values())}`;
  const want = c.expect;
  if (want === 'drop') {
    if (got.kind !== 'drop') throw new Error(fail);
    return;
  }
  if (want.reject !== undefined) {
    if (got.kind !== 'reject' || !got.reason.includes(want.reject)) throw new Error(fail);
    return;
  }
  if (got.kind !== 'emit' || got.emitted.length !== want.emit.length) throw new Error(fail);
  want.emit.forEach((w, k) => {
    const h = got.emitted[k];
    const have = h.value === null ? null : decoder.decode(h.value);
    let ok;
    if (typeof w.value === 'string') ok = have === w.value;
    else if (w.value === null) ok = have === null;
    else {
      try {
        ok = have !== null && deepEqual(JSON.parse(have), w.value);
      } catch {
        ok = false;
      }
    }
    if (!ok || h.output !== (w.output ?? defaultOutput)) throw new Error(fail);
    if (w.key !== undefined && (h.key === null || decoder.decode(h.key) !== w.key)) {
      throw new Error(fail);
    }
    for (const [hk, hv] of Object.entries(w.headers ?? {})) {
      if (!h.headers.some(([k, v]) => k === hk && v !== null && decoder.decode(v) === hv)) {
        throw new Error(fail);
      }
    }
  });
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
}
