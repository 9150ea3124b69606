//! Recovery: what a partition task's outputs already hold. Every output carries
//! `sluice-src: <transform>:<partition>:<input offset>:<k>` (k counts the outputs of one
//! input; a dead letter is k = 0 in the dead-letter topic). After a crash the task scans
//! every output and dead-letter partition from the ends its checkpoint recorded and
//! collects those slots, wherever they are: a plugin that is not deterministic may send a
//! re-run's output to another partition than the first run did, so where a re-run would
//! put it is never the question. See ARCHITECTURE.md for the guarantee this gives.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use sluice_log::Topic;
use sluice_log::batch;

use crate::checkpoint::key_of;

/// Header that names the input record an output came from: `transform:partition:offset:k`.
pub const SOURCE_HEADER: &str = "sluice-src";
/// Header naming the plugin version that produced an output.
pub const VERSION_HEADER: &str = "sluice-version";

/// What recovery found of a task's outputs written after its checkpoint.
#[derive(Debug, Default)]
pub struct Recovered {
    /// (input offset, k) of every output found.
    outputs: HashSet<(u64, u32)>,
    /// Inputs found in the dead-letter topic.
    dead: HashSet<u64>,
    /// Inputs with any output or dead letter found: their first run's verdict stands.
    touched: HashSet<u64>,
    /// The largest input offset found (nothing to skip past it).
    until: Option<u64>,
}

impl Recovered {
    pub fn is_empty(&self) -> bool {
        self.touched.is_empty()
    }

    /// Whether output `k` of input `offset` was already written.
    pub fn has_output(&self, offset: u64, k: u32) -> bool {
        !self.is_empty() && (self.dead.contains(&offset) || self.outputs.contains(&(offset, k)))
    }

    /// Whether input `offset` already has a verdict (outputs or a dead letter).
    pub fn has_verdict(&self, offset: u64) -> bool {
        !self.is_empty() && self.touched.contains(&offset)
    }

    /// Whether the task has moved past everything found (the set can be dropped).
    pub fn passed(&self, position: u64) -> bool {
        self.until.is_none_or(|u| position > u)
    }

    fn add(&mut self, dead_letter: bool, offset: u64, k: u32) {
        if dead_letter {
            self.dead.insert(offset);
        } else {
            self.outputs.insert((offset, k));
        }
        self.touched.insert(offset);
        self.until = self.until.max(Some(offset));
    }
}

/// The `(offset, k)` of a `sluice-src` value written by `me` (`"<transform>:<partition>:"`).
fn parse_source(value: &[u8], me: &str) -> Option<(u64, u32)> {
    let rest = std::str::from_utf8(value).ok()?.strip_prefix(me)?;
    let mut it = rest.split(':');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// Scans `outputs` and `dead_letters` from `ends` (the checkpoint's) to their ends for
/// what transform `transform` wrote from input partition `partition`.
pub fn scan(
    transform: &str,
    partition: u32,
    outputs: &[Arc<Topic>],
    dead_letters: &Arc<Topic>,
    ends: &BTreeMap<String, u64>,
) -> Recovered {
    let me = format!("{transform}:{partition}:");
    let mut found = Recovered::default();
    for t in outputs.iter().chain(std::iter::once(dead_letters)) {
        let is_dlq = t.name == dead_letters.name;
        for p in &t.partitions {
            let mut off = ends
                .get(&key_of(&t.name, p.id))
                .copied()
                .unwrap_or(0)
                .max(p.start_offset());
            while off < p.high_watermark() {
                let Ok(r) = p.read(off, 1 << 20) else { break };
                if r.data.is_empty() {
                    break;
                }
                for (_, b) in batch::split(r.data).unwrap_or_default() {
                    for rec in batch::decode(&b).unwrap_or_default() {
                        let src = rec.headers.iter().find(|(h, _)| h == SOURCE_HEADER);
                        if let Some((_, Some(v))) = src
                            && let Some((o, k)) = parse_source(v, &me)
                        {
                            found.add(is_dlq, o, k);
                        }
                    }
                }
                off = r.next_offset;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_matched_wherever_they_are_and_a_dead_letter_is_the_whole_verdict() {
        assert_eq!(parse_source(b"t:3:41:2", "t:3:"), Some((41, 2)));
        assert_eq!(parse_source(b"t:4:41:2", "t:3:"), None);
        assert_eq!(parse_source(b"other:3:41:2", "t:3:"), None);
        assert_eq!(parse_source(b"t:3:x:2", "t:3:"), None);
        let mut r = Recovered::default();
        assert!(!r.has_output(5, 0) && !r.has_verdict(5) && r.passed(0));
        r.add(false, 5, 1);
        r.add(true, 7, 0);
        assert!(r.has_output(5, 1) && !r.has_output(5, 0) && r.has_verdict(5));
        assert!(
            r.has_output(7, 0) && r.has_output(7, 3),
            "a dead letter covers every slot"
        );
        assert!(!r.passed(7) && r.passed(8));
    }
}
