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

    /// [`Pattern::find_in`] aware of JSON, for plugins that decide per match. When `part`
    /// is a JSON object or array, only its string values are searched, each on its own
    /// (offsets are in the whole part), and with `names` every member whose name matches
    /// `names` whole comes back as [`JsonMatch::Member`] with its value's span (its inside
    /// not searched). A JSON document with escapes in a key or string comes back as one
    /// [`JsonMatch::Escapes`] (decode it and search the text); anything else is searched
    /// whole. In a plugin, the first call in a batch does every record of the batch in one
    /// host call (`find-in-json-batch`).
    pub fn find_in_json(
        &self,
        record: &Record,
        part: Part,
        names: Option<&Pattern>,
    ) -> Vec<JsonMatch> {
        let mut out = Vec::new();
        self.find_in_json_into(record, part, names, &mut out);
        out
    }

    /// Like [`Pattern::find_in_json`], into `out` (cleared first).
    pub fn find_in_json_into(
        &self,
        record: &Record,
        part: Part,
        names: Option<&Pattern>,
        out: &mut Vec<JsonMatch>,
    ) {
        out.clear();
        self.inner
            .find_in_json(record, part, names.map(|n| &n.inner), &mut |q| {
                out.push(json_match(q))
            });
    }
}

/// What [`Pattern::find_in_json`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonMatch {
    /// A match, inside a string value of a JSON document or anywhere in other text.
    Text(Match),
    /// A member whose name matched `names`: its value's kind and span (a string's
    /// content between the quotes; an object or array whole).
    Member {
        kind: JsonKind,
        start: usize,
        end: usize,
    },
    /// The document is JSON with escapes in a key or string: nothing was searched.
    Escapes,
}

/// The contract's numbers in `find-in-json-batch` quadruples.
const JSON_MEMBER: u32 = 64;
const JSON_ESCAPES: u32 = 255;

fn json_match([which, start, end]: [u32; 3]) -> JsonMatch {
    match which {
        JSON_ESCAPES => JsonMatch::Escapes,
        k if k >= JSON_MEMBER => {
            let t = token(k - JSON_MEMBER, start, end);
            JsonMatch::Member {
                kind: t.kind,
                start: t.start,
                end: t.end,
            }
        }
        pattern => JsonMatch::Text(Match {
            pattern,
            start: start as usize,
            end: end as usize,
        }),
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
        /// `find-in-json-batch`'s, for the `names` set it was asked with (its address).
        json_cache: RefCell<(Option<usize>, BatchCache)>,
    }

    impl Pattern {
        pub fn compile(sources: &[&str]) -> Result<Pattern, String> {
            let owned: Vec<String> = sources.iter().map(|s| (*s).to_owned()).collect();
            Ok(Pattern {
                handle: t::Pattern::compile(&owned)?,
                cache: RefCell::default(),
                json_cache: RefCell::default(),
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

        pub fn find_in_json(
            &self,
            record: &Record,
            part: Part,
            names: Option<&Pattern>,
            f: &mut dyn FnMut([u32; 3]),
        ) {
            let key = names.map(|n| std::ptr::from_ref(n) as usize);
            let mut cache = self.json_cache.borrow_mut();
            if cache.0 != key {
                *cache = (key, BatchCache::default());
            }
            let fetch = |p| self.handle.find_in_json_batch(p, names.map(|n| &n.handle));
            cache.1.each(record, part, fetch, |q| f([q[1], q[2], q[3]]));
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

        pub fn find_in_json(
            &self,
            record: &Record,
            part: Part,
            names: Option<&Pattern>,
            f: &mut dyn FnMut([u32; 3]),
        ) {
            if let Some(h) = part_of(record, part) {
                QUADS.with(|q| {
                    let mut tokens = q.borrow_mut();
                    self.0
                        .find_in_json(h, names.map(|n| &n.0), &mut tokens, |i, s, e| f([i, s, e]));
                });
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub mod native;

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_numbers_are_the_hosts() {
        assert_eq!(JSON_MEMBER, native::JSON_MEMBER);
        assert_eq!(JSON_ESCAPES, native::JSON_ESCAPES);
    }

    fn setup() -> Result<(Pattern, Pattern), crate::Error> {
        Ok((Pattern::new("[0-9]+")?, Pattern::new("^pin$")?))
    }

    fn report(
        (digits, names): &(Pattern, Pattern),
        r: &Record,
    ) -> Result<crate::Outcome, crate::Error> {
        let found = digits.find_in_json(r, Part::Value, Some(names));
        Ok(crate::Outcome::emit(crate::OutRecord::new(format!(
            "{found:?}"
        ))))
    }

    #[test]
    fn find_in_json_searches_string_values_and_names_members() {
        let v = r#"{"k1":"a 12","pin":4321,"n":7}"#;
        let h = crate::testing::Harness::with_init(setup, report);
        let out = h.run_values(&[v, "x 5", r#"["\\u0041 9"]"#]);
        let at = |what: &str| v.find(what).unwrap();
        let expect = [
            JsonMatch::Text(Match {
                pattern: 0,
                start: at("12"),
                end: at("12") + 2,
            }),
            JsonMatch::Member {
                kind: JsonKind::Scalar,
                start: at("4321"),
                end: at("4321") + 4,
            },
        ];
        assert_eq!(out[0].values(), [format!("{expect:?}")]);
        let text = [JsonMatch::Text(Match {
            pattern: 0,
            start: 2,
            end: 3,
        })];
        assert_eq!(out[1].values(), [format!("{text:?}")]);
        assert_eq!(out[2].values(), [format!("{:?}", [JsonMatch::Escapes])]);
    }
}
