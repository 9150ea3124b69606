// Keyed state and event-time timers for stateful transforms: scoped to the input partition,
// committed by the host atomically with the outputs of the records that changed it, and
// restored after a restart or a crash. A plugin that uses them binds the host's state
// interface in its entry and is built against the `transform` world:
//
//   import * as host from 'sluice:transform/host@0.2.2';
//   import * as stateHost from 'sluice:transform/state@0.2.2';
//   bindHost(host);
//   bindState(stateHost);      // scripts/build-js-plugin --stateful
//
// Changes are cached for the call (a batch, or a round of timers) and reach the host in one
// `apply` when it ends; a call that fails leaves nothing behind. Keys are at most 64 KiB and
// values 4 MiB; a larger one throws SluiceError, which rejects the record.

import * as codec from './codec.js';
import { ENV } from './env.js';

export const MAX_KEY = 64 * 1024;
export const MAX_VALUE = 4 * 1024 * 1024;

const PUT = 0;
const DELETE = 1;
const SET_TIMER = 2;
const CANCEL_TIMER = 3;

const encoder = new TextEncoder();
let stateHost = null;
let inComponent = () => false;
let makeError = (m) => new Error(m);

/** Binds the component's `sluice:transform/state` import. */
export function bindState(h) {
  stateHost = h;
}

/** Set by index.js: whether the host imports are bound, and the error type. */
export function configure(isComponent, error) {
  inComponent = isComponent;
  makeError = error;
}

/** A byte string's identity as a JS string (one char per byte), for map keys. */
export function id(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
  }
  return s;
}

function fromId(s) {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}

