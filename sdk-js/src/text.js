// The host's text primitives (contract 0.2.1; `findInJsonBatch` and `partSpansBatch` 0.2.2): regular expressions, the JSON index,
// search, base64, hex and SHA-256, run natively by the host so a JavaScript plugin's loops
// stay short. Batch-wide calls (`Pattern#findInBatch`, `jsonIndexBatch`) look at every
// record of the running call in one host call: no record's bytes cross into JavaScript.
//
//   import * as textHost from 'sluice:transform/text@0.2.2';
//   import { bindText, text } from 'sluice-sdk';
//   bindText(textHost);
//   const EMAIL = new text.Pattern(['[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+']);
//   const hits = EMAIL.findInBatch(text.VALUE); // flat [record, pattern, start, end, ...]
//
// Patterns are in the syntax of Rust's `regex` crate (linear time: no backreferences or
// look-around); positions are byte offsets. Natively (the test harness) the same calls are
// answered in JavaScript: each source as a RegExp (a leading `(?i)` becomes the `i` flag,
// `(?-u:...)` a plain group), the JSON index by a port of the host's.

let host = null;
let batch = null; // natively: the [key, value] pairs of the running call

/** Binds `sluice:transform/text` (in the component's app.js). */
export function bindText(h) {
  host = h;
}

/** Natively: the records of the running call (set by the SDK). */
export function setBatch(parts) {
  batch = parts;
}

export const KEY = 0;
export const VALUE = 1;
export const OBJECT = 0;
export const ARRAY = 1;
export const KEY_TOKEN = 2;
export const STRING = 3;
export const SCALAR = 4;
export const INVALID = 5;
/** Added to a key's or string's kind when it holds escapes. */
export const ESCAPED = 16;
/** In `findInJsonBatch` answers: a member under a matching name is `MEMBER + kind`; a JSON
 * record with escapes is one `ESCAPES`. */
export const MEMBER = 64;
export const ESCAPES = 255;

const partName = (p) => (p === KEY ? 'key' : 'value');
const errText = (e) => (e && e.payload !== undefined ? String(e.payload) : String(e?.message ?? e));
const utf8 = new TextDecoder('utf-8', { fatal: true });
const lossy = new TextDecoder();
const encoder = new TextEncoder();

/** A set of regular expressions compiled once by the host: a match is the leftmost of any
 * of them (the first source wins at the same start) and says which, by index. */
export class Pattern {
  constructor(sources) {
    const list = typeof sources === 'string' ? [sources] : [...sources];
    if (host) {
      try {
        this.p = host.Pattern.compile(list);
      } catch (e) {
        throw new Error(errText(e));
      }
    } else {
      this.p = new NativePattern(list);
    }
  }
  isMatch(haystack) {
    return this.p.isMatch(haystack);
  }
  /** Every match as flat `[index, start, end, ...]` triples. */
  findAll(haystack) {
    return this.p.findAll(haystack);
  }
  /** Every match in `part` of every record of the running call, as flat `[record, index,
   * start, end, ...]` quadruples (a Uint32Array in the component). */
  findInBatch(part = VALUE) {
    if (host) return this.p.findInBatch(partName(part));
    const out = [];
    (batch ?? []).forEach((kv, r) => {
      const h = kv[part];
      if (h === null) return;
      const f = this.p.findAll(h);
      for (let k = 0; k < f.length; k += 3) out.push(r, f[k], f[k + 1], f[k + 2]);
    });
    return out;
  }
  /** `findInBatch` aware of JSON (0.2.2): in a JSON object or array only string values
   * are searched, each on its own, and the members whose name `names` (a Pattern)
   * matches come as `[record, MEMBER + kind, start, end]` (their value's span, not
   * searched); a JSON record with escapes is one `[record, ESCAPES, 0, 0]`; other
   * records are searched whole. */
  findInJsonBatch(part = VALUE, names = null) {
    if (host) return this.p.findInJsonBatch(partName(part), names === null ? undefined : names.p);
    const out = [];
    (batch ?? []).forEach((kv, r) => {
      const h = kv[part];
      if (h !== null) findInJson(this.p, names === null ? null : names.p, h, r, out);
    });
    return out;
  }
  replaceAll(haystack, replacement) {
    return this.p.replaceAll(haystack, replacement);
  }
}

