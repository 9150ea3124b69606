// Masks secrets in plain-text and JSON values — the Rust `mask` example in JavaScript,
// passing the same plugins/mask/cases.json. Config and detectors as in Rust (`pairs`,
// `json`, `email`, `card`; `mask_char`, `mask_length`, `fields`).
//
// `maskBatch` (what the component runs) works on one host pass per batch (`text`): it
// finds, in every record, the members under secret names and the text detectors' matches
// inside JSON strings (or in the whole value when it is not JSON); what stays here is the
// policy — which part of a match to mask, the Luhn check — and a masked record leaves as a
// splice (only the masks cross back; a record with nothing to mask passes untouched). JSON
// with escapes takes the slower walk of `mask` (one regular expression in JavaScript, JSON
// walked token by token over its text).

import { Outcome, SluiceError, config, text } from 'sluice-sdk';

const DEFAULT_FIELDS =
  'password,passwd,pwd,secret,token,api_key,apikey,access_key,private_key,authorization,credential';
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
const escapeRust = (s) => s.replace(/[\\.+*?()|[\]{}^$#&\-~]/g, '\\$&');
const encoder = new TextEncoder();
const utf8 = new TextDecoder('utf-8', { fatal: true });
const normalize = (name) => name.replace(/[_\- ]/g, '').toLowerCase();

export function luhn(s) {
  const digits = [...s].filter((c) => c >= '0' && c <= '9').map(Number);
  if (digits.length < 13 || digits.length > 19) return false;
  let sum = 0;
  digits.reverse().forEach((d, i) => {
    if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  });
  return sum % 10 === 0;
}

export function setup() {
  const maskChar = config('mask_char') ?? '*';
  if ([...maskChar].length !== 1) throw new SluiceError(`mask_char must be one character, not ${JSON.stringify(maskChar)}`);
  const ml = config('mask_length');
  let maskLength = 8;
  if (ml === 'preserve') maskLength = null;
  else if (ml !== null) {
    maskLength = Number(ml);
    if (!/^\d+$/.test(ml) || maskLength < 1 || maskLength > 64) {
      throw new SluiceError(`mask_length must be 1..=64 or "preserve", not ${JSON.stringify(ml)}`);
    }
  }
  const raw = (config('fields') ?? DEFAULT_FIELDS).split(',').map((s) => s.trim()).filter(Boolean);
  const detectors = (config('detectors') ?? 'pairs,json,email,card').split(',').map((s) => s.trim());
  for (const d of detectors) {
    if (!['pairs', 'json', 'email', 'card'].includes(d)) {
      throw new SluiceError(`unknown detector ${JSON.stringify(d)} (pairs, json, email, card)`);
    }
  }
  const alts = [];
  if (detectors.includes('pairs') && raw.length) {
    const names = raw.map((n) => n.split(/[_\- ]/).map(escape).join('[_\\- ]?')).join('|');
    alts.push(`(?<pairs>\\b(?:${names})\\w*\\s*[:=]\\s*"?)(?<pv>[^\\s,;&"']+)`);
  }
  if (detectors.includes('email')) alts.push('(?<local>\\b[A-Za-z0-9._%+-]+)@(?:[A-Za-z0-9-]+\\.)+[A-Za-z]{2,}\\b');
  if (detectors.includes('card')) alts.push('(?<card>\\b[0-9](?:[ -]?[0-9]){12,18}\\b)');
  // The same detectors for the host, in the syntax of Rust's `regex` (as the Rust plugin).
  const sources = [];
  const kinds = [];
  if (detectors.includes('pairs') && raw.length) {
    const names = raw.map((n) => n.split(/[_\- ]/).map(escapeRust).join('[_\\- ]?')).join('|');
    sources.push(`(?i)(?:^|[^\\w])(?:${names})\\w*\\s*[:=]\\s*"?[^\\s,;&"']+`);
    kinds.push('pairs');
  }
  if (detectors.includes('email')) {
    sources.push('(?-u:\\b)[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\\.)+[A-Za-z]{2,}(?-u:\\b)');
    kinds.push('email');
  }
  if (detectors.includes('card')) {
    sources.push('(?-u:\\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\\b)');
    kinds.push('card');
  }
  const fixed = maskLength === null ? null : encoder.encode(maskChar.repeat(maskLength));
  const hostPattern = sources.length ? new text.Pattern(sources) : null;
  const normalized = raw.map(normalize);
  return {
    host: hostPattern,
    // The batch pass needs a pattern even with no text detector: one that never matches.
    scan: hostPattern ?? new text.Pattern(['\\b\\B']),
    // Secret field names as the host matches them: a name's letters with `_`, `-` or spaces
    // between them, any case (what `normalize` then `includes` means).
    namesRe:
      detectors.includes('json') && normalized.length
        ? new text.Pattern([`(?i)${normalized.map((nm) => [...nm].map(escapeRust).join('[_\\- ]*')).join('|')}`])
        : null,
    kinds,
    fixed,
    quoted: maskLength === null ? null : encoder.encode(`"${maskChar.repeat(maskLength)}"`),
    maskChar,
    maskLength,
    names: raw.map(normalize),
    json: detectors.includes('json'),
    // Case-insensitive for the names; the other classes hold both cases already.
    text: alts.length ? new RegExp(alts.join('|'), 'gi') : null,
    seen: new Map(),
  };
}

const maskOf = (m, n) => m.maskChar.repeat(m.maskLength ?? n);

function secretName(m, name) {
  let s = m.seen.get(name);
  if (s === undefined) {
    const n = normalize(name);
    s = m.names.some((x) => n.includes(x));
    m.seen.set(name, s);
  }
  return s;
}

function maskText(m, text) {
  if (m.text === null) return text;
  return text.replace(m.text, (...args) => {
    const g = args[args.length - 1];
    const found = args[0];
    if (g.pairs !== undefined) return g.pairs + maskOf(m, [...g.pv].length);
    if (g.local !== undefined) return maskOf(m, g.local.length) + found.slice(g.local.length);
    return luhn(found) ? maskedCard(found, m.maskChar) : found;
  });
}

/** A card number with all but its last four digits masked (separators kept). */
function maskedCard(card, maskChar) {
  const total = [...card].filter((c) => c >= '0' && c <= '9').length;
  let seen = 0;
  return [...card].map((c) => (c >= '0' && c <= '9' && ++seen <= total - 4 ? maskChar : c)).join('');
}

const STRING = /"(?:[^"\\]|\\.)*"/y;
const SCALAR = /-?[0-9][0-9.eE+-]*|true|false|null/y;

