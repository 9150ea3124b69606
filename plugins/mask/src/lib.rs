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

pub struct Masker {
    /// Field name → is it a secret, for names seen before (they repeat from record to
    /// record): a direct-mapped cache indexed by a hash of the name.
    seen_names: std::cell::RefCell<Vec<Option<SeenName>>>,
    mask_char: char,
    mask_length: Option<usize>,
    names: Vec<String>,
    pairs: Option<Regex>,
    /// The secret names as lower-case parts (`api_key` → `api`, `key`), in the regex's
    /// order, for the byte scanner that replaces the `pairs` regex; none when a name is not
    /// ASCII or does not start with a word character (the regex then does all text).
    pair_names: Option<Vec<Vec<Vec<u8>>>>,
    /// Bytes a secret name can start with (either case): other words are skipped at once.
    pair_first: [bool; 256],
    /// The separator-driven scanner does non-ASCII text too (no name has empty parts).
    pairs_unicode: bool,
    /// Two buffers the text detectors write through in turn (no allocation per record).
    bufs: std::cell::RefCell<(Vec<u8>, Vec<u8>)>,
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
            seen_names: std::cell::RefCell::new(vec![None; NAME_SLOTS]),
            pair_names: (pairs.is_some()
                && raw_names
                    .iter()
                    .all(|n| n.is_ascii() && n.bytes().next().is_some_and(is_word)))
            .then(|| {
                raw_names
                    .iter()
                    .map(|n| {
                        n.split(['_', '-', ' '])
                            .map(|p| p.to_ascii_lowercase().into_bytes())
                            .collect()
                    })
                    .collect()
            }),
            pair_first: {
                let mut t = [false; 256];
                for n in &raw_names {
                    if let Some(&c) = n.as_bytes().first() {
                        t[usize::from(c.to_ascii_lowercase())] = true;
                        t[usize::from(c.to_ascii_uppercase())] = true;
                    }
                }
                t
            },
            pairs_unicode: raw_names.iter().all(|n| {
                n.split(['_', '-', ' ']).all(|p| !p.is_empty())
                    && n.split(['_', '-', ' ']).count() <= 8
            }),
            bufs: std::cell::RefCell::default(),
            mask_char,
            mask_length,
            names,
            pairs,
            json: on("json"),
            email,
            card,
        })
    }

    /// The mask for a secret of `chars` characters, as a string (`push_mask` decides it).
    fn mask(&self, chars: usize) -> String {
        let mut out = Vec::new();
        self.push_mask(&mut out, chars);
        // `push_mask` writes whole UTF-8 characters.
        String::from_utf8(out).unwrap_or_default()
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

    /// Replaces every match of `re` in `text` by `f(match)`; `None` when there is none
    /// (the regex oracle of the byte scanners' tests).
    #[cfg(test)]
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
    #[cfg(test)]
    fn mask_emails(&self, text: &str) -> Option<String> {
        let mut out = Vec::new();
        self.push_emails_masked(text.as_bytes(), &mut out)
            .then(|| String::from_utf8(out).ok())
            .flatten()
    }

    /// Appends `b` to `out` with e-mail local parts masked; says whether there were any.
    fn push_emails_masked(&self, b: &[u8], out: &mut Vec<u8>) -> bool {
        let mut last = 0; // end of the previous match: matches never overlap
        let mut changed = false;
        let mut at = 0;
        while let Some(p) = lanes::find(b, at, b'@') {
            at = p + 1;
            let Some(start) = local_part_start(b, last, p) else {
                continue;
            };
            let Some(end) = domain_end(b, p + 1) else {
                continue;
            };
            out.extend_from_slice(&b[last..start]);
            // Local parts are ASCII: bytes are characters.
            self.push_mask(out, p - start);
            out.extend_from_slice(&b[p..end]);
            (last, at, changed) = (end, end, true);
        }
        out.extend_from_slice(&b[last..]);
        changed
    }

    /// Masks secrets in text; `None` when nothing changed.
    pub fn mask_text(&self, text: &str) -> Option<String> {
        let mut out = Vec::new();
        self.mask_text_into(text, &mut out)
            .then(|| String::from_utf8(out).ok())
            .flatten()
    }

    /// Appends `text` with its secrets masked to `out`; says whether anything changed.
    /// The detectors run in turn (pairs, e-mail, card), each over the previous one's
    /// result, through two reused buffers. Byte scanners do what the regexes say, Unicode
    /// word, space and case classes included (the tests check them against the regexes on
    /// generated text); the `pairs` regex itself runs only for names with empty parts on
    /// non-ASCII text.
    fn mask_text_into(&self, text: &str, out: &mut Vec<u8>) -> bool {
        let b = text.as_bytes();
        // Cheap byte checks first, in one pass: most strings cannot match a detector at all.
        // Eight bytes per step (the same lane tests as the JSON string scan).
        let (mut seps, mut ats, mut highs, mut digits) = (0u64, 0u64, 0u64, 0usize);
        let mut i = 0;
        while let Some(x) = lanes::load(b, i) {
            use lanes::*;
            seps |= eq(x, b':') | eq(x, b'=');
            ats |= eq(x, b'@');
            highs |= x & HI;
            digits += (!below(x, b'0') & below(x, b'9' + 1)).count_ones() as usize;
            i += 8;
        }
        let (mut has_pair_sep, mut has_at, mut high) =
            (seps != 0, ats != 0, u8::from(highs != 0) << 7);
        for &c in &b[i..] {
            has_pair_sep |= c == b':' || c == b'=';
            has_at |= c == b'@';
            digits += usize::from(c.is_ascii_digit());
            high |= c;
        }
        let mut bufs = self.bufs.borrow_mut();
        let (a, z) = &mut *bufs;
        let mut cur = None;
        if has_pair_sep {
            match (&self.pair_names, &self.pairs) {
                (Some(names), _) if high < 0x80 || self.pairs_unicode => {
                    step(b, a, z, &mut cur, |src, dst| {
                        self.push_pairs_masked(names, src, dst)
                    })
                }
                (_, Some(re)) => step(b, a, z, &mut cur, |src, dst| {
                    self.push_pairs_by_regex(re, src, dst)
                }),
                _ => {}
            }
        }
        if self.email && has_at {
            step(b, a, z, &mut cur, |src, dst| {
                self.push_emails_masked(src, dst)
            });
        }
        if self.card.is_some() && digits >= 13 {
            step(b, a, z, &mut cur, |src, dst| {
                self.push_cards_masked(src, dst)
            });
        }
        let now: &[u8] = match cur {
            None => return false,
            Some(true) => a,
            Some(false) => z,
        };
        if now == b {
            return false;
        }
        out.extend_from_slice(now);
        true
    }

    /// `pairs` by its regex (non-ASCII text): appends `b` with the values masked.
    fn push_pairs_by_regex(&self, re: &Regex, b: &[u8], out: &mut Vec<u8>) -> bool {
        let Ok(text) = std::str::from_utf8(b) else {
            return false;
        };
        if !re.is_match(text) {
            return false;
        }
        let s = re.replace_all(text, |c: &Captures| {
            format!(
                "{}{}{}{}",
                &c[1],
                &c[2],
                &c[3],
                self.mask(c[4].chars().count())
            )
        });
        out.extend_from_slice(s.as_bytes());
        true
    }

    /// `pairs` on ASCII text, as its regex `(?i)\b((?:NAME|…)\w*)(\s*[:=]\s*)("?)([^\s,;&"']+)`
    /// matches (a name's parts joined by an optional `_`, `-` or space): appends `b` with
    /// every value masked; says whether there was any.
    ///
    /// Driven by the separators: every match has exactly one `:` or `=` right after its
    /// name, the rest of the word and spaces, so only the few places before a separator
    /// are tried — the word before it, and up to as many earlier words as a name has parts
    /// (joined by one `-` or space), leftmost first. Names with empty parts (`a__b`) take
    /// the byte-by-byte scan instead.
    fn push_pairs_masked(&self, names: &[Vec<Vec<u8>>], b: &[u8], out: &mut Vec<u8>) -> bool {
        let max_parts = names.iter().map(Vec::len).max().unwrap_or(1);
        if max_parts > 8 || names.iter().flatten().any(Vec::is_empty) {
            return self.push_pairs_scanning(names, b, out);
        }
        let (mut last, mut changed, mut from) = (0, false, 0);
        while let Some(sep) = lanes::find_either(b, from, b':', b'=') {
            from = sep + 1;
            let mut end = sep;
            while end > last {
                let (c, s) = char_before(b, end);
                if !c.is_whitespace() {
                    break;
                }
                end = s;
            }
            if end == 0 || !is_word_char(char_before(b, end).0) {
                continue;
            }
            // Word starts the name may begin at, rightmost first.
            let mut starts = [0usize; 8];
            let mut s = word_run_start(b, end);
            let mut k = 1;
            starts[0] = s;
            while k < max_parts
                && s >= 2
                && matches!(b[s - 1], b'-' | b' ')
                && is_word_char(char_before(b, s - 1).0)
            {
                s = word_run_start(b, s - 1);
                starts[k] = s;
                k += 1;
            }
            let found = starts[..k]
                .iter()
                .rev()
                .filter(|&&p| p >= last && (b[p] >= 0x80 || self.pair_first[usize::from(b[p])]))
                .find_map(|&p| names.iter().find_map(|n| pair_at(n, b, p)));
            if let Some((vs, ve)) = found {
                out.extend_from_slice(&b[last..vs]);
                let chars = std::str::from_utf8(&b[vs..ve]).map_or(ve - vs, |t| t.chars().count());
                self.push_mask(out, chars);
                (last, changed) = (ve, true);
                from = from.max(ve);
            }
        }
        out.extend_from_slice(&b[last..]);
        changed
    }

    /// `push_pairs_masked` trying every word start.
    fn push_pairs_scanning(&self, names: &[Vec<Vec<u8>>], b: &[u8], out: &mut Vec<u8>) -> bool {
        let (mut last, mut changed, mut p) = (0, false, 0);
        while p < b.len() {
            // A name starts at a word start (`\b` before a word byte).
            if !is_word(b[p]) || (p > 0 && is_word(b[p - 1])) {
                p += 1;
                continue;
            }
            if let Some((from, to)) = self.pair_first[usize::from(b[p])]
                .then(|| names.iter().find_map(|n| pair_at(n, b, p)))
                .flatten()
            {
                out.extend_from_slice(&b[last..from]);
                self.push_mask(out, to - from);
                (last, p, changed) = (to, to, true);
                continue;
            }
            p += 1;
            while p < b.len() && is_word(b[p]) {
                p += 1;
            }
        }
        out.extend_from_slice(&b[last..]);
        changed
    }

    /// `card`, as its regex `(?-u:\b)[0-9](?:[ -]?[0-9]){12,18}(?-u:\b)` matches: appends
    /// `b` with all but the last four digits of every match that passes the Luhn check
    /// masked; says whether there was any.
    fn push_cards_masked(&self, b: &[u8], out: &mut Vec<u8>) -> bool {
        let (mut last, mut changed, mut p) = (0, false, 0);
        while let Some(d) = lanes::find_digit(b, p) {
            p = d;
            if p > 0 && is_word(b[p - 1]) {
                // Inside a word: no boundary before any of its bytes.
                while p < b.len() && is_word(b[p]) {
                    p += 1;
                }
                continue;
            }
            // Ends of the first 1..=19 digits, each after an optional single separator.
            let mut ends = [0usize; 19];
            let (mut n, mut j) = (1, p + 1);
            ends[0] = j;
            while n < 19 {
                let k = if matches!(b.get(j), Some(b' ' | b'-')) {
                    j + 1
                } else {
                    j
                };
                if !b.get(k).is_some_and(u8::is_ascii_digit) {
                    break;
                }
                (ends[n], n, j) = (k + 1, n + 1, k + 1);
            }
            // Greedy, then backing off to a word boundary: the longest of 13..=19 digits.
            let end = (13..=n)
                .rev()
                .map(|k| ends[k - 1])
                .find(|&e| !b.get(e).is_some_and(|&c| is_word(c)));
            let Some(end) = end else {
                p += 1;
                continue;
            };
            let m = &b[p..end];
            if std::str::from_utf8(m).is_ok_and(luhn) {
                out.extend_from_slice(&b[last..p]);
                let total = m.iter().filter(|c| c.is_ascii_digit()).count();
                let mut seen = 0;
                let mut buf = [0u8; 4];
                let mask = self.mask_char.encode_utf8(&mut buf).as_bytes();
                for &c in m {
                    if c.is_ascii_digit() {
                        seen += 1;
                        if seen <= total - 4 {
                            out.extend_from_slice(mask);
                            continue;
                        }
                    }
                    out.push(c);
                }
                (last, changed) = (end, true);
            }
            p = end;
        }
        out.extend_from_slice(&b[last..]);
        changed
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
        self.mask_value_into(value, &mut out).then_some(out)
    }

    /// Appends the masked value to `out` and says whether anything was masked (when not,
    /// what it appended means nothing).
    pub fn mask_value_into(&self, value: &[u8], out: &mut Vec<u8>) -> bool {
        let first = value.iter().find(|b| !b.is_ascii_whitespace());
        let mut json = matches!(first, Some(b'{' | b'['));
        let start = out.len();
        if json {
            // The scan checks UTF-8 itself (only strings may hold non-ASCII bytes).
            out.reserve(value.len() + 32);
            match self.mask_json_bytes(value, out) {
                Ok(changed) => return changed,
                Err(why) => {
                    out.truncate(start);
                    json = why == Fallback::Unsupported;
                }
            }
        }
        let Ok(text) = std::str::from_utf8(value) else {
            return false;
        };
        // Escapes, exponents or deep nesting: serde_json decides. (Invalid JSON is text,
        // without a second parse to find that out.)
        if json && let Ok(mut v) = serde_json::from_str::<Value>(text) {
            if !self.mask_json(&mut v) {
                return false;
            }
            out.extend_from_slice(v.to_string().as_bytes());
            return true;
        }
        self.mask_text_into(text, out)
    }

    /// Masks JSON in one pass over its bytes, validating it on the way: no document is
    /// built, and everything not masked is copied as it was (field order, spacing,
    /// numbers). Writes the masked text to `out` and says whether anything changed; hands
    /// over (`Fallback`) at anything it does not do itself: invalid JSON, strings with
    /// escapes, numbers with exponents or of more than 300 bytes, nesting deeper than 64.
    fn mask_json_bytes(&self, b: &[u8], out: &mut Vec<u8>) -> Result<bool, Fallback> {
        /// What the scanner expects next.
        #[derive(Clone, Copy, PartialEq)]
        enum Next {
            Value,
            ValueOrClose,
            Key,
            KeyOrClose,
            CommaOrClose,
        }
        let mut last = 0; // `b[..last]` is in `out` or replaced
        let mut changed = false;
        let mut objects = 0u64; // bit d: nesting level d is an object
        let mut depth = 0u32;
        // A container under a secret name, masked whole when it closes: (start, depth).
        let mut secret_container: Option<(usize, u32)> = None;
        let mut secret_next = false; // the next value is under a secret name
        let mut next = Next::Value;
        let mut i = skip_ws(b, 0);
        loop {
            let &c = b.get(i).ok_or(Fallback::Invalid)?;
            match next {
                Next::CommaOrClose | Next::ValueOrClose | Next::KeyOrClose
                    if c == b'}' || c == b']' =>
                {
                    let in_object = objects >> (depth - 1) & 1 == 1;
                    if (c == b'}') != in_object || (next == Next::ValueOrClose && in_object) {
                        return Err(Fallback::Invalid);
                    }
                    depth -= 1;
                    i += 1;
                    if let Some((start, d)) = secret_container
                        && d == depth
                    {
                        self.replace_quoted(b, &mut last, start, i, i - start, out);
                        (secret_container, changed) = (None, true);
                    }
                    if depth == 0 {
                        return if skip_ws(b, i) == b.len() {
                            Ok(changed && finish(out, b, last))
                        } else {
                            Err(Fallback::Invalid)
                        };
                    }
                    i = skip_ws(b, i);
                    next = Next::CommaOrClose;
                }
                Next::CommaOrClose if c == b',' => {
                    i = skip_ws(b, i + 1);
                    next = if objects >> (depth - 1) & 1 == 1 {
                        Next::Key
                    } else {
                        Next::Value
                    };
                }
                Next::CommaOrClose => return Err(Fallback::Invalid),
                Next::Key | Next::KeyOrClose => {
                    if c != b'"' {
                        return Err(Fallback::Invalid);
                    }
                    let (end, _) = scan_string(b, i + 1)?;
                    let key = i + 1..end;
                    i = skip_ws(b, end + 1);
                    // The colon first: a line that only looks like JSON ends here, before
                    // its "key" (often long and never seen before) is looked up.
                    if b.get(i) != Some(&b':') {
                        return Err(Fallback::Invalid);
                    }
                    secret_next =
                        secret_container.is_none() && self.json && self.is_secret_name(&b[key]);
                    i = skip_ws(b, i + 1);
                    next = Next::Value;
                }
                Next::Value | Next::ValueOrClose => {
                    let secret = std::mem::take(&mut secret_next) && secret_container.is_none();
                    match c {
                        b'{' | b'[' => {
                            if depth == 64 {
                                return Err(Fallback::Unsupported);
                            }
                            if secret {
                                secret_container = Some((i, depth));
                            }
                            let object = c == b'{';
                            objects = objects & !(1 << depth) | u64::from(object) << depth;
                            depth += 1;
                            i = skip_ws(b, i + 1);
                            next = if object {
                                Next::KeyOrClose
                            } else {
                                Next::ValueOrClose
                            };
                            continue;
                        }
                        b'"' => {
                            let (end, class) = scan_string(b, i + 1)?;
                            let content = &b[i + 1..end];
                            if secret {
                                let chars = content.iter().filter(|&&c| !is_continuation(c));
                                let n = chars.count();
                                out.extend_from_slice(&b[last..=i]);
                                self.push_mask(out, n);
                                (last, changed) = (end, true);
                            } else if secret_container.is_none() && class.may_match(self) {
                                changed |=
                                    self.mask_json_string(b, &mut last, i + 1, end, class, out);
                            }
                            i = end + 1;
                        }
                        _ => {
                            let end = scan_scalar(b, i)?;
                            if secret && &b[i..end] != b"null" {
                                self.replace_quoted(b, &mut last, i, end, end - i, out);
                                changed = true;
                            }
                            i = end;
                        }
                    }
                    if depth == 0 {
                        return Err(Fallback::Unsupported); // a scalar at the top: not our case
                    }
                    i = skip_ws(b, i);
                    next = Next::CommaOrClose;
                }
            }
        }
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

    /// Runs the text detectors over the JSON string `b[from..to]` (no escapes); on a
    /// change, copies what precedes it and writes its masked content to `out`.
    #[allow(clippy::too_many_arguments)]
    fn mask_json_string(
        &self,
        b: &[u8],
        last: &mut usize,
        from: usize,
        to: usize,
        class: StringClass,
        out: &mut Vec<u8>,
    ) -> bool {
        let content = &b[from..to];
        // E-mail only (the common case): straight into `out`, no intermediate string.
        let other =
            (class.pair_sep && self.pairs.is_some()) || (class.digits >= 13 && self.card.is_some());
        if !other {
            let mark = out.len();
            out.extend_from_slice(&b[*last..from]);
            if self.push_emails_masked(content, out) {
                *last = to;
                return true;
            }
            out.truncate(mark);
            return false;
        }
        let Ok(text) = std::str::from_utf8(content) else {
            return false;
        };
        let mark = out.len();
        out.extend_from_slice(&b[*last..from]);
        if self.mask_text_into(text, out) {
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

/// What a scanned JSON string holds, as far as the text detectors care.
#[derive(Clone, Copy, Default)]
struct StringClass {
    pair_sep: bool, // `:` or `=`: a `name: value` pair may follow
    at: bool,
    non_ascii: bool,
    digits: u32,
}

impl StringClass {
    /// Could any enabled text detector match in this string?
    fn may_match(self, m: &Masker) -> bool {
        (self.pair_sep && m.pairs.is_some())
            || (self.at && m.email)
            || (self.digits >= 13 && m.card.is_some())
    }
}

/// Bytes of a word as lanes: the high bit of each byte marks a lane. All tests are exact
/// per byte (no carries between lanes), so masks can be cut at any byte.
mod lanes {
    pub const LO: u64 = 0x0101_0101_0101_0101;
    pub const HI: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    /// High bit set in each byte of `x` that is zero.
    #[inline(always)]
    pub fn zero(x: u64) -> u64 {
        !(((x & LOW7) + LOW7) | x) & HI
    }

    /// High bit set in each byte equal to `c`.
    #[inline(always)]
    pub fn eq(x: u64, c: u8) -> u64 {
        zero(x ^ (LO * u64::from(c)))
    }

    /// High bit set in each byte below `n` (`n` at most 0x80).
    #[inline(always)]
    pub fn below(x: u64, n: u8) -> u64 {
        !(((x & LOW7) + LO * u64::from(0x80 - n)) | x) & HI
    }

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

    /// The index of the first ASCII digit at or after `from`.
    #[inline]
    pub fn find_digit(b: &[u8], from: usize) -> Option<usize> {
        let mut i = from;
        while let Some(x) = load(b, i) {
            let m = !below(x, b'0') & below(x, b'9' + 1);
            if m != 0 {
                return Some(i + (m.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        b.get(i..)?
            .iter()
            .position(u8::is_ascii_digit)
            .map(|p| i + p)
    }

    /// The index of the first byte at or after `from` equal to `c` or `d`.
    #[inline]
    pub fn find_either(b: &[u8], from: usize, c: u8, d: u8) -> Option<usize> {
        let mut i = from;
        while let Some(x) = load(b, i) {
            let m = eq(x, c) | eq(x, d);
            if m != 0 {
                return Some(i + (m.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        b.get(i..)?
            .iter()
            .position(|&x| x == c || x == d)
            .map(|p| i + p)
    }

    /// The index of the first byte at or after `from` equal to `c`.
    #[inline]
    pub fn find(b: &[u8], from: usize, c: u8) -> Option<usize> {
        let mut i = from;
        while let Some(x) = load(b, i) {
            let m = eq(x, c);
            if m != 0 {
                return Some(i + (m.trailing_zeros() / 8) as usize);
            }
            i += 8;
        }
        b.get(i..)?.iter().position(|&x| x == c).map(|p| i + p)
    }

    /// The index of the first byte at or after `from` that is not JSON whitespace.
    #[inline]
    pub fn skip_ws(b: &[u8], from: usize) -> usize {
        let ws = |c: u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t');
        let mut i = from;
        // Mostly there is none or one: check bytes before words.
        for _ in 0..2 {
            match b.get(i) {
                Some(&c) if ws(c) => i += 1,
                _ => return i,
            }
        }
        while let Some(x) = load(b, i) {
            let other = !(eq(x, b' ') | eq(x, b'\n') | eq(x, b'\r') | eq(x, b'\t')) & HI;
            if other != 0 {
                return i + (other.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        while b.get(i).is_some_and(|&c| ws(c)) {
            i += 1;
        }
        i
    }
}

/// The end (closing quote) of the JSON string whose content starts at `from`, and its
/// class; `Fallback` for escapes, control characters, invalid UTF-8 and a missing end.
/// Eight bytes at a time: in WebAssembly every loop iteration pays for fuel and epoch
/// checks, so fewer iterations matter more than fewer instructions.
#[inline(always)]
fn scan_string(b: &[u8], from: usize) -> Result<(usize, StringClass), Fallback> {
    use lanes::*;
    let mut class = StringClass::default();
    let mut j = from;
    let (mut seps, mut ats, mut highs) = (0u64, 0u64, 0u64);
    let end = loop {
        let Some(x) = load(b, j) else {
            break scan_string_tail(b, j, &mut class)?;
        };
        let stop = eq(x, b'"') | eq(x, b'\\') | below(x, 0x20);
        // Lanes before the first stop byte (all eight without one).
        let keep = if stop == 0 {
            u64::MAX
        } else {
            (1u64 << stop.trailing_zeros()) - 1
        };
        seps |= (eq(x, b':') | eq(x, b'=')) & keep;
        ats |= eq(x, b'@') & keep;
        highs |= x & HI & keep;
        let digit = !below(x, b'0') & below(x, b'9' + 1);
        class.digits += (digit & keep).count_ones();
        if stop != 0 {
            let k = j + (stop.trailing_zeros() / 8) as usize;
            if b[k] != b'"' {
                return Err(if b[k] == b'\\' {
                    Fallback::Unsupported
                } else {
                    Fallback::Invalid
                });
            }
            break k;
        }
        j += 8;
    };
    class.pair_sep |= seps != 0;
    class.at |= ats != 0;
    class.non_ascii |= highs != 0;
    if class.non_ascii && std::str::from_utf8(&b[from..end]).is_err() {
        return Err(Fallback::Invalid);
    }
    Ok((end, class))
}

/// `scan_string` for the last bytes of the input, one at a time.
fn scan_string_tail(b: &[u8], from: usize, class: &mut StringClass) -> Result<usize, Fallback> {
    for (j, &c) in b[from..].iter().enumerate() {
        match c {
            b'"' => return Ok(from + j),
            b'\\' => return Err(Fallback::Unsupported),
            0..0x20 => return Err(Fallback::Invalid),
            b':' | b'=' => class.pair_sep = true,
            b'@' => class.at = true,
            b'0'..=b'9' => class.digits += 1,
            0x80.. => class.non_ascii = true,
            _ => {}
        }
    }
    Err(Fallback::Invalid)
}

/// The end of the number or literal starting at `i`, checked against JSON's grammar.
fn scan_scalar(b: &[u8], i: usize) -> Result<usize, Fallback> {
    for lit in [&b"true"[..], b"false", b"null"] {
        if b[i..].starts_with(lit) {
            return Ok(i + lit.len());
        }
    }
    let digits = |mut j: usize| {
        while b.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let mut j = i + usize::from(b[i] == b'-');
    match b.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(j + 1),
        _ => return Err(Fallback::Invalid),
    }
    if b.get(j) == Some(&b'.') {
        let k = digits(j + 1);
        if k == j + 1 {
            return Err(Fallback::Invalid);
        }
        j = k;
    }
    // Exponents can overflow a double, which serde_json refuses: left to it, like long numbers.
    if matches!(b.get(j), Some(b'e' | b'E')) || j - i > 300 {
        return Err(Fallback::Unsupported);
    }
    Ok(j)
}

use lanes::skip_ws;

/// Appends the rest of `b` after `last`; true, for chaining.
fn finish(out: &mut Vec<u8>, b: &[u8], last: usize) -> bool {
    out.extend_from_slice(&b[last..]);
    true
}

fn is_continuation(c: u8) -> bool {
    c & 0xC0 == 0x80
}

/// ASCII word characters, as `\b` sees them.
/// Runs one text detector over the text so far (the input while `cur` is none, else the
/// buffer it names: `a` when true) into the other buffer, which becomes the text so far if
/// the detector changed anything.
fn step(
    input: &[u8],
    a: &mut Vec<u8>,
    z: &mut Vec<u8>,
    cur: &mut Option<bool>,
    f: impl FnOnce(&[u8], &mut Vec<u8>) -> bool,
) {
    let into_a = match *cur {
        None => {
            a.clear();
            f(input, a).then_some(true)
        }
        Some(true) => {
            z.clear();
            f(a, z).then_some(false)
        }
        Some(false) => {
            a.clear();
            f(z, a).then_some(true)
        }
    };
    if into_a.is_some() {
        *cur = into_a;
    }
}

/// The value (start, end) of a `pairs` match of the name `parts` starting at `p`: the name
/// (any case, as the regex's Unicode case folding has it; its parts joined by an optional
/// `_`, `-` or space), the rest of the word, spaces, `:` or `=`, spaces, an optional quote,
/// then the value. `b` is UTF-8; word and space are Unicode's, as in the regex.
fn pair_at(parts: &[Vec<u8>], b: &[u8], p: usize) -> Option<(usize, usize)> {
    let mut j = p;
    for (k, part) in parts.iter().enumerate() {
        if k > 0 && matches!(b.get(j), Some(b'_' | b'-' | b' ')) {
            j += 1;
        }
        for &want in part {
            let (c, len) = char_at(b, j)?;
            if !folds_to(c, want) {
                return None;
            }
            j += len;
        }
    }
    j = skip_chars(b, j, is_word_char);
    j = skip_chars(b, j, char::is_whitespace);
    if !matches!(b.get(j), Some(b':' | b'=')) {
        return None;
    }
    j = skip_chars(b, j + 1, char::is_whitespace);
    if b.get(j) == Some(&b'"') {
        j += 1;
    }
    let end = skip_chars(b, j, |c| {
        !c.is_whitespace() && !matches!(c, ',' | ';' | '&' | '"' | '\'')
    });
    (end > j).then_some((j, end))
}

/// Whether the character `c` matches the (lower-case ASCII) name byte `want` case-
/// insensitively: ASCII case, plus the two non-ASCII characters that Unicode case folding
/// maps to ASCII letters (KELVIN SIGN to `k`, LONG S to `s`).
fn folds_to(c: char, want: u8) -> bool {
    if c.is_ascii() {
        (c as u8).eq_ignore_ascii_case(&want)
    } else {
        matches!((c, want), ('\u{212A}', b'k') | ('\u{17F}', b's'))
    }
}

/// The character at `b[i..]` and its length in bytes (`b` is UTF-8).
#[inline]
fn char_at(b: &[u8], i: usize) -> Option<(char, usize)> {
    let c = *b.get(i)?;
    if c < 0x80 {
        return Some((c as char, 1));
    }
    let len = match c {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    };
    let ch = std::str::from_utf8(b.get(i..i + len)?)
        .ok()?
        .chars()
        .next()?;
    Some((ch, len))
}

/// The character ending at `b[..i]` (i > 0) and where it starts.
#[inline]
fn char_before(b: &[u8], i: usize) -> (char, usize) {
    let c = b[i - 1];
    if c < 0x80 {
        return (c as char, i - 1);
    }
    let mut s = i - 1;
    while s > 0 && b[s] & 0xc0 == 0x80 {
        s -= 1;
    }
    let ch = std::str::from_utf8(&b[s..i])
        .ok()
        .and_then(|t| t.chars().next())
        .unwrap_or('\u{fffd}');
    (ch, s)
}

/// Past the characters from `i` on that satisfy `f`.
#[inline]
fn skip_chars(b: &[u8], mut i: usize, f: impl Fn(char) -> bool) -> usize {
    while let Some((c, len)) = char_at(b, i) {
        if !f(c) {
            break;
        }
        i += len;
    }
    i
}

/// The regex's Unicode word character (`\w`).
#[inline]
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        is_word(c as u8)
    } else {
        regex_syntax::try_is_word_character(c).unwrap_or(false)
    }
}

/// Where the run of word characters ending at `b[..i]` starts.
fn word_run_start(b: &[u8], mut i: usize) -> usize {
    while i > 0 {
        let (c, s) = char_before(b, i);
        if !is_word_char(c) {
            break;
        }
        i = s;
    }
    i
}

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
    // Over the dots that close a non-empty label, left to right: the last one followed by
    // a top-level domain wins.
    let mut best = None;
    let mut i = q;
    loop {
        let label = i;
        while i < b.len() && is_label(b[i]) {
            i += 1;
        }
        if i == label || i >= b.len() || b[i] != b'.' {
            return best;
        }
        i += 1;
        let mut e = i;
        while e < b.len() && b[e].is_ascii_alphabetic() {
            e += 1;
        }
        // Only the whole letter run can end at a word boundary (its last byte is a letter).
        if e - i >= 2 && (e == b.len() || !is_word(b[e])) {
            best = Some(e);
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
    // The masked value goes straight into the SDK's per-batch buffer.
    Ok(Outcome::keep_rewritten(|out| m.mask_value_into(value, out)))
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

    #[test]
    fn pair_scanner_masks_what_the_regex_masks() {
        for fields in [
            None,
            Some("api_key,x-y z,pass,password,tok3n"),
            Some("a__b,x y-z w,key"),
        ] {
            let m = Masker::from_config(|k| match k {
                "detectors" => Some("pairs".into()),
                "fields" => fields.map(Into::into),
                _ => None,
            })
            .unwrap();
            let (re, names) = (m.pairs.as_ref().unwrap(), m.pair_names.as_ref().unwrap());
            let tokens = [
                "Password", "password", "PASS", "pass", "word", "api", "_", "-", " ", "key", "Key",
                "x", "y", "z", "tok3n", "token", "secret", ":", "=", " : ", "\"", "'", ",", ";",
                "&", "\t", "\u{b}", "\n", "hunter2", "1", "a", "_x", "Secret=", "ApI-kEy", "b",
                "w", "__",
            ];
            let mut found = 0;
            generated(&tokens, 200_000, |s| {
                if !m.pairs_unicode && !s.is_ascii() {
                    return; // the regex does these
                }
                let mut scanned = Vec::new();
                let by_scanner = m.push_pairs_masked(names, s.as_bytes(), &mut scanned);
                let mut by_regex = Vec::new();
                let regex_changed = m.push_pairs_by_regex(re, s.as_bytes(), &mut by_regex);
                found += usize::from(by_scanner);
                assert_eq!(by_scanner, regex_changed, "{s:?}");
                if by_scanner {
                    assert_eq!(
                        String::from_utf8_lossy(&scanned),
                        String::from_utf8_lossy(&by_regex),
                        "{s:?}"
                    );
                }
            });
            assert!(found > 5000, "only {found} strings held a pair");
        }
    }

    #[test]
    fn pair_scanner_follows_unicode_classes() {
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

    #[test]
    fn card_scanner_masks_what_the_regex_masks() {
        let m = Masker::from_config(|k| (k == "detectors").then(|| "card".into())).unwrap();
        let re = m.card.as_ref().unwrap();
        let tokens = [
            "4111",
            "1111",
            "4",
            "1",
            "0",
            " ",
            "-",
            "--",
            "  ",
            "x",
            "_",
            "\u{e9}",
            "5500",
            "0000",
            "0004",
            "12",
            "4242424242424242",
            ".",
            "a1",
        ];
        let mut found = 0;
        generated(&tokens, 200_000, |s| {
            let want = m.replace_matches(re, s, |x| {
                if !luhn(x) {
                    return None;
                }
                let digits = x.chars().filter(char::is_ascii_digit).count();
                let mut seen = 0;
                Some(
                    x.chars()
                        .map(|ch| {
                            if ch.is_ascii_digit() {
                                seen += 1;
                                if seen <= digits - 4 {
                                    return m.mask_char;
                                }
                            }
                            ch
                        })
                        .collect(),
                )
            });
            let mut out = Vec::new();
            let got = m
                .push_cards_masked(s.as_bytes(), &mut out)
                .then(|| String::from_utf8(out).unwrap());
            found += usize::from(got.is_some());
            assert_eq!(got, want, "{s:?}");
        });
        assert!(found > 1000, "only {found} strings held a card number");
    }

    /// Random JSON documents (and broken ones): the one-pass scanner takes only what
    /// serde_json accepts, and masks it as the parsed-document path does.
    #[test]
    fn one_pass_json_agrees_with_the_document_path() {
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
                let Ok(changed) = m.mask_json_bytes(&bytes, &mut out) else {
                    continue;
                };
                fast += 1;
                let mut want = parsed.unwrap_or_else(|e| panic!("took invalid {text:?}: {e}"));
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