function findInJson(p, names, b, r, out) {
  const tokens = [];
  if (looksLikeJson(b)) index(b, 0, tokens);
  if (tokens.length === 0 || tokens[1] === INVALID) {
    const f = p.findAll(b);
    for (let k = 0; k < f.length; k += 3) out.push(r, f[k], f[k + 1], f[k + 2]);
    return;
  }
  for (let k = 1; k < tokens.length; k += 4) {
    if (tokens[k] >= ESCAPED) {
      out.push(r, ESCAPES, 0, 0);
      return;
    }
  }
  let skipUntil = 0;
  let member = false;
  for (let k = 0; k < tokens.length; k += 4) {
    const kind = tokens[k + 1];
    const s = tokens[k + 2];
    const e = tokens[k + 3];
    if (s < skipUntil) continue;
    const named = member;
    member = false;
    if (kind === KEY_TOKEN) {
      member = names !== null && names.isMatch(b.subarray(s, e));
    } else if (named) {
      out.push(r, MEMBER + kind, s, e);
      if (kind <= ARRAY) skipUntil = e;
    } else if (kind === STRING) {
      const f = p.findAll(b.subarray(s, e));
      for (let j = 0; j < f.length; j += 3) out.push(r, f[j], s + f[j + 1], s + f[j + 2]);
    }
  }
}

/** The JSON index of `part` of every record of the running call that holds a JSON object
 * or array: flat `[record, kind, start, end, ...]` quadruples (see `jsonIndex`). */
export function jsonIndexBatch(part = VALUE) {
  if (host) return host.jsonIndexBatch(partName(part));
  const out = [];
  (batch ?? []).forEach((kv, r) => {
    const d = kv[part];
    if (d !== null && looksLikeJson(d)) index(d, r, out);
  });
  return out;
}

/** The tokens of a JSON object or array as flat `[kind, start, end, ...]` triples; not
 * JSON: one INVALID token where it stops being JSON. */
export function jsonIndex(document) {
  if (host) return host.jsonIndex(document);
  const out = [];
  index(document, 0, out);
  return out.filter((_, k) => k % 4 !== 0);
}

/** Where `part` of each record of the running call lies in its records (flat [start,
 * end, ...]; a null part 2**32 - 1): the host's answer, null natively. */
export function partSpansBatch(part) {
  return host ? host.partSpansBatch(partName(part)) : null;
}

/** Whether `b`'s first byte other than JSON whitespace is `{` or `[`. */
export function looksLikeJson(b) {
  for (const c of b) {
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
    return c === 0x7b || c === 0x5b;
  }
  return false;
}

export function sha256(data) {
  if (host) return host.sha256(data);
  throw new Error('sha256 natively needs node:crypto; use it in tests directly');
}

export function base64Encode(data) {
  return host ? host.base64Encode(data) : Buffer.from(data).toString('base64');
}

export function hexEncode(data) {
  return host ? host.hexEncode(data) : Buffer.from(data).toString('hex');
}

// --- natively: the same answers in JavaScript --------------------------------------------

class NativePattern {
  constructor(sources) {
    if (sources.length < 1 || sources.length > 64) {
      throw new Error(`a pattern set has 1 to 64 patterns, not ${sources.length}`);
    }
    this.res = sources.map((s) => {
      let flags = 'g';
      const m = /^\(\?([a-z]+)\)/.exec(s);
      if (m) {
        if (m[1].includes('i')) flags += 'i';
        s = s.slice(m[0].length);
      }
      return new RegExp(s.replaceAll('(?-u:', '(?:'), flags);
    });
  }
  *matches(h) {
    const text = lossy.decode(h);
    const ascii = text.length === h.length;
    const at = (i) => (ascii ? i : encoder.encode(text.slice(0, i)).length);
    let pos = 0;
    while (pos <= text.length) {
      let best = null;
      this.res.forEach((re, i) => {
        re.lastIndex = pos;
        const m = re.exec(text);
        if (m && (best === null || m.index < best[1])) best = [i, m.index, m.index + m[0].length];
      });
      if (best === null) return;
      yield [best[0], at(best[1]), at(best[2])];
      pos = best[2] > best[1] ? best[2] : best[2] + 1;
    }
  }
  isMatch(h) {
    return !this.matches(h).next().done;
  }
  findAll(h) {
    const out = [];
    for (const m of this.matches(h)) out.push(...m);
    return out;
  }
  replaceAll() {
    throw new Error('replaceAll runs on the host only');
  }
}

class Invalid extends Error {
  constructor(at) {
    super('not JSON');
    this.at = at;
  }
}

const isWs = (c) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const isDigit = (c) => c >= 0x30 && c <= 0x39;
const isHex = (c) => isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);

