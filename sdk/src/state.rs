//! Keyed state and event-time timers, scoped to the input partition being processed.
//!
//! ```
//! use sluice_sdk::{Error, Outcome, Record, state};
//!
//! /// Counts records per key; emits the running count.
//! fn count(r: &Record) -> Result<Outcome, Error> {
//!     let key = r.key().unwrap_or_default();
//!     let n = state::update(key, |n: &mut Option<u64>| {
//!         *n = Some(n.unwrap_or(0) + 1);
//!         n.unwrap_or(0)
//!     })?;
//!     Ok(Outcome::keep_with_value(n.to_string()))
//! }
//! # let out = sluice_sdk::testing::Harness::new(count).run_values(&["a", "b"]);
//! # assert_eq!(out[1].values(), ["2"]);
//! ```
//!
//! Reads and writes go through a cache that lives for one call of the plugin (one batch):
//! the first read of a key asks the host, later reads and writes of it stay in the plugin,
//! and at the end of the call every change goes to the host in one `apply`. Typed values
//! (`update`, `get_json`, `put_json`) are decoded once per call and encoded once per call,
//! however many records touch them. When a call fails (an `Err` from the batch or a trap),
//! the host undoes what it changed.
//!
//! Values are stored as bytes; the typed functions store JSON, which the state API of the
//! server shows as it is.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::codec::{CodecError, Reader, put_uvarint};

/// Longest key the host accepts.
pub const MAX_KEY_BYTES: usize = 64 << 10;
/// Largest value the host accepts.
pub const MAX_VALUE_BYTES: usize = 4 << 20;

/// Operation codes of `apply`.
pub const OP_PUT: u8 = 0;
pub const OP_DELETE: u8 = 1;
pub const OP_SET_TIMER: u8 = 2;
pub const OP_CANCEL_TIMER: u8 = 3;

/// One state operation, as `apply` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op<'a> {
    Put(&'a [u8], &'a [u8]),
    Delete(&'a [u8]),
    SetTimer(&'a [u8], i64),
    CancelTimer(&'a [u8], i64),
}

/// Appends one operation in the `apply` layout.
pub fn put_op(out: &mut Vec<u8>, op: Op<'_>) {
    match op {
        Op::Put(k, v) => {
            out.push(OP_PUT);
            put_uvarint(out, k.len() as u64);
            out.extend_from_slice(k);
            put_uvarint(out, v.len() as u64);
            out.extend_from_slice(v);
        }
        Op::Delete(k) => {
            out.push(OP_DELETE);
            put_uvarint(out, k.len() as u64);
            out.extend_from_slice(k);
        }
        Op::SetTimer(k, at) | Op::CancelTimer(k, at) => {
            out.push(if matches!(op, Op::SetTimer(..)) {
                OP_SET_TIMER
            } else {
                OP_CANCEL_TIMER
            });
            out.extend_from_slice(&at.to_le_bytes());
            put_uvarint(out, k.len() as u64);
            out.extend_from_slice(k);
        }
    }
}

fn sized<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], CodecError> {
    let n = r.uvarint()?;
    let n = usize::try_from(n).map_err(|_| CodecError::BadLength)?;
    r.bytes(n)
}

/// Reads the operations of an `apply` call, checking every length.
pub fn read_ops(buf: &[u8]) -> impl Iterator<Item = Result<Op<'_>, CodecError>> {
    let mut r = Reader::new(buf);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || r.is_empty() {
            return None;
        }
        let op = (|| {
            Ok(match r.u8()? {
                OP_PUT => {
                    let k = sized(&mut r)?;
                    Op::Put(k, sized(&mut r)?)
                }
                OP_DELETE => Op::Delete(sized(&mut r)?),
                code @ (OP_SET_TIMER | OP_CANCEL_TIMER) => {
                    let at = r.u64_le()? as i64;
                    let k = sized(&mut r)?;
                    if code == OP_SET_TIMER {
                        Op::SetTimer(k, at)
                    } else {
                        Op::CancelTimer(k, at)
                    }
                }
                other => return Err(CodecError::UnknownCode(other)),
            })
        })();
        failed = op.is_err();
        Some(op)
    })
}

