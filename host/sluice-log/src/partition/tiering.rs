//! Tiering of one partition: uploads of sealed segments, eviction of uploaded local
//! copies, deletion of remote ones, and what is where.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use self::backoff::Backoff;
use super::locks::Latest;
use super::place::Place;
use super::segments::{Census, Keep, Segments};
use crate::segment::{self, Segment};
use crate::tier::{self, PartitionTier, RemoteMeta};
use crate::{LogError, now_ms};

/// Where a tiered partition's data is.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TierStats {
    /// Bytes of segments on local disk.
    pub local_bytes: u64,
    /// The first offset on local disk (below it, reads go to the object store).
    pub local_start_offset: u64,
    /// Bytes and segments in the object store.
    pub remote_bytes: u64,
    pub remote_segments: usize,
    /// Offsets below this are in the object store.
    pub remote_end_offset: u64,
    /// Sealed local segments not yet uploaded, and their bytes.
    pub pending_segments: usize,
    pub pending_bytes: u64,
    /// When the last upload finished (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_upload_ms: Option<i64>,
    /// The last failure, while uploads keep failing (they retry with backoff).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Consecutive failures of the current attempt.
    pub failures: u32,
    /// A disk-full danger on the server (segments waiting for upload fill the disk).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_warning: Option<String>,
}

/// What one pass of tiering did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TierProgress {
    pub uploaded: usize,
    pub evicted: usize,
}

/// A partition's tiering: where its objects go and how uploads are going. It holds no
/// segments; each call is given the partition's [`Segments`] to work on.
///
/// # Locks
///
/// Its two locks are leaves (held only inside `Latest` and `Backoff` methods, which take
/// nothing else), and it reaches the segment set only through [`Segments`]' methods, which
/// take and release it. So tiering holds at most one lock at a time, and never one across
/// an upload.
pub(super) struct Tiering {
    /// Where this partition's objects go (none: not tiered, or no store configured).
    target: Latest<Option<PartitionTier>>,
    backoff: Backoff,
}

impl Tiering {
    pub(super) fn new() -> Tiering {
        Tiering {
            target: Latest::new(None),
            backoff: Backoff::default(),
        }
    }

    pub(super) fn target(&self) -> Option<PartitionTier> {
        self.target.get()
    }

    pub(super) fn set_target(&self, tier: Option<PartitionTier>) {
        self.target.set(tier);
    }

    /// One pass: uploads sealed segments not yet in the object store (oldest first, at
    /// most `max_uploads`), then removes local copies that are uploaded and past local
    /// retention. Failures back off (0.5 s doubling to 60 s); the local data stays until
    /// it is uploaded.
    pub(super) fn step(
        &self,
        now: i64,
        max_uploads: usize,
        segments: &Segments,
        place: &Place,
    ) -> Result<TierProgress, LogError> {
        let Some(tier) = self.target() else {
            return Ok(TierProgress::default());
        };
        let mut progress = TierProgress::default();
        if !self.backoff.due(now) {
            return Ok(progress);
        }
        let r = upload_pending(&tier, max_uploads, &mut progress, segments, place);
        self.backoff.record(now, &r, progress.uploaded, place);
        r?;
        let keep = Keep {
            ms: tier.settings.local_retention_ms,
            bytes: tier.settings.local_retention_bytes,
        };
        let evicted = segments.evict(now, keep);
        for seg in &evicted {
            seg.delete_files();
            tracing::debug!(topic = %place.topic, partition = place.id, base = seg.base, "local copy of an uploaded segment removed");
        }
        progress.evicted = evicted.len();
        Ok(progress)
    }

