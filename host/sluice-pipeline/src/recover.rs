//! Recovery: what a partition task's outputs already hold. Every output carries
//! `sluice-src: <transform>:<partition>:<input offset>:<k>` (k counts the outputs of one
//! input; a dead letter is k = 0 in the dead-letter topic); an output of a fired timer
//! carries `<transform>:<partition>:~<position>:<watermark>:<n>:<k>` (n: the timer's place
//! among those fired at that position and watermark). After a crash the task scans
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
    /// Outputs of fired timers: (position, watermark, n, k).
    timer_outputs: HashSet<(u64, i64, u32, u32)>,
    /// Fired timers with a dead letter: (position, watermark, n).
    timer_dead: HashSet<(u64, i64, u32)>,
    /// The largest input offset found (nothing to skip past it).
    until: Option<u64>,
    /// The ends the scan started from (see [`Recovered::replaying`]).
    from: Arc<BTreeMap<String, u64>>,
}

impl Recovered {
    pub fn is_empty(&self) -> bool {
        self.touched.is_empty() && self.timer_outputs.is_empty() && self.timer_dead.is_empty()
    }

    /// Whether input `offset` was dead-lettered (or sent to the late output).
    pub fn has_dead_letter(&self, offset: u64) -> bool {
        self.dead.contains(&offset)
    }

    /// Whether output `k` of the `n`-th timer fired at (position, watermark) was written.
    pub fn has_timer_output(&self, position: u64, watermark: i64, n: u32, k: u32) -> bool {
        self.timer_dead.contains(&(position, watermark, n))
            || self.timer_outputs.contains(&(position, watermark, n, k))
    }

    /// Whether that timer was dead-lettered.
    pub fn has_timer_verdict(&self, position: u64, watermark: i64, n: u32) -> bool {
        self.timer_dead.contains(&(position, watermark, n))
            || self
                .timer_outputs
                .iter()
                .any(|(p, w, m, _)| (*p, *w, *m) == (position, watermark, n))
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

    /// While outputs found lie ahead of `position`: the ends the scan started from, which
    /// a checkpoint at `position` must record (see `checkpoint`), so that a crash in the
    /// replay finds them again.
    pub fn replaying(&self, position: u64) -> Option<Arc<BTreeMap<String, u64>>> {
        (!self.is_empty() && !self.passed(position)).then(|| self.from.clone())
    }

    fn add(&mut self, dead_letter: bool, slot: Slot) {
        match slot {
            Slot::Input { offset, k } => {
                if dead_letter {
                    self.dead.insert(offset);
                } else {
                    self.outputs.insert((offset, k));
                }
                self.touched.insert(offset);
                self.until = self.until.max(Some(offset));
            }
            Slot::Timer {
                position,
                watermark,
                n,
                k,
            } => {
                if dead_letter {
                    self.timer_dead.insert((position, watermark, n));
                } else {
                    self.timer_outputs.insert((position, watermark, n, k));
                }
                self.until = self.until.max(Some(position));
            }
        }
    }
}

/// What a `sluice-src` value names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Input {
        offset: u64,
        k: u32,
    },
    Timer {
        position: u64,
        watermark: i64,
        n: u32,
        k: u32,
    },
}

/// The slot of a `sluice-src` value written by `me` (`"<transform>:<partition>:"`).
fn parse_source(value: &[u8], me: &str) -> Option<Slot> {
    let rest = std::str::from_utf8(value).ok()?.strip_prefix(me)?;
    if let Some(timer) = rest.strip_prefix('~') {
        let mut it = timer.split(':');
        return Some(Slot::Timer {
            position: it.next()?.parse().ok()?,
            watermark: it.next()?.parse().ok()?,
            n: it.next()?.parse().ok()?,
            k: it.next()?.parse().ok()?,
        });
    }
    let mut it = rest.split(':');
    Some(Slot::Input {
        offset: it.next()?.parse().ok()?,
        k: it.next()?.parse().ok()?,
    })
}