function skipWs(b, i) {
  while (i < b.length && isWs(b[i])) i++;
  return i;
}

function string(b, j) {
  let escaped = false;
  let run = j;
  for (;;) {
    let k = run;
    while (k < b.length && b[k] !== 0x22 && b[k] !== 0x5c && b[k] >= 0x20) k++;
    try {
      utf8.decode(b.subarray(run, k));
    } catch {
      throw new Invalid(run);
    }
    if (k >= b.length) throw new Invalid(b.length);
    if (b[k] === 0x22) return [k, escaped];
    if (b[k] !== 0x5c) throw new Invalid(k);
    escaped = true;
    const n = b[k + 1];
    if (n !== undefined && '"\\/bfnrt'.includes(String.fromCharCode(n))) run = k + 2;
    else if (n === 0x75 && [2, 3, 4, 5].every((d) => isHex(b[k + d]))) run = k + 6;
    else throw new Invalid(k);
  }
}

function scalar(b, i) {
  for (const lit of ['true', 'false', 'null']) {
    if ([...lit].every((c, d) => b[i + d] === c.charCodeAt(0))) return i + lit.length;
  }
  const digits = (j) => {
    while (isDigit(b[j])) j++;
    return j;
  };
  let j = i + (b[i] === 0x2d ? 1 : 0);
  if (b[j] === 0x30) j++;
  else if (b[j] >= 0x31 && b[j] <= 0x39) j = digits(j + 1);
  else throw new Invalid(j);
  if (b[j] === 0x2e) {
    const k = digits(j + 1);
    if (k === j + 1) throw new Invalid(k);
    j = k;
  }
  if (b[j] === 0x65 || b[j] === 0x45) {
    j++;
    if (b[j] === 0x2b || b[j] === 0x2d) j++;
    const k = digits(j);
    if (k === j) throw new Invalid(k);
    j = k;
  }
  return j;
}

function index(b, record, out) {
  const mark = out.length;
  try {
    indexJson(b, record, out);
  } catch (e) {
    if (!(e instanceof Invalid)) throw e;
    out.length = mark;
    out.push(record, INVALID, e.at, e.at);
  }
}

function indexJson(b, record, out) {
  const open = []; // [where its quadruple is, is it an object]
  let next = 'value';
  let i = skipWs(b, 0);
  for (;;) {
    if (i >= b.length) throw new Invalid(i);
    const c = b[i];
    if ((next === 'comma' || next === 'valueOrClose' || next === 'keyOrClose') && (c === 0x7d || c === 0x5d)) {
      const top = open.pop();
      if (top === undefined) throw new Invalid(i);
      const [at, obj] = top;
      if ((c === 0x7d) !== obj || (next === 'valueOrClose' && obj)) throw new Invalid(i);
      i++;
      out[at + 3] = i;
      if (open.length === 0) {
        if (skipWs(b, i) !== b.length) throw new Invalid(i);
        return;
      }
      i = skipWs(b, i);
      next = 'comma';
    } else if (next === 'comma') {
      if (c !== 0x2c) throw new Invalid(i);
      i = skipWs(b, i + 1);
      next = open[open.length - 1][1] ? 'key' : 'value';
    } else if (next === 'key' || next === 'keyOrClose') {
      if (c !== 0x22) throw new Invalid(i);
      const [end, esc] = string(b, i + 1);
      out.push(record, KEY_TOKEN + (esc ? ESCAPED : 0), i + 1, end);
      i = skipWs(b, end + 1);
      if (b[i] !== 0x3a) throw new Invalid(i);
      i = skipWs(b, i + 1);
      next = 'value';
    } else {
      if (c === 0x7b || c === 0x5b) {
        if (open.length === 128) throw new Invalid(i);
        const obj = c === 0x7b;
        open.push([out.length, obj]);
        out.push(record, obj ? OBJECT : ARRAY, i, 0);
        i = skipWs(b, i + 1);
        next = obj ? 'keyOrClose' : 'valueOrClose';
        continue;
      }
      if (c === 0x22) {
        const [end, esc] = string(b, i + 1);
        out.push(record, STRING + (esc ? ESCAPED : 0), i + 1, end);
        i = end + 1;
      } else {
        const end = scalar(b, i);
        out.push(record, SCALAR, i, end);
        i = end;
      }
      if (open.length === 0) throw new Invalid(i);
      i = skipWs(b, i);
      next = 'comma';
    }
  }
}
