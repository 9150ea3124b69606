// Runs a transform natively, batch by batch through the same encoding a component uses,
// and checks it against a case table (`cases.json`, the Rust SDK's format).
//
//   import { Harness } from 'sluice-sdk/testing';
//   new Harness(filter, { init: setup }).runSuites(readFileSync('cases.json', 'utf8'));
//
// Stateful transforms run as a stream over one simulated partition, as the host runs them:
// state, timers and the watermark (max event time − allowed lateness) carry over from
// batch to batch, late records are not processed, and due timers fire after each batch:
//
//   const s = new Harness(count, { onTimer: close }).allowedLateness(500).stream();
//   s.push([{ key: 'a', value: 'x', timestamp: 1100 }]);
//   const fired = s.advance(10_000); // [{ at, key, outcome }]

import * as codec from './codec.js';
import { ENV } from './env.js';
import { NO_WATERMARK, bind, inCall, path, runBatch, runTimers, runWholeBatch } from './index.js';
import { id, putTimer } from './state.js';

const DEFAULT_TIMESTAMP = 1_700_000_000_000;
/** The topic of records that name none (`record.topic`, or a case input's `topic`). */
const DEFAULT_TOPIC = 'input';
/** Most rounds of timer firing at one watermark, as on the host. */
export const MAX_TIMER_ROUNDS = 100;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function asBytes(v) {
  return typeof v === 'string' ? encoder.encode(v) : (v ?? null);
}

function valueBytes(v) {
  if (v === null || v === undefined) return null;
  return encoder.encode(typeof v === 'string' ? v : JSON.stringify(v));
}

function freshEnv(config = {}, outputs = ['output'], tables = {}) {
  return { config, outputs, tables, logs: [], state: new Map(), timers: new Set() };
}

function encodeBatch(records, baseTimestamp) {
  const batch = new codec.Writer();
  for (const r of records) {
    codec.putRecord(
      batch,
      (r.timestamp ?? DEFAULT_TIMESTAMP) - baseTimestamp,
      asBytes(r.key ?? null),
      asBytes(r.value ?? null),
      (r.headers ?? []).map(([k, v]) => [k, asBytes(v)]),
    );
  }
  return batch.finish();
}

/** Runs of records of one topic: the batches the host hands over (one input each). */
function topicRuns(records) {
  const runs = [];
  for (const r of records) {
    const last = runs.at(-1);
    if (last && (last[0].topic ?? null) === (r.topic ?? null)) last.push(r);
    else runs.push([r]);
  }
  return runs;
}

export class Harness {
  /** `batch: true` for a `transformBatch` function (`fn(batch)`). */
  constructor(fn, { init = null, onTimer = null, batch = false } = {}) {
    this.fn = fn;
    this.batch = batch;
    this.init = init;
    this.onTimer = onTimer;
    this.env = freshEnv();
    this.lateness = 0;
    this.timeField = null;
  }

  config(key, value) {
    this.env.config[key] = value;
    return this;
  }

  outputs(...names) {
    this.env.outputs = names;
    return this;
  }

  /** The deployment's `event_time.allowed_lateness_ms` (for `stream`). */
  allowedLateness(ms) {
    this.lateness = ms;
    return this;
  }

  /** The deployment's `event_time.field` (for `stream`). */
  eventTimeField(name) {
    this.timeField = name;
    return this;
  }

  bound() {
    Object.assign(ENV, this.env);
    const instance = this.init === null ? null : this.init();
    return bind(this.fn, this.onTimer, instance, this.init !== null);
  }

  runValues(values) {
    return this.run(values.map((v) => ({ value: asBytes(v) })));
  }

  /** Runs records ({value, key, headers, timestamp, topic}) as one batch (one per run of
   * records of one topic) through a fresh instance (state starts empty); one outcome each. */
  run(records) {
    this.env.state = new Map();
    this.env.timers = new Set();
    const [fn] = this.bound();
    const got = [];
    for (const run of topicRuns(records)) {
      const ctx = {
        topic: run[0].topic ?? DEFAULT_TOPIC,
        partition: 0,
        baseOffset: BigInt(got.length),
        baseTimestamp: BigInt(DEFAULT_TIMESTAMP),
        recordCount: run.length,
        watermark: BigInt(NO_WATERMARK),
        eventTimes: [],
      };
      got.push(...this.callBatch(run, ctx, fn, inCall));
    }
    return got;
  }

