// Write Sluice transforms in JavaScript: one function from a record to an outcome.
//
//   // shout.js — the logic, testable natively with node's test runner
//   import { Outcome } from 'sluice-sdk';
//   export function shout(record) {
//     const text = record.valueStr();
//     return text === null ? Outcome.drop() : Outcome.keepWithValue(text.toUpperCase());
//   }
//
//   // app.js — the component's entry (componentize-js)
//   import * as host from 'sluice:transform/host@0.2.1';
//   import { bindHost, transform } from 'sluice-sdk';
//   import { shout } from './shout.js';
//   bindHost(host);
//   export const { init, process, onTimers } = transform(shout);
//
// `scripts/build-js-plugin DIR OUT.wasm` bundles app.js (esbuild) and builds the component.
// Throwing `SluiceError` rejects the record with its message; any other exception rejects
// it with `Name: message`. Runaway loops and memory exhaustion are stopped by the host.

import * as codec from './codec.js';
import { ENV } from './env.js';

let host = null;

/** Binds the component's host imports (`sluice:transform/host`); natively, the harness. */
export function bindHost(h) {
  host = h;
}

export class SluiceError extends Error {}

export const Level = Object.freeze({
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
});

/** A value of the deployment's config map, or null. */
export function config(key) {
  const v = host ? host.config(key) : ENV.config[key];
  return v === undefined ? null : v;
}

/** The deployment's output topics, in order. */
export function outputs() {
  return host ? [...host.outputs()] : [...ENV.outputs];
}

/** The latest value of `key` in a lookup table the deployment declares, or null. */
export function lookup(table, key) {
  const k = typeof key === 'string' ? encoder.encode(key) : key;
  if (host) {
    const v = host.lookup(table, k);
    return v === undefined ? null : v;
  }
  return ENV.tables[table]?.[decoder.decode(k)] ?? null;
}

