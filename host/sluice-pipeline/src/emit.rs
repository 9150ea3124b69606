//! What one read of a partition task builds: the input batches handed to the plugin, the
//! output records collected from its verdicts (`Outputs`), and the reads staged for the
//! appender (`Staged`). Operators fill these; the loop and the appender move them on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sluice_log::Topic;
use sluice_log::batch::{self, BatchHeader};
use sluice_sdk::codec::Records;

use crate::recover::Recovered;
use crate::state::Commit;

/// One input batch, from the position on, with the offset of each record.
#[derive(Clone)]
pub(crate) struct InputBatch {
    pub section: Bytes,
    pub offsets: Vec<u64>,
    pub base_offset: i64,
    pub base_timestamp: i64,
}

/// Where a partition task writes, by slot: its outputs (`0..n`), the dead-letter topic
/// (`n`) and, for stateful deployments, the late output (`n + 1`, else the dead-letter
/// topic).
#[derive(Debug, Clone)]
pub(crate) struct Sinks {
    pub outputs: Vec<Arc<Topic>>,
    pub dlq: Arc<Topic>,
    pub late: Option<Arc<Topic>>,
}

impl Sinks {
    /// The topic of a slot.
    pub fn topic(&self, slot: usize) -> &Arc<Topic> {
        match self.outputs.get(slot) {
            Some(t) => t,
            None if slot == self.outputs.len() => &self.dlq,
            None => self.late.as_ref().unwrap_or(&self.dlq),
        }
    }

    /// Every topic written, in slot order.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.outputs
            .iter()
            .chain(std::iter::once(&self.dlq))
            .chain(self.late.as_ref())
    }

    /// Topics whose records are verdicts (dead letters and late records).
    pub fn verdict_topics(&self) -> Vec<Arc<Topic>> {
        std::iter::once(self.dlq.clone())
            .chain(self.late.clone())
            .collect()
    }
}

/// The sinks as an operator sees them: how many partitions each slot's topic has, by slot
/// (outputs, dead letters, then the late output if there is one). Serve's tasks take it
/// from their `Sinks`; a worker from the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Partitions of each output topic, in output order.
    pub outputs: Vec<u32>,
    pub dead_letter: u32,
    /// The late output's partitions, if the deployment has one.
    pub late: Option<u32>,
}

impl Layout {
    pub(crate) fn of(sinks: &Sinks) -> Layout {
        let n = |t: &Arc<Topic>| t.partitions.len() as u32;
        Layout {
            outputs: sinks.outputs.iter().map(n).collect(),
            dead_letter: n(&sinks.dlq),
            late: sinks.late.as_ref().map(n),
        }
    }

    /// The dead-letter slot.
    pub fn dead_letter_slot(&self) -> usize {
        self.outputs.len()
    }

    /// The slot of late records: the late output if there is one, else the dead letters.
    pub fn late_slot(&self) -> usize {
        self.outputs.len() + usize::from(self.late.is_some())
    }

    /// The partitions of a slot's topic.
    pub fn partitions(&self, slot: usize) -> u32 {
        match self.outputs.get(slot) {
            Some(n) => *n,
            None if slot == self.outputs.len() => self.dead_letter,
            None => self.late.unwrap_or(self.dead_letter),
        }
    }

    /// The partition of a verdict (dead letter or late record) of input partition
    /// `partition` in slot `slot`.
    pub fn verdict_partition(&self, slot: usize, partition: u32) -> u32 {
        partition % self.partitions(slot).max(1)
    }
}

/// The output records of one read, as they are collected.
pub(crate) struct Outputs {
    pub pending: Pending,
    /// `sluice-src` value prefix: "<transform>:<partition>:".
    pub src_prefix: String,
    pub version: String,
    /// Records in, out, rejected, failed.
    pub counts: [u64; 4],
    pub late: u64,
    pub started: Instant,
}

impl Outputs {
    pub fn new(transform: &str, partition: u32, version: u32) -> Outputs {
        Outputs {
            pending: BTreeMap::new(),
            src_prefix: format!("{transform}:{partition}:"),
            version: version.to_string(),
            counts: [0; 4],
            late: 0,
            started: Instant::now(),
        }
    }

    /// What the read leaves for the appender: its outputs, the input position once they
    /// are durable, and the state changes that go with them.
    pub fn into_staged(
        self,
        next_position: u64,
        input_bytes: usize,
        state: Option<Commit>,
    ) -> Staged {
        Staged {
            batches: self.pending,
            next_position,
            counts: self.counts,
            late: self.late,
            input_bytes,
            started: self.started,
            state,
            replaying: None,
        }
    }
}

/// What emitted records answer, for their `sluice-src`.
pub(crate) enum Answered<'a> {
    /// Input records: `<offset>:<k>`.
    Records(&'a InputBatch),
    /// Fired timers: `~<position>:<watermark>:<n>:<k>`, n counting the timers fired at
    /// this position and watermark from `first`.
    Timers {
        position: u64,
        watermark: i64,
        first: u32,
    },
}

