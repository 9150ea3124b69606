//! Masks secrets in plain-text and JSON values.
//!
//! Detectors (config `detectors`, comma-separated; default all):
//! - `pairs`: `Password: hunter2`, `token=abc`-style pairs in text, for the secret names below;
//! - `json`: JSON fields whose name contains a secret name (`user_password`, `apiKey`, ...),
//!   whatever their value; other JSON strings get the text detectors;
//! - `email`: the local part of e-mail addresses (`********@example.com`);
//! - `card`: card numbers of 13–19 digits that pass the Luhn check (all but the last 4 digits).
//!
//! Config: `mask_char` (default `*`), `mask_length` (default 8; `preserve` keeps the length),
//! `fields` (secret names, comma-separated; default password, passwd, pwd, secret, token,
//! api_key, apikey, access_key, private_key, authorization, credential).
//!
//! The text detectors are regular expressions run by the host ([`sluice_sdk::text`]): one
//! pattern set, one pass over the text, matched for every record of a batch in one host
//! call; at a place where several match, the first in the order above wins, and masks are
//! not scanned again. What stays here is the policy: which part of a match to mask, the
//! Luhn check, and JSON's structure (a one-pass scan that copies what it does not mask).

use serde_json::Value;
use sluice_sdk::text::{self, JsonKind, JsonToken, Match, Part, Pattern};
use sluice_sdk::{Error, Outcome, Record};

/// Entries in the field-name cache.
const NAME_SLOTS: usize = 256;

/// A field name as its length and first and last eight bytes (zero-padded): equal words
/// mean equal names up to 16 bytes, so most compares need no byte loop.
#[derive(Clone, Copy, PartialEq, Eq)]
struct NameWords {
    len: usize,
    first: u64,
    last: u64,
}

impl NameWords {
    fn of(name: &[u8]) -> NameWords {
        let n = name.len();
        NameWords {
            len: n,
            first: lanes::covering(&name[..n.min(8)]),
            last: if n > 8 {
                lanes::covering(&name[n - 8..])
            } else {
                0
            },
        }
    }

    fn slot(&self) -> usize {
        let h = (self.first ^ self.last.rotate_left(29) ^ self.len as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 56) as usize % NAME_SLOTS
    }
}

#[derive(Clone)]
struct SeenName {
    words: NameWords,
    /// The whole name when the words do not cover it.
    long: Option<Box<[u8]>>,
    secret: bool,
}

const DEFAULT_FIELDS: &str = "password,passwd,pwd,secret,token,api_key,apikey,access_key,private_key,authorization,credential";

/// A text detector: what a pattern of the set finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Detector {
    Pairs,
    Email,
    Card,
}

/// The patterns of the text detectors, as the `regex` crate reads them.
const EMAIL: &str = r"(?-u:\b)[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?-u:\b)";
const CARD: &str = r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)";

/// The `pairs` pattern for secret names: a name's parts may be joined by `_`, `-`, a
/// space or nothing (`api_key` also matches `api-key`, `apikey` and `API Key`). A name
/// starts at a word boundary — written as "the start or a non-word character", which the
/// match then includes, because a Unicode `\b` keeps the regex off its DFAs for
/// non-ASCII input (150× slower there).
fn pairs_pattern(names: &[&str]) -> String {
    let alts: Vec<String> = names
        .iter()
        .map(|n| {
            n.split(['_', '-', ' '])
                .map(escape)
                .collect::<Vec<_>>()
                .join(r"[_\- ]?")
        })
        .collect();
    format!(
        r#"(?i)(?:^|[^\w])(?:{})\w*\s*[:=]\s*"?[^\s,;&"']+"#,
        alts.join("|")
    )
}

/// `s` with the regex syntax characters escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub struct Masker {
    /// Field name → is it a secret, for names seen before (they repeat from record to
    /// record): a direct-mapped cache indexed by a hash of the name.
    seen_names: std::cell::RefCell<Vec<Option<SeenName>>>,
    mask_char: char,
    mask_length: Option<usize>,
    names: Vec<String>,
    json: bool,
    /// The enabled text detectors as one pattern set (none when only `json` is on), and
    /// what each of its patterns finds.
    text: Option<Pattern>,
    kinds: Vec<Detector>,
    /// The matches and JSON tokens of the record at hand (reused).
    scratch: std::cell::RefCell<(Vec<Match>, Vec<JsonToken>)>,
}