/** A log line, tagged by the host with plugin, version, partition and offset. */
export function log(level, message) {
  if (host) host.log(level, message);
  else ENV.logs.push([level, message]);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function text(b) {
  if (b === null) return null;
  try {
    return decoder.decode(b);
  } catch {
    return null;
  }
}

function bytes(v) {
  if (v === null || v === undefined) return null;
  if (v instanceof Uint8Array) return v;
  if (typeof v === 'string') return encoder.encode(v);
  return encoder.encode(JSON.stringify(v));
}

/** One input record, decoded from the batch. */
export class Record {
  constructor(raw, ctx, index) {
    this.raw = raw;
    this.ctx = ctx;
    this.index = index;
  }
  get key() {
    return this.raw.key;
  }
  get value() {
    return this.raw.value;
  }
  get headers() {
    return this.raw.headers.slice();
  }
  keyStr() {
    return text(this.raw.key);
  }
  /** The value as text, or null if it is not UTF-8. */
  valueStr() {
    return text(this.raw.value);
  }
  /** The value parsed as JSON; throws SluiceError (rejecting the record) if it is not. */
  json() {
    const t = this.raw.value === null ? 'null' : text(this.raw.value);
    try {
      if (t === null) throw new Error('not UTF-8');
      return JSON.parse(t);
    } catch (e) {
      throw new SluiceError(`invalid JSON: ${e.message}`);
    }
  }
  header(key) {
    const h = this.raw.headers.find(([k]) => k === key);
    return h ? h[1] : null;
  }
  get timestamp() {
    return Number(this.ctx.baseTimestamp) + this.raw.timestampDelta;
  }
  get offset() {
    return Number(this.ctx.baseOffset) + this.raw.offsetDelta;
  }
  get topic() {
    return this.ctx.topic;
  }
  get partition() {
    return this.ctx.partition;
  }
}

/** A record to emit; a value that is not bytes or a string is written as JSON. */
export class OutRecord {
  constructor(value, { key = null, headers = [], timestamp = null } = {}) {
    this.value = bytes(value);
    this.key = bytes(key);
    this.headers = headers.map(([k, v]) => [k, bytes(v)]);
    this.timestamp = timestamp;
  }
}

/** What happens to one input record. */
export class Outcome {
  constructor(reason = null, emissions = []) {
    this.reason = reason;
    this.emissions = emissions;
  }
  /** Pass the input on unchanged (its bytes do not cross back). */
  static keep() {
    return new Outcome(null, [['keep', null, null]]);
  }
  static keepTo(output) {
    return new Outcome(null, [['keep', output, null]]);
  }
  /** The input with a new value (key, headers and timestamp kept). */
  static keepWithValue(value) {
    return new Outcome(null, [['value', null, bytes(value)]]);
  }
  static emit(record) {
    return new Outcome(null, [['record', null, record]]);
  }
  static emitTo(output, record) {
    return new Outcome(null, [['record', output, record]]);
  }
  /** Also emit another record (fan-out). */
  andEmit(record, output = null) {
    this.reason = null;
    this.emissions.push(['record', output, record]);
    return this;
  }
  static drop() {
    return new Outcome();
  }
  /** Send the record to the dead-letter topic with a reason. */
  static reject(reason) {
    return new Outcome(String(reason));
  }
}

function reasonOf(e) {
  if (e instanceof SluiceError) return e.message;
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

function reject(out, i, reason) {
  const r = encoder.encode(reason);
  out.push(codec.REJECT);
  codec.putUvarint(out, i);
  codec.putUvarint(out, r.length);
  out.bytes(r);
}

/** Runs `fn` over a batch (the contract's `process`) and encodes the outcomes. */
export function runBatch(ctx, records, fn, state, hasState) {
  const names = outputs();
  const out = new codec.Writer(records.length + 1024);
  const raws = codec.readRecords(records, ctx.recordCount);
  for (let i = 0; i < raws.length; i++) {
    const raw = raws[i];
    const rec = new Record(raw, ctx, i);
    let outcome;
    try {
      outcome = hasState ? fn(state, rec) : fn(rec);
      if (!(outcome instanceof Outcome)) {
        throw new TypeError('the transform did not return an Outcome');
      }
    } catch (e) {
      outcome = Outcome.reject(reasonOf(e));
    }
    if (outcome.reason !== null) {
      reject(out, i, outcome.reason);
      continue;
    }
    const mark = out.length;
    let bad = null;
    for (const [kind, target, what] of outcome.emissions) {
      const o = target === null ? 0 : names.indexOf(target);
      if (o < 0) {
        bad = `emitted to ${JSON.stringify(target)}, which is not one of the outputs ${JSON.stringify(names)}`;
        break;
      }
      if (kind === 'keep') {
        out.push(codec.PASS);
        codec.putUvarint(out, i);
        codec.putUvarint(out, o);
        continue;
      }
      out.push(codec.EMIT);
      codec.putUvarint(out, i);
      codec.putUvarint(out, o);
      if (kind === 'value') {
        codec.putRecord(out, raw.timestampDelta, raw.key, what, raw.headers);
      } else {
        const ts = what.timestamp === null ? rec.timestamp : what.timestamp;
        codec.putRecord(out, ts - Number(ctx.baseTimestamp), what.key, what.value, what.headers);
      }
    }
    if (bad !== null) {
      out.length = mark; // what this record emitted before the bad target goes
      reject(out, i, bad);
    }
  }
  return out.finish();
}

/**
 * The component's exports for `fn(record)` — or `fn(state, record)` with `init`, whose
 * result (built once per instance from the config) is `state`.
 */
export function transform(fn, { init = null } = {}) {
  let state = null;
  return {
    init() {
      if (init === null) return;
      try {
        state = init();
      } catch (e) {
        throw reasonOf(e);
      }
    },
    process(ctx, records) {
      try {
        return runBatch(ctx, records, fn, state, init !== null);
      } catch (e) {
        throw reasonOf(e);
      }
    },
    onTimers() {
      return new Uint8Array(0);
    },
  };
}
