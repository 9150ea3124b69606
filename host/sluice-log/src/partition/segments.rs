//! The partition's segments, local and remote, under one lock, with the log start offset.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::locks::{lock, read, write};
use crate::segment::Segment;
use crate::tier::{self, RemoteMeta, RemoteSegment};

/// The segments of a partition, each by base offset: the local files (the last one is the
/// active segment, the writer's; the others are sealed) and the segments in the object
/// store (the manifest). A segment may be in both: uploaded, its local copy not evicted yet.
#[derive(Debug)]
struct SegmentSet {
    local: BTreeMap<u64, Arc<Segment>>,
    remote: BTreeMap<u64, Arc<RemoteSegment>>,
}

impl SegmentSet {
    /// The base offset of the first local segment (below it, data is remote).
    fn local_first(&self) -> u64 {
        self.local.keys().next().copied().unwrap_or(u64::MAX)
    }

    /// The active segment's base: the last local one. A roll adds the next segment only
    /// after the active one is synced and its indexes written, so every other local
    /// segment is sealed.
    fn active_base(&self) -> Option<u64> {
        self.local.keys().next_back().copied()
    }

    fn local_bytes(&self) -> u64 {
        self.local.values().map(|s| s.size()).sum()
    }
}

/// The segments of `map` (by base offset) from the one that holds `offset` up to (not
/// including) those based at `end`.
fn from_holder<T: Clone>(map: &BTreeMap<u64, T>, offset: u64, end: u64) -> Vec<T> {
    let first = map.range(..=offset).next_back().map_or(0, |(b, _)| *b);
    map.range(first..end.max(first))
        .map(|(_, s)| s.clone())
        .collect()
}

/// Limits on what is kept: by the age of a segment's newest record, by total bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keep {
    pub(super) ms: Option<i64>,
    pub(super) bytes: Option<u64>,
}

impl Keep {
    /// Whether a segment whose newest record is at `max_ts`, in a total of `total` bytes,
    /// is past a limit (with no limits, nothing is).
    fn passed(self, max_ts: i64, total: u64, now: i64) -> bool {
        let too_old = self.ms.is_some_and(|ms| max_ts < now - ms);
        let too_big = self.bytes.is_some_and(|b| total > b);
        too_old || too_big
    }
}

/// Sizes and counts of a partition's segments, taken at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Census {
    pub(super) local_bytes: u64,
    pub(super) local_first: Option<u64>,
    /// Bytes of remote segments below the first local one (the others are local too).
    pub(super) remote_only_bytes: u64,
    pub(super) remote_bytes: u64,
    pub(super) remote_segments: usize,
    /// One past the last remote offset (0: nothing is remote).
    pub(super) remote_end: u64,
    /// Sealed local segments with data, not in the object store yet.
    pub(super) pending_segments: usize,
    pub(super) pending_bytes: u64,
}

/// A partition's segment set behind one lock, and its log start offset.
///
/// # Locks
///
/// `set` is the one lock over local and remote segments, so every reader sees both maps at
/// one moment. It is held only inside these methods and no guard leaves them; a method
/// holding it takes no other lock (it calls only [`Segment`]'s own accessors). So it may be
/// taken while the writer is held (a roll), and no partition lock is taken while it is held.
///
/// `manifest` is `remote.json`. Every change to the remote map holds it, through a
/// [`RemoteChange`], from reading the map until the map is updated, so the file and the map
/// change in one order; `set` is taken only through that guard, and the guard's
/// [`RemoteChange::store`] borrows it mutably, so no `set` guard can be held across the
/// file's fsync: readers and rolls never wait for the disk. The order inside this module
/// is therefore `manifest → set`, and outside it there is only `set`.
#[derive(Debug)]
pub(super) struct Segments {
    set: RwLock<SegmentSet>,
    manifest: Mutex<ManifestFile>,
    /// The log start offset: offsets below it are gone (retention, DeleteRecords).
    start: AtomicU64,
}

/// The partition's manifest file, reachable only with its lock held.
#[derive(Debug)]
struct ManifestFile {
    dir: PathBuf,
}

/// The right to change the remote segments: the manifest's lock, through which the set's
/// lock is taken for a moment at a time.
struct RemoteChange<'a> {
    file: MutexGuard<'a, ManifestFile>,
    set: &'a RwLock<SegmentSet>,
}

impl RemoteChange<'_> {
    fn read(&self) -> RwLockReadGuard<'_, SegmentSet> {
        read(self.set)
    }

    fn write(&self) -> RwLockWriteGuard<'_, SegmentSet> {
        write(self.set)
    }

    /// Writes `remote.json` durably. `&mut`: no guard from `read`/`write` lives across it.
    fn store(&mut self, metas: Vec<RemoteMeta>) -> io::Result<()> {
        tier::store_manifest(&self.file.dir, metas)
    }
}