/// Appends one fired timer in the `on-timers` layout.
pub fn put_timer(out: &mut Vec<u8>, at: i64, key: &[u8]) {
    out.extend_from_slice(&at.to_le_bytes());
    put_uvarint(out, key.len() as u64);
    out.extend_from_slice(key);
}

/// Reads the next fired timer of an `on-timers` list.
pub fn read_timer<'a>(r: &mut Reader<'a>) -> Result<(i64, &'a [u8]), CodecError> {
    let at = r.u64_le()? as i64;
    Ok((at, sized(r)?))
}

/// Appends one scan entry (key and value, each length-prefixed).
pub fn put_entry(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    put_uvarint(out, key.len() as u64);
    out.extend_from_slice(key);
    put_uvarint(out, value.len() as u64);
    out.extend_from_slice(value);
}

/// Reads the entries of a scan result.
pub fn read_entries(buf: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), CodecError>> {
    let mut r = Reader::new(buf);
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || r.is_empty() {
            return None;
        }
        let e = (|| {
            let k = sized(&mut r)?;
            Ok((k, sized(&mut r)?))
        })();
        failed = e.is_err();
        Some(e)
    })
}

#[cfg(target_arch = "wasm32")]
mod backend {
    use crate::__bindings::sluice::transform::state as s;

    pub fn get(key: &[u8]) -> Option<Vec<u8>> {
        s::get(key)
    }

