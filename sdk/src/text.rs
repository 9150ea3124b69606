//! Native primitives for hot loops: regular expressions, substring and byte-set search,
//! JSON by path, base64, hex and SHA-256.
//!
//! In a plugin (wasm) these are host calls (`sluice:transform/text@0.2.2`): the host runs
//! them at native speed, so a plugin keeps its policy in the sandbox and leaves the
//! scanning to the host. Natively (tests, the harness) the same functions run the code
//! in [`native`] — the very code the host runs — so a plugin behaves the same in both.
//!
//! Match every record of a batch in one host call with [`Pattern::find_in`]:
//!
//! ```
//! use sluice_sdk::text::{Part, Pattern};
//! use sluice_sdk::{Error, Outcome, Record};
//!
//! fn setup() -> Result<Pattern, Error> {
//!     Pattern::new(r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b") // US social security numbers
//! }
//!
//! fn redact(p: &Pattern, r: &Record) -> Result<Outcome, Error> {
//!     let (Some(v), m) = (r.value(), p.find_in(r, Part::Value)) else {
//!         return Ok(Outcome::keep());
//!     };
//!     if m.is_empty() {
//!         return Ok(Outcome::keep());
//!     }
//!     Ok(Outcome::keep_rewritten(|out| {
//!         let mut last = 0;
//!         for m in &m {
//!             out.extend_from_slice(&v[last..m.start]);
//!             out.extend_from_slice(b"***-**-****");
//!             last = m.end;
//!         }
//!         out.extend_from_slice(&v[last..]);
//!         true
//!     }))
//! }
//! # let h = sluice_sdk::testing::Harness::with_init(setup, redact);
//! # let out = h.run_values(&["id 123-45-6789 ok", "none"]);
//! # assert_eq!(out[0].values(), ["id ***-**-**** ok"]);
//! ```

use crate::{Error, Record};

/// Which bytes of a record [`Pattern::find_in`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Key,
    Value,
}

/// One match: which pattern of the set matched, and where (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub pattern: u32,
    pub start: usize,
    pub end: usize,
}

/// Regular expressions compiled once (in `init`), in the syntax of Rust's `regex` crate:
/// time linear in the input, no backreferences or look-around.
pub struct Pattern {
    inner: imp::Pattern,
}

impl std::fmt::Debug for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pattern").finish_non_exhaustive()
    }
}

impl Pattern {
    /// One regular expression.
    pub fn new(source: &str) -> Result<Pattern, Error> {
        Self::set(&[source])
    }

    /// A set: a match is the leftmost of any of them (the first wins at the same start)
    /// and says which matched ([`Match::pattern`]).
    pub fn set(sources: &[&str]) -> Result<Pattern, Error> {
        Ok(Pattern {
            inner: imp::Pattern::compile(sources).map_err(Error::new)?,
        })
    }

    pub fn is_match(&self, haystack: &[u8]) -> bool {
        self.inner.is_match(haystack)
    }

    /// Every match, leftmost first, not overlapping.
    pub fn find_all(&self, haystack: &[u8]) -> Vec<Match> {
        triples(&self.inner.find_all(haystack))
    }

    /// `haystack` with every match replaced (`$1`, `${name}`, `$$` expand).
    pub fn replace_all(&self, haystack: &[u8], replacement: &str) -> Vec<u8> {
        self.inner.replace_all(haystack, replacement)
    }

    /// The matches in `part` of `record`. In a plugin, the first call in a batch finds
    /// the matches of every record of the batch in one host call, and later calls read
    /// them from there: per record this costs a lookup, not a call.
    pub fn find_in(&self, record: &Record, part: Part) -> Vec<Match> {
        let mut out = Vec::new();
        self.find_in_into(record, part, &mut out);
        out
    }

    /// Like [`Pattern::find_in`], into `out` (cleared first), which a plugin can reuse.
    pub fn find_in_into(&self, record: &Record, part: Part, out: &mut Vec<Match>) {
        out.clear();
        self.inner.find_in(record, part, out);
    }
}

fn triples(flat: &[u32]) -> Vec<Match> {
    flat.chunks_exact(3)
        .map(|t| Match {
            pattern: t[0],
            start: t[1] as usize,
            end: t[2] as usize,
        })
        .collect()
}

/// What a [`JsonToken`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonKind {
    /// An object: `start..end` runs from `{` to after its `}`; its tokens follow.
    Object,
    /// An array, likewise.
    Array,
    /// A member's name: `start..end` is the content between the quotes.
    Key,
    /// A string value, likewise.
    String,
    /// A number, `true`, `false` or `null`.
    Scalar,
    /// The text only looks like JSON: `start` is where it stops being JSON.
    Invalid,
}

/// One token of a JSON document's structural index, in document order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonToken {
    pub kind: JsonKind,
    /// A key or string that holds escapes (its content is not its text).
    pub escaped: bool,
    pub start: usize,
    pub end: usize,
}