impl Segments {
    /// `local` must hold at least one segment (the active one).
    pub(super) fn new(
        local: BTreeMap<u64, Arc<Segment>>,
        remote: BTreeMap<u64, Arc<RemoteSegment>>,
        start: u64,
        dir: PathBuf,
    ) -> Segments {
        Segments {
            set: RwLock::new(SegmentSet { local, remote }),
            manifest: Mutex::new(ManifestFile { dir }),
            start: AtomicU64::new(start),
        }
    }

    pub(super) fn start(&self) -> u64 {
        self.start.load(Ordering::Acquire)
    }

    /// Moves the log start up to `offset` (never down).
    pub(super) fn advance_start(&self, offset: u64) {
        self.start.fetch_max(offset, Ordering::AcqRel);
    }

    pub(super) fn local_count(&self) -> usize {
        read(&self.set).local.len()
    }

    pub(super) fn remote_count(&self) -> usize {
        read(&self.set).remote.len()
    }

    /// The active segment's base offset.
    pub(super) fn active_base(&self) -> u64 {
        read(&self.set).active_base().unwrap_or(u64::MAX)
    }

    /// Adds a local segment (a roll's new active one, or a compacted sealed one in place
    /// of the old).
    pub(super) fn insert_local(&self, seg: Arc<Segment>) {
        write(&self.set).local.insert(seg.base, seg);
    }

    pub(super) fn census(&self) -> Census {
        let set = read(&self.set);
        let active = set.active_base();
        let mut c = Census {
            local_first: set.local.keys().next().copied(),
            ..Census::default()
        };
        for seg in set.local.values() {
            let size = seg.size();
            c.local_bytes += size;
            if Some(seg.base) != active && size > 0 && !set.remote.contains_key(&seg.base) {
                c.pending_segments += 1;
                c.pending_bytes += size;
            }
        }
        c.remote_only_bytes = set
            .remote
            .range(..set.local_first())
            .map(|(_, r)| r.meta.size)
            .sum();
        c.remote_bytes = set.remote.values().map(|r| r.meta.size).sum();
        c.remote_segments = set.remote.len();
        c.remote_end = set
            .remote
            .values()
            .next_back()
            .map_or(0, |r| r.meta.next_offset);
        c
    }

    /// The segments a read from `offset` goes through, oldest first: remote ones from the
    /// one holding `offset` up to the first local one (none when `offset` is local), and
    /// local ones from the one holding `offset`. Both at one moment, so they meet: no
    /// eviction slips between them.
    pub(super) fn holders(&self, offset: u64) -> (Vec<Arc<RemoteSegment>>, Vec<Arc<Segment>>) {
        let set = read(&self.set);
        let local_first = set.local_first();
        let remote = if offset < local_first {
            from_holder(&set.remote, offset, local_first)
        } else {
            Vec::new()
        };
        (remote, from_holder(&set.local, offset, u64::MAX))
    }

    /// Every segment, oldest first: the remote ones below the first local one, and the
    /// local ones.
    pub(super) fn all(&self) -> (Vec<Arc<RemoteSegment>>, Vec<Arc<Segment>>) {
        let set = read(&self.set);
        let remote = set
            .remote
            .range(..set.local_first())
            .map(|(_, r)| r.clone())
            .collect();
        (remote, set.local.values().cloned().collect())
    }

