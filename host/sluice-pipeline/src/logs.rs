//! A transform's plugin log lines: bounded, rate-limited so a chatty plugin can neither
//! flood the server log nor push every useful line out of the ring.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sluice_runtime::{LogLine, LogSink};

/// Bounded plugin log lines of one transform, rate-limited so a chatty plugin can neither
/// flood the server log nor push every useful line out of the ring.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: Mutex<Ring>,
    next: AtomicU64,
    /// Lines refused by the rate limit, ever.
    pub dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<(u64, LogLine)>,
    /// Token bucket: lines that may be kept right now, refilled at `LOG_RATE` per second.
    tokens: f64,
    refilled: Option<std::time::Instant>,
    /// Refused since the last kept line (reported in the next kept one's place).
    dropped_run: u64,
}

const LOG_RING: usize = 1000;
/// Lines per second a transform may log, and the burst above that.
const LOG_RATE: f64 = 100.0;
const LOG_BURST: f64 = 500.0;

impl Ring {
    fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        let elapsed = self.refilled.map_or(LOG_BURST / LOG_RATE, |t| {
            now.duration_since(t).as_secs_f64()
        });
        self.tokens = (self.tokens + elapsed * LOG_RATE).min(LOG_BURST);
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn push(&mut self, seq: u64, line: LogLine) {
        if self.lines.len() == LOG_RING {
            self.lines.pop_front();
        }
        self.lines.push_back((seq, line));
    }
}

impl LogSink for LogRing {
    fn log(&self, line: LogLine) {
        let mut ring = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if !ring.admit() {
            ring.dropped_run += 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if ring.dropped_run > 0 {
            let note = LogLine {
                level: "warn".into(),
                message: format!(
                    "{} log lines dropped: over {LOG_RATE} lines/s (burst {LOG_BURST})",
                    ring.dropped_run
                ),
                ..line.clone()
            };
            ring.dropped_run = 0;
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            ring.push(seq, note);
        }
        tracing::debug!(target: "sluice::plugin", plugin = %line.plugin, version = line.version,
            partition = line.partition, offset = ?line.offset, "{}", line.message);
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        ring.push(seq, line);
    }
}

impl LogRing {
    /// Lines with sequence numbers at or after `from`.
    pub fn since(&self, from: u64) -> Vec<(u64, LogLine)> {
        let l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        l.lines
            .iter()
            .filter(|(s, _)| *s >= from)
            .cloned()
            .collect()
    }
}
