//! Free space on the data directory's filesystem. Appends reserve their bytes first and are
//! refused ([`crate::LogError::StorageFull`]) while the disk has less than `min_free_bytes`
//! left after them: the refusal comes before the disk is full, so a write is not torn half
//! way, and the server keeps room for its own small files (indexes, group offsets,
//! checkpoints). Below `alert_free_bytes` the danger shows (status, metrics, a warning) while
//! produce still works. Nothing latches: once space returns, the next append goes through.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How old a measurement may be before an append or a status asks the filesystem again.
const FRESH: Duration = Duration::from_millis(250);

/// The thresholds, in bytes (0 = the default for the filesystem's size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpaceLimits {
    /// Appends are refused when they would leave less than this free. Default: 1% of
    /// the filesystem, at least 4 MiB and at most 1 GiB.
    pub min_free_bytes: u64,
    /// Below this much free space the disk is reported `low`. Default: 5% of the
    /// filesystem and at least twice `min_free_bytes`.
    pub alert_free_bytes: u64,
}

/// How full the disk is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DiskState {
    Ok,
    /// Less than `alert_free_bytes` free: produce still works; act now.
    Low,
    /// Less than `min_free_bytes` free: produce is refused with `storage_full`.
    Full,
}

/// The data directory's filesystem, as last measured.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiskStatus {
    pub state: DiskState,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub min_free_bytes: u64,
    pub alert_free_bytes: u64,
}

/// Why an append was refused for space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Full {
    pub free_bytes: u64,
    pub needed_bytes: u64,
    pub min_free_bytes: u64,
}

#[derive(Debug)]
pub struct Space {
    dir: PathBuf,
    /// Free bytes at the last measurement, less what appends reserved since.
    free: AtomicU64,
    total: AtomicU64,
    /// `SpaceLimits`, as atomics: read on every append.
    min_free: AtomicU64,
    alert_free: AtomicU64,
    born: Instant,
    /// When the filesystem was last asked, in ms since `born` (`u64::MAX`: never).
    measured_ms: AtomicU64,
    /// The state last reported, to log each change once.
    reported: Mutex<DiskState>,
    /// When an append was last refused: the disk counts as full while that is recent
    /// (writes are being refused) even if a smaller one would still fit.
    refused: Mutex<Option<Instant>>,
}

/// How long after a refusal the disk is reported full (unless space comes back).
const REFUSED_RECENTLY: Duration = Duration::from_secs(5);

impl Space {
    pub fn new(dir: &Path) -> Space {
        let s = Space {
            dir: dir.to_path_buf(),
            free: AtomicU64::new(u64::MAX),
            total: AtomicU64::new(0),
            min_free: AtomicU64::new(0),
            alert_free: AtomicU64::new(0),
            born: Instant::now(),
            measured_ms: AtomicU64::new(u64::MAX),
            reported: Mutex::new(DiskState::Ok),
            refused: Mutex::new(None),
        };
        s.measure();
        s
    }

    pub fn configure(&self, limits: SpaceLimits) {
        self.min_free
            .store(limits.min_free_bytes, Ordering::Release);
        self.alert_free
            .store(limits.alert_free_bytes, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Asks the filesystem. On a filesystem that cannot say (an error), space is not
    /// limited: the writes themselves report what goes wrong.
    // The block counts are u64 on Linux but not on every target.
    #[allow(clippy::unnecessary_cast)]
    fn measure(&self) {
        match nix::sys::statvfs::statvfs(&self.dir) {
            Ok(v) => {
                let unit = (v.fragment_size() as u64).max(1);
                self.free.store(
                    (v.blocks_available() as u64).saturating_mul(unit),
                    Ordering::Release,
                );
                self.total
                    .store((v.blocks() as u64).saturating_mul(unit), Ordering::Release);
            }
            Err(e) => {
                tracing::debug!(dir = %self.dir.display(), error = %e, "statvfs failed");
                self.free.store(u64::MAX, Ordering::Release);
            }
        }
        self.measured_ms.store(self.now_ms(), Ordering::Release);
    }

    /// Asks the filesystem when the last answer is older than [`FRESH`] (one atomic
    /// load on the append path otherwise).
    fn measure_if_stale(&self) {
        let last = self.measured_ms.load(Ordering::Acquire);
        if last == u64::MAX || self.now_ms().saturating_sub(last) >= FRESH.as_millis() as u64 {
            self.measure();
        }
    }

    /// The thresholds in force (defaults worked out from the filesystem's size).
    fn thresholds(&self) -> (u64, u64) {
        let total = self.total.load(Ordering::Acquire);
        let min = match self.min_free.load(Ordering::Acquire) {
            0 => (total / 100).clamp(4 << 20, 1 << 30),
            n => n,
        };
        let alert = match self.alert_free.load(Ordering::Acquire) {
            0 => (total / 20).max(2 * min),
            n => n.max(min),
        };
        (min, alert)
    }

    /// Takes `bytes` out of the free space for an append about to be written; refused when
    /// that would leave less than the minimum. Asks the filesystem again before refusing
    /// (space may have come back) and at least every 250 ms.
    pub fn reserve(&self, bytes: u64) -> Result<(), Full> {
        self.check(bytes)?;
        let _ = self
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                Some(f.saturating_sub(bytes))
            });
        Ok(())
    }

