//! Durable keyed state of stateful deployments: the changelog topic, snapshots and restore.
//!
//! Every commit of a partition task appends, after the outputs and dead letters it covers,
//! the state changes of those reads to the deployment's changelog topic
//! (`<transform>.state`, compacted, one partition per input partition) and, last, a meta
//! record (`m`) with the input position, watermark and max event time they reach. The meta
//! record closes the commit: on restore, records after the last one are the remains of an
//! append cut short by a crash and are ignored — the first commit after the restore writes
//! the restored values of their keys again, so a later replay (or compaction, which keeps
//! the latest record of a key) never sees them win.
//!
//! Changelog keys: `s<key>` a value (`null` = deleted), `t<at: 8 bytes, order-preserving>
//! <key>` a timer (empty value = set, `null` = gone), `m` the meta record (JSON).
//!
//! A snapshot file per partition (`state-p<N>.snap`) holds the whole state at a changelog
//! offset, so restore reads the snapshot and replays only what follows. It is written when a
//! task stops and when the changelog has grown well past it; one older than half the
//! tombstone retention is not used (a tombstone after it may have been compacted away).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use sluice_common::fs::{sync_dir, write_file};
use sluice_log::batch::{self, Builder};
use sluice_log::{Cleanup, Partition, TopicConfig, now_ms};
use sluice_runtime::state::disk::{TIMER, VALUE, time_from, timer_key, value_key};
use sluice_runtime::state::{StateDelta, StateStore};
use sluice_sdk::NO_WATERMARK;
use sluice_sdk::codec::{Reader, Records, put_uvarint};

/// The changelog topic of a deployment.
pub fn topic_name(transform: &str) -> String {
    sluice_deploy::names::state_topic(transform)
}

/// How long a tombstone stays in the changelog after compaction reaches it.
const TOMBSTONE_RETENTION_MS: u64 = 24 * 3600 * 1000;

/// The changelog topic's settings: compacted, segments small enough to be compacted soon.
pub fn topic_config(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions,
        cleanup: Cleanup::Compact,
        segment_bytes: 64 << 20,
        segment_ms: 3600 * 1000,
        tombstone_retention_ms: TOMBSTONE_RETENTION_MS,
        ..TopicConfig::default()
    }
}

/// Where a partition's committed state stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The next input offset to process.
    pub position: u64,
    pub watermark: i64,
    pub max_event_time: i64,
    /// Wall-clock time of the commit (ms).
    pub committed_at: i64,
    /// Timers fired so far at this position and watermark (a firing of more than one
    /// read's worth goes on over several commits; outputs are named by this count).
    #[serde(default)]
    pub fired: u32,
    /// Over two inputs: the largest event time read from each (the watermark follows the
    /// lower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_times: Option<[i64; 2]>,
}

impl Meta {
    pub fn starting_at(position: u64) -> Meta {
        Meta {
            position,
            watermark: NO_WATERMARK,
            max_event_time: NO_WATERMARK,
            committed_at: 0,
            fired: 0,
            input_times: None,
        }
    }
}

/// The state part of a commit: what changed, and where that leaves the partition.
#[derive(Debug, Clone)]
pub struct Commit {
    pub delta: StateDelta,
    pub meta: Meta,
}

impl Commit {
    /// Adds a later commit (its values and meta win).
    pub fn merge(&mut self, later: Commit) {
        self.delta.merge(later.delta);
        self.meta = later.meta;
    }
}

const META: &[u8] = b"m";
/// Largest changelog batch written (a commit may span several).
const BATCH_BYTES: usize = 8 << 20;

/// A changelog record, decoded.
enum Change<'a> {
    Value(&'a [u8], Option<&'a [u8]>),
    Timer(i64, &'a [u8], bool),
    Meta(Meta),
}

fn parse_change<'a>(key: &'a [u8], value: Option<&'a [u8]>) -> Option<Change<'a>> {
    match key.split_first()? {
        (&VALUE, k) => Some(Change::Value(k, value)),
        (&TIMER, rest) => {
            let at = time_from(rest.get(..8)?)?;
            Some(Change::Timer(at, rest.get(8..)?, value.is_some()))
        }
        _ if key == META => serde_json::from_slice(value?).ok().map(Change::Meta),
        _ => None,
    }
}

