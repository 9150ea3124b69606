//! Cranelift's incremental compilation cache, in memory: compiled functions keyed by their
//! content and the compiler's settings. A rebuilt plugin whose code barely changed — a
//! Python or JavaScript plugin is a 12–18 MB interpreter plus a little app — then compiles
//! only the functions that changed, so the edit → running loop is seconds, not the ~18 s
//! of compiling the whole interpreter again. (Identical bytes never compile at all: the
//! artifact cache by digest answers them.)

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use wasmtime::CacheStore;

/// Bytes of compiled functions kept (two generations of at most half each).
pub const CACHE_BYTES: usize = 384 << 20;

/// Two generations: lookups promote from the older one; when the newer fills up, the older
/// is dropped. An approximation of LRU at the cost of a map swap.
#[derive(Debug, Default)]
struct Generations {
    young: HashMap<Vec<u8>, Vec<u8>>,
    young_bytes: usize,
    old: HashMap<Vec<u8>, Vec<u8>>,
}

/// The store handed to both engines (keys include the compiler's flags, so the fuel-metered
/// engine's functions never answer for the other's).
#[derive(Debug, Default)]
pub struct CompileCache {
    gens: Mutex<Generations>,
}

impl CompileCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.gens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries and bytes held.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let g = self.lock();
        let bytes = g.young_bytes + g.old.values().map(Vec::len).sum::<usize>();
        (g.young.len() + g.old.len(), bytes)
    }
}

impl Generations {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        let size = key.len() + value.len();
        if size > CACHE_BYTES / 2 {
            return;
        }
        if self.young_bytes + size > CACHE_BYTES / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        self.young_bytes += size;
        if let Some(prev) = self.young.insert(key, value) {
            self.young_bytes = self.young_bytes.saturating_sub(prev.len());
        }
    }
}

impl CacheStore for CompileCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let mut g = self.lock();
        if let Some(v) = g.young.get(key) {
            return Some(Cow::Owned(v.clone()));
        }
        let v = g.old.remove(key)?;
        g.put(key.to_vec(), v.clone());
        Some(Cow::Owned(v))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.lock().put(key.to_vec(), value);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_two_generations_and_promotes_on_use() {
        let c = CompileCache::default();
        let big = vec![0u8; CACHE_BYTES / 8];
        c.insert(b"a", big.clone());
        for i in 0..3u8 {
            c.insert(&[b'x', i], big.clone());
        }
        // "a" moved to the old generation; a lookup brings it back.
        assert!(c.get(b"a").is_some());
        for i in 0..8u8 {
            c.insert(&[b'y', i], big.clone());
        }
        assert!(c.get(b"a").is_none(), "dropped with its generation");
        let (_, bytes) = c.size();
        assert!(bytes <= CACHE_BYTES, "{bytes}");
    }
}
