//! Tiered storage: sealed segments of a tiered topic are copied to an object store, local
//! copies go once uploaded and past local retention, and reads below the first local
//! segment are served from the store through a bounded cache of byte ranges.
//!
//! Objects of partition P of topic T live under `{prefix}/{T}/{P}/`: per segment
//! `{base:020}.log`, `.index`, `.timeindex` (the local files, as they are) and last
//! `{base:020}.json` (its [`RemoteMeta`]), which marks the segment complete; the topic's
//! settings are at `{prefix}/{T}/topic.json`. Object names depend only on the segment, so
//! an upload repeated after a crash overwrites the same objects: never a duplicate.
//!
//! The partition's manifest — which segments are remote — is `remote.json` in its
//! directory, written durably after an upload completes and before the local copy may
//! go. A restore from the store ([`crate::Log::restore_from_tier`]) rebuilds it from the
//! completion markers.

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::segment::file_name;

/// What Sluice needs of an object store (blocking calls; the implementation bridges to
/// its async client). Keys are `/`-separated; buckets are the topic's.
pub trait RemoteStore: Send + Sync + std::fmt::Debug {
    fn put(&self, bucket: &str, key: &str, data: Bytes) -> io::Result<()>;
    /// Uploads a local file (streamed in parts when large). Returns its size.
    fn put_file(&self, bucket: &str, key: &str, path: &Path) -> io::Result<u64>;
    /// The whole object; `None` when there is none.
    fn get(&self, bucket: &str, key: &str) -> io::Result<Option<Bytes>>;
    fn get_range(&self, bucket: &str, key: &str, range: Range<u64>) -> io::Result<Bytes>;
    /// Removes an object (no error when it is already gone).
    fn delete(&self, bucket: &str, key: &str) -> io::Result<()>;
    /// Keys under `prefix` (recursively) with their sizes.
    fn list(&self, bucket: &str, prefix: &str) -> io::Result<Vec<(String, u64)>>;
}

/// A topic's tiering settings (`"tiered"` in its config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TierSettings {
    /// The bucket (the server's object store, `[tier]` in its config file).
    pub bucket: String,
    /// Key prefix inside the bucket (default `sluice`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Keep sealed segments locally this long after their last record (by timestamp)
    /// once uploaded. With neither local limit, local copies go as soon as they are
    /// uploaded (the active segment always stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_retention_ms: Option<i64>,
    /// Keep at most this many bytes of segments locally (the newest), once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_retention_bytes: Option<u64>,
}

fn default_prefix() -> String {
    "sluice".into()
}

impl TierSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket.trim().is_empty() {
            return Err("tiered.bucket is required".into());
        }
        if self.prefix.starts_with('/') || self.prefix.contains("//") {
            return Err("tiered.prefix must be a relative key prefix".into());
        }
        if self.local_retention_ms.is_some_and(|v| v < 0) {
            return Err("tiered.local_retention_ms must not be negative".into());
        }
        Ok(())
    }

    /// The key prefix of a topic's objects.
    pub fn topic_key(&self, topic: &str) -> String {
        let p = self.prefix.trim_end_matches('/');
        if p.is_empty() {
            topic.to_string()
        } else {
            format!("{p}/{topic}")
        }
    }
}

/// One remote segment, as its completion marker and the manifest record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteMeta {
    pub base: u64,
    /// One past its last offset.
    pub next_offset: u64,
    pub size: u64,
    pub max_timestamp: i64,
    pub uploaded_ms: i64,
}

/// The object store and the cache, shared by every tiered partition of a server.
#[derive(Debug, Clone)]
pub struct TierBackend {
    pub store: Arc<dyn RemoteStore>,
    pub cache: Arc<ChunkCache>,
}

impl TierBackend {
    pub fn new(store: Arc<dyn RemoteStore>, cache_bytes: u64) -> TierBackend {
        TierBackend {
            store,
            cache: Arc::new(ChunkCache::new(cache_bytes)),
        }
    }
}

/// Where one partition's objects go.
#[derive(Debug, Clone)]
pub struct PartitionTier {
    pub backend: TierBackend,
    pub bucket: String,
    /// `{prefix}/{topic}/{partition}`.
    pub key: String,
    pub settings: TierSettings,
}

impl PartitionTier {
    pub fn object(&self, base: u64, ext: &str) -> String {
        format!("{}/{}", self.key, file_name(base, ext))
    }