fn token(kind: u32, start: u32, end: u32) -> JsonToken {
    let escaped = kind & 16 != 0;
    let kind = match kind & !16 {
        0 => JsonKind::Object,
        1 => JsonKind::Array,
        2 => JsonKind::Key,
        3 => JsonKind::String,
        4 => JsonKind::Scalar,
        _ => JsonKind::Invalid,
    };
    JsonToken {
        kind,
        escaped,
        start: start as usize,
        end: end as usize,
    }
}

/// Whether `b` starts like a JSON object or array (its first byte other than JSON
/// whitespace is `{` or `[`): what [`json_index_in`] indexes.
pub fn looks_like_json(b: &[u8]) -> bool {
    matches!(
        b.iter()
            .find(|c| !matches!(c, b' ' | b'\n' | b'\r' | b'\t')),
        Some(b'{' | b'[')
    )
}

/// The structural index of a JSON object or array: its tokens in document order (one
/// `Invalid` token when it is not JSON), without the plugin parsing a byte.
pub fn json_index(document: &[u8]) -> Vec<JsonToken> {
    imp::json_index(document)
        .chunks_exact(3)
        .map(|t| token(t[0], t[1], t[2]))
        .collect()
}

/// Like [`json_index`], for `part` of `record`, into `out` (cleared first); nothing when it
/// does not start like a JSON object or array. In a plugin, the first call in a batch
/// indexes every record of the batch in one host call.
pub fn json_index_in(record: &Record, part: Part, out: &mut Vec<JsonToken>) {
    out.clear();
    imp::json_index_in(record, part, out);
}

/// The start of the first `needle` in `haystack` at or after `from`.
pub fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    imp::find(haystack, needle, from)
}

/// The position of the first byte at or after `from` that is in `set`.
pub fn find_byte(haystack: &[u8], set: &[u8], from: usize) -> Option<usize> {
    imp::find_byte(haystack, set, from)
}

/// The element at a JSON pointer (RFC 6901, `/a/0/b`) as compact JSON text.
pub fn json_get(document: &[u8], pointer: &str) -> Result<Option<Vec<u8>>, Error> {
    imp::json_get(document, pointer).map_err(Error::new)
}

/// `document` with the element at `pointer` set to `value` (JSON text), compact.
pub fn json_set(document: &[u8], pointer: &str, value: &[u8]) -> Result<Vec<u8>, Error> {
    imp::json_set(document, pointer, value).map_err(Error::new)
}

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    imp::base64_encode(data)
}

pub fn base64_decode(text: &str) -> Result<Vec<u8>, Error> {
    imp::base64_decode(text).map_err(Error::new)
}

/// Lower-case hex.
pub fn hex_encode(data: &[u8]) -> String {
    imp::hex_encode(data)
}

pub fn hex_decode(text: &str) -> Result<Vec<u8>, Error> {
    imp::hex_decode(text).map_err(Error::new)
}

