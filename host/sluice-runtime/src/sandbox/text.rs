//! The `text` interface (contract 0.2.1; `find-in-json-batch` 0.2.2): native primitives a plugin calls instead of
//! running hot loops in wasm. The work itself is the SDK's [`sluice_sdk::text::native`]
//! (what the SDK runs natively too); this file bounds it: every call is checked against
//! the call's deadline and charged against its work budget, inputs are capped, and an
//! instance holds a bounded number of compiled pattern sets.

use std::ops::Range;

use bytes::Bytes;
use sluice_sdk::codec::{Reader, RecordView};
use sluice_sdk::text::native::{self, Compiled};
use wasmtime::component::Resource;

use super::{HostState, Stop};
use crate::bindings_v2::sluice::transform::text::{Host, HostPattern, Part};

/// Work units one host call costs on top of one per input byte.
pub const CALL_WORK: u64 = 64;
/// Largest input of one call.
pub const MAX_INPUT_BYTES: usize = 16 << 20;
/// Pattern sets one instance may hold at once.
pub const MAX_PATTERN_SETS: usize = 256;

/// A pattern set a plugin compiled (the `pattern` resource).
pub type Pattern = Compiled;

/// The input records of the running `process` call, with where each record's key and value
/// lie — found on first use and kept for the call, so several batch-wide primitives (a
/// pattern and the JSON index, say) walk the records once.
pub struct CallBatch {
    bytes: Bytes,
    spans: std::sync::OnceLock<Vec<[Option<Range<usize>>; 2]>>,
}

impl CallBatch {
    pub fn new(bytes: Bytes) -> CallBatch {
        CallBatch {
            bytes,
            spans: std::sync::OnceLock::new(),
        }
    }

    /// `part` of each record (records as the call received them, already checked; the walk
    /// stops quietly at anything odd).
    fn parts(&self, part: Part) -> impl Iterator<Item = Option<&[u8]>> {
        let spans = self.spans.get_or_init(|| {
            let base = self.bytes.as_ptr() as usize;
            let at = |b: &[u8]| b.as_ptr() as usize - base..b.as_ptr() as usize - base + b.len();
            let mut spans = Vec::new();
            let mut r = Reader::new(&self.bytes);
            while r.remaining() > 0 {
                let Ok(view) = RecordView::read(&mut r) else {
                    break;
                };
                spans.push([view.key.map(at), view.value.map(at)]);
            }
            spans
        });
        let which = usize::from(part == Part::Value);
        spans
            .iter()
            .map(move |s| s[which].clone().map(|r| &self.bytes[r]))
    }
}

impl HostState {
    /// Charges `bytes` of work to the call, after checking its deadline and interrupt.
    fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        if let Some(stop) = self.should_stop() {
            return Err(wasmtime::Error::new(stop));
        }
        if bytes > MAX_INPUT_BYTES {
            return Err(wasmtime::Error::msg(format!(
                "a text call's input of {bytes} bytes exceeds the limit of {MAX_INPUT_BYTES}"
            )));
        }
        let cost = CALL_WORK + bytes as u64;
        match self.work.left.checked_sub(cost) {
            Some(left) => {
                self.work.left = left;
                Ok(())
            }
            None => Err(wasmtime::Error::new(Stop::HostWork {
                limit: self.work.limit,
            })),
        }
    }

    fn pattern(&self, p: &Resource<Pattern>) -> wasmtime::Result<&Compiled> {
        Ok(self.table.get(p)?)
    }
}

impl HostPattern for HostState {
    fn compile(
        &mut self,
        sources: Vec<String>,
    ) -> wasmtime::Result<Result<Resource<Pattern>, String>> {
        let bytes = sources.iter().map(String::len).sum();
        self.charge(bytes)?;
        if self.patterns >= MAX_PATTERN_SETS {
            return Ok(Err(format!(
                "an instance holds at most {MAX_PATTERN_SETS} pattern sets"
            )));
        }
        let compiled = match Compiled::new(&sources) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        self.patterns += 1;
        Ok(Ok(self.table.push(compiled)?))
    }

    fn is_match(&mut self, p: Resource<Pattern>, haystack: Vec<u8>) -> wasmtime::Result<bool> {
        self.charge(haystack.len())?;
        Ok(self.pattern(&p)?.is_match(&haystack))
    }

    fn find_all(&mut self, p: Resource<Pattern>, haystack: Vec<u8>) -> wasmtime::Result<Vec<u32>> {
        self.charge(haystack.len())?;
        let mut out = Vec::new();
        self.pattern(&p)?
            .find_all(&haystack, |i, s, e| out.extend([i, s, e]));
        Ok(out)
    }

    fn find_in_batch(&mut self, p: Resource<Pattern>, part: Part) -> wasmtime::Result<Vec<u32>> {
        let Some(batch) = self.batch.clone() else {
            return Ok(Vec::new());
        };
        self.charge(batch.parts(part).flatten().map(<[u8]>::len).sum())?;
        let re = self.pattern(&p)?;
        let mut out = Vec::new();
        for (n, h) in batch.parts(part).enumerate() {
            if let Some(h) = h {
                let n = n as u32;
                re.find_all(h, |i, s, e| out.extend([n, i, s, e]));
            }
        }
        Ok(out)
    }