    fn counted<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if r.is_err() {
            METRICS.errors.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    pub fn put_file(&self, key: &str, path: &Path) -> io::Result<u64> {
        let n = self.counted(self.backend.store.put_file(&self.bucket, key, path))?;
        METRICS.uploads.fetch_add(1, Ordering::Relaxed);
        METRICS.upload_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    pub fn put(&self, key: &str, data: Bytes) -> io::Result<()> {
        let n = data.len() as u64;
        self.counted(self.backend.store.put(&self.bucket, key, data))?;
        METRICS.uploads.fetch_add(1, Ordering::Relaxed);
        METRICS.upload_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    pub fn get(&self, key: &str) -> io::Result<Option<Bytes>> {
        let b = self.counted(self.backend.store.get(&self.bucket, key))?;
        METRICS.downloads.fetch_add(1, Ordering::Relaxed);
        METRICS
            .download_bytes
            .fetch_add(b.as_ref().map_or(0, |b| b.len() as u64), Ordering::Relaxed);
        Ok(b)
    }

    pub fn delete(&self, key: &str) -> io::Result<()> {
        self.counted(self.backend.store.delete(&self.bucket, key))
    }

    /// `len` bytes of object `key` (of `size` bytes) from `pos`, through the cache.
    pub fn read(&self, key: &str, size: u64, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = pos + len as u64;
        if end > size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read past the end of {key}"),
            ));
        }
        let mut out = Vec::with_capacity(len);
        let mut at = pos;
        while at < end {
            let chunk = at / CHUNK;
            let data = match self.backend.cache.get(&self.bucket, key, chunk) {
                Some(d) => d,
                None => {
                    let range = chunk * CHUNK..((chunk + 1) * CHUNK).min(size);
                    let d = self.counted(self.backend.store.get_range(
                        &self.bucket,
                        key,
                        range.clone(),
                    ))?;
                    if d.len() as u64 != range.end - range.start {
                        METRICS.errors.fetch_add(1, Ordering::Relaxed);
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "{key}: the store returned {} of {} bytes",
                                d.len(),
                                range.end - range.start
                            ),
                        ));
                    }
                    METRICS.downloads.fetch_add(1, Ordering::Relaxed);
                    METRICS
                        .download_bytes
                        .fetch_add(d.len() as u64, Ordering::Relaxed);
                    self.backend
                        .cache
                        .insert(&self.bucket, key, chunk, d.clone());
                    d
                }
            };
            let from = (at - chunk * CHUNK) as usize;
            let to = ((end - chunk * CHUNK) as usize).min(data.len());
            out.extend_from_slice(&data[from..to]);
            at = chunk * CHUNK + to as u64;
        }
        Ok(out)
    }
}

/// The unit of remote reads and of the cache.
pub const CHUNK: u64 = 1 << 20;

/// Byte ranges of remote objects, least recently used out first, bounded in bytes.
#[derive(Debug)]
pub struct ChunkCache {
    capacity: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    chunks: HashMap<(String, String, u64), (Bytes, u64)>,
    bytes: u64,
    tick: u64,
}

impl ChunkCache {
    pub fn new(capacity: u64) -> ChunkCache {
        ChunkCache {
            capacity,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, bucket: &str, key: &str, chunk: u64) -> Option<Bytes> {
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        let found = c
            .chunks
            .get_mut(&(bucket.to_string(), key.to_string(), chunk))
            .map(|(b, t)| {
                *t = tick;
                b.clone()
            });
        match &found {
            Some(_) => METRICS.cache_hits.fetch_add(1, Ordering::Relaxed),
            None => METRICS.cache_misses.fetch_add(1, Ordering::Relaxed),
        };
        found
    }

    fn insert(&self, bucket: &str, key: &str, chunk: u64, data: Bytes) {
        let mut c = self.lock();
        c.tick += 1;
        let tick = c.tick;
        let n = data.len() as u64;
        if let Some((old, _)) = c
            .chunks
            .insert((bucket.to_string(), key.to_string(), chunk), (data, tick))
        {
            c.bytes -= old.len() as u64;
        }
        c.bytes += n;
        while c.bytes > self.capacity && c.chunks.len() > 1 {
            let Some(oldest) = c
                .chunks
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((b, _)) = c.chunks.remove(&oldest) {
                c.bytes -= b.len() as u64;
            }
        }
        METRICS.cache_bytes.store(c.bytes, Ordering::Relaxed);
    }

    /// Forgets an object's chunks (it was deleted).
    pub fn forget(&self, bucket: &str, key: &str) {
        let mut c = self.lock();
        c.chunks.retain(|(b, k, _), _| !(b == bucket && k == key));
        let bytes = c.chunks.values().map(|(b, _)| b.len() as u64).sum();
        c.bytes = bytes;
        METRICS.cache_bytes.store(c.bytes, Ordering::Relaxed);
    }
}

/// Process-wide counters of the remote tier (`/metrics`).
#[derive(Debug, Default)]
pub struct TierMetrics {
    pub uploads: AtomicU64,
    pub upload_bytes: AtomicU64,
    pub downloads: AtomicU64,
    pub download_bytes: AtomicU64,
    pub errors: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub cache_bytes: AtomicU64,
    pub segments_deleted: AtomicU64,
    /// Bytes of sealed segments waiting for upload, over every tiered partition.
    pub pending_bytes: AtomicU64,
    pub disk_free_bytes: AtomicU64,
    /// 1 while there is a disk-full danger.
    pub disk_danger: AtomicU64,
}

pub static METRICS: TierMetrics = TierMetrics {
    uploads: AtomicU64::new(0),
    upload_bytes: AtomicU64::new(0),
    downloads: AtomicU64::new(0),
    download_bytes: AtomicU64::new(0),
    errors: AtomicU64::new(0),
    cache_hits: AtomicU64::new(0),
    cache_misses: AtomicU64::new(0),
    cache_bytes: AtomicU64::new(0),
    segments_deleted: AtomicU64::new(0),
    pending_bytes: AtomicU64::new(0),
    disk_free_bytes: AtomicU64::new(0),
    disk_danger: AtomicU64::new(0),
};

/// A segment's indexes: (relative offset, position) and (max timestamp so far, relative
/// offset) entries.
pub type Indexes = (Vec<(u32, u32)>, Vec<(i64, u32)>);

/// A remote segment and, once read, its indexes.
#[derive(Debug)]
pub struct RemoteSegment {
    pub meta: RemoteMeta,
    index: OnceLock<Indexes>,
}

impl RemoteSegment {
    pub fn new(meta: RemoteMeta) -> RemoteSegment {
        RemoteSegment {
            meta,
            index: OnceLock::new(),
        }
    }