/// Lower-case with `_`, `-` and spaces removed: `API-Key` and `api_key` both become `apikey`.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

impl Masker {
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Masker, Error> {
        let mask_char = match get("mask_char") {
            None => '*',
            Some(s) => {
                let mut it = s.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => c,
                    _ => {
                        return Err(Error::new(format!(
                            "mask_char must be one character, not {s:?}"
                        )));
                    }
                }
            }
        };
        let mask_length = match get("mask_length").as_deref() {
            None => Some(8),
            Some("preserve") => None,
            Some(n) => Some(
                n.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=64).contains(n))
                    .ok_or_else(|| {
                        Error::new(format!(
                            "mask_length must be 1..=64 or \"preserve\", not {n:?}"
                        ))
                    })?,
            ),
        };
        let fields = get("fields").unwrap_or_else(|| DEFAULT_FIELDS.into());
        let raw_names: Vec<&str> = fields
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = raw_names.iter().find(|n| {
            n.contains([':', '='])
                || !n
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        }) {
            return Err(Error::new(format!(
                "field name {bad:?} must start with a letter, digit or '_' and hold no ':' or '='"
            )));
        }
        let names: Vec<String> = raw_names.iter().map(|n| normalize(n)).collect();
        let detectors = get("detectors").unwrap_or_else(|| "pairs,json,email,card".into());
        let on = |d: &str| detectors.split(',').any(|x| x.trim() == d);
        for d in detectors.split(',').map(str::trim) {
            if !matches!(d, "pairs" | "json" | "email" | "card") {
                return Err(Error::new(format!(
                    "unknown detector {d:?} (pairs, json, email, card)"
                )));
            }
        }
        let pairs = pairs_pattern(&raw_names);
        let mut sources = Vec::new();
        let mut kinds = Vec::new();
        for (kind, enabled, source) in [
            (
                Detector::Pairs,
                on("pairs") && !raw_names.is_empty(),
                pairs.as_str(),
            ),
            (Detector::Email, on("email"), EMAIL),
            (Detector::Card, on("card"), CARD),
        ] {
            if enabled {
                sources.push(source);
                kinds.push(kind);
            }
        }
        let bad = |e: Error| Error::new(format!("bad fields list: {e}"));
        let text = if sources.is_empty() {
            None
        } else {
            Some(Pattern::set(&sources).map_err(bad)?)
        };

        Ok(Masker {
            seen_names: std::cell::RefCell::new(vec![None; NAME_SLOTS]),
            mask_char,
            mask_length,
            names,
            json: on("json"),
            text,
            kinds,
            scratch: std::cell::RefCell::default(),
        })
    }

    /// Appends the mask for a secret of `chars` characters.
    fn push_mask(&self, out: &mut Vec<u8>, chars: usize) {
        let n = self.mask_length.unwrap_or(chars);
        if self.mask_char.is_ascii() {
            // Whole words, then bytes: no `memset` (a call out of the sandbox in wasm).
            let word = (lanes::LO * u64::from(self.mask_char as u8)).to_le_bytes();
            out.reserve(n);
            for _ in 0..n / 8 {
                out.extend_from_slice(&word);
            }
            for _ in 0..n % 8 {
                out.push(word[0]);
            }
        } else {
            let mut buf = [0u8; 4];
            let c = self.mask_char.encode_utf8(&mut buf).as_bytes();
            for _ in 0..n {
                out.extend_from_slice(c);
            }
        }
    }

    /// The mask for a secret of `chars` characters, as a string.
    fn mask(&self, chars: usize) -> String {
        let mut out = Vec::new();
        self.push_mask(&mut out, chars);
        // `push_mask` writes whole UTF-8 characters.
        String::from_utf8(out).unwrap_or_default()
    }

    fn is_secret_name(&self, name: &[u8]) -> bool {
        let words = NameWords::of(name);
        let slot = words.slot();
        if let Some(seen) = &self.seen_names.borrow()[slot]
            && seen.words == words
            && seen.long.as_deref().is_none_or(|l| l == name)
        {
            return seen.secret;
        }
        let n = normalize(&String::from_utf8_lossy(name));
        let secret = self.names.iter().any(|s| n.contains(s.as_str()));
        self.seen_names.borrow_mut()[slot] = Some(SeenName {
            words,
            long: (name.len() > 16).then(|| name.into()),
            secret,
        });
        secret
    }

    /// The text detectors' matches in `text` (a host call in wasm).
    fn find(&self, text: &[u8]) -> Vec<Match> {
        self.text
            .as_ref()
            .map_or_else(Vec::new, |p| p.find_all(text))
    }

    /// Appends `text` with the secrets its `matches` found masked (positions less `shift`
    /// index `text`); says whether anything was masked (when not, `out` is unchanged).
    fn apply(&self, text: &[u8], matches: &[Match], shift: usize, out: &mut Vec<u8>) -> bool {
        let mark = out.len();
        let mut last = 0;
        for m in matches {
            let (start, end) = (m.start - shift, m.end - shift);
            let Some(found) = text.get(start..end) else {
                continue;
            };
            match self.kinds.get(m.pattern as usize) {
                Some(Detector::Pairs) => {
                    // The character before the name (unless at the start), the name,
                    // spaces, the separator (names hold none), spaces, an optional quote,
                    // then the value: mask the value.
                    let Some(sep) = found
                        .iter()
                        .skip(1)
                        .position(|&c| c == b':' || c == b'=')
                        .map(|p| p + 1)
                    else {
                        continue;
                    };
                    let Ok(rest) = std::str::from_utf8(&found[sep + 1..]) else {
                        continue;
                    };
                    let value = rest.trim_start();
                    let value = value.strip_prefix('"').unwrap_or(value);
                    let from = end - value.len();
                    out.extend_from_slice(&text[last..from]);
                    self.push_mask(out, value.chars().count());
                }
                Some(Detector::Email) => {
                    // Local parts are ASCII: bytes are characters.
                    let Some(at) = found.iter().position(|&c| c == b'@') else {
                        continue;
                    };
                    out.extend_from_slice(&text[last..start]);
                    self.push_mask(out, at);
                    out.extend_from_slice(&found[at..]);
                }
                Some(Detector::Card) => {
                    if !std::str::from_utf8(found).is_ok_and(luhn) {
                        continue;
                    }
                    out.extend_from_slice(&text[last..start]);
                    let total = found.iter().filter(|c| c.is_ascii_digit()).count();
                    let mut buf = [0u8; 4];
                    let mask = self.mask_char.encode_utf8(&mut buf).as_bytes();
                    let mut seen = 0;
                    for &c in found {
                        if c.is_ascii_digit() {
                            seen += 1;
                            if seen <= total - 4 {
                                out.extend_from_slice(mask);
                                continue;
                            }
                        }
                        out.push(c);
                    }
                }
                None => continue,
            }
            last = end;
        }
        if out.len() == mark {
            return false;
        }
        out.extend_from_slice(&text[last..]);
        true
    }

    /// Masks secrets in text; `None` when nothing changed.
    pub fn mask_text(&self, text: &str) -> Option<String> {
        let mut out = Vec::new();
        self.apply(text.as_bytes(), &self.find(text.as_bytes()), 0, &mut out)
            .then(|| String::from_utf8(out).ok())
            .flatten()
    }

    /// Masks a JSON value in place; returns whether anything changed.
    pub fn mask_json(&self, v: &mut Value) -> bool {
        match v {
            Value::Object(o) => {
                let mut changed = false;
                for (k, v) in o.iter_mut() {
                    if self.json && self.is_secret_name(k.as_bytes()) && !v.is_null() {
                        let len = match &*v {
                            Value::String(s) => s.chars().count(),
                            other => other.to_string().len(),
                        };
                        *v = Value::String(self.mask(len));
                        changed = true;
                    } else {
                        changed |= self.mask_json(v);
                    }
                }
                changed
            }
            Value::Array(a) => a.iter_mut().fold(false, |c, v| self.mask_json(v) | c),
            Value::String(s) => match self.mask_text(s) {
                Some(m) => {
                    *s = m;
                    true
                }
                None => false,
            },
            _ => false,
        }
    }

    /// Masks a record value: JSON objects and arrays field by field, anything else as text.
    pub fn mask_value(&self, value: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let matches = self.find(value);
        let tokens = if text::looks_like_json(value) {
            text::json_index(value)
        } else {
            Vec::new()
        };
        self.mask_value_into(value, &tokens, &matches, &mut out)
            .then_some(out)
    }

    /// Appends the masked value to `out` and says whether anything was masked (when not,
    /// what it appended means nothing). `tokens` is the value's JSON index (empty when it
    /// does not start like a JSON object or array) and `matches` the text detectors'
    /// matches in the whole value.
    pub fn mask_value_into(
        &self,
        value: &[u8],
        tokens: &[JsonToken],
        matches: &[Match],
        out: &mut Vec<u8>,
    ) -> bool {
        let mut json = false;
        if !tokens.is_empty() {
            let start = out.len();
            out.reserve(value.len() + 32);
            match self.mask_json_tokens(value, tokens, matches, out) {
                Ok(changed) => return changed,
                Err(why) => {
                    out.truncate(start);
                    json = why == Fallback::Unsupported;
                }
            }
        }
        if matches.is_empty() && !json {
            return false;
        }
        if !is_utf8(value) {
            return false;
        }
        // Escapes: serde_json decodes. (Invalid JSON is text.)
        if json && let Ok(mut v) = serde_json::from_slice::<Value>(value) {
            if !self.mask_json(&mut v) {
                return false;
            }
            out.extend_from_slice(v.to_string().as_bytes());
            return true;
        }
        self.apply(value, matches, 0, out)
    }

    /// Masks JSON by walking its structural index (from the host in wasm): nothing is
    /// parsed here, and everything not masked is copied as it was (field order, spacing,
    /// numbers). `matches` are the text detectors' matches in `b`: those inside a string
    /// value are masked there. Writes the masked text to `out` and says whether anything
    /// changed; hands over (`Fallback`) for invalid JSON and for keys or strings with
    /// escapes (their content is not their text).
    fn mask_json_tokens(
        &self,
        b: &[u8],
        tokens: &[JsonToken],
        matches: &[Match],
        out: &mut Vec<u8>,
    ) -> Result<bool, Fallback> {
        if tokens.iter().any(|t| t.kind == JsonKind::Invalid) {
            return Err(Fallback::Invalid);
        }
        if tokens.iter().any(|t| t.escaped) {
            return Err(Fallback::Unsupported);
        }
        let mut last = 0; // `b[..last]` is in `out` or replaced
        let mut changed = false;
        let mut skip_until = 0; // the end of a container masked whole
        let mut secret_next = false; // the next value is under a secret name
        let mut pending = matches; // matches not yet behind the walk
        for t in tokens {
            if t.start < skip_until {
                continue;
            }
            let secret = std::mem::take(&mut secret_next);
            match t.kind {
                JsonKind::Key => {
                    secret_next = self.json && self.is_secret_name(&b[t.start..t.end]);
                }
                JsonKind::Object | JsonKind::Array => {
                    if secret {
                        let n = t.end - t.start;
                        self.replace_quoted(b, &mut last, t.start, t.end, n, out);
                        (skip_until, changed) = (t.end, true);
                    }
                }
                JsonKind::Scalar => {
                    if secret && &b[t.start..t.end] != b"null" {
                        let n = t.end - t.start;
                        self.replace_quoted(b, &mut last, t.start, t.end, n, out);
                        changed = true;
                    }
                }
                JsonKind::String if secret => {
                    let content = &b[t.start..t.end];
                    let n = content.iter().filter(|&&c| !is_continuation(c)).count();
                    out.extend_from_slice(&b[last..t.start]);
                    self.push_mask(out, n);
                    (last, changed) = (t.end, true);
                }
                JsonKind::String => {
                    // The matches that start in this string; one from before that reaches
                    // into it makes the string's own suspect.
                    let mut stale = false;
                    while let Some(m) = pending.first()
                        && m.start < t.start
                    {
                        stale |= m.end > t.start;
                        pending = &pending[1..];
                    }
                    let inside = pending.partition_point(|m| m.start < t.end);
                    let (here, rest) = pending.split_at(inside);
                    pending = rest;
                    if !here.is_empty() || stale {
                        let span = (t.start, t.end);
                        changed |= self.mask_json_string(b, &mut last, span, here, stale, out);
                    }
                }
                JsonKind::Invalid => return Err(Fallback::Invalid),
            }
        }
        Ok(changed && finish(out, b, last))
    }

    /// Copies `b[*last..from]` to `out`, then a quoted mask for `len` bytes in place of
    /// `b[from..to]`.
    fn replace_quoted(
        &self,
        b: &[u8],
        last: &mut usize,
        from: usize,
        to: usize,
        len: usize,
        out: &mut Vec<u8>,
    ) {
        out.extend_from_slice(&b[*last..from]);
        out.push(b'"');
        self.push_mask(out, len);
        out.push(b'"');
        *last = to;
    }

    /// Masks the JSON string `b[from..to]` (no escapes) with the matches that start in
    /// it; on a change, copies what precedes it and writes its masked content to `out`.
    /// A match found in the whole value that runs past the string's end (only `pairs`
    /// can: its value may follow a quote) is not one of the string's own: the string is
    /// matched again on its own then.
    fn mask_json_string(
        &self,
        b: &[u8],
        last: &mut usize,
        (from, to): (usize, usize),
        here: &[Match],
        stale: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let content = &b[from..to];
        let own;
        let (matches, shift) = if stale || here.iter().any(|m| m.end > to) {
            own = self.find(content);
            (own.as_slice(), 0)
        } else {
            (here, from)
        };
        let mark = out.len();
        out.extend_from_slice(&b[*last..from]);
        if self.apply(content, matches, shift, out) {
            *last = to;
            return true;
        }
        out.truncate(mark);
        false
    }
}

