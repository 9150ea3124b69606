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

use regex::{Captures, Regex};
use serde_json::Value;
use sluice_sdk::{Error, Outcome, Record};

const DEFAULT_FIELDS: &str = "password,passwd,pwd,secret,token,api_key,apikey,access_key,private_key,authorization,credential";

pub struct Masker {
    /// Field name → is it a secret; field names repeat from record to record. The first
    /// names are kept in a short list (a few compares beat hashing every key), the rest in
    /// a map.
    recent_names: std::cell::RefCell<Vec<(Box<str>, bool)>>,
    secret_names: std::cell::RefCell<std::collections::HashMap<String, bool>>,
    mask_char: char,
    mask_length: Option<usize>,
    names: Vec<String>,
    pairs: Option<Regex>,
    json: bool,
    email: bool,
    card: Option<Regex>,
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
        let pairs = if on("pairs") && !raw_names.is_empty() {
            // `api_key` also matches `api-key`, `apikey` and `API Key`.
            let alts: Vec<String> = raw_names
                .iter()
                .map(|n| {
                    n.split(['_', '-', ' '])
                        .map(regex::escape)
                        .collect::<Vec<_>>()
                        .join(r"[_\- ]?")
                })
                .collect();
            let re = format!(
                r#"(?i)\b((?:{})\w*)(\s*[:=]\s*)("?)([^\s,;&"']+)"#,
                alts.join("|")
            );
            Some(Regex::new(&re).map_err(|e| Error::new(format!("bad fields list: {e}")))?)
        } else {
            None
        };
        let email = on("email");
        let card = on("card")
            .then(|| Regex::new(r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)"))
            .transpose()
            .map_err(|e| Error::new(e.to_string()))?;
        Ok(Masker {
            recent_names: Default::default(),
            secret_names: Default::default(),
            mask_char,
            mask_length,
            names,
            pairs,
            json: on("json"),
            email,
            card,
        })
    }

    fn mask(&self, original_len: usize) -> String {
        let n = self.mask_length.unwrap_or(original_len);
        if self.mask_char.is_ascii() {
            // One allocation and a fill, not a char at a time.
            let mut buf = [0u8; 4];
            return self.mask_char.encode_utf8(&mut buf).repeat(n);
        }
        std::iter::repeat_n(self.mask_char, n).collect()
    }

    fn is_secret_name(&self, name: &str) -> bool {
        if let Some((_, known)) = self
            .recent_names
            .borrow()
            .iter()
            .find(|(n, _)| **n == *name)
        {
            return *known;
        }
        if let Some(&known) = self.secret_names.borrow().get(name) {
            return known;
        }
        let n = normalize(name);
        let secret = self.names.iter().any(|s| n.contains(s.as_str()));
        let mut recent = self.recent_names.borrow_mut();
        if recent.len() < 32 {
            recent.push((name.into(), secret));
            return secret;
        }
        let mut cache = self.secret_names.borrow_mut();
        if cache.len() < 4096 {
            cache.insert(name.to_owned(), secret);
        }
        secret
    }

    /// Replaces every match of `re` in `text` by `f(match)`; `None` when there is none.
    /// (`find_iter` needs no capture groups, so the regex stays on its DFA engines.)
    fn replace_matches(
        &self,
        re: &Regex,
        text: &str,
        mut f: impl FnMut(&str) -> Option<String>,
    ) -> Option<String> {
        let mut out = String::new();
        let mut last = 0;
        let mut changed = false;
        for m in re.find_iter(text) {
            if let Some(rep) = f(m.as_str()) {
                out.push_str(&text[last..m.start()]);
                out.push_str(&rep);
                last = m.end();
                changed = true;
            }
        }
        changed.then(|| {
            out.push_str(&text[last..]);
            out
        })
    }

    /// Masks the local part of every e-mail address; `None` when there is none. The same
    /// matches as the regex `\b[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b` (ASCII
    /// word boundaries), found from each `@` outwards instead of by a regex engine, which in
    /// WebAssembly (no SIMD prefilters) costs several times more.
    fn mask_emails(&self, text: &str) -> Option<String> {
        let b = text.as_bytes();
        let mut out = String::new();
        let mut last = 0; // end of the previous match: matches never overlap
        let mut changed = false;
        let mut at = 0;
        while let Some(off) = b[at..].iter().position(|c| *c == b'@') {
            let p = at + off;
            at = p + 1;
            let Some(start) = local_part_start(b, last, p) else {
                continue;
            };
            let Some(end) = domain_end(b, p + 1) else {
                continue;
            };
            out.push_str(&text[last..start]);
            out.push_str(&self.mask(text[start..p].chars().count()));
            out.push_str(&text[p..end]);
            (last, at, changed) = (end, end, true);
        }
        changed.then(|| {
            out.push_str(&text[last..]);
            out
        })
    }

