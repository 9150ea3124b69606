//! Idempotent producers: per producer and partition, the sequence numbers of the last batch
//! appended, so a retried batch is answered with its original offset instead of being
//! appended twice, and a gap in sequences is refused.
//!
//! State lives in memory: after a restart a producer's next batch is accepted as it comes
//! (clients re-initialise their producer id when the connection drops anyway).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Last {
    epoch: i16,
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Append,
    /// Already appended at this base offset: answer with it, append nothing.
    Duplicate(i64),
    /// The sequence skips or goes back: refuse (OUT_OF_ORDER_SEQUENCE_NUMBER).
    OutOfOrder {
        expected: i32,
        got: i32,
    },
}

/// One slot per (producer id, topic, partition); the slot's lock is held from the check
/// to the recording of the append, so two retries of a batch cannot both append.
#[derive(Debug, Default)]
pub struct Producers {
    slots: Mutex<HashMap<(i64, String, i32), Slot>>,
}

pub type Slot = Arc<Mutex<Option<Last>>>;

impl Producers {
    pub fn slot(&self, producer_id: i64, topic: &str, partition: i32) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        // Bound memory: forget everything when it grows huge (clients then start fresh).
        if slots.len() > 100_000 {
            slots.clear();
        }
        slots
            .entry((producer_id, topic.to_string(), partition))
            .or_default()
            .clone()
    }
}

pub fn decide(last: &Option<Last>, epoch: i16, first_seq: i32, count: i32) -> Decision {
    let Some(l) = last else {
        return Decision::Append;
    };
    if epoch != l.epoch {
        return Decision::Append; // a new epoch starts its own sequence
    }
    if first_seq == l.first_seq && first_seq.wrapping_add(count - 1) == l.last_seq {
        return Decision::Duplicate(l.base_offset);
    }
    let expected = l.last_seq.wrapping_add(1);
    if first_seq != expected {
        return Decision::OutOfOrder {
            expected,
            got: first_seq,
        };
    }
    Decision::Append
}

pub fn record(last: &mut Option<Last>, epoch: i16, first_seq: i32, count: i32, base_offset: i64) {
    *last = Some(Last {
        epoch,
        first_seq,
        last_seq: first_seq.wrapping_add(count - 1),
        base_offset,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_duplicates_and_gaps_are_refused() {
        let mut last = None;
        assert_eq!(decide(&last, 0, 0, 5), Decision::Append);
        record(&mut last, 0, 0, 5, 100);
        assert_eq!(decide(&last, 0, 0, 5), Decision::Duplicate(100));
        assert_eq!(decide(&last, 0, 5, 3), Decision::Append);
        assert_eq!(
            decide(&last, 0, 9, 3),
            Decision::OutOfOrder {
                expected: 5,
                got: 9
            }
        );
        assert_eq!(
            decide(&last, 1, 0, 1),
            Decision::Append,
            "a new epoch restarts sequences"
        );
        record(&mut last, 0, i32::MAX - 1, 2, 7);
        assert_eq!(
            decide(&last, 0, i32::MIN, 1),
            Decision::Append,
            "sequences wrap"
        );
    }
}