/// The SHA-256 digest.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = imp::sha256(data);
    let mut out = [0u8; 32];
    if d.len() == 32 {
        out.copy_from_slice(&d);
    }
    out
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{JsonToken, Match, Part, token};
    use crate::__bindings::sluice::transform::text as t;
    use crate::Record;
    use std::cell::RefCell;

    /// Batch-wide results of one host call per part (key, value) and batch: the batch
    /// they are for, the flat quadruples (`record` first), and where the last record's
    /// ended — records come in order, so the next one's start there.
    #[derive(Default)]
    pub struct BatchCache([(u64, Vec<u32>, usize); 2]);

    impl BatchCache {
        /// Calls `f` with each quadruple of `record`'s `part`, after `fetch` gets the
        /// batch's when this batch has none yet.
        pub fn each(
            &mut self,
            record: &Record,
            part: Part,
            fetch: impl FnOnce(t::Part) -> Vec<u32>,
            mut f: impl FnMut(&[u32]),
        ) {
            let batch = crate::batch_number();
            let (which, p) = match part {
                Part::Key => (0, t::Part::Key),
                Part::Value => (1, t::Part::Value),
            };
            let (seen, flat, cursor) = &mut self.0[which];
            if *seen != batch {
                *flat = fetch(p);
                (*seen, *cursor) = (batch, 0);
            }
            let quads = flat.as_slice();
            let at = |i: usize| quads.get(i * 4).copied();
            // The usual case: this record's quadruples start at the cursor (or it has none).
            let mut i = *cursor;
            if i > 0 && at(i - 1).is_some_and(|r| r >= record.index) {
                // Asked again, or out of order: search from the start.
                i = partition(quads.len() / 4, |k| quads[k * 4] < record.index);
            }
            while at(i).is_some_and(|r| r < record.index) {
                i += 1;
            }
            while let Some(q) = quads.get(i * 4..i * 4 + 4)
                && q[0] == record.index
            {
                f(q);
                i += 1;
            }
            *cursor = i;
        }
    }

    pub struct Pattern {
        handle: t::Pattern,
        cache: RefCell<BatchCache>,
    }

    impl Pattern {
        pub fn compile(sources: &[&str]) -> Result<Pattern, String> {
            let owned: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
            Ok(Pattern {
                handle: t::Pattern::compile(&owned)?,
                cache: RefCell::default(),
            })
        }

        pub fn is_match(&self, h: &[u8]) -> bool {
            self.handle.is_match(h)
        }

        pub fn find_all(&self, h: &[u8]) -> Vec<u32> {
            self.handle.find_all(h)
        }

        pub fn replace_all(&self, h: &[u8], r: &str) -> Vec<u8> {
            self.handle.replace_all(h, r)
        }

        pub fn find_in(&self, record: &Record, part: Part, out: &mut Vec<Match>) {
            let fetch = |p| self.handle.find_in_batch(p);
            self.cache.borrow_mut().each(record, part, fetch, |q| {
                out.push(Match {
                    pattern: q[1],
                    start: q[2] as usize,
                    end: q[3] as usize,
                })
            });
        }
    }

    thread_local! {
        static JSON: RefCell<BatchCache> = RefCell::default();
    }

    pub fn json_index_in(record: &Record, part: Part, out: &mut Vec<JsonToken>) {
        JSON.with(|c| {
            c.borrow_mut().each(record, part, t::json_index_batch, |q| {
                out.push(token(q[1], q[2], q[3]))
            })
        });
    }

    pub fn json_index(d: &[u8]) -> Vec<u32> {
        t::json_index(d)
    }

    /// The first `i` in `0..n` for which `before(i)` is false (`before` is monotone).
    fn partition(n: usize, before: impl Fn(usize) -> bool) -> usize {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn u32_of(n: usize) -> u32 {
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn find(h: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        t::find(h, needle, u32_of(from)).map(|p| p as usize)
    }

    pub fn find_byte(h: &[u8], set: &[u8], from: usize) -> Option<usize> {
        t::find_byte(h, set, u32_of(from)).map(|p| p as usize)
    }

    pub fn json_get(d: &[u8], p: &str) -> Result<Option<Vec<u8>>, String> {
        t::json_get(d, p)
    }

    pub fn json_set(d: &[u8], p: &str, v: &[u8]) -> Result<Vec<u8>, String> {
        t::json_set(d, p, v)
    }

    pub fn base64_encode(d: &[u8]) -> String {
        t::base64_encode(d)
    }

    pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
        t::base64_decode(s)
    }

    pub fn hex_encode(d: &[u8]) -> String {
        t::hex_encode(d)
    }

    pub fn hex_decode(s: &str) -> Result<Vec<u8>, String> {
        t::hex_decode(s)
    }

    pub fn sha256(d: &[u8]) -> Vec<u8> {
        t::sha256(d)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::native;
    use super::{JsonToken, Match, Part, token};
    use crate::Record;

    fn part_of<'a>(record: &Record<'a>, part: Part) -> Option<&'a [u8]> {
        match part {
            Part::Key => record.key(),
            Part::Value => record.value(),
        }
    }

    thread_local! {
        static QUADS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    pub fn json_index_in(record: &Record, part: Part, out: &mut Vec<JsonToken>) {
        if let Some(d) = part_of(record, part).filter(|d| native::looks_like_json(d)) {
            QUADS.with(|q| {
                let mut quads = q.borrow_mut();
                quads.clear();
                native::json_index(d, 0, &mut quads);
                out.extend(quads.chunks_exact(4).map(|q| token(q[1], q[2], q[3])));
            });
        }
    }

    pub fn json_index(d: &[u8]) -> Vec<u32> {
        let mut quads = Vec::new();
        native::json_index(d, 0, &mut quads);
        quads
            .chunks_exact(4)
            .flat_map(|q| [q[1], q[2], q[3]])
            .collect()
    }

    pub use native::{
        base64_decode, base64_encode, find, find_byte, hex_decode, hex_encode, json_get, json_set,
        sha256,
    };

    pub struct Pattern(native::Compiled);

    impl Pattern {
        pub fn compile(sources: &[&str]) -> Result<Pattern, String> {
            native::Compiled::new(sources).map(Pattern)
        }

        pub fn is_match(&self, h: &[u8]) -> bool {
            self.0.is_match(h)
        }

        pub fn find_all(&self, h: &[u8]) -> Vec<u32> {
            let mut out = Vec::new();
            self.0.find_all(h, |i, s, e| out.extend([i, s, e]));
            out
        }

        pub fn replace_all(&self, h: &[u8], r: &str) -> Vec<u8> {
            self.0.replace_all(h, r)
        }

        pub fn find_in(&self, record: &Record, part: Part, out: &mut Vec<Match>) {
            if let Some(h) = part_of(record, part) {
                self.0.find_all(h, |pattern, s, e| {
                    out.push(Match {
                        pattern,
                        start: s as usize,
                        end: e as usize,
                    })
                });
            }
        }
    }
}

/// The implementations the host runs for a plugin's `text` calls, and that the SDK runs
/// natively: one code for both, so a plugin tested natively behaves the same in wasm.
#[cfg(not(target_arch = "wasm32"))]
pub mod native {
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
}