    pub fn scan(prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Vec<u8> {
        s::scan(prefix, after, limit)
    }

    pub fn apply(ops: &[u8]) {
        s::apply(ops)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod backend {
    //! Natively the state is the test environment's (see `native`), with the host's rules.
    use super::{MAX_KEY_BYTES, MAX_VALUE_BYTES, Op, read_ops};
    use crate::native::with_env;

    pub fn get(key: &[u8]) -> Option<Vec<u8>> {
        with_env(|e| e.state.get(key).cloned())
    }

    pub fn scan(prefix: &[u8], after: Option<&[u8]>, limit: u32) -> Vec<u8> {
        with_env(|e| {
            let mut out = Vec::new();
            let from = after.map_or(prefix.to_vec(), <[u8]>::to_vec);
            let range = e
                .state
                .range(from..)
                .filter(|(k, _)| Some(k.as_slice()) != after)
                .take_while(|(k, _)| k.starts_with(prefix))
                .take(limit.max(1) as usize);
            for (k, v) in range {
                super::put_entry(&mut out, k, v);
            }
            out
        })
    }

    pub fn apply(ops: &[u8]) {
        with_env(|e| {
            for op in read_ops(ops) {
                let op = op.unwrap_or_else(|err| panic!("malformed state operations: {err}"));
                match op {
                    Op::Put(k, v) => {
                        assert!(
                            k.len() <= MAX_KEY_BYTES,
                            "state key over {MAX_KEY_BYTES} bytes"
                        );
                        assert!(
                            v.len() <= MAX_VALUE_BYTES,
                            "state value over {MAX_VALUE_BYTES} bytes"
                        );
                        e.state.insert(k.to_vec(), v.to_vec());
                    }
                    Op::Delete(k) => {
                        e.state.remove(k);
                    }
                    Op::SetTimer(k, at) => {
                        e.timers.insert((at, k.to_vec()));
                    }
                    Op::CancelTimer(k, at) => {
                        e.timers.remove(&(at, k.to_vec()));
                    }
                }
            }
        })
    }
}

/// A decoded value cached for the call, encoded when the call ends.
trait Typed: Any {
    fn encode(&self) -> Result<Option<Vec<u8>>, Error>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// A typed value stored as JSON; `None` is a deleted key.
struct Json<T>(Option<T>);

impl<T: Serialize + 'static> Typed for Json<T> {
    fn encode(&self) -> Result<Option<Vec<u8>>, Error> {
        self.0
            .as_ref()
            .map(|v| serde_json::to_vec(v).map_err(|e| Error::new(format!("state value: {e}"))))
            .transpose()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

enum Val {
    Missing,
    Bytes(Vec<u8>),
    Typed(Box<dyn Typed>),
}

struct Slot {
    val: Val,
    dirty: bool,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<Vec<u8>, Slot, foldhash::fast::FixedState>,
    /// Timer operations, in the order they were made.
    timers: Vec<u8>,
    dirty: bool,
}

/// Sends encoded operations to the host.
type ApplyFn = fn(&[u8]);

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
    /// How changes reach the host, set by the first use of state. The call machinery
    /// reaches the host only through it, so a plugin that never uses state links no
    /// state import: its component does not import the `state` interface and the host
    /// runs it as a stateless transform (no changelog, no checkpoints).
    static APPLY: std::cell::Cell<Option<ApplyFn>> = const { std::cell::Cell::new(None) };
}

/// The cache, for the functions plugins call (marks the plugin as using state).
fn with_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    APPLY.with(|a| a.set(Some(backend::apply)));
    with_call_cache(f)
}

/// The cache, for the call machinery (does not link the host's state functions).
fn with_call_cache<R>(f: impl FnOnce(&mut Cache) -> R) -> R {
    CACHE.with(|c| f(&mut c.borrow_mut()))
}

fn apply(ops: &[u8]) {
    if let Some(f) = APPLY.with(std::cell::Cell::get) {
        f(ops);
    }
}

impl Cache {
    /// The slot of `key`, loaded from the host on first use.
    fn slot(&mut self, key: &[u8]) -> &mut Slot {
        if !self.slots.contains_key(key) {
            let val = backend::get(key).map_or(Val::Missing, Val::Bytes);
            self.slots.insert(key.to_vec(), Slot { val, dirty: false });
        }
        self.slots.get_mut(key).expect("inserted above")
    }

    fn set(&mut self, key: &[u8], val: Val) {
        self.dirty = true;
        match self.slots.get_mut(key) {
            Some(s) => {
                s.val = val;
                s.dirty = true;
            }
            None => {
                self.slots.insert(key.to_vec(), Slot { val, dirty: true });
            }
        }
    }

    /// The changes of the call so far as `apply` operations; marks them clean.
    fn drain_ops(&mut self) -> Result<Vec<u8>, Error> {
        let mut ops = Vec::new();
        if !self.dirty {
            return Ok(ops);
        }
        for (k, s) in self.slots.iter_mut().filter(|(_, s)| s.dirty) {
            s.dirty = false;
            match &s.val {
                Val::Missing => put_op(&mut ops, Op::Delete(k)),
                Val::Bytes(v) => put_op(&mut ops, Op::Put(k, v)),
                Val::Typed(t) => match t.encode()? {
                    Some(v) => put_op(&mut ops, Op::Put(k, &v)),
                    None => put_op(&mut ops, Op::Delete(k)),
                },
            }
        }
        ops.append(&mut self.timers);
        self.dirty = false;
        Ok(ops)
    }
}

/// Starts a call with an empty cache.
pub(crate) fn begin_call() {
    with_call_cache(|c| *c = Cache::default());
}

/// Sends the call's changes to the host and empties the cache.
pub(crate) fn end_call() -> Result<(), Error> {
    let ops = with_call_cache(|c| {
        let ops = c.drain_ops();
        *c = Cache::default();
        ops
    })?;
    if !ops.is_empty() {
        apply(&ops);
    }
    Ok(())
}

/// Whether the call so far changed state or timers.
pub(crate) fn call_has_changes() -> bool {
    with_call_cache(|c| c.dirty || !c.timers.is_empty())
}

/// Forgets the call's changes (the call fails; the host undoes what reached it).
pub(crate) fn discard_call() {
    with_call_cache(|c| *c = Cache::default());
}

/// Sends the changes made so far in this call to the host (before a scan, which reads
/// the host's view).
fn flush() -> Result<(), Error> {
    let ops = with_cache(|c| c.drain_ops())?;
    if !ops.is_empty() {
        apply(&ops);
    }
    Ok(())
}

fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::new(format!(
            "state key of {} bytes: the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// The value of `key`.
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    with_cache(|c| match &c.slot(key).val {
        Val::Missing => None,
        Val::Bytes(b) => Some(b.clone()),
        Val::Typed(t) => t.encode().ok().flatten(),
    })
}

/// Whether `key` has a value.
pub fn contains(key: &[u8]) -> bool {
    with_cache(|c| match &c.slot(key).val {
        Val::Missing => false,
        Val::Bytes(_) => true,
        Val::Typed(t) => t.encode().ok().flatten().is_some(),
    })
}

/// Sets the value of `key`.
pub fn put(key: &[u8], value: impl Into<Vec<u8>>) -> Result<(), Error> {
    check_key(key)?;
    let value = value.into();
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::new(format!(
            "state value of {} bytes: the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    with_cache(|c| c.set(key, Val::Bytes(value)));
    Ok(())
}

/// Removes `key`.
pub fn delete(key: &[u8]) {
    with_cache(|c| c.set(key, Val::Missing));
}

/// Makes sure the slot of `key` holds a decoded `T`, and runs `f` on it.
fn typed<T, R>(key: &[u8], f: impl FnOnce(&mut Option<T>) -> R) -> Result<R, Error>
where
    T: Serialize + DeserializeOwned + 'static,
{
    check_key(key)?;
    with_cache(|c| {
        let slot = c.slot(key);
        let decoded = match &mut slot.val {
            Val::Typed(t) if t.as_any().is::<Json<T>>() => None,
            Val::Missing => Some(Json::<T>(None)),
            Val::Bytes(b) => Some(Json(Some(serde_json::from_slice(b).map_err(|e| {
                Error::new(format!(
                    "state value of key {}: {e}",
                    String::from_utf8_lossy(key)
                ))
            })?))),
            Val::Typed(t) => {
                // Stored as another type this call: go through its JSON.
                let bytes = t.encode()?;
                Some(Json(match bytes {
                    None => None,
                    Some(b) => Some(serde_json::from_slice(&b).map_err(|e| {
                        Error::new(format!(
                            "state value of key {}: {e}",
                            String::from_utf8_lossy(key)
                        ))
                    })?),
                }))
            }
        };
        if let Some(d) = decoded {
            slot.val = Val::Typed(Box::new(d));
        }
        let Val::Typed(t) = &mut slot.val else {
            unreachable!("set above")
        };
        let json = t
            .as_any_mut()
            .downcast_mut::<Json<T>>()
            .expect("checked or set above");
        Ok(f(&mut json.0))
    })
}

/// The value of `key` decoded from JSON.
pub fn get_json<T>(key: &[u8]) -> Result<Option<T>, Error>
where
    T: Serialize + DeserializeOwned + Clone + 'static,
{
    typed(key, |v: &mut Option<T>| v.clone())
}

/// Sets the value of `key` to the JSON of `value` (encoded once, when the call ends).
pub fn put_json<T>(key: &[u8], value: T) -> Result<(), Error>
where
    T: Serialize + DeserializeOwned + 'static,
{
    check_key(key)?;
    with_cache(|c| c.set(key, Val::Typed(Box::new(Json(Some(value))))));
    Ok(())
}

/// Reads, changes and writes back the JSON value of `key` in one step: `f` gets `None`
/// when the key has no value, and setting it to `None` deletes the key. Decoded once per
/// call however often it is updated.
pub fn update<T, R>(key: &[u8], f: impl FnOnce(&mut Option<T>) -> R) -> Result<R, Error>
where
    T: Serialize + DeserializeOwned + 'static,
{
    let r = typed(key, f)?;
    with_cache(|c| {
        c.dirty = true;
        if let Some(s) = c.slots.get_mut(key) {
            s.dirty = true;
        }
    });
    Ok(r)
}

/// Removes `key` and returns its JSON value.
pub fn take_json<T>(key: &[u8]) -> Result<Option<T>, Error>
where
    T: Serialize + DeserializeOwned + 'static,
{
    update(key, |v: &mut Option<T>| v.take())
}

/// Keys starting with `prefix` and their values, in key order (the host's view, with this
/// call's changes so far).
pub fn scan(prefix: &[u8]) -> Result<Scan, Error> {
    flush()?;
    Ok(Scan {
        prefix: prefix.to_vec(),
        after: None,
        page: Vec::new(),
        done: false,
    })
}

/// An iterator over keys with a prefix, a page at a time.
#[derive(Debug)]
pub struct Scan {
    prefix: Vec<u8>,
    after: Option<Vec<u8>>,
    page: Vec<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Iterator for Scan {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            let buf = backend::scan(&self.prefix, self.after.as_deref(), 256);
            self.page = read_entries(&buf)
                .map_while(Result::ok)
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect();
            self.page.reverse();
            match self.page.first() {
                Some((k, _)) => self.after = Some(k.clone()),
                None => self.done = true,
            }
        }
        self.page.pop()
    }
}

/// Event-time timers: `on-timers` gets a timer once the partition's watermark reaches its
/// time. A timer is unique per (key, time).
pub mod timers {
    use super::{Op, put_op, with_cache};

    /// Fires `key` once the watermark reaches `at_ms`.
    pub fn set(key: &[u8], at_ms: i64) {
        with_cache(|c| {
            c.dirty = true;
            put_op(&mut c.timers, Op::SetTimer(key, at_ms));
        })
    }

    /// Removes the timer (key, at_ms) if it is set.
    pub fn cancel(key: &[u8], at_ms: i64) {
        with_cache(|c| {
            c.dirty = true;
            put_op(&mut c.timers, Op::CancelTimer(key, at_ms));
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that differ only in their last bytes (big-endian counters, a common key
    /// layout) spread over the map's buckets: a hash whose low bits ignore them made a
    /// call with 100 k keys quadratic.
    #[test]
    fn the_cache_hash_spreads_counter_keys() {
        use std::hash::BuildHasher;
        let s = foldhash::fast::FixedState::default();
        let low: std::collections::HashSet<u64> = (0u64..65_536)
            .map(|i| s.hash_one(i.to_be_bytes().to_vec()) & 0xffff)
            .collect();
        assert!(low.len() > 30_000, "{} distinct low 16 bits", low.len());
    }

    #[test]
    fn ops_round_trip_and_malformed_ops_are_errors() {
        let mut buf = Vec::new();
        let ops = [
            Op::Put(b"k", b"v"),
            Op::Delete(b"gone"),
            Op::SetTimer(b"t", -5),
            Op::CancelTimer(b"", i64::MAX),
        ];
        for op in ops {
            put_op(&mut buf, op);
        }
        let read: Vec<Op> = read_ops(&buf).map(Result::unwrap).collect();
        assert_eq!(read, ops);
        assert!(read_ops(&[9]).next().unwrap().is_err());
        assert!(read_ops(&[0, 5, b'a']).next().unwrap().is_err());
        let mut e = Vec::new();
        put_entry(&mut e, b"a", b"1");
        put_entry(&mut e, b"b", b"");
        let got: Vec<_> = read_entries(&e).map(Result::unwrap).collect();
        assert_eq!(got, [(&b"a"[..], &b"1"[..]), (&b"b"[..], &b""[..])]);
    }
}
