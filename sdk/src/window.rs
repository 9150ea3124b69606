//! Event-time windows over keyed state: tumbling, hopping (sliding) and session windows.
//!
//! A window helper keeps one accumulator per (key, window) in state and sets a timer at the
//! window's end; when the watermark passes it, `close` in the timer handler hands back the
//! key, the window and the accumulator, and removes them. A per-key count per minute:
//!
//! ```
//! use sluice_sdk::window::Windows;
//! use sluice_sdk::{Error, Outcome, OutRecord, Record, Timer};
//!
//! fn setup() -> Result<Windows<u64>, Error> {
//!     Ok(Windows::tumbling("count", 60_000))
//! }
//!
//! fn count(w: &Windows<u64>, r: &Record) -> Result<Outcome, Error> {
//!     w.add(r.key().unwrap_or_default(), r.event_time(), |n| *n += 1)?;
//!     Ok(Outcome::drop())
//! }
//!
//! fn close(w: &Windows<u64>, t: &Timer) -> Result<Outcome, Error> {
//!     let Some(c) = w.close(t)? else { return Ok(Outcome::drop()) };
//!     let v = serde_json::json!({"key": String::from_utf8_lossy(&c.key),
//!         "window_start": c.window.start, "window_end": c.window.end, "count": c.value});
//!     Ok(Outcome::emit(OutRecord::new(v.to_string()).with_key(c.key)))
//! }
//!
//! sluice_sdk::export_transform!(count, init = setup, timers = close);
//! ```
//!
//! Records later than the watermark never reach the plugin (the host dead-letters them),
//! so a window never gets an event after it closed.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{Error, Timer, state, timers};

/// A time window `[start, end)` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// A window that closed, with its key and accumulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed<A> {
    pub key: Vec<u8>,
    pub window: Window,
    pub value: A,
}

impl<A> Closed<A> {
    /// The key as text (lossy).
    pub fn key_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.key)
    }
}

/// `t` rounded down to a multiple of `step` (towards minus infinity).
fn floor_to(t: i64, step: i64) -> i64 {
    t - t.rem_euclid(step)
}

/// Order-preserving bytes of a time (big-endian with the sign bit flipped).
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from(b: &[u8]) -> Option<i64> {
    let b: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tumbling { size: i64 },
    Hopping { size: i64, slide: i64 },
}

/// Fixed-size windows (tumbling or hopping) with an accumulator `A` per key and window.
///
/// State keys are `name 0x00 end key` and so are the timers' (at = end); `name` keeps
/// several window helpers of one plugin apart.
#[derive(Debug, Clone)]
pub struct Windows<A> {
    prefix: Vec<u8>,
    kind: Kind,
    _a: PhantomData<fn() -> A>,
}

impl<A> Windows<A>
where
    A: Serialize + DeserializeOwned + Default + 'static,
{
    /// Back-to-back windows of `size_ms`, aligned to the epoch.
    pub fn tumbling(name: &str, size_ms: i64) -> Self {
        Self::with_kind(
            name,
            Kind::Tumbling {
                size: size_ms.max(1),
            },
        )
    }

    /// Windows of `size_ms` starting every `slide_ms` (an event is in `size / slide` of
    /// them); a slide equal to the size is a tumbling window.
    pub fn hopping(name: &str, size_ms: i64, slide_ms: i64) -> Self {
        let size = size_ms.max(1);
        Self::with_kind(
            name,
            Kind::Hopping {
                size,
                slide: slide_ms.clamp(1, size),
            },
        )
    }

    fn with_kind(name: &str, kind: Kind) -> Self {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        Windows {
            prefix,
            kind,
            _a: PhantomData,
        }
    }

    /// The windows an event at `time` falls in, earliest first.
    pub fn windows(&self, time: i64) -> Vec<Window> {
        match self.kind {
            Kind::Tumbling { size } => {
                let start = floor_to(time, size);
                vec![Window {
                    start,
                    end: start.saturating_add(size),
                }]
            }
            Kind::Hopping { size, slide } => {
                let last = floor_to(time, slide);
                let mut v = Vec::new();
                let mut start = last;
                while start > time.saturating_sub(size) {
                    v.push(Window {
                        start,
                        end: start.saturating_add(size),
                    });
                    start -= slide;
                }
                v.reverse();
                v
            }
        }
    }

    fn size(&self) -> i64 {
        match self.kind {
            Kind::Tumbling { size } | Kind::Hopping { size, .. } => size,
        }
    }

    fn state_key(&self, end: i64, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + 8 + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(&time_bytes(end));
        k.extend_from_slice(key);
        k
    }

    /// Adds an event of `key` at `time`: `f` updates the accumulator of every window it
    /// falls in (starting from `A::default()`); a window's first event sets its timer.
    pub fn add(&self, key: &[u8], time: i64, mut f: impl FnMut(&mut A)) -> Result<(), Error> {
        let mut add_to = |end: i64| -> Result<(), Error> {
            let k = self.state_key(end, key);
            let fresh = state::update(&k, |acc: &mut Option<A>| {
                let fresh = acc.is_none();
                f(acc.get_or_insert_with(A::default));
                fresh
            })?;
            if fresh {
                timers::set(&k, end);
            }
            Ok(())
        };
        match self.kind {
            // One window: no list to build (the per-record path of a windowed count).
            Kind::Tumbling { size } => add_to(floor_to(time, size).saturating_add(size)),
            Kind::Hopping { .. } => self.windows(time).iter().try_for_each(|w| add_to(w.end)),
        }
    }

    /// The accumulator of `key` in the window ending at `end`, if it has events.
    pub fn peek(&self, key: &[u8], end: i64) -> Result<Option<A>, Error>
    where
        A: Clone,
    {
        state::get_json(&self.state_key(end, key))
    }

    /// If `timer` is one of this helper's: the window it closes, removed from state.
    pub fn close(&self, timer: &Timer<'_>) -> Result<Option<Closed<A>>, Error> {
        let Some(rest) = timer.key().strip_prefix(self.prefix.as_slice()) else {
            return Ok(None);
        };
        let (Some(end), Some(key)) = (rest.get(..8).and_then(time_from), rest.get(8..)) else {
            return Ok(None);
        };
        let Some(value) = state::take_json::<A>(timer.key())? else {
            return Ok(None);
        };
        Ok(Some(Closed {
            key: key.to_vec(),
            window: Window {
                start: end.saturating_sub(self.size()),
                end,
            },
            value,
        }))
    }
}

