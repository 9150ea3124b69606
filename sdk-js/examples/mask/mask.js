// Masks secrets in plain-text and JSON values — the Rust `mask` example in JavaScript,
// passing the same plugins/mask/cases.json. Config and detectors as in Rust (`pairs`,
// `json`, `email`, `card`; `mask_char`, `mask_length`, `fields`). The text detectors are
// one regular expression, one pass (pairs, then email, then card where several match);
// word classes are ASCII (JavaScript's `\w` and `\b`). JSON is walked token by token over
// its text, so what is not masked is copied as it was.

import { Outcome, SluiceError, config } from 'sluice-sdk';

const DEFAULT_FIELDS =
  'password,passwd,pwd,secret,token,api_key,apikey,access_key,private_key,authorization,credential';
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
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
  return {
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
    if (!luhn(found)) return found;
    const total = [...found].filter((c) => c >= '0' && c <= '9').length;
    let seen = 0;
    return [...found]
      .map((c) => {
        if (c >= '0' && c <= '9' && ++seen <= total - 4) return m.maskChar;
        return c;
      })
      .join('');
  });
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

export function mask(m, record) {
  const text = record.valueStr();
  if (text === null) return Outcome.keep();
  let masked = null;
  if (/^[ \t\r\n]*[{[]/.test(text)) masked = maskJson(m, text);
  if (masked === null) masked = maskText(m, text);
  return masked === text ? Outcome.keep() : Outcome.keepWithValue(masked);
}