    /// Masks secrets in text; `None` when nothing changed.
    pub fn mask_text(&self, text: &str) -> Option<String> {
        let mut cur = std::borrow::Cow::Borrowed(text);
        // Cheap byte checks first, in one pass: most strings cannot match a detector at all.
        let (mut has_pair_sep, mut has_at, mut digits) = (false, false, 0usize);
        for &b in text.as_bytes() {
            has_pair_sep |= b == b':' || b == b'=';
            has_at |= b == b'@';
            digits += usize::from(b.is_ascii_digit());
        }
        if let Some(re) = &self.pairs
            && has_pair_sep
            && re.is_match(&cur)
        {
            let s = re.replace_all(&cur, |c: &Captures| {
                format!(
                    "{}{}{}{}",
                    &c[1],
                    &c[2],
                    &c[3],
                    self.mask(c[4].chars().count())
                )
            });
            cur = std::borrow::Cow::Owned(s.into_owned());
        }
        if self.email
            && has_at
            && let Some(s) = self.mask_emails(&cur)
        {
            cur = std::borrow::Cow::Owned(s);
        }
        if let Some(re) = self.card.as_ref().filter(|_| digits >= 13)
            && let Some(s) = self.replace_matches(re, &cur, |m| {
                if !luhn(m) {
                    return None;
                }
                let digits = m.chars().filter(char::is_ascii_digit).count();
                let mut seen = 0;
                Some(
                    m.chars()
                        .map(|ch| {
                            if ch.is_ascii_digit() {
                                seen += 1;
                                if seen <= digits - 4 {
                                    self.mask_char
                                } else {
                                    ch
                                }
                            } else {
                                ch
                            }
                        })
                        .collect(),
                )
            })
        {
            cur = std::borrow::Cow::Owned(s);
        }
        match cur {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(s) => (s != text).then_some(s),
        }
    }