/// Accumulators that session windows can merge when an event joins two sessions.
pub trait Merge {
    fn merge(&mut self, other: Self);
}

macro_rules! merge_by_add {
    ($($t:ty),*) => {$(
        impl Merge for $t {
            fn merge(&mut self, other: Self) {
                *self += other;
            }
        }
    )*};
}
merge_by_add!(u32, u64, i32, i64, f32, f64, usize);

impl<T> Merge for Vec<T> {
    fn merge(&mut self, mut other: Self) {
        self.append(&mut other);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session<A> {
    start: i64,
    end: i64,
    value: A,
}

/// Session windows: a key's events closer than `gap_ms` to each other are one session
/// `[first event, last event + gap)`, which closes once the watermark passes its end. An
/// out-of-order event that bridges two sessions merges them.
///
/// State: one key per session key (`name 0x00 key`) holding that key's open sessions; a
/// timer at each session's end.
#[derive(Debug, Clone)]
pub struct Sessions<A> {
    prefix: Vec<u8>,
    gap: i64,
    _a: PhantomData<fn() -> A>,
}

impl<A> Sessions<A>
where
    A: Serialize + DeserializeOwned + Default + Merge + 'static,
{
    pub fn new(name: &str, gap_ms: i64) -> Self {
        let mut prefix = name.as_bytes().to_vec();
        prefix.push(0);
        Sessions {
            prefix,
            gap: gap_ms.max(1),
            _a: PhantomData,
        }
    }

    fn state_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    /// Adds an event of `key` at `time`; `f` updates the accumulator of its session.
    pub fn add(&self, key: &[u8], time: i64, f: impl FnOnce(&mut A)) -> Result<(), Error> {
        let k = self.state_key(key);
        let gap = self.gap;
        let moved = state::update(&k, |open: &mut Option<Vec<Session<A>>>| {
            let open = open.get_or_insert_with(Vec::new);
            let (start, end) = (time, time.saturating_add(gap));
            // Sessions this event touches merge into one.
            let (mut touching, rest): (Vec<_>, Vec<_>) = std::mem::take(open)
                .into_iter()
                .partition(|s| s.start < end && start < s.end);
            *open = rest;
            let old_ends: Vec<i64> = touching.iter().map(|s| s.end).collect();
            let mut merged = Session {
                start,
                end,
                value: A::default(),
            };
            touching.sort_by_key(|s| s.start);
            for s in touching {
                merged.start = merged.start.min(s.start);
                merged.end = merged.end.max(s.end);
                merged.value.merge(s.value);
            }
            f(&mut merged.value);
            let new_end = merged.end;
            open.push(merged);
            open.sort_by_key(|s| s.start);
            (old_ends, new_end)
        })?;
        let (old_ends, new_end) = moved;
        for end in old_ends.iter().filter(|e| **e != new_end) {
            timers::cancel(&k, *end);
        }
        if !old_ends.contains(&new_end) {
            timers::set(&k, new_end);
        }
        Ok(())
    }

    /// If `timer` is one of this helper's: the session it closes, removed from state.
    pub fn close(&self, timer: &Timer<'_>) -> Result<Option<Closed<A>>, Error> {
        let Some(key) = timer.key().strip_prefix(self.prefix.as_slice()) else {
            return Ok(None);
        };
        let at = timer.at();
        let closed = state::update(timer.key(), |open: &mut Option<Vec<Session<A>>>| {
            let list = open.as_mut()?;
            let i = list.iter().position(|s| s.end == at)?;
            let s = list.remove(i);
            if list.is_empty() {
                *open = None;
            }
            Some(s)
        })?;
        Ok(closed.map(|s| Closed {
            key: key.to_vec(),
            window: Window {
                start: s.start,
                end: s.end,
            },
            value: s.value,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_an_event_and_times_sort_as_bytes() {
        let t = Windows::<u64>::tumbling("c", 10);
        assert_eq!(t.windows(25), [Window { start: 20, end: 30 }]);
        assert_eq!(t.windows(-5), [Window { start: -10, end: 0 }]);
        let h = Windows::<u64>::hopping("c", 10, 5);
        assert_eq!(
            h.windows(12),
            [Window { start: 5, end: 15 }, Window { start: 10, end: 20 }]
        );
        assert_eq!(h.windows(10).len(), 2);
        let mut times = [-3i64, 5, i64::MIN, 0, i64::MAX, -1];
        let mut bytes: Vec<[u8; 8]> = times.iter().map(|t| time_bytes(*t)).collect();
        bytes.sort();
        times.sort();
        let back: Vec<i64> = bytes.iter().map(|b| time_from(b).unwrap()).collect();
        assert_eq!(back, times);
    }
}