function tokenAt(re, text, i) {
  re.lastIndex = i;
  return re.exec(text)[0];
}

function containerEnd(text, i) {
  let depth = 0;
  for (;;) {
    const c = text[i];
    if (c === '"') {
      i += tokenAt(STRING, text, i).length;
      continue;
    }
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
}

function maskJson(m, text) {
  try {
    JSON.parse(text);
  } catch {
    return null;
  }
  const out = [];
  const stack = [];
  let expectKey = false;
  let secretNext = false;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (' \t\r\n,:'.includes(c)) {
      if (c === ',' && stack.at(-1)) expectKey = true;
      out.push(c);
      i++;
    } else if (c === '{' || c === '[') {
      if (secretNext) {
        const end = containerEnd(text, i);
        out.push(`"${maskOf(m, end - i)}"`);
        i = end;
        secretNext = false;
        continue;
      }
      stack.push(c === '{');
      expectKey = c === '{';
      out.push(c);
      i++;
    } else if (c === '}' || c === ']') {
      stack.pop();
      expectKey = false;
      out.push(c);
      i++;
    } else if (c === '"') {
      const raw = tokenAt(STRING, text, i);
      i += raw.length;
      if (expectKey) {
        expectKey = false;
        secretNext = m.json && secretName(m, JSON.parse(raw));
        out.push(raw);
      } else if (secretNext) {
        out.push(`"${maskOf(m, [...JSON.parse(raw)].length)}"`);
        secretNext = false;
      } else {
        const value = JSON.parse(raw);
        const masked = maskText(m, value);
        out.push(masked === value ? raw : JSON.stringify(masked));
      }
    } else {
      const raw = tokenAt(SCALAR, text, i);
      i += raw.length;
      out.push(secretNext && raw !== 'null' ? `"${maskOf(m, raw.length)}"` : raw);
      secretNext = false;
    }
  }
  return out.join('');
}

