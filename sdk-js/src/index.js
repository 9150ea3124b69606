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
//   import * as host from 'sluice:transform/host@0.2.2';
//   import { bindHost, transform } from 'sluice-sdk';
//   import { shout } from './shout.js';
//   bindHost(host);
//   export const { init, process, onTimers } = transform(shout);
//
// Stateful transforms use keyed state and event-time timers (`state`, `timers`; see
// state.js): the entry also binds `sluice:transform/state@0.2.2` with `bindState`, passes
// `onTimer` to `transform`, and is built with `--stateful` (the `transform` world).
//
// `scripts/build-js-plugin [--stateful] DIR OUT.wasm` bundles app.js (esbuild) and builds
// the component.
// Throwing `SluiceError` rejects the record with its message; any other exception rejects
// it with `Name: message`. Runaway loops and memory exhaustion are stopped by the host.

import { Batch } from './batch.js';
import * as codec from './codec.js';
import { ENV } from './env.js';
import * as stateModule from './state.js';
import * as text from './text.js';

export { bindState, state, timers } from './state.js';
export { bindText } from './text.js';
export { Batch, text };

let host = null;

/** The watermark before there is one (the smallest s64). */
export const NO_WATERMARK = -(2 ** 63);

/** Binds the component's host imports (`sluice:transform/host`); natively, the harness. */
export function bindHost(h) {
  host = h;
}

export class SluiceError extends Error {}

stateModule.configure(
  () => host !== null,
  (m) => new SluiceError(m),
);

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

function textOf(b) {
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
    return textOf(this.raw.key);
  }
  /** The value as text, or null if it is not UTF-8. */
  valueStr() {
    return textOf(this.raw.value);
  }
  /** The value parsed as JSON; throws SluiceError (rejecting the record) if it is not. */
  json() {
    const t = this.raw.value === null ? 'null' : textOf(this.raw.value);
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
  /** When the event happened (ms since the epoch): the JSON field the deployment names in
   * `event_time.field`, or else the timestamp. Watermarks and windows go by this time. */
  get eventTime() {
    const t = this.ctx.eventTimes;
    return t && t.length ? Number(t[this.index]) : this.timestamp;
  }
  /** The partition's watermark for this batch (events before it are late). */
  get watermark() {
    return this.ctx.watermark === undefined ? NO_WATERMARK : Number(this.ctx.watermark);
  }
  /** What a record is grouped by: its key, or (with `field`) the text of that JSON field of
   * the value — a name, dotted path or JSON pointer. Null when there is none. */
  keyOrField(field = null) {
    if (field === null) return this.key;
    const v = path(this.json(), field);
    if (v === undefined) return null;
    return encoder.encode(typeof v === 'string' ? v : JSON.stringify(v));
  }
  get topic() {
    return this.ctx.topic;
  }
  get partition() {
    return this.ctx.partition;
  }
}

/** The element of a parsed JSON value at a name, dotted path (`a.b.0`) or JSON pointer
 * (`/a/b/0`), or undefined. */
export function path(value, field) {
  const parts = field.startsWith('/')
    ? field.slice(1).split('/').map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
    : field.split('.');
  let cur = value;
  for (const part of parts) {
    if (Array.isArray(cur)) {
      if (!/^\d+$/.test(part) || Number(part) >= cur.length) return undefined;
      cur = cur[Number(part)];
    } else if (cur !== null && typeof cur === 'object' && Object.hasOwn(cur, part)) {
      cur = cur[part];
    } else {
      return undefined;
    }
  }
  return cur;
}

