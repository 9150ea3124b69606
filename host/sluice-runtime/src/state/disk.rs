//! The disk tier of keyed state (`"state_store": "disk"`): one embedded LSM database
//! (fjall) per deployment, one keyspace per input partition. It holds the state as of a
//! changelog position: every write is one atomic batch of a commit's changes together
//! with the checkpoint record saying where that leaves the partition, so what is on disk
//! is always a state the changelog passed through, never a mix. A write reaches the OS at
//! once (it survives the process being killed); `persist` makes it survive the machine.
//!
//! Keys in a partition's keyspace are those of the changelog records ([`value_key`],
//! [`timer_key`]): `s<key>` a value, `t<at: 8 bytes, order-preserving><key>` a timer
//! (empty value); and `m` the checkpoint (counts, then the caller's bytes).

use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

use fjall::config::PinningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

/// The first byte of a value's key.
pub const VALUE: u8 = b's';
/// The first byte of a timer's key.
pub const TIMER: u8 = b't';
const META: &[u8] = b"m";

/// Order-preserving bytes of a time (big-endian with the sign bit flipped).
pub fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

pub fn time_from(b: &[u8]) -> Option<i64> {
    let b: [u8; 8] = b.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

/// The longest a write waits for memtables to flush.
const MEMTABLE_WAIT: Duration = Duration::from_secs(5);

fn err(e: fjall::Error) -> String {
    format!("state store on disk: {e}")
}

/// The stored key of a value.
pub fn value_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(VALUE);
    k.extend_from_slice(key);
    k
}

/// The stored key of a timer.
pub fn timer_key(at: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.push(TIMER);
    k.extend_from_slice(&time_bytes(at));
    k.extend_from_slice(key);
    k
}

/// The disk database of one deployment.
#[derive(Clone)]
pub struct StateDb {
    db: Database,
    /// The most bytes all memtables may count before writes wait for flushes.
    memtables: u64,
    /// Memtable size of each partition's keyspace.
    memtable: u64,
}

impl std::fmt::Debug for StateDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateDb").finish_non_exhaustive()
    }
}

impl StateDb {
    /// Opens (or creates) the database in `dir`. `memory` bounds what the database itself
    /// keeps in memory for `partitions` partitions: a block cache of half of it, and the
    /// other half for memtables (active and sealed ones waiting for their flush, which
    /// take ~1.6× the bytes fjall counts for them: skip-list nodes). A partition's
    /// memtable is sealed at a sixth of its share (2–64 MiB: smaller ones make many small
    /// tables that every read has to consult), and writes wait while all of them pass
    /// their limit ([`DiskPart::write`]). Two background threads flush and compact: with
    /// one, a long compaction delayed the sealing of memtables, which grew past their size
    /// (122 MB counted of 32 MB meant, at 5 M keys). Filter and index blocks stay pinned
    /// in memory (~1.3 bytes a key): a read of an absent key — a new key, a timer not set
    /// — never touches the disk, and a present one reads one data block.
    pub fn open(dir: &Path, memory: u64, partitions: u32) -> Result<StateDb, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("state store on disk: {e}"))?;
        let memtable = (memory / 2 / u64::from(partitions.max(1)) / 6).clamp(2 << 20, 64 << 20);
        let db = Database::builder(dir)
            .cache_size((memory / 2).max(1 << 20))
            .max_journaling_size(64 << 20)
            .manual_journal_persist(true)
            .worker_threads(2)
            .open()
            .map_err(err)?;
        Ok(StateDb {
            db,
            memtable,
            memtables: (memory / 2 * 5 / 8).max(memtable * 2),
        })
    }

    /// The keyspace of one input partition.
    pub fn partition(&self, partition: u32) -> Result<DiskPart, String> {
        let memtable = self.memtable;
        let ks = self
            .db
            .keyspace(&format!("p{partition}"), || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(memtable)
                    .manual_journal_persist(true)
                    .filter_block_pinning_policy(PinningPolicy::all(true))
                    .index_block_pinning_policy(PinningPolicy::all(true))
            })
            .map_err(err)?;
        Ok(DiskPart {
            db: self.db.clone(),
            ks,
            memtables: self.memtables,
        })
    }

    /// Makes every write so far durable (fsync).
    pub fn persist(&self) -> Result<(), String> {
        self.db.persist(PersistMode::SyncData).map_err(err)
    }

    /// Bytes the database takes on disk.
    pub fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

