//! The implementations the host runs for a plugin's `text` calls, and that the SDK runs
//! natively: one code for both, so a plugin tested natively behaves the same in wasm.

use base64::Engine as _;
use regex_automata::meta::Regex;
use sha2::Digest as _;

/// Most sources in one pattern set.
pub const MAX_PATTERNS: usize = 64;
/// Most source bytes of one set.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
/// Most memory of one set's compiled automata (NFA; the lazy DFA's cache likewise).
pub const MAX_AUTOMATON_BYTES: usize = 8 << 20;

/// A compiled pattern set.
#[derive(Debug)]
pub struct Compiled(Regex);

impl Compiled {
    pub fn new<S: AsRef<str>>(sources: &[S]) -> Result<Compiled, String> {
        if sources.is_empty() || sources.len() > MAX_PATTERNS {
            return Err(format!(
                "a pattern set has 1 to {MAX_PATTERNS} patterns, not {}",
                sources.len()
            ));
        }
        let bytes: usize = sources.iter().map(|s| s.as_ref().len()).sum();
        if bytes > MAX_SOURCE_BYTES {
            return Err(format!(
                "patterns of {bytes} bytes exceed the limit of {MAX_SOURCE_BYTES}"
            ));
        }
        let srcs: Vec<&str> = sources.iter().map(AsRef::as_ref).collect();
        Regex::builder()
            .configure(
                Regex::config()
                    .nfa_size_limit(Some(MAX_AUTOMATON_BYTES))
                    .onepass_size_limit(Some(MAX_AUTOMATON_BYTES))
                    .dfa_size_limit(Some(MAX_AUTOMATON_BYTES))
                    .hybrid_cache_capacity(MAX_AUTOMATON_BYTES),
            )
            .build_many(&srcs)
            .map(Compiled)
            .map_err(|e| format!("invalid pattern: {e}"))
    }

    pub fn is_match(&self, h: &[u8]) -> bool {
        self.0.is_match(h)
    }

    /// Calls `f(index, start, end)` for every match.
    pub fn find_all(&self, h: &[u8], mut f: impl FnMut(u32, u32, u32)) {
        for m in self.0.find_iter(h) {
            f(m.pattern().as_u32(), pos(m.start()), pos(m.end()));
        }
    }

    /// Calls `f(index, start, end)` for every match the contract's
    /// `find-in-json-batch` reports in the document `b`: in JSON (an object or array),
    /// matches inside string values only, each string searched on its own, and with
    /// `names` the members whose name it matches as `JSON_MEMBER + kind` with their
    /// value's span (their inside not searched); a JSON document with escapes as one
    /// `JSON_ESCAPES`; anything else searched whole. `tokens` is scratch.
    pub fn find_in_json(
        &self,
        b: &[u8],
        names: Option<&Compiled>,
        tokens: &mut Vec<u32>,
        mut f: impl FnMut(u32, u32, u32),
    ) {
        tokens.clear();
        if looks_like_json(b) {
            json_index(b, 0, tokens);
        }
        if tokens.get(1).is_none_or(|&k| k == JSON_INVALID) {
            return self.find_all(b, f);
        }
        if tokens.chunks_exact(4).any(|t| t[1] >= JSON_ESCAPED) {
            return f(JSON_ESCAPES, 0, 0);
        }
        let (mut skip_until, mut member) = (0, false);
        for t in tokens.chunks_exact(4) {
            let (kind, s, e) = (t[1], t[2], t[3]);
            if s < skip_until {
                continue;
            }
            let named = std::mem::take(&mut member);
            let text = &b[s as usize..e as usize];
            match kind {
                JSON_KEY => member = names.is_some_and(|n| n.is_match(text)),
                _ if named => {
                    f(JSON_MEMBER + kind, s, e);
                    if kind <= JSON_ARRAY {
                        skip_until = e;
                    }
                }
                JSON_STRING => self.find_all(text, |i, ms, me| f(i, s + ms, s + me)),
                _ => {}
            }
        }
    }

    pub fn replace_all(&self, h: &[u8], replacement: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(h.len());
        let mut last = 0;
        for caps in self.0.captures_iter(h) {
            let Some(m) = caps.get_match() else { continue };
            out.extend_from_slice(&h[last..m.start()]);
            caps.interpolate_bytes_into(h, replacement.as_bytes(), &mut out);
            last = m.end();
        }
        out.extend_from_slice(&h[last..]);
        out
    }
}