/// Scans `outputs` and the verdict topics (dead letters, late records) from `ends` (the
/// checkpoint's) to their ends for what transform `transform` wrote from input partition
/// `partition`.
pub fn scan(
    transform: &str,
    partition: u32,
    outputs: &[Arc<Topic>],
    verdicts: &[Arc<Topic>],
    ends: &BTreeMap<String, u64>,
) -> Recovered {
    let me = format!("{transform}:{partition}:");
    let mut found = Recovered {
        from: Arc::new(ends.clone()),
        ..Recovered::default()
    };
    for t in outputs.iter().chain(verdicts) {
        let is_dlq = verdicts.iter().any(|v| v.name == t.name);
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
                            && let Some(slot) = parse_source(v, &me)
                        {
                            found.add(is_dlq, slot);
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
    use crate::checkpoint;

    #[test]
    fn slots_are_matched_wherever_they_are_and_a_dead_letter_is_the_whole_verdict() {
        let input = |offset, k| Some(Slot::Input { offset, k });
        assert_eq!(parse_source(b"t:3:41:2", "t:3:"), input(41, 2));
        assert_eq!(parse_source(b"t:4:41:2", "t:3:"), None);
        assert_eq!(parse_source(b"other:3:41:2", "t:3:"), None);
        assert_eq!(parse_source(b"t:3:x:2", "t:3:"), None);
        assert_eq!(
            parse_source(b"t:3:~50:-7:2:1", "t:3:"),
            Some(Slot::Timer {
                position: 50,
                watermark: -7,
                n: 2,
                k: 1
            })
        );
        let mut r = Recovered::default();
        assert!(!r.has_output(5, 0) && !r.has_verdict(5) && r.passed(0));
        r.add(false, Slot::Input { offset: 5, k: 1 });
        r.add(true, Slot::Input { offset: 7, k: 0 });
        r.add(
            false,
            Slot::Timer {
                position: 9,
                watermark: 3,
                n: 0,
                k: 1,
            },
        );
        assert!(r.has_timer_output(9, 3, 0, 1) && !r.has_timer_output(9, 3, 0, 0));
        assert!(r.has_timer_verdict(9, 3, 0) && !r.has_timer_verdict(9, 4, 0));
        assert!(r.has_dead_letter(7) && !r.has_dead_letter(5));
        assert!(r.has_output(5, 1) && !r.has_output(5, 0) && r.has_verdict(5));
        assert!(
            r.has_output(7, 0) && r.has_output(7, 3),
            "a dead letter covers every slot"
        );
        assert!(!r.passed(9) && r.passed(10));
    }

    /// A crash while replaying what a recovery found: the checkpoint written meanwhile
    /// keeps the ends the scan started from, so the next scan finds the outputs still
    /// ahead of its position (the current ends would hide them and they would be doubled).
    #[test]
    fn a_checkpoint_written_during_a_replay_keeps_the_outputs_ahead_of_it_in_sight() {
        let dir = tempfile::tempdir().unwrap();
        let log = sluice_log::Log::open(dir.path().join("log")).unwrap();
        let out = log
            .create_topic("out", crate::state::topic_config(2))
            .unwrap();
        let outputs = [out.clone()];
        // The first run: a checkpoint at input 10 before any output, then the outputs
        // of inputs 10..20 over both partitions, and a crash before the next checkpoint.
        let cps = dir.path().join("cp");
        std::fs::create_dir_all(&cps).unwrap();
        assert!(checkpoint::write(&cps, 0, outputs.iter(), 10, None));
        for offset in 10u64..20 {
            let mut b = batch::Builder::new();
            let src = format!("t:0:{offset}:0");
            let headers = [(SOURCE_HEADER.as_bytes(), Some(src.as_bytes()))];
            b.push(0, None, Some(b"v"), headers.into_iter());
            out.partitions[(offset % 2) as usize]
                .append(b.finish())
                .unwrap();
        }
        let scan_from_file = || {
            let cp = checkpoint::read(&cps, 0).unwrap();
            (cp.position, scan("t", 0, &outputs, &[], &cp.output_ends))
        };
        let (position, found) = scan_from_file();
        assert_eq!(position, 10);
        assert!((10..20).all(|o| found.has_output(o, 0)));
        // The replay skips inputs 10..15 and checkpoints at 15, then crashes again.
        let replaying = found.replaying(15);
        assert!(replaying.is_some());
        assert!(checkpoint::write(
            &cps,
            0,
            outputs.iter(),
            15,
            replaying.as_deref()
        ));
        let (position, again) = scan_from_file();
        assert_eq!(position, 15);
        assert!(
            (15..20).all(|o| again.has_output(o, 0)),
            "outputs ahead of the checkpoint were hidden from the scan"
        );
        // The current ends would have hidden them: this is what the replay guards against.
        assert!(checkpoint::write(&cps, 0, outputs.iter(), 15, None));
        assert!(scan_from_file().1.is_empty());
        // Past everything found, a checkpoint records the current ends.
        assert!(again.replaying(20).is_none() && again.replaying(19).is_some());
    }
}
