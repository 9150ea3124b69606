// Keeps or drops records by a predicate on a JSON field — the Rust `filter` example in
// JavaScript, passing the same plugins/filter/cases.json. Config as in Rust: `field`
// (dotted path or JSON pointer), `op`, `value`, `mode` (keep|drop), `on_invalid`
// (reject|drop|keep).

import { Outcome, SluiceError, config } from 'sluice-sdk';

const OPS = new Set(['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'contains', 'prefix', 'in', 'exists', 'missing']);

export function setup() {
  const field = config('field');
  if (field === null) throw new SluiceError('config `field` is required');
  const op = config('op') ?? 'eq';
  if (!OPS.has(op)) throw new SluiceError(`unknown op ${JSON.stringify(op)}`);
  const value = config('value');
  if (value === null && op !== 'exists' && op !== 'missing') {
    throw new SluiceError('config `value` is required for this op');
  }
  const mode = config('mode') ?? 'keep';
  if (mode !== 'keep' && mode !== 'drop') throw new SluiceError(`mode must be keep or drop, not ${JSON.stringify(mode)}`);
  const onInvalid = config('on_invalid') ?? 'reject';
  if (!['reject', 'drop', 'keep'].includes(onInvalid)) {
    throw new SluiceError(`on_invalid must be reject, drop or keep, not ${JSON.stringify(onInvalid)}`);
  }
  const v = value ?? '';
  return { field, op, value: v, list: v.split(',').map((s) => s.trim()), keepMatching: mode === 'keep', onInvalid };
}

/** The value at a dotted path or a JSON pointer; undefined if absent. */
function path(doc, p) {
  const parts = p.startsWith('/')
    ? p.slice(1).split('/').map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'))
    : p.split('.');
  let cur = doc;
  for (const part of parts) {
    if (Array.isArray(cur)) cur = /^\d+$/.test(part) ? cur[Number(part)] : undefined;
    else if (cur !== null && typeof cur === 'object') cur = Object.hasOwn(cur, part) ? cur[part] : undefined;
    else return undefined;
  }
  return cur;
}

/** Strings as they are; anything else as its JSON text. */
function text(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function compare(f, found) {
  const b = Number(f.value);
  if (typeof found === 'number' && f.value.trim() !== '' && !Number.isNaN(b)) {
    return Math.sign(found - b);
  }
  const a = text(found);
  return a < f.value ? -1 : a > f.value ? 1 : 0;
}

function matches(f, doc) {
  const found = path(doc, f.field);
  if (found === undefined || found === null) return f.op === 'missing' || f.op === 'ne';
  switch (f.op) {
    case 'exists':
      return true;
    case 'missing':
      return false;
    case 'contains':
      return Array.isArray(found) ? found.some((v) => text(v) === f.value) : text(found).includes(f.value);
    case 'prefix':
      return text(found).startsWith(f.value);
    case 'in':
      return f.list.includes(text(found));
    default: {
      const c = compare(f, found);
      return { eq: c === 0, ne: c !== 0, gt: c > 0, gte: c >= 0, lt: c < 0, lte: c <= 0 }[f.op];
    }
  }
}

export function filter(f, record) {
  let doc;
  try {
    doc = record.json();
  } catch (e) {
    if (f.onInvalid === 'reject') return Outcome.reject(e.message);
    return f.onInvalid === 'drop' ? Outcome.drop() : Outcome.keep();
  }
  return matches(f, doc) === f.keepMatching ? Outcome.keep() : Outcome.drop();
}