/// A position as the contract's `u32` (inputs are at most 16 MiB).
fn pos(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Kinds of [`json_index`] tokens (the contract's numbers).
pub const JSON_OBJECT: u32 = 0;
pub const JSON_ARRAY: u32 = 1;
pub const JSON_KEY: u32 = 2;
pub const JSON_STRING: u32 = 3;
pub const JSON_SCALAR: u32 = 4;
pub const JSON_INVALID: u32 = 5;
/// Added to a key's or string's kind when it holds escapes.
pub const JSON_ESCAPED: u32 = 16;
/// In `find-in-json-batch` answers: a member under a matching name is `JSON_MEMBER +`
/// its value's kind; a JSON document with escapes is one `JSON_ESCAPES`.
pub const JSON_MEMBER: u32 = 64;
pub const JSON_ESCAPES: u32 = 255;
/// Deepest nesting indexed (serde_json's default limit too).
pub const MAX_JSON_DEPTH: usize = 128;

/// Whether `b` starts like a JSON object or array (what [`json_index`] indexes).
pub fn looks_like_json(b: &[u8]) -> bool {
    matches!(
        b.iter()
            .find(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t')),
        Some(b'{' | b'[')
    )
}

/// Appends the structural index of the JSON document `b` to `out` as
/// `[record, kind, start, end]` quadruples (see the contract's `json-index-batch`),
/// or one `JSON_INVALID` quadruple when `b` is not JSON.
pub fn json_index(b: &[u8], record: u32, out: &mut Vec<u32>) {
    let mark = out.len();
    if let Err(at) = index_json(b, record, out) {
        out.truncate(mark);
        out.extend([record, JSON_INVALID, pos(at), pos(at)]);
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\r' | b'\t')) {
        i += 1;
    }
    i
}

/// The end (closing quote) of the string whose content starts at `from`, and whether
/// it holds escapes; the position of the fault if it is not a valid JSON string.
fn json_string(b: &[u8], from: usize) -> Result<(usize, bool), usize> {
    let mut j = from;
    let mut escaped = false;
    loop {
        let rest = b.get(j..).ok_or(j)?;
        let k = j + memchr::memchr2(b'"', b'\\', rest).ok_or(b.len())?;
        let run = &b[j..k];
        let (ctrl, high) = run
            .iter()
            .fold((false, 0u8), |(c, h), &x| (c | (x < 0x20), h | x));
        if ctrl {
            return Err(j + run.iter().position(|&x| x < 0x20).unwrap_or(0));
        }
        if high >= 0x80 && std::str::from_utf8(run).is_err() {
            return Err(j);
        }
        if b[k] == b'"' {
            return Ok((k, escaped));
        }
        escaped = true;
        match b.get(k + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j = k + 2,
            Some(b'u')
                if b.get(k + 2..k + 6)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                j = k + 6
            }
            _ => return Err(k),
        }
    }
}

/// The end of the number or literal starting at `i`, checked against JSON's grammar.
fn json_scalar(b: &[u8], i: usize) -> Result<usize, usize> {
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
        _ => return Err(j),
    }
    if b.get(j) == Some(&b'.') {
        let k = digits(j + 1);
        if k == j + 1 {
            return Err(k);
        }
        j = k;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        j += 1;
        if matches!(b.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let k = digits(j);
        if k == j {
            return Err(k);
        }
        j = k;
    }
    Ok(j)
}

fn index_json(b: &[u8], record: u32, out: &mut Vec<u32>) -> Result<(), usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Next {
        Value,
        ValueOrClose,
        Key,
        KeyOrClose,
        CommaOrClose,
    }
    // Open containers: where their quadruple is, and whether each is an object.
    let mut open: Vec<(usize, bool)> = Vec::new();
    let mut next = Next::Value;
    let mut i = skip_ws(b, 0);
    loop {
        let &c = b.get(i).ok_or(i)?;
        match next {
            Next::CommaOrClose | Next::ValueOrClose | Next::KeyOrClose
                if c == b'}' || c == b']' =>
            {
                let Some((at, object)) = open.pop() else {
                    return Err(i);
                };
                if (c == b'}') != object || (next == Next::ValueOrClose && object) {
                    return Err(i);
                }
                i += 1;
                out[at + 3] = pos(i);
                if open.is_empty() {
                    return if skip_ws(b, i) == b.len() {
                        Ok(())
                    } else {
                        Err(i)
                    };
                }
                i = skip_ws(b, i);
                next = Next::CommaOrClose;
            }
            Next::CommaOrClose if c == b',' => {
                i = skip_ws(b, i + 1);
                next = if open.last().is_some_and(|o| o.1) {
                    Next::Key
                } else {
                    Next::Value
                };
            }
            Next::CommaOrClose => return Err(i),
            Next::Key | Next::KeyOrClose => {
                if c != b'"' {
                    return Err(i);
                }
                let (end, escaped) = json_string(b, i + 1)?;
                let kind = JSON_KEY + if escaped { JSON_ESCAPED } else { 0 };
                out.extend([record, kind, pos(i + 1), pos(end)]);
                i = skip_ws(b, end + 1);
                if b.get(i) != Some(&b':') {
                    return Err(i);
                }
                i = skip_ws(b, i + 1);
                next = Next::Value;
            }
            Next::Value | Next::ValueOrClose => {
                match c {
                    b'{' | b'[' => {
                        if open.len() == MAX_JSON_DEPTH {
                            return Err(i);
                        }
                        let object = c == b'{';
                        let kind = if object { JSON_OBJECT } else { JSON_ARRAY };
                        open.push((out.len(), object));
                        out.extend([record, kind, pos(i), 0]);
                        i = skip_ws(b, i + 1);
                        next = if object {
                            Next::KeyOrClose
                        } else {
                            Next::ValueOrClose
                        };
                        continue;
                    }
                    b'"' => {
                        let (end, escaped) = json_string(b, i + 1)?;
                        let kind = JSON_STRING + if escaped { JSON_ESCAPED } else { 0 };
                        out.extend([record, kind, pos(i + 1), pos(end)]);
                        i = end + 1;
                    }
                    _ => {
                        let end = json_scalar(b, i)?;
                        out.extend([record, JSON_SCALAR, pos(i), pos(end)]);
                        i = end;
                    }
                }
                if open.is_empty() {
                    return Err(i); // a scalar at the top: not indexed
                }
                i = skip_ws(b, i);
                next = Next::CommaOrClose;
            }
        }
    }
}

pub fn find(h: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let rest = h.get(from..)?;
    memchr::memmem::find(rest, needle).map(|p| p + from)
}

pub fn find_byte(h: &[u8], set: &[u8], from: usize) -> Option<usize> {
    let rest = h.get(from..)?;
    let at = match *set {
        [] => None,
        [a] => memchr::memchr(a, rest),
        [a, b] => memchr::memchr2(a, b, rest),
        [a, b, c] => memchr::memchr3(a, b, c, rest),
        _ => {
            let mut table = [false; 256];
            for &b in set {
                table[usize::from(b)] = true;
            }
            rest.iter().position(|&b| table[usize::from(b)])
        }
    };
    at.map(|p| p + from)
}

fn parse(document: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(document).map_err(|e| format!("not JSON: {e}"))
}

pub fn json_get(document: &[u8], pointer: &str) -> Result<Option<Vec<u8>>, String> {
    let v = parse(document)?;
    Ok(v.pointer(pointer).map(|e| e.to_string().into_bytes()))
}

pub fn json_set(document: &[u8], pointer: &str, value: &[u8]) -> Result<Vec<u8>, String> {
    let mut doc = parse(document)?;
    let new = parse(value)?;
    if pointer.is_empty() {
        return Ok(new.to_string().into_bytes());
    }
    let Some(cut) = pointer.rfind('/') else {
        return Err(format!(
            "{pointer:?} is not a JSON pointer (it starts with '/')"
        ));
    };
    let (parent, last) = (&pointer[..cut], &pointer[cut + 1..]);
    let last = last.replace("~1", "/").replace("~0", "~");
    match doc.pointer_mut(parent) {
        Some(serde_json::Value::Object(map)) => {
            map.insert(last, new);
        }
        Some(serde_json::Value::Array(items)) => {
            let len = items.len();
            match last.as_str() {
                "-" => items.push(new),
                i => match i.parse::<usize>() {
                    Ok(i) if i < len => items[i] = new,
                    Ok(i) if i == len => items.push(new),
                    _ => return Err(format!("no element {i:?} in an array of {len}")),
                },
            }
        }
        Some(_) => return Err(format!("{parent:?} is neither an object nor an array")),
        None => return Err(format!("no element at {parent:?}")),
    }
    Ok(doc.to_string().into_bytes())
}

pub fn base64_encode(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))
}