  /** One `process` call and its outcomes. A whole-batch function that throws fails the
   * call: as on the host, each record then runs alone, and one that throws alone is
   * dead-lettered with the reason. */
  callBatch(records, ctx, fn, call) {
    const bytes = encodeBatch(records, Number(ctx.baseTimestamp));
    const inputs = codec.readRecords(bytes, records.length);
    if (!this.batch) {
      return decodeEntries(call(() => runBatch(ctx, bytes, fn)), inputs, this.env.outputs, ctx);
    }
    try {
      return decodeEntries(call(() => runWholeBatch(ctx, bytes, fn)), inputs, this.env.outputs, ctx);
    } catch (e) {
      if (records.length === 1) throw e;
    }
    return records.flatMap((r, k) => {
      const one = { ...ctx, baseOffset: ctx.baseOffset + BigInt(k), recordCount: 1, eventTimes: ctx.eventTimes.slice(k, k + 1) };
      try {
        return this.callBatch([r], one, fn, call);
      } catch (e) {
        const reason = e instanceof Error && e.constructor.name !== 'SluiceError' ? `${e.name}: ${e.message}` : String(e?.message ?? e);
        return [{ kind: 'reject', reason, emitted: [], values: () => [] }];
      }
    });
  }

  /** A stream of batches over one partition, as the host runs a stateful deployment. */
  stream() {
    return new Stream(this, this.bound());
  }

  /** Runs every suite of a case table; throws at the first mismatch. */
  runSuites(tableJson) {
    for (const suite of JSON.parse(tableJson)) {
      this.env = freshEnv(
        { ...(suite.config ?? {}) },
        suite.outputs?.length ? suite.outputs : ['output'],
        Object.fromEntries(
          Object.entries(suite.tables ?? {}).map(([t, kv]) => [
            t,
            Object.fromEntries(Object.entries(kv).map(([k, v]) => [k, valueBytes(v)])),
          ]),
        ),
      );
      const records = suite.cases.map((c) => ({
        value: valueBytes(c.input.value),
        key: asBytes(c.input.key ?? null),
        headers: Object.entries(c.input.headers ?? {}),
        timestamp: c.input.timestamp ?? DEFAULT_TIMESTAMP,
        topic: c.input.topic ?? null,
      }));
      const dflt = this.env.outputs[0];
      if (!suite.stream) {
        const got = this.run(records);
        suite.cases.forEach((c, i) => check(c, got[i], dflt));
        continue;
      }
      this.lateness = suite.stream.allowed_lateness_ms ?? 0;
      this.timeField = suite.stream.event_time_field ?? null;
      const s = this.stream();
      suite.cases.forEach((c, i) => {
        const pushed = s.push([records[i]]);
        const fired = pushed.fired;
        if (c.advance_to !== undefined && c.advance_to !== null) fired.push(...s.advance(c.advance_to));
        check(c, pushed.outcomes[0], dflt);
        const emitted = fired.flatMap((f) => f.outcome.emitted);
        const got = JSON.stringify(emitted.map(show));
        const want = c.fired ?? [];
        if (emitted.length !== want.length) {
          throw new Error(`case ${JSON.stringify(c.name)}: expected ${want.length} records from timers, got ${got}`);
        }
        want.forEach((w, k) => {
          const why = emitMismatch(w, emitted[k], dflt);
          if (why !== null) throw new Error(`case ${JSON.stringify(c.name)}: from timers: ${why}; got ${got}`);
        });
      });
    }
  }
}

function show(e) {
  return e.value === null ? null : decoder.decode(e.value);
}

/** A stateful run over one simulated partition (see `Harness.stream`). */
export class Stream {
  constructor(harness, [fn, onTimer]) {
    this.h = harness;
    this.fn = fn;
    this.onTimer = onTimer;
    this.env = harness.env;
    this.watermark = NO_WATERMARK;
    this.maxEventTime = NO_WATERMARK;
    this.offset = 0;
  }

  /** Every state key (as a byte-string id) and value. */
  state() {
    return this.env.state;
  }

  /** Pending timers as [at, key bytes], in firing order. */
  timers() {
    return [...this.env.timers].map(splitTimer).sort(timerOrder);
  }