    fn find_in_json_batch(
        &mut self,
        p: Resource<Pattern>,
        part: Part,
        names: Option<Resource<Pattern>>,
    ) -> wasmtime::Result<Vec<u32>> {
        let Some(batch) = self.batch.clone() else {
            return Ok(Vec::new());
        };
        self.charge(batch.parts(part).flatten().map(<[u8]>::len).sum())?;
        let re = self.pattern(&p)?;
        let names = names.as_ref().map(|n| self.pattern(n)).transpose()?;
        let (mut out, mut tokens) = (Vec::new(), Vec::new());
        for (n, h) in batch.parts(part).enumerate() {
            if let Some(h) = h {
                let n = n as u32;
                re.find_in_json(h, names, &mut tokens, |i, s, e| out.extend([n, i, s, e]));
            }
        }
        Ok(out)
    }

    fn replace_all(
        &mut self,
        p: Resource<Pattern>,
        haystack: Vec<u8>,
        replacement: String,
    ) -> wasmtime::Result<Vec<u8>> {
        self.charge(haystack.len() + replacement.len())?;
        Ok(self.pattern(&p)?.replace_all(&haystack, &replacement))
    }

    fn drop(&mut self, p: Resource<Pattern>) -> wasmtime::Result<()> {
        self.table.delete(p)?;
        self.patterns = self.patterns.saturating_sub(1);
        Ok(())
    }
}

impl Host for HostState {
    fn json_index_batch(&mut self, part: Part) -> wasmtime::Result<Vec<u32>> {
        let Some(batch) = self.batch.clone() else {
            return Ok(Vec::new());
        };
        self.charge(batch.parts(part).flatten().map(<[u8]>::len).sum())?;
        let mut out = Vec::new();
        for (n, h) in batch.parts(part).enumerate() {
            if let Some(h) = h.filter(|h| native::looks_like_json(h)) {
                native::json_index(h, n as u32, &mut out);
            }
        }
        Ok(out)
    }

    fn part_spans_batch(&mut self, part: Part) -> wasmtime::Result<Vec<u32>> {
        let Some(batch) = self.batch.clone() else {
            return Ok(Vec::new());
        };
        let base = batch.bytes.as_ptr() as usize;
        let mut out = Vec::new();
        for p in batch.parts(part) {
            match p {
                Some(b) => {
                    let start = b.as_ptr() as usize - base;
                    out.extend([start as u32, (start + b.len()) as u32]);
                }
                None => out.extend([u32::MAX, u32::MAX]),
            }
        }
        self.charge(out.len() * 4)?;
        Ok(out)
    }

    fn json_index(&mut self, document: Vec<u8>) -> wasmtime::Result<Vec<u32>> {
        self.charge(document.len())?;
        let mut quads = Vec::new();
        native::json_index(&document, 0, &mut quads);
        Ok(quads
            .chunks_exact(4)
            .flat_map(|q| [q[1], q[2], q[3]])
            .collect())
    }

    fn find(
        &mut self,
        haystack: Vec<u8>,
        needle: Vec<u8>,
        from: u32,
    ) -> wasmtime::Result<Option<u32>> {
        self.charge(haystack.len() + needle.len())?;
        Ok(native::find(&haystack, &needle, from as usize).map(|p| p as u32))
    }

    fn find_byte(
        &mut self,
        haystack: Vec<u8>,
        set: Vec<u8>,
        from: u32,
    ) -> wasmtime::Result<Option<u32>> {
        self.charge(haystack.len() + set.len())?;
        Ok(native::find_byte(&haystack, &set, from as usize).map(|p| p as u32))
    }

    fn json_get(
        &mut self,
        document: Vec<u8>,
        pointer: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        self.charge(document.len() + pointer.len())?;
        Ok(native::json_get(&document, &pointer))
    }

    fn json_set(
        &mut self,
        document: Vec<u8>,
        pointer: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.charge(document.len() + pointer.len() + value.len())?;
        Ok(native::json_set(&document, &pointer, &value))
    }

    fn base64_encode(&mut self, data: Vec<u8>) -> wasmtime::Result<String> {
        self.charge(data.len())?;
        Ok(native::base64_encode(&data))
    }

    fn base64_decode(&mut self, text: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.charge(text.len())?;
        Ok(native::base64_decode(&text))
    }

    fn hex_encode(&mut self, data: Vec<u8>) -> wasmtime::Result<String> {
        self.charge(data.len())?;
        Ok(native::hex_encode(&data))
    }

    fn hex_decode(&mut self, text: String) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.charge(text.len())?;
        Ok(native::hex_decode(&text))
    }

    fn sha256(&mut self, data: Vec<u8>) -> wasmtime::Result<Vec<u8>> {
        self.charge(data.len())?;
        Ok(native::sha256(&data))
    }
}