function compare(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function startsWith(k, prefix) {
  if (k.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (k[i] !== prefix[i]) return false;
  return true;
}

// The host's side natively: the environment `sluice-sdk/testing` sets up (ENV.state is a
// Map of id → bytes, ENV.timers a Set of `${at}:${id}`).
const native = {
  get(key) {
    return ENV.state.get(id(key)) ?? null;
  },
  scan(prefix, after, limit) {
    const keys = [...ENV.state.keys()]
      .map(fromId)
      .filter((k) => startsWith(k, prefix) && (after === null || compare(k, after) > 0))
      .sort(compare)
      .slice(0, limit);
    return keys.map((k) => [k, ENV.state.get(id(k))]);
  },
  apply(ops) {
    for (const [op, a, b] of ops) {
      if (op === PUT) ENV.state.set(id(a), b);
      else if (op === DELETE) ENV.state.delete(id(a));
      else if (op === SET_TIMER) ENV.timers.add(`${a}:${id(b)}`);
      else ENV.timers.delete(`${a}:${id(b)}`);
    }
  },
};

const wasm = {
  get(key) {
    return stateHost.get(key) ?? null;
  },
  scan(prefix, after, limit) {
    const buf = stateHost.scan(prefix, after ?? undefined, limit);
    const out = [];
    let pos = 0;
    while (pos < buf.length) {
      let n;
      [n, pos] = codec.readUvarint(buf, pos);
      const k = Uint8Array.from(buf.subarray(pos, pos + n));
      pos += n;
      [n, pos] = codec.readUvarint(buf, pos);
      out.push([k, Uint8Array.from(buf.subarray(pos, pos + n))]);
      pos += n;
    }
    return out;
  },
  apply(ops) {
    const w = new codec.Writer();
    const at = new DataView(new ArrayBuffer(8));
    for (const [op, a, b] of ops) {
      w.push(op);
      if (op === PUT || op === DELETE) {
        codec.putUvarint(w, a.length);
        w.bytes(a);
        if (op === PUT) {
          codec.putUvarint(w, b.length);
          w.bytes(b);
        }
      } else {
        at.setBigInt64(0, BigInt(a), true);
        w.bytes(new Uint8Array(at.buffer));
        codec.putUvarint(w, b.length);
        w.bytes(b);
      }
    }
    stateHost.apply(w.finish());
  },
};

function backend() {
  if (stateHost !== null) return wasm;
  if (inComponent()) {
    throw makeError(
      'this plugin was built without state: bind sluice:transform/state with bindState and ' +
        'build it against the `transform` world (scripts/build-js-plugin --stateful)',
    );
  }
  return native;
}

class Call {
  constructor() {
    this.values = new Map(); // id → bytes | null
    this.changed = new Map(); // id → [key, bytes | null], in change order
    this.timerOps = [];
  }
  ops() {
    const out = [];
    for (const [k, v] of this.changed.values()) out.push(v === null ? [DELETE, k, null] : [PUT, k, v]);
    return out.concat(this.timerOps);
  }
}

let call = new Call();

export function beginCall() {
  call = new Call();
}

/** Sends the call's changes to the host (the SDK's call machinery runs this). */
export function endCall() {
  const c = call;
  call = new Call();
  const ops = c.ops();
  if (ops.length) backend().apply(ops);
}

export function discardCall() {
  call = new Call();
}

/** Whether the call so far changed state or timers. */
export function callHasChanges() {
  return call.ops().length > 0;
}

/** Bytes as a Uint8Array of this realm (lists from the host may be typed arrays of
 * another one, which `instanceof` does not recognise), or null. */
function asUint8(v) {
  if (v instanceof Uint8Array) return v;
  if (ArrayBuffer.isView(v) || Object.prototype.toString.call(v) === '[object Uint8Array]') {
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  return null;
}

function keyBytes(key) {
  const k =
    key === null || key === undefined ? new Uint8Array(0) : typeof key === 'string' ? encoder.encode(key) : asUint8(key);
  if (k === null) throw makeError(`a state key must be a Uint8Array or a string, not ${typeof key}`);
  if (k.length > MAX_KEY) throw makeError(`a state key of ${k.length} bytes is longer than ${MAX_KEY}`);
  return k;
}

function valueBytes(v) {
  if (v === null || v === undefined) throw makeError('a state value cannot be null: use state.delete');
  const b = asUint8(v) ?? encoder.encode(typeof v === 'string' ? v : JSON.stringify(v));
  if (b.length > MAX_VALUE) throw makeError(`a state value of ${b.length} bytes is larger than ${MAX_VALUE}`);
  return b;
}

const decoder = new TextDecoder();

export const state = {
  /** The value of `key` (Uint8Array or string), or null. */
  get(key) {
    const k = keyBytes(key);
    const i = id(k);
    if (call.values.has(i)) return call.values.get(i);
    const v = backend().get(k);
    const b = v === null ? null : Uint8Array.from(v);
    call.values.set(i, b);
    return b;
  },
  /** Sets the value of `key`: bytes, a string, or anything else as JSON. */
  put(key, value) {
    backend();
    const k = keyBytes(key);
    const v = valueBytes(value);
    const i = id(k);
    call.values.set(i, v);
    call.changed.delete(i);
    call.changed.set(i, [k, v]);
  },
  delete(key) {
    backend();
    const k = keyBytes(key);
    const i = id(k);
    call.values.set(i, null);
    call.changed.delete(i);
    call.changed.set(i, [k, null]);
  },
  /** The value of `key` parsed as JSON, or null. */
  getJson(key) {
    const v = state.get(key);
    if (v === null) return null;
    try {
      return JSON.parse(decoder.decode(v));
    } catch (e) {
      throw makeError(`state value of ${JSON.stringify(String(key))} is not JSON: ${e.message}`);
    }
  },
  putJson(key, value) {
    state.put(key, encoder.encode(JSON.stringify(value)));
  },
  /** [key, value] pairs of the keys starting with `prefix`, in byte order, with this
   * call's changes so far. */
  scan(prefix = '', page = 256) {
    const p = keyBytes(prefix);
    const b = backend();
    if (call.changed.size || call.timerOps.length) {
      // The host's view must include this call's changes: send them now (a failing call
      // still undoes them on the host's side).
      const values = call.values;
      endCall();
      call.values = values;
    }
    return pages(b, p, page);
  },
};

function* pages(b, p, page) {
  let after = null;
  for (;;) {
    const entries = b.scan(p, after, page);
    if (!entries.length) return;
    yield* entries;
    after = entries[entries.length - 1][0];
  }
}

/** Event-time timers: `onTimer` gets one once the partition's watermark reaches its time.
 * A timer is unique per (key, time). */
export const timers = {
  /** Fires `key` once the watermark reaches `atMs`. */
  set(key, atMs) {
    backend();
    call.timerOps.push([SET_TIMER, Number(atMs), keyBytes(key)]);
  },
  /** Removes the timer (key, atMs) if it is set. */
  cancel(key, atMs) {
    backend();
    call.timerOps.push([CANCEL_TIMER, Number(atMs), keyBytes(key)]);
  },
};

/** Reads the fired timers of `on-timers`: `at` (8 bytes LE signed), key. */
export function readTimers(buf, count) {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + 8 > buf.length) throw new codec.CodecError(`fired timer ${i} does not decode`);
    const at = Number(view.getBigInt64(pos, true));
    let n;
    [n, pos] = codec.readUvarint(buf, pos + 8);
    if (pos + n > buf.length) throw new codec.CodecError(`fired timer ${i} does not decode`);
    out.push([at, Uint8Array.from(buf.subarray(pos, pos + n))]);
    pos += n;
  }
  return out;
}

/** Appends a fired timer in the `on-timers` layout. */
export function putTimer(w, at, key) {
  const v = new DataView(new ArrayBuffer(8));
  v.setBigInt64(0, BigInt(at), true);
  w.bytes(new Uint8Array(v.buffer));
  codec.putUvarint(w, key.length);
  w.bytes(key);
}