  call(body) {
    Object.assign(ENV, this.env);
    const saved = [new Map(this.env.state), new Set(this.env.timers)];
    try {
      return inCall(body);
    } catch (e) {
      // A failed call leaves nothing behind, as on the host.
      this.env.state = saved[0];
      this.env.timers = saved[1];
      Object.assign(ENV, this.env);
      throw e;
    }
  }

  eventTime(r) {
    if (this.h.timeField === null) return r.timestamp ?? DEFAULT_TIMESTAMP;
    const v = path(JSON.parse(r.value === null ? 'null' : decoder.decode(r.value)), this.h.timeField);
    const t = timestampMs(v);
    if (t === null) throw new Error(`no event time in field ${this.h.timeField} of ${show(r)}`);
    return t;
  }

  /** One batch (one per run of records of one topic): records before the watermark are
   * late (not processed), the rest go through the transform; then the watermark moves and
   * due timers fire. */
  push(records) {
    if (!records.length) return this.pushBatch(records);
    const pushed = { outcomes: [], fired: [] };
    for (const run of topicRuns(records)) {
      const p = this.pushBatch(run);
      pushed.outcomes.push(...p.outcomes);
      pushed.fired.push(...p.fired);
    }
    return pushed;
  }

  pushBatch(records) {
    const times = records.map((r) => this.eventTime(r));
    const onTime = times.flatMap((t, i) => (t >= this.watermark ? [i] : []));
    const batch = onTime.map((i) => records[i]);
    const ctx = {
      topic: records[0]?.topic ?? DEFAULT_TOPIC,
      partition: 0,
      baseOffset: BigInt(this.offset),
      baseTimestamp: BigInt(DEFAULT_TIMESTAMP),
      recordCount: batch.length,
      watermark: BigInt(this.watermark),
      eventTimes: this.h.timeField === null ? [] : onTime.map((i) => BigInt(times[i])),
    };
    this.offset += records.length;
    const processed = this.h.callBatch(batch, ctx, this.fn, (body) => this.call(body));
    const outcomes = records.map(() => late());
    onTime.forEach((i, k) => {
      outcomes[i] = processed[k];
      this.maxEventTime = Math.max(this.maxEventTime, times[i]);
    });
    const fired = this.maxEventTime === NO_WATERMARK ? [] : this.advance(this.maxEventTime - this.h.lateness);
    return { outcomes, fired };
  }

  /** Moves the watermark to `to` (if later), as the host does for an idle partition, and
   * fires the timers due. */
  advance(to) {
    this.watermark = Math.max(this.watermark, to);
    const fired = [];
    for (let round = 0; round < MAX_TIMER_ROUNDS; round++) {
      const due = this.timers().filter(([at]) => at <= this.watermark);
      if (!due.length) break;
      for (const [at, key] of due) this.env.timers.delete(`${at}:${id(key)}`);
      if (this.onTimer === null) continue;
      const ctx = {
        topic: 'test',
        partition: 0,
        baseOffset: BigInt(this.offset),
        baseTimestamp: BigInt(this.watermark),
        recordCount: due.length,
        watermark: BigInt(this.watermark),
        eventTimes: [],
      };
      const w = new codec.Writer();
      for (const [at, key] of due) putTimer(w, at, key);
      const entries = this.call(() => runTimers(ctx, w.finish(), this.onTimer));
      const outcomes = decodeEntries(entries, null, this.env.outputs, ctx, due.length);
      due.forEach(([at, key], k) => fired.push({ at, key, outcome: outcomes[k], values: outcomes[k].values }));
    }
    return fired;
  }
}

function late() {
  return { kind: 'late', reason: null, emitted: [], values: () => [] };
}

function splitTimer(t) {
  const colon = t.indexOf(':');
  const s = t.slice(colon + 1);
  const key = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) key[i] = s.charCodeAt(i);
  return [Number(t.slice(0, colon)), key];
}

function timerOrder([a, ka], [b, kb]) {
  if (a !== b) return a - b;
  const n = Math.min(ka.length, kb.length);
  for (let i = 0; i < n; i++) if (ka[i] !== kb[i]) return ka[i] - kb[i];
  return ka.length - kb.length;
}