/// The changelog records of a commit (key, value; `None` a tombstone): values, timers,
/// then the meta record that closes it.
pub fn records(commit: &Commit) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> + '_ {
    let values = commit
        .delta
        .values
        .iter()
        .map(|(k, v)| (value_key(k), v.clone()));
    let timers = commit
        .delta
        .timers
        .iter()
        .map(|((at, k), set)| (timer_key(*at, k), set.then(Vec::new)));
    let meta = serde_json::to_vec(&commit.meta).unwrap_or_default();
    values
        .chain(timers)
        .chain(std::iter::once((META.to_vec(), Some(meta))))
}

/// The changelog batches of a commit: values, timers, then the meta record.
pub fn encode(commit: &Commit) -> Vec<BytesMut> {
    let now = now_ms();
    let mut batches = Vec::new();
    let mut b = Builder::new();
    let mut size = 0usize;
    for (k, v) in records(commit) {
        if size > BATCH_BYTES {
            batches.push(std::mem::take(&mut b).finish());
            size = 0;
        }
        size += k.len() + v.as_ref().map_or(0, Vec::len) + 16;
        b.push(now, Some(&k), v.as_deref(), std::iter::empty());
    }
    batches.push(b.finish());
    batches
}

/// Replays changelog records read from a transactional changelog (committed records
/// only: every commit there is whole) into a store.
#[derive(Debug, Default)]
pub struct Replay {
    /// The last meta record seen.
    pub meta: Option<Meta>,
    pub replayed: u64,
}