impl Answered<'_> {
    /// Writes the `sluice-src` tail of output `k` of item `i`.
    pub fn write_src(&self, buf: &mut Vec<u8>, i: u32, k: u32) {
        let mut num = itoa::Buffer::new();
        match self {
            Answered::Records(input) => {
                buf.extend_from_slice(num.format(input.offsets[i as usize]).as_bytes());
            }
            Answered::Timers {
                position,
                watermark,
                first,
            } => {
                buf.push(b'~');
                buf.extend_from_slice(num.format(*position).as_bytes());
                buf.push(b':');
                buf.extend_from_slice(num.format(*watermark).as_bytes());
                buf.push(b':');
                buf.extend_from_slice(num.format(first + i).as_bytes());
            }
        }
        buf.push(b':');
        buf.extend_from_slice(num.format(k).as_bytes());
    }

    /// Whether recovery found output `k` of item `i` already written.
    pub fn seen(&self, seen: &Recovered, i: u32, k: u32) -> bool {
        match self {
            Answered::Records(input) => seen.has_output(input.offsets[i as usize], k),
            Answered::Timers {
                position,
                watermark,
                first,
            } => seen.has_timer_output(*position, *watermark, first + i, k),
        }
    }
}

/// Output batches being built, by (output slot, partition); slot = outputs.len() is the
/// dead-letter topic, outputs.len() + 1 the late output.
pub type Pending = BTreeMap<(usize, u32), Vec<batch::Builder>>;

/// Largest output batch built (Kafka's default `max.message.bytes`): a read that emits
/// more — timers closing a million windows at once — writes several batches, so no
/// consumer is sent one batch it cannot take.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// The batch to add the next record for `key` to.
pub(crate) fn batch_for(pending: &mut Pending, key: (usize, u32)) -> &mut batch::Builder {
    let list = pending.entry(key).or_default();
    if list.last().is_none_or(|b| b.size() >= MAX_BATCH_BYTES) {
        list.push(batch::Builder::new());
    }
    let last = list.len() - 1;
    &mut list[last]
}

/// Input bytes staged while the appender is busy before the task waits for it.
pub const STAGE_LIMIT: usize = 1 << 20;

/// Outputs of one or more reads, built and waiting to be appended.
pub struct Staged {
    /// Per output (or dead-letter) partition, one batch per read.
    pub batches: BTreeMap<(usize, u32), Vec<batch::Builder>>,
    /// The input position once these are durable.
    pub next_position: u64,
    /// Records in, out, rejected, failed.
    pub counts: [u64; 4],
    /// Late records among them.
    pub late: u64,
    /// Input bytes behind these outputs.
    pub input_bytes: usize,
    pub started: Instant,
    /// Stateful: the state changes of these reads and where they leave the partition,
    /// committed after the outputs.
    pub state: Option<Commit>,
    /// Replaying after a recovery: the ends its scan started from, for the checkpoint
    /// (see [`crate::recover::Recovered::replaying`]).
    pub replaying: Option<Arc<BTreeMap<String, u64>>>,
}

impl Staged {
    /// A commit of state alone (an idle watermark advance).
    pub fn state_only(commit: Commit) -> Staged {
        Staged {
            batches: BTreeMap::new(),
            next_position: commit.meta.position,
            counts: [0; 4],
            late: 0,
            input_bytes: 0,
            started: Instant::now(),
            state: Some(commit),
            replaying: None,
        }
    }

    /// Adds the outputs of the next read.
    pub fn merge(&mut self, next: Staged) {
        for (k, mut v) in next.batches {
            self.batches.entry(k).or_default().append(&mut v);
        }
        self.next_position = next.next_position;
        self.replaying = next.replaying;
        for (a, b) in self.counts.iter_mut().zip(next.counts) {
            *a += b;
        }
        self.late += next.late;
        self.input_bytes += next.input_bytes;
        match (&mut self.state, next.state) {
            (Some(mine), Some(later)) => mine.merge(later),
            (mine @ None, later) => *mine = later,
            (Some(_), None) => {}
        }
    }
}

/// The records of a stored batch at or past `position`, with their offsets: the plugin
/// sees only those, so a batch that a stopped run, a crash or an early end left half done
/// goes on where it was left.
pub(crate) fn input_from(
    raw: &Bytes,
    h: &BatchHeader,
    position: u64,
) -> Result<InputBatch, String> {
    let section = batch::records_section(raw, h).map_err(|e| e.to_string())?;
    // Offsets by index (dense unless the batch was compacted).
    let mut offsets: Vec<u64> = if h.record_count as u64 == h.offset_count() {
        (0..h.record_count as u64)
            .map(|i| h.base_offset as u64 + i)
            .collect()
    } else {
        Records::new(&section, h.record_count as usize)
            .map(|r| {
                r.map_or(u64::MAX, |r| {
                    (h.base_offset + i64::from(r.offset_delta)) as u64
                })
            })
            .collect()
    };
    let first = offsets.iter().take_while(|o| **o < position).count();
    let section = if first > 0 {
        let mut r = sluice_sdk::codec::Reader::new(&section);
        for _ in 0..first {
            sluice_sdk::codec::next_raw(&mut r).map_err(|e| e.to_string())?;
        }
        offsets.drain(..first);
        section.slice(r.position()..)
    } else {
        section
    };
    Ok(InputBatch {
        section,
        offsets,
        base_offset: h.base_offset,
        base_timestamp: h.base_timestamp,
    })
}