/** Milliseconds since the epoch from a JSON number, digit string or RFC 3339 time. */
function timestampMs(v) {
  if (typeof v === 'number' && Number.isFinite(v)) return Math.trunc(v);
  if (typeof v !== 'string') return null;
  if (/^-?\d+$/.test(v)) return Number(v);
  if (!/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(v)) return null;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : t;
}

/** One outcome per input (`inputs` null: per fired timer, `count` of them). */
function decodeEntries(buf, inputs, outputs, ctx, count = 0) {
  const n = inputs === null ? count : inputs.length;
  const got = Array.from({ length: n }, () => ({ kind: 'drop', reason: null, emitted: [] }));
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
    if (kind === codec.PASS || kind === codec.SPLICE) {
      if (inputs === null) throw new Error(`timer ${i}: a pass or splice entry, but a timer has no record`);
      r = inputs[i];
      if (kind === codec.SPLICE) [r, pos] = spliced(buf, pos, r);
    } else {
      const [length, body] = codec.readVarint(buf, pos);
      [r] = codec.readRecords(buf.subarray(pos, body + length), 1);
      pos = body + length;
    }
    if (got[i].kind !== 'emit') got[i] = { kind: 'emit', reason: null, emitted: [] };
    got[i].emitted.push({
      output: outputs[o],
      key: r.key,
      value: r.value,
      headers: r.headers,
      timestamp: Number(ctx.baseTimestamp) + r.timestampDelta,
    });
  }
  return got.map((g) => ({
    ...g,
    values: () => g.emitted.map((e) => (e.value === null ? null : decoder.decode(e.value))),
  }));
}

/** The record `r` with the spans of a splice entry (at `pos`) applied, and where the entry
 * ends; throws when they do not fit its value, as the host refuses them. */
function spliced(buf, pos, r) {
  let count, start, end, n;
  [count, pos] = codec.readUvarint(buf, pos);
  const v = r.value;
  const parts = [];
  let last = 0;
  for (let k = 0; k < count; k++) {
    [start, pos] = codec.readUvarint(buf, pos);
    [end, pos] = codec.readUvarint(buf, pos);
    [n, pos] = codec.readUvarint(buf, pos);
    if (v === null || start < last || end < start || end > v.length) {
      throw new Error(`splice span ${start}..${end} does not fit a value of ${v === null ? 'null' : v.length} bytes`);
    }
    parts.push(v.subarray(last, start), buf.subarray(pos, pos + n));
    last = end;
    pos += n;
  }
  if (v === null) return [r, pos];
  parts.push(v.subarray(last));
  const value = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    value.set(p, at);
    at += p.length;
  }
  return [{ ...r, value }, pos];
}

function check(c, got, defaultOutput) {
  const fail = `case ${JSON.stringify(c.name)}: expected ${JSON.stringify(c.expect)}, got ${got.kind} ${got.reason ?? JSON.stringify(got.values())}`;
  const want = c.expect;
  if (want === 'drop' || want === 'late') {
    if (got.kind !== want) throw new Error(fail);
    return;
  }
  if (want.reject !== undefined) {
    if (got.kind !== 'reject' || !got.reason.includes(want.reject)) throw new Error(fail);
    return;
  }
  if (got.kind !== 'emit' || got.emitted.length !== want.emit.length) throw new Error(fail);
  want.emit.forEach((w, k) => {
    const why = emitMismatch(w, got.emitted[k], defaultOutput);
    if (why !== null) throw new Error(`${fail} (${why})`);
  });
}

/** Why an emitted record is not the expected one, or null. */
function emitMismatch(w, h, defaultOutput) {
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
  if (!ok) return `value ${have}, expected ${JSON.stringify(w.value)}`;
  if (h.output !== (w.output ?? defaultOutput)) return `output ${h.output}, expected ${w.output ?? defaultOutput}`;
  if (w.key !== undefined && (h.key === null || decoder.decode(h.key) !== w.key)) {
    return `key ${h.key === null ? null : decoder.decode(h.key)}, expected ${w.key}`;
  }
  for (const [hk, hv] of Object.entries(w.headers ?? {})) {
    if (!h.headers.some(([k, v]) => k === hk && v !== null && decoder.decode(v) === hv)) {
      return `no header ${hk}=${hv}`;
    }
  }
  return null;
}

function deepEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => deepEqual(a[k], b[k]));
}
