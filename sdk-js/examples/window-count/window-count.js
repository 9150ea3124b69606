// Counts records per key per tumbling window of event time — the Rust `window-count`
// example in JavaScript, passing the same plugins/window-count/cases.json. When the
// partition's watermark passes a window's end, emits {"key","window_start","window_end",
// "count"} (keyed by the key, timestamped at the window's end) to the first output.
//
// Config: `window_ms` (window size, default 60000), `key_field` (a JSON field of the value
// to count by — name, dotted path or JSON pointer; default: the record key). Records
// without a key count under "". State: one key per open window, the window's end (8 bytes,
// big-endian, sign flipped so that keys sort by time) + the key, holding the count; a timer
// with the same key at the window's end.

import { OutRecord, Outcome, SluiceError, config, state, timers } from 'sluice-sdk';

export function setup() {
  const raw = config('window_ms') ?? '60000';
  if (!/^\d+$/.test(raw) || Number(raw) <= 0) {
    throw new SluiceError(`window_ms must be a positive number of milliseconds, not ${JSON.stringify(raw)}`);
  }
  return { windowMs: Number(raw), keyField: config('key_field') };
}

function slot(end, key) {
  const s = new Uint8Array(8 + key.length);
  new DataView(s.buffer).setBigUint64(0, BigInt(end) + 2n ** 63n);
  s.set(key, 8);
  return s;
}

export function count(c, record) {
  const key = record.keyOrField(c.keyField) ?? new Uint8Array(0);
  const end = Math.floor(record.eventTime / c.windowMs) * c.windowMs + c.windowMs;
  const k = slot(end, key);
  const n = state.getJson(k);
  state.putJson(k, (n ?? 0) + 1);
  if (n === null) timers.set(k, end);
  return Outcome.drop();
}

export function close(c, timer) {
  const n = state.getJson(timer.key);
  if (n === null) return Outcome.drop();
  state.delete(timer.key);
  const key = timer.key.subarray(8);
  const value = {
    key: new TextDecoder().decode(key),
    window_start: timer.at - c.windowMs,
    window_end: timer.at,
    count: n,
  };
  return Outcome.emit(new OutRecord(value, { key }));
}
