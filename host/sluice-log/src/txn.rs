//! Transactions as one partition sees them (Kafka's producer state and aborted-transaction
//! index): the producers with a transaction open here and the offset it started at — the
//! first of them is the **last stable offset** (LSO), where `read_committed` readers stop —
//! and the offset ranges of aborted transactions, whose batches those readers skip.
//!
//! The partition's single writer feeds every appended batch through [`TxnIndex::observe`]:
//! a transactional data batch opens its producer's transaction here (if not open), a
//! control batch (a commit or abort marker, written by the transaction coordinator) closes
//! it. Changes go to `txn.idx` beside the segments as fixed 25-byte entries and are synced
//! before the high watermark passes the batch they describe; at start-up the file is read
//! back, entries about offsets a torn tail took away are dropped, and it is rewritten with
//! what is still current.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::batch::{BatchHeader, HEADER_LEN};

/// Control record types (the marker's key: version i16, type i16).
pub const ABORT: i16 = 0;
pub const COMMIT: i16 = 1;

const FILE: &str = "txn.idx";
const ENTRY: usize = 25;
const BEGIN: u8 = b'B';
const END_COMMIT: u8 = b'C';
const END_ABORT: u8 = b'A';

/// An aborted transaction's records on this partition: producer, first offset, and the
/// offset of its abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aborted {
    pub producer_id: i64,
    pub first: u64,
    pub last: u64,
}

#[derive(Debug)]
pub struct TxnIndex {
    /// Producer id → first offset of its open transaction here.
    ongoing: BTreeMap<i64, u64>,
    /// Ordered by `last`.
    aborted: Vec<Aborted>,
    path: PathBuf,
    file: Option<File>,
    /// Written since the last sync.
    dirty: bool,
}

fn entry(kind: u8, pid: i64, first: u64, last: u64) -> [u8; ENTRY] {
    let mut e = [0u8; ENTRY];
    e[0] = kind;
    e[1..9].copy_from_slice(&pid.to_be_bytes());
    e[9..17].copy_from_slice(&first.to_be_bytes());
    e[17..25].copy_from_slice(&last.to_be_bytes());
    e
}

/// The marker type of a control batch (`None`: not a readable marker).
pub fn marker_type(batch: &[u8], h: &BatchHeader) -> Option<i16> {
    if !h.is_control() || h.compression() != 0 {
        return None;
    }
    let section = batch.get(HEADER_LEN..h.size)?;
    let r = sluice_sdk::codec::Records::new(section, 1).next()?.ok()?;
    let key = r.key?;
    Some(i16::from_be_bytes(key.get(2..4)?.try_into().ok()?))
}

impl TxnIndex {
    /// Reads `dir/txn.idx`, keeping what concerns offsets below `end` (the partition's
    /// recovered end) and aborted ranges that end at or after `start`, and rewrites it.
    pub fn open(dir: &Path, start: u64, end: u64) -> io::Result<TxnIndex> {
        let path = dir.join(FILE);
        let mut ix = TxnIndex {
            ongoing: BTreeMap::new(),
            aborted: Vec::new(),
            path: path.clone(),
            file: None,
            dirty: false,
        };
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        for e in data.chunks_exact(ENTRY) {
            let pid = i64::from_be_bytes(e[1..9].try_into().unwrap_or_default());
            let first = u64::from_be_bytes(e[9..17].try_into().unwrap_or_default());
            let last = u64::from_be_bytes(e[17..25].try_into().unwrap_or_default());
            match e[0] {
                BEGIN if first < end => {
                    ix.ongoing.entry(pid).or_insert(first);
                }
                END_COMMIT if last < end => {
                    ix.ongoing.remove(&pid);
                }
                END_ABORT if last < end => {
                    ix.ongoing.remove(&pid);
                    ix.aborted.push(Aborted {
                        producer_id: pid,
                        first,
                        last,
                    });
                }
                _ => {}
            }
        }
        ix.aborted.retain(|a| a.last >= start);
        ix.aborted.sort_by_key(|a| a.last);
        if !data.is_empty() || !ix.ongoing.is_empty() {
            let mut out = Vec::new();
            for (pid, first) in &ix.ongoing {
                out.extend_from_slice(&entry(BEGIN, *pid, *first, *first));
            }
            for a in &ix.aborted {
                out.extend_from_slice(&entry(END_ABORT, a.producer_id, a.first, a.last));
            }
            sluice_common::fs::write_file(&path, &out)?;
        }
        Ok(ix)
    }

    fn write(&mut self, e: [u8; ENTRY]) -> io::Result<()> {
        if self.file.is_none() {
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&e)?;
        }
        self.dirty = true;
        Ok(())
    }

    /// Takes note of a batch just given its offsets (`batch`: its bytes).
    pub fn observe(&mut self, batch: &[u8], h: &BatchHeader) -> io::Result<()> {
        if !h.is_transactional() || h.producer_id < 0 {
            return Ok(());
        }
        let pid = h.producer_id;
        let base = h.base_offset as u64;
        if !h.is_control() {
            if let std::collections::btree_map::Entry::Vacant(e) = self.ongoing.entry(pid) {
                e.insert(base);
                self.write(entry(BEGIN, pid, base, base))?;
            }
            return Ok(());
        }
        // A marker for a transaction with no records here closes nothing.
        let Some(first) = self.ongoing.remove(&pid) else {
            return Ok(());
        };
        if marker_type(batch, h) == Some(ABORT) {
            self.aborted.push(Aborted {
                producer_id: pid,
                first,
                last: base,
            });
            self.write(entry(END_ABORT, pid, first, base))
        } else {
            self.write(entry(END_COMMIT, pid, first, base))
        }
    }

    /// Makes the entries written so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            if let Some(f) = &self.file {
                f.sync_data()?;
            }
            self.dirty = false;
        }
        Ok(())
    }

    /// The first offset of a transaction still open here, if any.
    pub fn first_open(&self) -> Option<u64> {
        self.ongoing.values().min().copied()
    }

    /// Aborted transactions with records in `from..=to`.
    pub fn aborted_between(&self, from: u64, to: u64) -> Vec<Aborted> {
        let i = self.aborted.partition_point(|a| a.last < from);
        self.aborted[i..]
            .iter()
            .filter(|a| a.first <= to)
            .copied()
            .collect()
    }

    /// Whether a transactional batch of `producer_id` at `offset` was aborted.
    pub fn is_aborted(&self, producer_id: i64, offset: u64) -> bool {
        let i = self.aborted.partition_point(|a| a.last < offset);
        self.aborted[i..]
            .iter()
            .any(|a| a.producer_id == producer_id && a.first <= offset)
    }

    /// Forgets aborted ranges that end before `start` (retention moved past them).
    pub fn prune(&mut self, start: u64) {
        self.aborted.retain(|a| a.last >= start);
    }
}