pub fn hex_encode(data: &[u8]) -> String {
    hex::encode(data)
}

pub fn hex_decode(text: &str) -> Result<Vec<u8>, String> {
    hex::decode(text).map_err(|e| format!("not hex: {e}"))
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(data).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_sets_report_which_matched() {
        let c = Compiled::new(&[r"[0-9]+", r"[a-z]+@[a-z]+"]).unwrap();
        let mut got = Vec::new();
        c.find_all(b"id 42 mail a@b x", |i, s, e| got.push((i, s, e)));
        assert_eq!(got, [(0, 3, 5), (1, 11, 14)]);
        assert_eq!(
            Compiled::new(&["(?i)(pass)(word)"])
                .unwrap()
                .replace_all(b"a PASSWORD b password", "$2-$1 $$"),
            b"a WORD-PASS $ b word-pass $"
        );
        assert!(
            Compiled::new(&["("])
                .unwrap_err()
                .contains("invalid pattern")
        );
        assert!(Compiled::new::<&str>(&[]).is_err());
        let huge = format!("(?:{}){{1000}}", "[a-z]{1000}");
        assert!(Compiled::new(&[huge]).is_err(), "automaton over the limit");
    }

    fn kinds(doc: &str) -> Vec<(u32, &str)> {
        let mut q = Vec::new();
        json_index(doc.as_bytes(), 9, &mut q);
        q.chunks_exact(4)
            .map(|t| {
                assert_eq!(t[0], 9);
                (t[1], &doc[t[2] as usize..t[3] as usize])
            })
            .collect()
    }

    #[test]
    fn json_index_tokens_and_validity() {
        assert_eq!(
            kinds(r#" {"a" : [1, -2.5e3, true,{}], "b\n":"x\u00e9y", "c":null} "#),
            [
                (
                    JSON_OBJECT,
                    r#"{"a" : [1, -2.5e3, true,{}], "b\n":"x\u00e9y", "c":null}"#
                ),
                (JSON_KEY, "a"),
                (JSON_ARRAY, "[1, -2.5e3, true,{}]"),
                (JSON_SCALAR, "1"),
                (JSON_SCALAR, "-2.5e3"),
                (JSON_SCALAR, "true"),
                (JSON_OBJECT, "{}"),
                (JSON_KEY + JSON_ESCAPED, "b\\n"),
                (JSON_STRING + JSON_ESCAPED, "x\\u00e9y"),
                (JSON_KEY, "c"),
                (JSON_SCALAR, "null"),
            ]
        );
        // Random mutations of a document: indexed exactly when serde_json parses it.
        let base = r#"{"k":[1,2.5,"s\"t",{"x":null,"y":"caf\u00e9 é"}],"t":true,"n":-0}"#;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..20_000 {
            let mut b = base.as_bytes().to_vec();
            for _ in 0..1 + next() % 2 {
                let at = next() as usize % (b.len() + 1);
                let c = b"{}[],:\"0-e.\\ xu\x01\xff"[(next() % 17) as usize];
                match next() % 3 {
                    0 if at < b.len() => {
                        b.remove(at);
                    }
                    1 if at < b.len() => b[at] = c,
                    _ => b.insert(at, c),
                }
            }
            if !looks_like_json(&b) {
                continue;
            }
            let mut q = Vec::new();
            json_index(&b, 0, &mut q);
            let ours = q[1] != JSON_INVALID;
            let theirs = serde_json::from_slice::<serde_json::Value>(&b).is_ok();
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&b));
            valid += usize::from(ours);
            invalid += usize::from(!ours);
        }
        assert!(
            valid > 1000 && invalid > 5000,
            "{valid} valid, {invalid} invalid"
        );
        let deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert_eq!(kinds(&deep), [(JSON_INVALID, "")]);
    }

    #[test]
    fn search_json_and_codecs() {
        assert_eq!(find(b"abcabc", b"bc", 2), Some(4));
        assert_eq!(find(b"abc", b"x", 9), None);
        assert_eq!(find_byte(b"a=b:c", b":=", 0), Some(1));
        assert_eq!(find_byte(b"a=b:c;", b";:#!", 2), Some(3));
        let doc = br#"{"user":{"emails":["a@x","b@y"]},"n":1}"#;
        assert_eq!(
            json_get(doc, "/user/emails/1").unwrap().as_deref(),
            Some(&br#""b@y""#[..])
        );
        assert_eq!(json_get(doc, "/nope").unwrap(), None);
        assert!(json_get(b"{", "").is_err());
        assert_eq!(
            json_set(doc, "/user/emails/0", br#""***""#).unwrap(),
            br#"{"user":{"emails":["***","b@y"]},"n":1}"#
        );
        assert_eq!(
            json_set(doc, "/a~1b", b"2").unwrap(),
            br#"{"user":{"emails":["a@x","b@y"]},"n":1,"a/b":2}"#
        );
        assert!(json_set(doc, "/x/y", b"1").is_err());
        assert!(json_set(doc, "/user/emails/5", b"1").is_err());
        assert_eq!(base64_encode(b"hi!"), "aGkh");
        assert_eq!(base64_decode("aGkh").unwrap(), b"hi!");
        assert!(base64_decode("***").is_err());
        assert_eq!(hex_decode(&hex_encode(b"\x00\xff")).unwrap(), b"\x00\xff");
        assert_eq!(
            hex_encode(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
