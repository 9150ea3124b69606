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
    /// Field name → is it a secret; field names repeat from record to record.
    secret_names: std::cell::RefCell<std::collections::HashMap<String, bool>>,
    mask_char: char,
    mask_length: Option<usize>,
    names: Vec<String>,
    pairs: Option<Regex>,
    json: bool,
    email: Option<Regex>,
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
        let email = on("email")
            .then(|| {
                Regex::new(r"(?-u:\b)[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?-u:\b)")
            })
            .transpose()
            .map_err(|e| Error::new(e.to_string()))?;
        let card = on("card")
            .then(|| Regex::new(r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)"))
            .transpose()
            .map_err(|e| Error::new(e.to_string()))?;
        Ok(Masker {
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
        std::iter::repeat_n(self.mask_char, n).collect()
    }

    fn is_secret_name(&self, name: &str) -> bool {
        if let Some(&known) = self.secret_names.borrow().get(name) {
            return known;
        }
        let n = normalize(name);
        let secret = self.names.iter().any(|s| n.contains(s.as_str()));
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

    /// Masks secrets in text; `None` when nothing changed.
    pub fn mask_text(&self, text: &str) -> Option<String> {
        let mut cur = std::borrow::Cow::Borrowed(text);
        // Cheap byte checks first: most strings cannot match a detector at all.
        let bytes = text.as_bytes();
        let has_pair_sep = bytes.iter().any(|b| matches!(b, b':' | b'='));
        let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
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
        if let Some(re) = &self.email
            && cur.contains('@')
            && let Some(s) = self.replace_matches(re, &cur, |m| {
                let at = m.find('@').unwrap_or(0);
                Some(format!(
                    "{}{}",
                    self.mask(m[..at].chars().count()),
                    &m[at..]
                ))
            })
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
        let first = value.iter().find(|b| !b.is_ascii_whitespace());
        if matches!(first, Some(b'{' | b'['))
            && serde_json::from_slice::<serde::de::IgnoredAny>(value).is_ok()
        {
            let text = std::str::from_utf8(value).ok()?;
            // Strings with escapes are rare; for them, mask on the parsed document.
            if !text.contains('\\') {
                return self.mask_json_text(text).map(String::into_bytes);
            }
            let mut v: Value = serde_json::from_slice(value).ok()?;
            return self.mask_json(&mut v).then(|| v.to_string().into_bytes());
        }
        let text = std::str::from_utf8(value).ok()?;
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