/// Why the one-pass JSON scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fallback {
    /// Not JSON (serde_json refuses it too): the value is text.
    Invalid,
    /// JSON the scan does not do itself (escapes, exponents, long numbers, deep nesting):
    /// serde_json decides.
    Unsupported,
}

/// Bytes of a word as lanes: the high bit of each byte marks a lane. All tests are exact
/// per byte (no carries between lanes), so masks can be cut at any byte.
mod lanes {
    pub const LO: u64 = 0x0101_0101_0101_0101;
    pub const HI: u64 = 0x8080_8080_8080_8080;

    /// The eight bytes at `b[i..]` as a word, if there are eight.
    #[inline(always)]
    pub fn load(b: &[u8], i: usize) -> Option<u64> {
        let chunk: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(chunk))
    }

    /// A word made of every byte of `b` (at most 8 bytes long): together with the length,
    /// equal words mean equal bytes. Overlapping fixed-size loads, not a copy of `len`
    /// bytes, which in WebAssembly is a call out of the sandbox.
    #[inline]
    pub fn covering(b: &[u8]) -> u64 {
        let n = b.len();
        let w16 = |i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
        let w32 = |i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
        match n {
            0 => 0,
            1 => u64::from(b[0]),
            2..4 => w16(0) | w16(n - 2) << 16,
            4..8 => w32(0) | w32(n - 4) << 32,
            _ => load(b, 0).unwrap_or(0),
        }
    }
}