/// Counts of a partition's state as of its checkpoint on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub keys: u64,
    pub bytes: u64,
    pub timers: u64,
}

/// One partition's state on disk.
#[derive(Clone)]
pub struct DiskPart {
    db: Database,
    ks: Keyspace,
    memtables: u64,
}

impl std::fmt::Debug for DiskPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskPart").finish_non_exhaustive()
    }
}

/// A value change or a timer change, as written.
pub enum Change<'a> {
    Value(&'a [u8], Option<&'a [u8]>),
    Timer(i64, &'a [u8], bool),
}

impl DiskPart {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self
            .ks
            .get(value_key(key))
            .map_err(err)?
            .map(|v| v.to_vec()))
    }

    pub fn has_timer(&self, at: i64, key: &[u8]) -> Result<bool, String> {
        self.ks.contains_key(timer_key(at, key)).map_err(err)
    }

    /// Values with `prefix` from `from` on, in key order.
    pub fn values(
        &self,
        prefix: &[u8],
        from: Bound<&[u8]>,
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), String>> + use<> {
        let lower = match from {
            Bound::Included(k) => Bound::Included(value_key(k)),
            Bound::Excluded(k) => Bound::Excluded(value_key(k)),
            Bound::Unbounded => Bound::Included(value_key(prefix)),
        };
        let upper = match prefix_end(&value_key(prefix)) {
            Some(end) => Bound::Excluded(end),
            None => Bound::Unbounded,
        };
        self.ks.range((lower, upper)).map(|g| {
            let (k, v) = g.into_inner().map_err(err)?;
            Ok((k.get(1..).unwrap_or_default().to_vec(), v.to_vec()))
        })
    }

    /// Timers from `from` (inclusive) on, in firing order.
    pub fn timers(
        &self,
        from: Option<&(i64, Vec<u8>)>,
    ) -> impl Iterator<Item = Result<(i64, Vec<u8>), String>> + use<> {
        let lower = match from {
            Some((at, k)) => timer_key(*at, k),
            None => vec![TIMER],
        };
        self.ks.range(lower..vec![TIMER + 1]).map(|g| {
            let k = g.key().map_err(err)?;
            let at = k
                .get(1..9)
                .and_then(time_from)
                .ok_or("state store on disk: malformed timer key")?;
            Ok((at, k.get(9..).unwrap_or_default().to_vec()))
        })
    }

    /// Writes changes and the checkpoint they reach, as one atomic batch.
    pub fn write<'a>(
        &self,
        changes: impl IntoIterator<Item = Change<'a>>,
        counts: Counts,
        checkpoint: &[u8],
    ) -> Result<(), String> {
        let mut b = self.db.batch();
        for c in changes {
            match c {
                Change::Value(k, Some(v)) => b.insert(&self.ks, value_key(k), v),
                Change::Value(k, None) => b.remove(&self.ks, value_key(k)),
                Change::Timer(at, k, true) => b.insert(&self.ks, timer_key(at, k), b""),
                Change::Timer(at, k, false) => b.remove(&self.ks, timer_key(at, k)),
            }
        }
        let mut meta = Vec::with_capacity(24 + checkpoint.len());
        for n in [counts.keys, counts.bytes, counts.timers] {
            meta.extend_from_slice(&n.to_le_bytes());
        }
        meta.extend_from_slice(checkpoint);
        b.insert(&self.ks, META, meta);
        b.commit().map_err(err)?;
        // Memtables past their limit: wait for flushes (the appender, and through it the
        // partition, slows to what the disk takes), at most MEMTABLE_WAIT (a flush that
        // fails — a full disk — must not stop the partition here: its next write says).
        let deadline = Instant::now() + MEMTABLE_WAIT;
        while self.db.write_buffer_size() > self.memtables && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// The counts and checkpoint bytes of the last write, if any.
    pub fn checkpoint(&self) -> Result<Option<(Counts, Vec<u8>)>, String> {
        let Some(m) = self.ks.get(META).map_err(err)? else {
            return Ok(None);
        };
        let n = |i: usize| {
            m.get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| "state store on disk: malformed checkpoint".to_string())
        };
        let counts = Counts {
            keys: n(0)?,
            bytes: n(1)?,
            timers: n(2)?,
        };
        Ok(Some((counts, m.get(24..).unwrap_or_default().to_vec())))
    }

    /// Removes everything (a reset, or a restore that starts from nothing).
    pub fn clear(&self) -> Result<(), String> {
        self.ks.clear().map_err(err)
    }

    /// Bytes this partition takes on disk.
    pub fn disk_space(&self) -> u64 {
        self.ks.disk_space()
    }
}