    /// Masks a JSON value in place; returns whether anything changed.
    pub fn mask_json(&self, v: &mut Value) -> bool {
        match v {
            Value::Object(o) => {
                let mut changed = false;
                for (k, v) in o.iter_mut() {
                    if self.json && self.is_secret_name(k) && !v.is_null() {
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
        let text = std::str::from_utf8(value).ok()?;
        let first = value.iter().find(|b| !b.is_ascii_whitespace());
        // Validated as a `str` once; serde_json then skips re-checking UTF-8.
        if matches!(first, Some(b'{' | b'['))
            && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
        {
            // Strings with escapes are rare; for them, mask on the parsed document.
            if !text.contains('\\') {
                return self.mask_json_text(text).map(String::into_bytes);
            }
            let mut v: Value = serde_json::from_str(text).ok()?;
            return self.mask_json(&mut v).then(|| v.to_string().into_bytes());
        }
        self.mask_text(text).map(String::into_bytes)
    }

    /// Masks valid JSON without escapes in one pass over its text: no document is built,
    /// and everything not masked is copied as it was (field order, spacing, numbers).
    fn mask_json_text(&self, src: &str) -> Option<String> {
        let b = src.as_bytes();
        let mut out = String::with_capacity(src.len() + 16);
        let mut last = 0; // bytes before this are in `out` or replaced
        let mut changed = false;
        // Per nesting level: are we in an object, and is the next string a key?
        let mut stack: Vec<(bool, bool)> = Vec::new();
        let mut secret_value = false;
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'{' | b'[' if secret_value => {
                    let end = skip_value(b, i);
                    out.push_str(&src[last..i]);
                    out.push('"');
                    out.push_str(&self.mask(end - i));
                    out.push('"');
                    (last, i, secret_value, changed) = (end, end, false, true);
                    continue;
                }
                b'{' => stack.push((true, true)),
                b'[' => stack.push((false, false)),
                b'}' | b']' => {
                    stack.pop();
                }
                b',' => {
                    if let Some(top) = stack.last_mut() {
                        top.1 = top.0;
                    }
                }
                b'"' => {
                    let end = i + 1 + b[i + 1..].iter().position(|c| *c == b'"')?;
                    let content = &src[i + 1..end];
                    let is_key = stack.last().is_some_and(|t| t.0 && t.1);
                    if is_key {
                        secret_value = self.json && self.is_secret_name(content);
                        if let Some(top) = stack.last_mut() {
                            top.1 = false;
                        }
                    } else if secret_value {
                        out.push_str(&src[last..i + 1]);
                        out.push_str(&self.mask(content.chars().count()));
                        (last, secret_value, changed) = (end, false, true);
                    } else if let Some(m) = self.mask_text(content) {
                        out.push_str(&src[last..i + 1]);
                        out.push_str(&m);
                        (last, changed) = (end, true);
                    }
                    i = end + 1;
                    continue;
                }
                c if secret_value && (c == b'-' || c.is_ascii_alphanumeric()) => {
                    // A number, true, false or null under a secret name (null stays null).
                    let end = skip_value(b, i);
                    if &src[i..end] != "null" {
                        out.push_str(&src[last..i]);
                        out.push('"');
                        out.push_str(&self.mask(end - i));
                        out.push('"');
                        (last, changed) = (end, true);
                    }
                    secret_value = false;
                    i = end;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
        changed.then(|| {
            out.push_str(&src[last..]);
            out
        })
    }
}

/// ASCII word characters, as `\b` sees them.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// The leftmost start (at or after `floor`) of an e-mail local part ending before the `@`
/// at `p`: inside the run of local-part characters, at a word boundary.
fn local_part_start(b: &[u8], floor: usize, p: usize) -> Option<usize> {
    let mut run = p;
    while run > floor && is_local(b[run - 1]) {
        run -= 1;
    }
    (run..p).find(|&s| {
        let before = s > 0 && is_word(b[s - 1]);
        before != is_word(b[s])
    })
}

/// The end of an e-mail domain starting at `q` (`label.` repeated, then 2+ letters and a
/// word boundary), preferring the most labels, like the greedy regex.
fn domain_end(b: &[u8], q: usize) -> Option<usize> {
    let is_label = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
    // Positions of the dots that close a non-empty label, left to right.
    let mut dots = Vec::new();
    let mut i = q;
    loop {
        let label = i;
        while i < b.len() && is_label(b[i]) {
            i += 1;
        }
        if i == label || i >= b.len() || b[i] != b'.' {
            break;
        }
        dots.push(i);
        i += 1;
    }
    dots.iter().rev().find_map(|&d| {
        let tld = d + 1;
        let mut e = tld;
        while e < b.len() && b[e].is_ascii_alphabetic() {
            e += 1;
        }
        // Only the whole letter run can end at a word boundary (its last byte is a letter).
        (e - tld >= 2 && (e == b.len() || !is_word(b[e]))).then_some(e)
    })
}

/// The end of the JSON value starting at `i` (valid JSON without escapes).
fn skip_value(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j += 1;
                        while j < b.len() && b[j] != b'"' {
                            j += 1;
                        }
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return j + 1;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            b.len()
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                j += 1;
            }
            j
        }
    }
}

/// The Luhn checksum over the digits of `s` (separators ignored).
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
    // Build the regexes' lazy caches now, under init's budget, not on the first record's.
    let _ = m.mask_value(br#"{"password":"x","note":"Password: y, a@b.io 4111 1111 1111 1111"}"#);
    Ok(m)
}

pub fn mask(m: &Masker, record: &Record) -> Result<Outcome, Error> {
    let Some(value) = record.value() else {
        return Ok(Outcome::keep());
    };
    Ok(match m.mask_value(value) {
        Some(masked) => Outcome::emit(record.to_owned().with_value(masked)),
        None => Outcome::keep(),
    })
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

    #[test]
    fn email_scanner_finds_what_the_regex_finds() {
        let re = Regex::new(r"(?-u:\b)[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?-u:\b)")
            .unwrap();
        let m = Masker::from_config(|k| (k == "detectors").then(|| "email".into())).unwrap();
        let tokens = [
            "a", "b1", "x_y", ".", "-", "+", "%", "@", "@", "example", "com", "c", ".", " ",
            "\u{e9}", "1", "co", "Z", "a.b", "-x", ",",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut found = 0;
        for _ in 0..200_000 {
            let mut next = || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let len = (next() % 12) as usize;
            let s: String = (0..len)
                .map(|_| tokens[(next() % tokens.len() as u64) as usize])
                .collect();
            let want = m.replace_matches(&re, &s, |x| {
                let at = x.find('@').unwrap_or(0);
                Some(format!("{}{}", m.mask(x[..at].chars().count()), &x[at..]))
            });
            found += usize::from(want.is_some());
            assert_eq!(m.mask_emails(&s), want, "{s:?}");
        }
        assert!(found > 1000, "only {found} strings held an address");
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