    /// The segment's indexes, downloaded on first use (missing or damaged ones are
    /// empty: reads then scan from the start of the segment).
    pub fn indexes(&self, tier: &PartitionTier) -> io::Result<&Indexes> {
        if let Some(ix) = self.index.get() {
            return Ok(ix);
        }
        let offs = tier
            .get(&tier.object(self.meta.base, "index"))?
            .unwrap_or_default();
        let times = tier
            .get(&tier.object(self.meta.base, "timeindex"))?
            .unwrap_or_default();
        let mut o: Vec<(u32, u32)> = offs
            .chunks_exact(8)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .filter(|(_, p)| u64::from(*p) < self.meta.size)
            .collect();
        if !o.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1) {
            o.clear();
        }
        let body = times.len().saturating_sub(8);
        let mut t: Vec<(i64, u32)> = times[..body - body % 12]
            .chunks_exact(12)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                (
                    i64::from_be_bytes(ts),
                    u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                )
            })
            .collect();
        if !t.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1) {
            t.clear();
        }
        Ok(self.index.get_or_init(|| (o, t)))
    }
}

/// The manifest file of a partition.
pub const MANIFEST: &str = "remote.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub segments: Vec<RemoteMeta>,
}

/// Reads `remote.json` (absent: nothing is remote).
pub fn load_manifest(dir: &Path) -> io::Result<Vec<RemoteMeta>> {
    match std::fs::read(dir.join(MANIFEST)) {
        Ok(b) => {
            let m: Manifest = serde_json::from_slice(&b)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            Ok(m.segments)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes `remote.json` durably (write, fsync, rename).
pub fn store_manifest(dir: &Path, segments: Vec<RemoteMeta>) -> io::Result<()> {
    let bytes = serde_json::to_vec(&Manifest { segments }).map_err(io::Error::other)?;
    sluice_common::fs::write_file(&dir.join(MANIFEST), &bytes)
}

/// A disk-full danger, while there is one (`None` when there is none).
pub static DISK_WARNING: Mutex<Option<String>> = Mutex::new(None);

/// Free and total bytes of the file system holding `dir`.
pub fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = st.fragment_size() as u64;
    Some((
        st.blocks_available() as u64 * frag,
        st.blocks() as u64 * frag,
    ))
}

/// Reports a disk-full danger before it happens: segments waiting for the object store
/// (`pending` bytes) stay on local disk, so while uploads fail the disk fills. Danger when
/// less than 10% of the disk is free, or less than the pending bytes again.
pub fn check_disk(dir: &Path, pending: u64) {
    METRICS.pending_bytes.store(pending, Ordering::Relaxed);
    let Some((free, total)) = disk_space(dir) else {
        return;
    };
    METRICS.disk_free_bytes.store(free, Ordering::Relaxed);
    let danger = disk_danger(free, total, pending);
    let mut w = DISK_WARNING.lock().unwrap_or_else(|p| p.into_inner());
    if danger {
        let msg = format!(
            "disk-full danger: {} MiB free of {} MiB, {} MiB of segments waiting for the object store stay on local disk until they are uploaded",
            free >> 20,
            total >> 20,
            pending >> 20
        );
        if w.is_none() {
            tracing::warn!("{msg}");
        }
        *w = Some(msg);
    } else if w.take().is_some() {
        tracing::info!("disk-full danger over");
    }
    METRICS
        .disk_danger
        .store(u64::from(danger), Ordering::Relaxed);
}

/// Whether segments waiting for upload threaten to fill the disk: some wait, and less than
/// 10% of the disk is free or less than what waits.
pub fn disk_danger(free: u64, total: u64, pending: u64) -> bool {
    pending > 0 && (free < total / 10 || free < pending)
}

/// `SLUICE_FAILPOINT=<name>` makes the process abort at that point (crash tests).
pub fn failpoint(name: &str) {
    if std::env::var("SLUICE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