    /// Whether `bytes` would fit now (reserves nothing): for a request that writes several
    /// partitions, checked before any of them writes.
    pub fn check(&self, bytes: u64) -> Result<(), Full> {
        self.measure_if_stale();
        let (min, _) = self.thresholds();
        let free = self.free.load(Ordering::Acquire);
        if free >= bytes.saturating_add(min) {
            return Ok(());
        }
        self.measure();
        let free = self.free.load(Ordering::Acquire);
        if free >= bytes.saturating_add(min) {
            return Ok(());
        }
        self.refused_now();
        Err(Full {
            free_bytes: free,
            needed_bytes: bytes,
            min_free_bytes: min,
        })
    }

    /// What the disk looks like now.
    pub fn status(&self) -> DiskStatus {
        self.measure_if_stale();
        let (min, alert) = self.thresholds();
        let free = self.free.load(Ordering::Acquire);
        let refused_recently = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < REFUSED_RECENTLY);
        let state = if free < min || (refused_recently && free < alert) {
            DiskState::Full
        } else if free < alert {
            DiskState::Low
        } else {
            DiskState::Ok
        };
        self.note(state);
        DiskStatus {
            state,
            free_bytes: free.min(self.total.load(Ordering::Acquire)),
            total_bytes: self.total.load(Ordering::Acquire),
            min_free_bytes: min,
            alert_free_bytes: alert,
        }
    }

    fn refused_now(&self) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.note(DiskState::Full);
    }

    /// Logs a change of state once.
    fn note(&self, state: DiskState) {
        let mut last = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        if *last == state {
            return;
        }
        let free = self.free.load(Ordering::Acquire);
        match state {
            DiskState::Full => {
                tracing::error!(dir = %self.dir.display(), free_bytes = free, "the data disk is full: produce is refused (storage_full) until space is freed")
            }
            DiskState::Low => {
                tracing::warn!(dir = %self.dir.display(), free_bytes = free, "the data disk is nearly full")
            }
            DiskState::Ok => {
                tracing::info!(dir = %self.dir.display(), free_bytes = free, "the data disk has room again")
            }
        }
        *last = state;
    }
}

/// Whether an I/O error means the disk (or the quota) is full.
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserves_until_the_minimum_and_reports_states() {
        let dir = tempfile::tempdir().unwrap();
        let s = Space::new(dir.path());
        let st = s.status();
        assert!(st.total_bytes > 0);
        // A minimum above what the disk has: everything is refused, and the state is full.
        s.configure(SpaceLimits {
            min_free_bytes: u64::MAX / 4,
            alert_free_bytes: 0,
        });
        let e = s.reserve(1).unwrap_err();
        assert_eq!(e.needed_bytes, 1);
        assert_eq!(s.status().state, DiskState::Full);
        // Refused a moment ago, the disk stays full while it is below the alert level.
        s.configure(SpaceLimits {
            min_free_bytes: 1,
            alert_free_bytes: u64::MAX / 4,
        });
        assert_eq!(s.status().state, DiskState::Full);
        // Without a refusal: the alert above the free space, the minimum below it: low,
        // and appends pass.
        let s = Space::new(dir.path());
        s.configure(SpaceLimits {
            min_free_bytes: 1,
            alert_free_bytes: u64::MAX / 4,
        });
        s.reserve(1).unwrap();
        assert_eq!(s.status().state, DiskState::Low);
        s.configure(SpaceLimits::default());
        let st = s.status();
        let want = if st.free_bytes < st.min_free_bytes {
            DiskState::Full
        } else if st.free_bytes < st.alert_free_bytes {
            DiskState::Low
        } else {
            DiskState::Ok
        };
        assert_eq!(st.state, want, "{st:?}");
        assert!(is_full(&std::io::Error::from_raw_os_error(28)));
        assert!(!is_full(&std::io::Error::from_raw_os_error(2)));
    }
}