    /// Deletes remote segments that end at or below `before` (retention, DeleteRecords):
    /// first from the manifest, then their objects.
    pub(super) fn drop_remote_below(
        &self,
        before: u64,
        segments: &Segments,
        place: &Place,
    ) -> Result<usize, LogError> {
        let gone = segments
            .remove_remote_below(before)
            .map_err(|e| place.io_err(e))?;
        if let Some(tier) = self.target() {
            for rs in &gone {
                // The marker first: a crash halfway leaves objects no restore will list.
                for ext in ["json", "log", "index", "timeindex"] {
                    let key = tier.object(rs.meta.base, ext);
                    if let Err(e) = tier.delete(&key) {
                        tracing::warn!(topic = %place.topic, partition = place.id, key, error = %e, "could not delete a remote object; it is no longer referenced");
                    }
                    tier.backend.cache.forget(&tier.bucket, &key);
                }
                tier::METRICS
                    .segments_deleted
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(gone.len())
    }

    /// What is where, for a tiered partition or one with remote segments (`start`: the log
    /// start offset).
    pub(super) fn stats(&self, census: &Census, start: u64) -> Option<TierStats> {
        if self.target().is_none() && census.remote_segments == 0 {
            return None;
        }
        let (last_upload_ms, last_error, failures) = self.backoff.report();
        Some(TierStats {
            local_bytes: census.local_bytes,
            local_start_offset: census.local_first.unwrap_or(0).max(start),
            remote_bytes: census.remote_bytes,
            remote_segments: census.remote_segments,
            remote_end_offset: census.remote_end,
            pending_segments: census.pending_segments,
            pending_bytes: census.pending_bytes,
            last_upload_ms,
            last_error,
            failures,
            disk_warning: tier::DISK_WARNING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        })
    }
}

fn upload_pending(
    tier: &PartitionTier,
    max_uploads: usize,
    progress: &mut TierProgress,
    segments: &Segments,
    place: &Place,
) -> Result<(), LogError> {
    let io = |e: std::io::Error| LogError::Io {
        path: PathBuf::from(format!("{}/{}", tier.bucket, tier.key)),
        source: e,
    };
    // The manifest is written once per pass for every segment uploaded in it (each
    // write is an fsync, which would queue behind and delay appends' own): a crash
    // before it only means those segments are uploaded again, under the same names.
    let mut done: Vec<RemoteMeta> = Vec::new();
    let mut result = Ok(());
    for seg in segments.pending().into_iter().take(max_uploads) {
        match upload_one(tier, &seg, &io, place) {
            Ok(meta) => done.push(meta),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if !done.is_empty() {
        for meta in &done {
            tracing::info!(topic = %place.topic, partition = place.id, base = meta.base, bytes = meta.size, "segment uploaded to the object store");
        }
        let n = done.len();
        segments.add_remote(done).map_err(|e| place.io_err(e))?;
        progress.uploaded += n;
    }
    result
}

/// Uploads one sealed segment: its files, then its completion marker.
fn upload_one(
    tier: &PartitionTier,
    seg: &Segment,
    io: &dyn Fn(std::io::Error) -> LogError,
    place: &Place,
) -> Result<RemoteMeta, LogError> {
    // A sealed segment's indexes are written when it rolls; a crash may have lost
    // them (they are rebuilt on open), so write them again if they are missing.
    let index = place.dir.join(segment::file_name(seg.base, "index"));
    if !index.exists() {
        seg.write_indexes().map_err(|e| place.io_err(e))?;
    }
    let size = tier
        .put_file(&tier.object(seg.base, "log"), seg.path())
        .map_err(io)?;
    for ext in ["index", "timeindex"] {
        tier.put_file(
            &tier.object(seg.base, ext),
            &place.dir.join(segment::file_name(seg.base, ext)),
        )
        .map_err(io)?;
    }
    let meta = RemoteMeta {
        base: seg.base,
        next_offset: seg.next_offset(),
        size,
        max_timestamp: seg.max_timestamp(),
        uploaded_ms: now_ms(),
    };
    let marker = serde_json::to_vec(&meta).map_err(|e| io(std::io::Error::other(e)))?;
    tier.put(&tier.object(seg.base, "json"), Bytes::from(marker))
        .map_err(io)?;
    tier::failpoint("tier-after-upload");
    Ok(meta)
}

mod backoff {
    //! Upload progress and backoff, behind a leaf lock.

    use std::sync::Mutex;

    use super::super::locks::lock;
    use super::super::place::Place;
    use crate::LogError;

    #[derive(Debug, Default)]
    struct State {
        failures: u32,
        next_attempt_ms: i64,
        last_error: Option<String>,
        last_upload_ms: Option<i64>,
    }

    /// Upload progress and backoff of a tiered partition. A leaf lock: held only inside
    /// these methods, which take no other lock.
    #[derive(Debug, Default)]
    pub(super) struct Backoff(Mutex<State>);

    impl Backoff {
        /// Whether an attempt is due (failures push the next one back).
        pub(super) fn due(&self, now: i64) -> bool {
            lock(&self.0).next_attempt_ms <= now
        }

        /// Notes how an attempt at `now` went (`uploaded` segments on success).
        pub(super) fn record(
            &self,
            now: i64,
            r: &Result<(), LogError>,
            uploaded: usize,
            place: &Place,
        ) {
            let mut st = lock(&self.0);
            match r {
                Ok(()) => {
                    st.failures = 0;
                    st.last_error = None;
                    if uploaded > 0 {
                        st.last_upload_ms = Some(now);
                    }
                }
                Err(e) => {
                    st.failures += 1;
                    let backoff = (500i64 << st.failures.min(7)).min(60_000);
                    st.next_attempt_ms = now + backoff;
                    let mut msg = e.to_string();
                    let mut cause = std::error::Error::source(e);
                    while let Some(c) = cause {
                        msg = format!("{msg}: {c}");
                        cause = c.source();
                    }
                    st.last_error = Some(msg);
                    if st.failures == 1 || st.failures.is_power_of_two() {
                        tracing::warn!(topic = %place.topic, partition = place.id, failures = st.failures,
                            retry_in_ms = backoff, error = st.last_error.as_deref().unwrap_or(""), "tier upload failed; the data stays on local disk");
                    }
                }
            }
        }

        /// The last upload's time, the last error and the failures in a row.
        pub(super) fn report(&self) -> (Option<i64>, Option<String>, u32) {
            let st = lock(&self.0);
            (st.last_upload_ms, st.last_error.clone(), st.failures)
        }
    }
}