/// Appends the rest of `b` after `last`; true, for chaining.
fn finish(out: &mut Vec<u8>, b: &[u8], last: usize) -> bool {
    out.extend_from_slice(&b[last..]);
    true
}

/// Whether `b` is UTF-8: ASCII eight bytes at a time (in wasm the standard check steps
/// four), the rest by the standard check.
fn is_utf8(b: &[u8]) -> bool {
    let mut i = 0;
    while let Some(x) = lanes::load(b, i) {
        if x & lanes::HI != 0 {
            return std::str::from_utf8(&b[i..]).is_ok();
        }
        i += 8;
    }
    std::str::from_utf8(&b[i..]).is_ok()
}

fn is_continuation(c: u8) -> bool {
    c & 0xC0 == 0x80
}

/// Whether the digits of `s` are 13 to 19 and pass the Luhn check.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

pub fn setup() -> Result<Masker, Error> {
    let m = Masker::from_config(sluice_sdk::config)?;
    // Build the patterns' lazy caches now, under init's budget, not on the first record's.
    let _ = m.mask_value(br#"{"password":"x","note":"Password: y, a@b.io 4111 1111 1111 1111"}"#);
    Ok(m)
}

pub fn mask(m: &Masker, record: &Record) -> Result<Outcome, Error> {
    let Some(value) = record.value() else {
        return Ok(Outcome::keep());
    };
    let mut scratch = m.scratch.borrow_mut();
    let (matches, tokens) = &mut *scratch;
    // In wasm, each of these reads what one host call found for the whole batch.
    match &m.text {
        Some(p) => p.find_in_into(record, Part::Value, matches),
        None => matches.clear(),
    }
    text::json_index_in(record, Part::Value, tokens);
    if matches.is_empty() && tokens.is_empty() {
        return Ok(Outcome::keep());
    }
    // The masked value goes straight into the SDK's per-batch buffer.
    Ok(Outcome::keep_rewritten(|out| {
        m.mask_value_into(value, tokens, matches, out)
    }))
}

sluice_sdk::export_transform!(mask, init = setup);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn case_table() {
        Harness::with_init(setup, mask).run_suites(include_str!("../cases.json"));
    }

    /// Generated strings from `tokens`, for the scanner-versus-regex tests.
    fn generated(tokens: &[&str], n: usize, mut f: impl FnMut(&str)) {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..n {
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let len = (next() % 14) as usize;
            let s: String = (0..len)
                .map(|_| tokens[(next() % tokens.len() as u64) as usize])
                .collect();
            f(&s);
        }
    }

    /// What the detectors mean, written independently: one regex with capture groups,
    /// the detectors as its alternatives in order (`pairs` with a plain `\b`), replaced
    /// in one pass.
    fn reference(fields: &[&str]) -> regex::Regex {
        let names: Vec<String> = fields
            .iter()
            .map(|n| {
                n.split(['_', '-', ' '])
                    .map(regex::escape)
                    .collect::<Vec<_>>()
                    .join(r"[_\- ]?")
            })
            .collect();
        let pairs = format!(
            r#"(?i)(?P<pairs>\b(?:{})\w*\s*[:=]\s*"?)(?P<pv>[^\s,;&"']+)"#,
            names.join("|")
        );
        let email = EMAIL.replacen("[A-Za-z0-9._%+-]+@", "(?P<local>[A-Za-z0-9._%+-]+)@", 1);
        regex::Regex::new(&format!("(?:{pairs})|(?P<email>{email})|(?P<card>{CARD})")).unwrap()
    }

    fn masked_by_reference(m: &Masker, re: &regex::Regex, text: &str) -> String {
        re.replace_all(text, |c: &regex::Captures| {
            let all = c.get(0).unwrap().as_str();
            if let Some(p) = c.name("pairs") {
                format!("{}{}", p.as_str(), m.mask(c["pv"].chars().count()))
            } else if c.name("email").is_some() {
                let local = &c["local"];
                format!("{}{}", m.mask(local.len()), &all[local.len()..])
            } else if luhn(all) {
                let total = all.chars().filter(char::is_ascii_digit).count();
                let mut seen = 0;
                all.chars()
                    .map(|ch| {
                        seen += usize::from(ch.is_ascii_digit());
                        if ch.is_ascii_digit() && seen <= total - 4 {
                            m.mask_char
                        } else {
                            ch
                        }
                    })
                    .collect()
            } else {
                all.to_owned()
            }
        })
        .into_owned()
    }

    #[test]
    fn text_detectors_mask_what_the_reference_masks() {
        for fields in [
            None,
            Some("api_key,x-y z,pass,password,tok3n"),
            Some("a__b,x y-z w,key"),
        ] {
            let m = Masker::from_config(|k| match k {
                "fields" => fields.map(Into::into),
                "mask_length" => Some("preserve".into()),
                _ => None,
            })
            .unwrap();
            let names: Vec<&str> = fields.unwrap_or(DEFAULT_FIELDS).split(',').collect();
            let tokens = [
                "Password",
                "password",
                "PASS",
                "pass",
                "word",
                "api",
                "_",
                "-",
                " ",
                "key",
                "Key",
                "x",
                "y",
                "tok3n",
                "token",
                "secret",
                ":",
                "=",
                " : ",
                "\"",
                "'",
                ",",
                ";",
                "&",
                "\t",
                "\n",
                "hunter2",
                "1",
                "a",
                "Secret=",
                "ApI-kEy",
                "__",
                "@",
                "example",
                ".",
                "com",
                "b.io",
                "\u{e9}",
                "\u{a0}",
                "4111",
                "1111",
                "5500",
                "0000",
                "0004",
                " 4111 1111 1111 1111 ",
                "pa\u{17f}\u{17f}word",
                "%",
                "+",
            ];
            let re = reference(&names);
            let mut found = 0;
            let mut texts = Vec::new();
            generated(&tokens, 30_000, |s| {
                let want = masked_by_reference(&m, &re, s);
                let got = m.mask_text(s);
                found += usize::from(got.is_some());
                assert_eq!(got.as_deref().unwrap_or(s), want, "{s:?}");
                texts.push((s.to_owned(), want));
            });
            assert!(found > 1500, "only {found} strings held a secret");
            // As records through `mask`, which finds the matches of a whole batch at once.
            let mut h = Harness::with_init(setup, mask).config("mask_length", "preserve");
            if let Some(f) = fields {
                h = h.config("fields", f);
            }
            let values: Vec<&str> = texts.iter().map(|(t, _)| t.as_str()).collect();
            for (out, (text, want)) in h.run_values(&values).iter().zip(&texts) {
                assert_eq!(out.values(), [want.as_str()], "{text:?}");
            }
        }
    }

    #[test]
    fn pairs_follow_unicode_classes() {
        let m = Masker::from_config(|_| None).unwrap();
        for (text, want) in [
            // Long s folds to `s`, KELVIN SIGN to `k`; `é` is a word character, NBSP a space.
            (
                "pa\u{17f}\u{17f}word: hunter2",
                "pa\u{17f}\u{17f}word: ********",
            ),
            ("api_\u{212a}ey=abc", "api_\u{212a}ey=********"),
            ("password\u{e9}: x", "password\u{e9}: ********"),
            (
                "token\u{a0}:\u{a0}\u{e9}t\u{e9}",
                "token\u{a0}:\u{a0}********",
            ),
            // A word character before the name: no boundary, no match.
            ("\u{e9}password: x", "\u{e9}password: x"),
        ] {
            assert_eq!(
                m.mask_text(text).as_deref().unwrap_or(text),
                want,
                "{text:?}"
            );
        }
    }

    /// Random JSON documents (and broken ones): masking over the structural index takes
    /// only what serde_json accepts (but numbers out of `f64`'s range, which JSON allows),
    /// and masks it as the parsed-document path does.
    #[test]
    fn indexed_json_agrees_with_the_document_path() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        fn value(next: &mut dyn FnMut() -> u64, depth: u32, out: &mut String) {
            const KEYS: [&str; 8] = [
                "password", "apiKey", "user", "note", "db", "x_token", "n", "",
            ];
            const STRS: [&str; 9] = [
                "ann",
                "mail bob@example.com now",
                "Password: hunter2",
                "4111 1111 1111 1111",
                "caf\u{e9} \u{1f600}",
                "a@b",
                "",
                "x=1",
                "id 5500-0000-0000-0004",
            ];
            const NUMS: [&str; 6] = ["0", "-0", "12", "1.50", "-3.25", "4111111111111111"];
            let ws = |next: &mut dyn FnMut() -> u64, out: &mut String| {
                let runs = [
                    " ",
                    "",
                    "",
                    "\n ",
                    "\t",
                    "   \r\n            \t ",
                    "\n\n\n\n\n\n\n\n\n",
                ];
                out.push_str(runs[(next() % 7) as usize]);
            };
            ws(next, out);
            match next()
                % if depth > 3 {
                    4
                } else if depth == 0 {
                    7
                } else {
                    6
                } {
                0 => out.push_str(&format!("{:?}", STRS[(next() % 9) as usize])),
                1 => out.push_str(NUMS[(next() % 6) as usize]),
                2 => out.push_str(["true", "false", "null"][(next() % 3) as usize]),
                3 => out.push_str(&format!("{:?}", STRS[(next() % 9) as usize])),
                4 => {
                    out.push('[');
                    for k in 0..next() % 4 {
                        if k > 0 {
                            out.push(',');
                        }
                        value(next, depth + 1, out);
                    }
                    out.push(']');
                }
                _ => {
                    // Distinct keys: with duplicates, a parsed document keeps only the last.
                    out.push('{');
                    let first = next() as usize;
                    for k in 0..next() as usize % 5 {
                        if k > 0 {
                            out.push(',');
                        }
                        ws(next, out);
                        out.push_str(&format!("{:?}", KEYS[(first + k) % 8]));
                        ws(next, out);
                        out.push(':');
                        value(next, depth + 1, out);
                    }
                    out.push('}');
                }
            }
            ws(next, out);
        }
        for config in [None, Some("\u{2022}")] {
            let m = Masker::from_config(|k| {
                (k == "mask_char")
                    .then(|| config.map(String::from))
                    .flatten()
            })
            .unwrap();
            let (mut fast, mut valid, mut masked) = (0, 0, 0);
            for round in 0..40_000 {
                let mut doc = String::new();
                value(&mut next, 0, &mut doc);
                if !doc.trim_start().starts_with(['{', '[']) {
                    doc = format!("[{doc}]");
                }
                let mut bytes = doc.into_bytes();
                let broken = round % 3 == 0;
                if broken {
                    // Break it: drop, change or insert a byte.
                    let at = (next() as usize) % (bytes.len() + 1);
                    let c = b"{}[],:\"0-e.\\ x\x01"[(next() % 15) as usize];
                    match next() % 3 {
                        0 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        1 if at < bytes.len() => bytes[at] = c,
                        _ => bytes.insert(at, c),
                    }
                }
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    continue;
                };
                let parsed = serde_json::from_str::<Value>(text);
                valid += usize::from(parsed.is_ok());
                let mut out = Vec::new();
                let tokens = text::json_index(&bytes);
                let Ok(changed) = m.mask_json_tokens(&bytes, &tokens, &m.find(&bytes), &mut out)
                else {
                    continue;
                };
                fast += 1;
                let mut want = match parsed {
                    Ok(v) => v,
                    // JSON puts no bound on numbers; serde_json's `f64` does.
                    Err(e) if e.to_string().contains("number out of range") => continue,
                    Err(e) => panic!("took invalid {text:?}: {e}"),
                };
                if broken {
                    continue; // a changed byte may have made two keys equal
                }
                assert_eq!(m.mask_json(&mut want), changed, "{text:?}");
                let got: Value = if changed {
                    serde_json::from_slice(&out).unwrap()
                } else {
                    serde_json::from_str(text).unwrap()
                };
                assert_eq!(got, want, "{text:?}");
                masked += usize::from(changed);
            }
            eprintln!("fast {fast}, valid {valid}, masked {masked}");
            assert!(
                fast > 20_000 && valid > fast && masked > 5_000,
                "fast {fast}, valid {valid}, masked {masked}"
            );
        }
    }

    #[test]
    fn field_names_of_every_length_are_told_apart() {
        let m = Masker::from_config(|_| None).unwrap();
        // Twice each, so the second answer comes from the cache.
        for _ in 0..2 {
            for (name, secret) in [
                ("", false),
                ("pwd", true),
                ("pwdx", true),
                ("password", true),
                ("passwordX", true),
                ("a_secret_", true),
                ("a_sekret_", false),
                ("not_it_at_all_x", false),
                ("0123456789abcdef", false),
                ("0123456789abcdeftoken", true),
                ("0123456789abcdefXoken", false),
                ("user_token_and_more_than_16", true),
                ("user_tokez_and_more_than_16", false),
            ] {
                assert_eq!(m.is_secret_name(name.as_bytes()), secret, "{name:?}");
            }
        }
    }

    #[test]
    fn invalid_utf8_in_json_passes_unchanged() {
        let m = Masker::from_config(|_| None).unwrap();
        assert_eq!(m.mask_value(b"{\"password\":\"a\xff\"}"), None);
        assert_eq!(m.mask_value(b"{\"m\":\"long enough a@b.io \xc3\"}"), None);
        assert_eq!(
            m.mask_value("{\"m\":\"caf\u{e9} and a@b.io\"}".as_bytes()),
            Some(
                "{\"m\":\"caf\u{e9} and ********@b.io\"}"
                    .as_bytes()
                    .to_vec()
            )
        );
    }

    #[test]
    fn luhn_accepts_real_test_numbers_only() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(luhn("5500-0000-0000-0004"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("1234"));
    }

    #[test]
    fn bad_config_fails_init() {
        let e = Harness::with_init(setup, mask)
            .config("mask_char", "ab")
            .try_run(&[])
            .unwrap_err();
        assert!(e.contains("mask_char"), "{e}");
        let e = Harness::with_init(setup, mask)
            .config("detectors", "pairs,dna")
            .try_run(&[])
            .unwrap_err();
        assert!(e.contains("dna"), "{e}");
    }
}