/// The first key after every key starting with `prefix` (none: there is no such key).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_read_back_in_order_with_their_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path(), 8 << 20, 2).unwrap();
        let p = db.partition(0).unwrap();
        assert_eq!(p.checkpoint().unwrap(), None);
        let counts = Counts {
            keys: 3,
            bytes: 10,
            timers: 2,
        };
        p.write(
            [
                Change::Value(b"a1", Some(b"x")),
                Change::Value(b"b1", Some(b"y")),
                Change::Value(b"b\xff", Some(b"z")),
                Change::Value(b"c", Some(b"w")),
                Change::Timer(-5, b"k", true),
                Change::Timer(7, b"a", true),
            ],
            counts,
            b"cp1",
        )
        .unwrap();
        p.write([Change::Value(b"c", None)], counts, b"cp2")
            .unwrap();
        assert_eq!(p.get(b"b1").unwrap(), Some(b"y".to_vec()));
        assert_eq!(p.get(b"c").unwrap(), None);
        type Found = Vec<Result<(Vec<u8>, Vec<u8>), String>>;
        let keys = |it: Found| -> Vec<Vec<u8>> { it.into_iter().map(|r| r.unwrap().0).collect() };
        assert_eq!(
            keys(p.values(b"b", Bound::Unbounded).collect()),
            [b"b1".to_vec(), b"b\xff".to_vec()]
        );
        assert_eq!(
            keys(p.values(b"b", Bound::Excluded(b"b1")).collect()),
            [b"b\xff".to_vec()]
        );
        let timers: Vec<_> = p.timers(None).map(Result::unwrap).collect();
        assert_eq!(timers, [(-5, b"k".to_vec()), (7, b"a".to_vec())]);
        let from: Vec<_> = p
            .timers(Some(&(7, b"a".to_vec())))
            .map(Result::unwrap)
            .collect();
        assert_eq!(from, [(7, b"a".to_vec())]);
        assert!(p.has_timer(-5, b"k").unwrap() && !p.has_timer(-5, b"a").unwrap());
        assert_eq!(p.checkpoint().unwrap(), Some((counts, b"cp2".to_vec())));
        db.persist().unwrap();
        drop((p, db));
        let db = StateDb::open(dir.path(), 8 << 20, 2).unwrap();
        let p = db.partition(0).unwrap();
        assert_eq!(p.get(b"a1").unwrap(), Some(b"x".to_vec()));
        assert!(db.partition(1).unwrap().checkpoint().unwrap().is_none());
        p.clear().unwrap();
        assert_eq!(p.get(b"a1").unwrap(), None);
    }
}