/** A timer that fired: the key it was set with and the time it was set for. */
export class Timer {
  constructor(key, at, watermark) {
    this.key = key;
    this.at = at;
    this.watermark = watermark;
  }
  keyStr() {
    return textOf(this.key);
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
  /** The input with spans of its value replaced: `[start, end, replacement]` byte offsets
   * into the value, in increasing order; only the edits leave the plugin. */
  static keepSpliced(spans) {
    if (spans.length === 0) return Outcome.keep();
    return new Outcome(null, [['splice', null, spans.map(([s, e, r]) => [s, e, bytes(r) ?? new Uint8Array(0)])]]);
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

function answer(out, i, outcome, names, ctx, raw, timestamp) {
  if (outcome.reason !== null) {
    reject(out, i, outcome.reason);
    return;
  }
  const mark = out.length;
  let bad = null;
  for (const [kind, target, what] of outcome.emissions) {
    const o = target === null ? 0 : names.indexOf(target);
    if (o < 0) {
      bad = `emitted to ${JSON.stringify(target)}, which is not one of the outputs ${JSON.stringify(names)}`;
      break;
    }
    if (raw === null && kind !== 'record') {
      bad = 'a timer has no input record to keep: emit a record instead';
      break;
    }
    if (kind === 'keep') {
      out.push(codec.PASS);
      codec.putUvarint(out, i);
      codec.putUvarint(out, o);
      continue;
    }
    if (kind === 'splice') {
      out.push(codec.SPLICE);
      for (const n of [i, o, what.length]) codec.putUvarint(out, n);
      for (const [start, end, r] of what) {
        for (const n of [start, end, r.length]) codec.putUvarint(out, n);
        out.bytes(r);
      }
      continue;
    }
    out.push(codec.EMIT);
    codec.putUvarint(out, i);
    codec.putUvarint(out, o);
    if (kind === 'value') {
      codec.putRecord(out, raw.timestampDelta, raw.key, what, raw.headers);
    } else {
      const ts = what.timestamp === null ? timestamp : what.timestamp;
      codec.putRecord(out, ts - Number(ctx.baseTimestamp), what.key, what.value, what.headers);
    }
  }
  if (bad !== null) {
    out.length = mark; // what this input emitted before the bad entry goes
    reject(out, i, bad);
  }
}

function call(fn, arg) {
  try {
    const outcome = fn(arg);
    if (!(outcome instanceof Outcome)) throw new TypeError('the transform did not return an Outcome');
    return outcome;
  } catch (e) {
    return Outcome.reject(reasonOf(e));
  }
}

/** Runs `fn(record)` over a batch (the contract's `process`) and encodes the outcomes. */
export function runBatch(ctx, records, fn) {
  const names = outputs();
  const out = new codec.Writer(records.length + 1024);
  const raws = codec.readRecords(records, ctx.recordCount);
  for (let i = 0; i < raws.length; i++) {
    const rec = new Record(raws[i], ctx, i);
    answer(out, i, call(fn, rec), names, ctx, raws[i], rec.timestamp);
  }
  return out.finish();
}

/** Runs `fn(batch)` over a batch (`transformBatch`) and returns its entries. */
export function runWholeBatch(ctx, records, fn) {
  let names = null;
  const batch = new Batch(ctx, records, () => (names ??= outputs()));
  if (!host) {
    const s = codec.recordSpans(records, ctx.recordCount);
    const part = (a, b) => (a < 0 ? null : records.subarray(a, b));
    text.setBatch(
      Array.from({ length: ctx.recordCount }, (_, i) => [part(s[6 * i + 2], s[6 * i + 3]), part(s[6 * i + 4], s[6 * i + 5])]),
    );
  }
  try {
    fn(batch);
  } finally {
    if (!host) text.setBatch(null);
  }
  return batch.entries();
}

/** Runs `fn(timer)` over fired timers (the contract's `on-timers`); a record emitted
 * without a timestamp gets the timer's time. */
export function runTimers(ctx, fired, fn) {
  const names = outputs();
  const out = new codec.Writer();
  const list = stateModule.readTimers(fired, ctx.recordCount);
  for (let i = 0; i < list.length; i++) {
    const [at, key] = list[i];
    answer(out, i, call(fn, new Timer(key, at, Number(ctx.baseTimestamp))), names, ctx, null, at);
  }
  return out.finish();
}

/** Runs `body()` inside one call's state cache: its changes reach the host when it
 * returns, and are dropped when it throws. */
export function inCall(body) {
  stateModule.beginCall();
  let result;
  try {
    result = body();
  } catch (e) {
    stateModule.discardCall();
    throw e;
  }
  stateModule.endCall();
  return result;
}

/** `fn` and `onTimer` with the instance value (from `init`) bound, if there is one. */
export function bind(fn, onTimer, instance, hasInit) {
  if (!hasInit) return [fn, onTimer];
  return [(r) => fn(instance, r), onTimer === null ? null : (t) => onTimer(instance, t)];
}

/**
 * The component's exports for `fn(record)` — or `fn(instance, record)` with `init`, whose
 * result (built once per instance from the config) is `instance`. `onTimer(timer)`
 * (`onTimer(instance, timer)` with `init`) answers fired timers with an outcome like a
 * record's; without it, fired timers are dropped.
 */
/**
 * The component's exports for `fn(batch)` — or `fn(instance, batch)` with `init`: one call
 * per batch with a `Batch`, for plugins whose work per record must stay small (with
 * `text`'s batch-wide calls, a record the plugin does not touch costs it nothing).
 * Records `fn` does not answer are kept. An exception fails the batch: the host then runs
 * its records one at a time and dead-letters the one that throws, with the reason.
 */
export function transformBatch(fn, { init = null, onTimer = null } = {}) {
  return transform(fn, { init, onTimer, whole: true });
}

export function transform(fn, { init = null, onTimer = null, whole = false } = {}) {
  let bound = bind(fn, onTimer, null, false);
  return {
    init() {
      if (init === null) return;
      stateModule.beginCall();
      try {
        bound = bind(fn, onTimer, init(), true);
      } catch (e) {
        throw reasonOf(e);
      }
      // init runs for every instance the host starts: state written there would be
      // written again and again, so it is refused rather than dropped.
      if (stateModule.callHasChanges()) {
        stateModule.discardCall();
        throw 'init wrote state: state can only be written while processing records or timers (init runs again for every instance of the plugin); set initial values when a record first needs them';
      }
    },
    process(ctx, records) {
      try {
        return inCall(() => (whole ? runWholeBatch : runBatch)(ctx, records, bound[0]));
      } catch (e) {
        throw reasonOf(e);
      }
    },
    onTimers(ctx, fired) {
      if (bound[1] === null) return new Uint8Array(0);
      try {
        return inCall(() => runTimers(ctx, fired, bound[1]));
      } catch (e) {
        throw reasonOf(e);
      }
    },
  };
}