    /// Local segments based below `base`, oldest first.
    pub(super) fn local_below(&self, base: u64) -> Vec<Arc<Segment>> {
        read(&self.set)
            .local
            .range(..base)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// Sealed local segments with data that are not in the object store yet, oldest first.
    pub(super) fn pending(&self) -> Vec<Arc<Segment>> {
        let set = read(&self.set);
        let active = set.active_base();
        set.local
            .values()
            .filter(|s| Some(s.base) != active && s.size() > 0 && !set.remote.contains_key(&s.base))
            .cloned()
            .collect()
    }

    /// Retention of remote segments: where the remote-only segments (below the first local
    /// one) past `keep` end, oldest first; 0 when none is. The total counts local bytes too.
    pub(super) fn remote_expired_end(&self, now: i64, keep: Keep) -> u64 {
        let set = read(&self.set);
        let remote: Vec<&RemoteMeta> = set
            .remote
            .range(..set.local_first())
            .map(|(_, r)| &r.meta)
            .collect();
        let mut total = set.local_bytes() + remote.iter().map(|m| m.size).sum::<u64>();
        let mut below = 0;
        for m in remote {
            if !keep.passed(m.max_timestamp, total, now) {
                break;
            }
            total -= m.size;
            below = m.next_offset;
        }
        below
    }

    /// Moves the log start up to the first segment, remote or local.
    pub(super) fn start_at_first(&self) {
        let set = read(&self.set);
        let local_first = set.local_first();
        let first = set
            .remote
            .keys()
            .next()
            .copied()
            .unwrap_or(local_first)
            .min(local_first);
        self.advance_start(first);
    }

    /// Retention of local segments: removes sealed ones from the front while they are past
    /// `keep` (the total counts remote-only bytes too), then moves the log start to the
    /// first segment left, remote or local. Returns the removed segments (their files are
    /// the caller's to delete) and that first offset.
    pub(super) fn expire(&self, now: i64, keep: Keep) -> (Vec<Arc<Segment>>, Option<u64>) {
        let mut set = write(&self.set);
        let active = set.active_base();
        let remote_first = set.remote.keys().next().copied();
        let remote_only: u64 = set
            .remote
            .range(..set.local_first())
            .map(|(_, r)| r.meta.size)
            .sum();
        let mut total = set.local_bytes() + remote_only;
        let mut removed = Vec::new();
        while let Some((&base, seg)) = set.local.first_key_value() {
            if Some(base) == active || !keep.passed(seg.max_timestamp(), total, now) {
                break;
            }
            total -= seg.size();
            if let Some(seg) = set.local.remove(&base) {
                removed.push(seg);
            }
        }
        let first = set
            .local
            .keys()
            .next()
            .map(|&first| remote_first.map_or(first, |r| r.min(first)));
        if let Some(first) = first {
            self.advance_start(first);
        }
        (removed, first)
    }

    /// Tiering's local retention: removes local copies of uploaded segments from the front
    /// while past `keep` (counting local bytes only); with neither limit, every uploaded
    /// one goes. The active segment always stays. Returns the removed segments.
    pub(super) fn evict(&self, now: i64, keep: Keep) -> Vec<Arc<Segment>> {
        let mut set = write(&self.set);
        let active = set.active_base();
        let mut local = set.local_bytes();
        let mut removed = Vec::new();
        while let Some((&base, seg)) = set.local.first_key_value() {
            if Some(base) == active || !set.remote.contains_key(&base) {
                break;
            }
            let unlimited = keep.ms.is_none() && keep.bytes.is_none();
            if !(unlimited || keep.passed(seg.max_timestamp(), local, now)) {
                break;
            }
            local -= seg.size();
            if let Some(seg) = set.local.remove(&base) {
                removed.push(seg);
            }
        }
        removed
    }

    /// DeleteRecords: removes the local segments whose successor starts at or below
    /// `before` (never the active one: it has no successor). Returns them.
    pub(super) fn delete_below(&self, before: u64) -> Vec<Arc<Segment>> {
        let mut set = write(&self.set);
        let bases: Vec<u64> = set.local.keys().copied().collect();
        let mut removed = Vec::new();
        for pair in bases.windows(2) {
            if pair[1] <= before
                && let Some(seg) = set.local.remove(&pair[0])
            {
                removed.push(seg);
            }
        }
        removed
    }

    fn change_remote(&self) -> RemoteChange<'_> {
        RemoteChange {
            file: lock(&self.manifest),
            set: &self.set,
        }
    }

    /// Records uploaded segments: `remote.json` first (durably), then the map. A local copy
    /// may go once its segment is in the map, so it never goes before the manifest lists
    /// it. When the file cannot be written, neither changes.
    pub(super) fn add_remote(&self, metas: Vec<RemoteMeta>) -> io::Result<()> {
        let mut change = self.change_remote();
        let mut all: BTreeMap<u64, RemoteMeta> = change
            .read()
            .remote
            .values()
            .map(|r| (r.meta.base, r.meta.clone()))
            .collect();
        all.extend(metas.iter().map(|m| (m.base, m.clone())));
        change.store(all.into_values().collect())?;
        let mut set = change.write();
        for meta in metas {
            set.remote
                .insert(meta.base, Arc::new(RemoteSegment::new(meta)));
        }
        Ok(())
    }

    /// Forgets the remote segments that end at or below `before`: `remote.json` first, then
    /// the map. Returns them (their objects are the caller's to delete).
    pub(super) fn remove_remote_below(&self, before: u64) -> io::Result<Vec<Arc<RemoteSegment>>> {
        let mut change = self.change_remote();
        let (gone, kept): (Vec<u64>, Vec<RemoteMeta>) = {
            let set = change.read();
            let (gone, kept): (Vec<&RemoteSegment>, Vec<&RemoteSegment>) = set
                .remote
                .values()
                .map(|r| r.as_ref())
                .partition(|r| r.meta.next_offset <= before);
            (
                gone.iter().map(|r| r.meta.base).collect(),
                kept.iter().map(|r| r.meta.clone()).collect(),
            )
        };
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        change.store(kept)?;
        let mut set = change.write();
        Ok(gone.iter().filter_map(|b| set.remote.remove(b)).collect())
    }
}