impl Replay {
    /// Applies one changelog record.
    pub fn apply(
        &mut self,
        store: &mut StateStore,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), String> {
        self.replayed += 1;
        match parse_change(key, value) {
            Some(Change::Value(k, v)) => store.restore_value(k.to_vec(), v.map(<[u8]>::to_vec)),
            Some(Change::Timer(at, k, set)) => store.restore_timer(at, k.to_vec(), set),
            Some(Change::Meta(m)) => {
                self.meta = Some(m);
                // A store on disk writes what it replayed at whole commits.
                if store.should_write() {
                    store.write_all(&disk_checkpoint(None, &m))?;
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Ends a replay: a store on disk writes what it replayed.
    pub fn finish(&self, store: &mut StateStore) -> Result<(), String> {
        match &self.meta {
            Some(m) => store.write_all(&disk_checkpoint(None, m)),
            None => Ok(()),
        }
    }
}

/// What a restore found.
#[derive(Debug, Default)]
pub struct Restored {
    /// The last complete commit's meta (none: the partition never committed state).
    pub meta: Option<Meta>,
    /// Restored values of keys that an unfinished commit touched: the next commit writes
    /// them again.
    pub repair: StateDelta,
    /// The snapshot's changelog offset, when one was used.
    pub snapshot: Option<u64>,
    /// Changelog records replayed after the snapshot.
    pub replayed: u64,
    pub took: Duration,
}

/// A changed key and its value before the unfinished tail changed it.
enum Before {
    Value(Vec<u8>, Option<Vec<u8>>),
    Timer(i64, Vec<u8>, bool),
}

/// The checkpoint a store on disk keeps with its writes: the changelog offset its state
/// stands at (none: a changelog elsewhere, replayed in full on restore) and the meta.
pub fn disk_checkpoint(offset: Option<u64>, meta: &Meta) -> Vec<u8> {
    let mut b = offset.unwrap_or(u64::MAX).to_le_bytes().to_vec();
    b.extend(serde_json::to_vec(meta).unwrap_or_default());
    b
}

fn parse_disk_checkpoint(b: &[u8]) -> Option<(u64, Meta)> {
    let (offset, meta) = b.split_first_chunk::<8>()?;
    Some((
        u64::from_le_bytes(*offset),
        serde_json::from_slice(meta).ok()?,
    ))
}

/// Rebuilds a partition's state from its snapshot (or, on disk, its last checkpoint) and
/// changelog.
pub fn restore(
    store: &mut StateStore,
    changelog: &Partition,
    dir: &Path,
    partition: u32,
) -> Result<Restored, String> {
    let started = Instant::now();
    let mut out = Restored::default();
    let mut from = changelog.start_offset();
    let hw = changelog.high_watermark();
    if store.is_on_disk() {
        match store
            .checkpoint()
            .map(|c| c.as_deref().and_then(parse_disk_checkpoint))
        {
            Ok(Some((offset, meta))) if offset >= from && offset <= hw => {
                out.meta = Some(meta);
                out.snapshot = Some(offset);
                from = offset;
            }
            found => {
                if let Ok(Some((offset, _))) = found {
                    tracing::warn!(
                        partition,
                        checkpoint = offset,
                        changelog_start = from,
                        changelog_end = hw,
                        "state on disk does not fit the changelog; replaying all of it"
                    );
                }
                store.clear()?;
            }
        }
        return replay(store, changelog, from, hw, out, started);
    }
    store.clear()?;
    match read_snapshot(dir, partition, store) {
        Ok(Some(snap)) if snap.offset >= from && snap.offset <= hw => {
            out.meta = Some(snap.meta);
            out.snapshot = Some(snap.offset);
            from = snap.offset;
        }
        Ok(Some(snap)) => {
            tracing::warn!(
                partition,
                snapshot = snap.offset,
                changelog_start = from,
                changelog_end = hw,
                "state snapshot does not fit the changelog; replaying all of it"
            );
            store.clear()?;
        }
        Ok(None) => store.clear()?,
        Err(e) => {
            tracing::warn!(partition, error = %e, "state snapshot unusable; replaying the changelog");
            store.clear()?;
        }
    }
    replay(store, changelog, from, hw, out, started)
}

/// Replays the changelog from `from` to `hw` into `store`; an unfinished commit at the end
/// is undone (and listed for repair). A store on disk writes what it replayed at whole
/// commits as it goes, and at the end, with the changelog offset it stands at.
fn replay(
    store: &mut StateStore,
    changelog: &Partition,
    from: u64,
    hw: u64,
    mut out: Restored,
    started: Instant,
) -> Result<Restored, String> {
    // The offset just after the last meta record (where the state stands).
    let mut standing = from;
    // Changes since the last meta record, with the values they replaced.
    let mut tail: Vec<Before> = Vec::new();
    let mut off = from;
    while off < hw {
        let read = changelog
            .read(off, 4 << 20)
            .map_err(|e| format!("reading the state changelog: {e}"))?;
        if read.data.is_empty() {
            break;
        }
        for (h, raw) in batch::split(read.data).map_err(|e| e.to_string())? {
            if h.is_control() || (h.last_offset() as u64) < off {
                continue;
            }
            let section = batch::records_section(&raw, &h).map_err(|e| e.to_string())?;
            for r in Records::new(&section, h.record_count as usize) {
                let r = r.map_err(|e| format!("state changelog record: {e}"))?;
                if ((h.base_offset + i64::from(r.offset_delta)) as u64) < off {
                    continue;
                }
                let Some(key) = r.key else { continue };
                out.replayed += 1;
                match parse_change(key, r.value) {
                    Some(Change::Value(k, v)) => {
                        let before = store.get(k).map_err(|e| e.to_string())?;
                        tail.push(Before::Value(k.to_vec(), before));
                        store.restore_value(k.to_vec(), v.map(<[u8]>::to_vec))?;
                    }
                    Some(Change::Timer(at, k, set)) => {
                        tail.push(Before::Timer(at, k.to_vec(), store.has_timer(at, k)?));
                        store.restore_timer(at, k.to_vec(), set)?;
                    }
                    Some(Change::Meta(m)) => {
                        out.meta = Some(m);
                        tail.clear();
                        standing = (h.base_offset + i64::from(r.offset_delta)) as u64 + 1;
                        if store.should_write() {
                            store.write_all(&disk_checkpoint(Some(standing), &m))?;
                        }
                    }
                    None => {}
                }
            }
        }
        off = read.next_offset;
    }
    // An unfinished commit: undo it, and have the next commit restate its keys.
    for b in tail.into_iter().rev() {
        match b {
            Before::Value(k, v) => {
                out.repair.values.insert(k.clone(), v.clone());
                store.restore_value(k, v)?;
            }
            Before::Timer(at, k, set) => {
                out.repair.timers.insert((at, k.clone()), set);
                store.restore_timer(at, k, set)?;
            }
        }
    }
    if let Some(m) = &out.meta {
        store.write_all(&disk_checkpoint(Some(standing), m))?;
    }
    out.took = started.elapsed();
    Ok(out)
}

const MAGIC: &[u8; 8] = b"SLSTATE1";

fn snapshot_path(dir: &Path, partition: u32) -> PathBuf {
    dir.join(format!("state-p{partition}.snap"))
}

/// Removes a partition's snapshot (a reset).
pub fn remove_snapshot(dir: &Path, partition: u32) {
    let _ = std::fs::remove_file(snapshot_path(dir, partition));
}

struct Snapshot {
    offset: u64,
    meta: Meta,
}

/// Writes the whole state of a partition as of changelog offset `offset` (everything
/// before it is in the state, nothing after).
pub fn write_snapshot(
    dir: &Path,
    partition: u32,
    store: &StateStore,
    meta: &Meta,
    offset: u64,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(64 + store.bytes() as usize);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&now_ms().to_le_bytes());
    let meta = serde_json::to_vec(meta).map_err(std::io::Error::other)?;
    put_uvarint(&mut buf, meta.len() as u64);
    buf.extend_from_slice(&meta);
    buf.extend_from_slice(&(store.keys() as u64).to_le_bytes());
    for (k, v) in store.values() {
        sluice_sdk::state::put_entry(&mut buf, k, v);
    }
    buf.extend_from_slice(&(store.timer_count() as u64).to_le_bytes());
    for (at, k) in store.timers() {
        sluice_sdk::state::put_timer(&mut buf, *at, k);
    }
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    write_file(&snapshot_path(dir, partition), &buf)?;
    sync_dir(dir)
}

/// Loads a partition's snapshot into `store`, if there is a sound and recent one.
fn read_snapshot(
    dir: &Path,
    partition: u32,
    store: &mut StateStore,
) -> Result<Option<Snapshot>, String> {
    let buf = match std::fs::read(snapshot_path(dir, partition)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let (body, crc) = buf
        .split_last_chunk::<4>()
        .ok_or("snapshot file is truncated")?;
    if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
        return Err("snapshot checksum mismatch".into());
    }
    let bad = |e: sluice_sdk::codec::CodecError| format!("snapshot: {e}");
    let mut r = Reader::new(body);
    if r.bytes(8).map_err(bad)? != MAGIC {
        return Err("not a state snapshot".into());
    }
    let offset = r.u64_le().map_err(bad)?;
    let written = r.u64_le().map_err(bad)? as i64;
    if now_ms().saturating_sub(written) > (TOMBSTONE_RETENTION_MS / 2) as i64 {
        return Err("snapshot older than half the changelog's tombstone retention".into());
    }
    let n = r.uvarint().map_err(bad)? as usize;
    let meta: Meta = serde_json::from_slice(r.bytes(n).map_err(bad)?)
        .map_err(|e| format!("snapshot meta: {e}"))?;
    let keys = r.u64_le().map_err(bad)?;
    for _ in 0..keys {
        let n = r.uvarint().map_err(bad)? as usize;
        let k = r.bytes(n).map_err(bad)?;
        let n = r.uvarint().map_err(bad)? as usize;
        let v = r.bytes(n).map_err(bad)?;
        store.restore_value(k.to_vec(), Some(v.to_vec()))?;
    }
    let timers = r.u64_le().map_err(bad)?;
    for _ in 0..timers {
        let (at, k) = sluice_sdk::state::read_timer(&mut r).map_err(bad)?;
        store.restore_timer(at, k.to_vec(), true)?;
    }
    Ok(Some(Snapshot { offset, meta }))
}

/// Appends a commit's changelog batches; the offset after them.
pub fn append(changelog: &Partition, commit: &Commit) -> Result<u64, String> {
    let mut last = changelog.high_watermark();
    for b in encode(commit) {
        last = changelog
            .append(b)
            .map_err(|e| format!("appending to the state changelog: {e}"))?
            .last_offset
            + 1;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_runtime::state::StateBudget;
    use std::sync::Arc;

    fn store() -> StateStore {
        StateStore::new(Arc::new(StateBudget::new(1 << 30)))
    }

    fn get(s: &mut StateStore, k: &str) -> Option<String> {
        s.get(k.as_bytes())
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    fn some(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn commit(values: &[(&str, Option<&str>)], timers: &[(i64, &str, bool)], pos: u64) -> Commit {
        Commit {
            delta: StateDelta {
                values: values
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
                    .collect(),
                timers: timers
                    .iter()
                    .map(|(at, k, s)| ((*at, k.as_bytes().to_vec()), *s))
                    .collect(),
                ..StateDelta::default()
            },
            meta: Meta {
                position: pos,
                watermark: 5,
                max_event_time: 9,
                committed_at: 1,
                fired: 0,
                input_times: Some([7, 9]),
            },
        }
    }

    #[test]
    fn restore_replays_commits_ignores_an_unfinished_tail_and_repairs_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = sluice_log::Log::open(dir.path().join("log")).unwrap();
        let t = log.create_topic("x.state", topic_config(1)).unwrap();
        let p = &t.partitions[0];
        append(
            p,
            &commit(&[("a", Some("1")), ("b", Some("2"))], &[(7, "a", true)], 10),
        )
        .unwrap();
        append(p, &commit(&[("b", None)], &[], 20)).unwrap();
        // An unfinished commit: values without the meta record that closes it.
        let mut b = Builder::new();
        b.push(0, Some(&value_key(b"a")), Some(b"torn"), std::iter::empty());
        b.push(0, Some(&timer_key(7, b"a")), None, std::iter::empty());
        p.append(b.finish()).unwrap();
        let mut s = store();
        let r = restore(&mut s, p, dir.path(), 0).unwrap();
        assert_eq!(r.meta.unwrap().position, 20);
        assert_eq!(get(&mut s, "a"), some("1"));
        assert_eq!(get(&mut s, "b"), None);
        assert!(s.has_timer(7, b"a").unwrap());
        assert_eq!(
            r.repair.values.get(b"a".as_slice()),
            Some(&Some(b"1".to_vec()))
        );
        assert_eq!(r.repair.timers.get(&(7, b"a".to_vec())), Some(&true));
        // The repair goes out with the next commit: a replay then ends where the restore did.
        let mut repaired = Commit {
            delta: r.repair.clone(),
            meta: Meta::starting_at(0),
        };
        repaired.merge(commit(&[("c", Some("3"))], &[], 30));
        append(p, &repaired).unwrap();
        let mut s2 = store();
        let r2 = restore(&mut s2, p, dir.path(), 0).unwrap();
        assert_eq!(r2.meta.unwrap().position, 30);
        assert!(r2.repair.is_empty());
        assert_eq!(
            (
                get(&mut s2, "a"),
                get(&mut s2, "c"),
                s2.has_timer(7, b"a").unwrap()
            ),
            (some("1"), some("3"), true)
        );
    }

    #[test]
    fn snapshots_restore_with_the_changelog_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let log = sluice_log::Log::open(dir.path().join("log")).unwrap();
        let t = log.create_topic("x.state", topic_config(1)).unwrap();
        let p = &t.partitions[0];
        append(p, &commit(&[("a", Some("1"))], &[(3, "k", true)], 10)).unwrap();
        let mut s = store();
        restore(&mut s, p, dir.path(), 0).unwrap();
        let meta = commit(&[], &[], 10).meta;
        write_snapshot(dir.path(), 0, &s, &meta, p.high_watermark()).unwrap();
        append(p, &commit(&[("b", Some("2"))], &[], 11)).unwrap();
        let mut s2 = store();
        let r = restore(&mut s2, p, dir.path(), 0).unwrap();
        assert_eq!(r.snapshot, Some(3));
        assert_eq!(r.replayed, 2, "only the commit after the snapshot");
        assert_eq!(
            (get(&mut s2, "a"), get(&mut s2, "b")),
            (some("1"), some("2"))
        );
        assert!(s2.has_timer(3, b"k").unwrap());
        assert_eq!(r.meta.unwrap().position, 11);
        // A damaged snapshot is not trusted: the changelog alone gives the same state.
        let path = snapshot_path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let mut s3 = store();
        let r = restore(&mut s3, p, dir.path(), 0).unwrap();
        assert_eq!(r.snapshot, None);
        assert_eq!(
            (get(&mut s3, "a"), get(&mut s3, "b")),
            (some("1"), some("2"))
        );
    }

    /// A store on disk restores from its last checkpoint and replays only what follows;
    /// a checkpoint the changelog does not have (a changelog that lost its tail, or was
    /// replaced) is not trusted.
    #[test]
    fn a_disk_store_restores_from_its_checkpoint_and_the_changelog_after_it() {
        use sluice_runtime::state::disk::StateDb;
        use sluice_runtime::state::write_committed;
        let dir = tempfile::tempdir().unwrap();
        let log = sluice_log::Log::open(dir.path().join("log")).unwrap();
        let t = log.create_topic("x.state", topic_config(1)).unwrap();
        let p = &t.partitions[0];
        let budget = Arc::new(StateBudget::new(1 << 30));
        let memory = Arc::new(StateBudget::new(1 << 20));
        let db = StateDb::open(&dir.path().join("db"), 8 << 20, 1).unwrap();
        let open = || {
            let (s, _) =
                StateStore::on_disk(budget.clone(), memory.clone(), db.partition(0).unwrap())
                    .unwrap();
            std::sync::Mutex::new(s)
        };
        // A run puts a and b; its commit reaches the changelog, then the disk.
        let s = open();
        let mut first = {
            let mut st = s.lock().unwrap();
            restore(&mut st, p, dir.path(), 0).unwrap();
            st.begin_run();
            st.put(b"a", b"1").unwrap();
            st.put(b"b", b"2").unwrap();
            st.set_timer(b"a", 7).unwrap();
            commit(&[], &[], 10)
        };
        first.delta = s.lock().unwrap().end_run(true);
        let end = append(p, &first).unwrap();
        write_committed(&s, &first.delta, &disk_checkpoint(Some(end), &first.meta)).unwrap();
        // The next commit reaches the changelog but not the disk (a crash between).
        let mut second = {
            let mut st = s.lock().unwrap();
            st.begin_run();
            st.delete(b"b").unwrap();
            st.put(b"c", b"3").unwrap();
            commit(&[], &[], 20)
        };
        second.delta = s.lock().unwrap().end_run(true);
        append(p, &second).unwrap();
        drop(s);
        let s = open();
        let mut st = s.lock().unwrap();
        assert_eq!(
            (st.keys(), st.timer_count()),
            (2, 1),
            "as of the checkpoint"
        );
        let r = restore(&mut st, p, dir.path(), 0).unwrap();
        assert_eq!(r.snapshot, Some(end));
        assert_eq!(r.replayed, 3, "only the commit after the checkpoint");
        assert_eq!(r.meta.unwrap().position, 20);
        assert_eq!(
            (get(&mut st, "a"), get(&mut st, "b"), get(&mut st, "c")),
            (some("1"), None, some("3"))
        );
        assert_eq!((st.keys(), st.timer_count()), (2, 1));
        assert!(st.has_timer(7, b"a").unwrap());
        drop(st);
        drop(s);
        // The restore wrote what it replayed: the next one replays nothing.
        let s = open();
        let mut st = s.lock().unwrap();
        let r = restore(&mut st, p, dir.path(), 0).unwrap();
        assert_eq!((r.replayed, r.snapshot), (0, Some(p.high_watermark())));
        assert_eq!(get(&mut st, "c"), some("3"));
        drop(st);
        drop(s);
        // Against a changelog that does not reach the checkpoint: all of it is replayed.
        let t2 = log.create_topic("y.state", topic_config(1)).unwrap();
        let p2 = &t2.partitions[0];
        append(p2, &commit(&[("z", Some("9"))], &[], 5)).unwrap();
        let s = open();
        let mut st = s.lock().unwrap();
        let r = restore(&mut st, p2, dir.path(), 0).unwrap();
        assert_eq!(r.snapshot, None);
        assert_eq!(
            (
                get(&mut st, "a"),
                get(&mut st, "z"),
                st.keys(),
                st.timer_count()
            ),
            (None, some("9"), 1, 0)
        );
    }
}