/** The masked text, or null when nothing changed. */
function maskValue(m, value) {
  let masked = null;
  if (/^[ \t\r\n]*[{[]/.test(value)) masked = maskJson(m, value);
  if (masked === null) masked = maskText(m, value);
  return masked === value ? null : masked;
}

export function mask(m, record) {
  const value = record.valueStr();
  if (value === null) return Outcome.keep();
  const masked = maskValue(m, value);
  return masked === null ? Outcome.keep() : Outcome.keepWithValue(masked);
}

// --- the batch path ----------------------------------------------------------------------

const maskBytes = (m, n) => m.fixed ?? encoder.encode(m.maskChar.repeat(n));
/** Pushes the span that masks what the text detector `kind` found at `b[start..end]`. */
function textSpan(m, b, kind, start, end, spans) {
  const found = b.subarray(start, end);
  if (kind === 'email') {
    const at = found.indexOf(0x40);
    spans.push([start, start + at, maskBytes(m, at)]);
  } else if (kind === 'pairs') {
    // The separator, then spaces and an optional quote before the value (bytes: the
    // value is UTF-8 already, and `\s` before it ASCII unless it is not).
    let j = 1;
    while (j < found.length && found[j] !== 0x3a && found[j] !== 0x3d) j++;
    if (j >= found.length) return;
    j++;
    while (j < found.length && (found[j] === 0x20 || (found[j] >= 0x09 && found[j] <= 0x0d))) j++;
    if (j < found.length && found[j] >= 0x80) {
      // Other (Unicode) spaces: decode.
      const value = utf8.decode(found.slice(j)).trimStart();
      const v = value.startsWith('"') ? value.slice(1) : value;
      const n = encoder.encode(v).length;
      spans.push([end - n, end, maskBytes(m, [...v].length)]);
      return;
    }
    if (found[j] === 0x22) j++;
    let chars = 0;
    for (let x = j; x < found.length; x++) if ((found[x] & 0xc0) !== 0x80) chars++;
    spans.push([start + j, end, maskBytes(m, chars)]);
  } else {
    const card = String.fromCharCode(...found);
    if (luhn(card)) spans.push([start, end, encoder.encode(maskedCard(card, m.maskChar))]);
  }
}

/** Whether `b` is UTF-8: ASCII byte by byte, a decoder only past it. */
function isUtf8(b) {
  let i = 0;
  while (i < b.length && b[i] < 0x80) i++;
  if (i === b.length) return true;
  try {
    utf8.decode(b.subarray(i));
    return true;
  } catch {
    return false;
  }
}

/** One batch: one host pass finds, in every record, the members under secret names and the
 * text detectors' matches inside JSON strings (or in the whole value when it is not JSON);
 * JavaScript then only decides what each of those becomes. */
export function maskBatch(m, batch) {
  const q = m.scan.findInJsonBatch(text.VALUE, m.namesRe);
  const n = q.length;
  let k = 0;
  while (k < n) {
    const r = q[k];
    const b = batch.value(r);
    let spans = [];
    let checked = false;
    while (k < n && q[k] === r) {
      const code = q[k + 1];
      const s = q[k + 2];
      const e = q[k + 3];
      k += 4;
      if (code < text.MEMBER) {
        if (!checked) {
          if (!isUtf8(b)) {
            spans = null; // text that is not UTF-8 is left alone
            break;
          }
          checked = true;
        }
        textSpan(m, b, m.kinds[code], s, e, spans);
      } else if (code === text.ESCAPES) {
        const masked = maskValue(m, utf8.decode(b));
        if (masked !== null) spans.push([0, b.length, encoder.encode(masked)]);
      } else if (code === text.MEMBER + text.STRING) {
        spans.push([s, e, m.fixed ?? maskBytes(m, [...utf8.decode(b.subarray(s, e))].length)]);
      } else if (code !== text.MEMBER + text.SCALAR || !(e - s === 4 && b[s] === 0x6e)) {
        spans.push([s, e, m.quoted ?? encoder.encode(`"${m.maskChar.repeat(e - s)}"`)]);
      }
    }
    while (k < n && q[k] === r) k += 4; // the rest of a record left alone
    if (spans && spans.length) batch.splice(r, spans);
  }
}
