//! The loop every sink runs per partition: gather a batch from the stored position, deliver
//! it, advance only after the store acknowledged. A store that is down makes the partition
//! wait (backpressure, shown as lag); a record the store refuses is found by bisection and
//! sent to the connector's dead-letter topic, and the partition moves on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{BatchSpec, SinkStart, TaskEnv, backoff};
use sluice_log::batch::{self, StoredRecord};
use sluice_log::dead_letter;
use sluice_log::{LogError, Partition, Topic, now_ms};

/// Why a delivery did not happen.
#[derive(Debug)]
pub enum Failure {
    /// The store is unavailable or overloaded: try the same records again later.
    Retry(String),
    /// The store refused (some of) these records: bisect to find which.
    Reject(String),
}

/// A store that takes records of one partition.
#[async_trait::async_trait]
pub trait Sink: Send + 'static {
    /// The stored position (next offset to deliver), if the store has one.
    async fn load_position(&mut self) -> Result<Option<u64>, String>;
    /// Delivers `records` and durably stores `next` as the position (atomically with the
    /// records where the store can).
    async fn deliver(&mut self, records: &[StoredRecord], next: u64) -> Result<(), Failure>;
    /// Stores `next` as the position after a record went to the dead-letter topic.
    async fn store_position(&mut self, next: u64) -> Result<(), String>;
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs until the connector stops.
pub async fn run<S: Sink>(
    mut env: TaskEnv,
    mut sink: S,
    part: Arc<Partition>,
    dlq: Arc<Topic>,
    spec: BatchSpec,
    start: SinkStart,
) {
    let mut attempt = 0;
    let stored = loop {
        match tokio::select! {
            r = sink.load_position() => r,
            _ = env.cancel.cancelled() => return,
        } {
            Ok(p) => break p,
            Err(e) => {
                env.health.failed(&env.name, &e);
                if !env.sleep(backoff(attempt, MAX_BACKOFF)).await {
                    return;
                }
                attempt += 1;
            }
        }
    };
    env.health.recovered();
    let mut pos = stored.unwrap_or(match start {
        SinkStart::Earliest => part.start_offset(),
        SinkStart::Latest => part.high_watermark(),
    });
    env.health.set_position(part.id, pos);
    let mut appended = part.subscribe();
    loop {
        if !env.wait_unpaused().await {
            return;
        }
        let Some((records, next)) = gather(&mut env, &part, &mut appended, &mut pos, &spec).await
        else {
            return;
        };
        if records.is_empty() {
            continue;
        }
        if !deliver_all(&mut env, &mut sink, &part, &dlq, &records, next).await {
            return;
        }
        pos = next;
        env.health.set_position(part.id, pos);
    }
}

/// Reads a batch starting at `pos`: up to the record/byte limits, waiting up to `linger`
/// for more once the first record is there. None when the connector stops.
async fn gather(
    env: &mut TaskEnv,
    part: &Arc<Partition>,
    appended: &mut tokio::sync::watch::Receiver<u64>,
    pos: &mut u64,
    spec: &BatchSpec,
) -> Option<(Vec<StoredRecord>, u64)> {
    let mut records: Vec<StoredRecord> = Vec::new();
    let mut bytes = 0usize;
    let mut next = *pos;
    let mut deadline: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        appended.borrow_and_update();
        let want = spec.max_records - records.len();
        let p = part.clone();
        let from = next;
        let read = tokio::task::spawn_blocking(move || p.read_records(from, want)).await;
        match read {
            Ok(Ok((got, n, _hw))) => {
                attempt = 0;
                for r in got {
                    let size = r.value.as_ref().map_or(0, |v| v.len())
                        + r.key.as_ref().map_or(0, |k| k.len());
                    if !records.is_empty() && bytes + size > spec.max_bytes {
                        // Next time from this record.
                        return Some((records, r.offset as u64));
                    }
                    bytes += size;
                    records.push(r);
                }
                next = n;
            }
            Ok(Err(LogError::OffsetOutOfRange { start, .. })) if next < start => {
                tracing::warn!(connector = %env.name, partition = part.id, from = next, to = start,
                    "position was removed by retention; skipping ahead");
                env.health.failed(
                    &env.name,
                    &format!(
                        "partition {}: offsets {next}..{start} were removed by retention before delivery",
                        part.id
                    ),
                );
                next = start;
                *pos = start;
                continue;
            }
            Ok(Err(e)) => {
                env.health
                    .failed(&env.name, &format!("reading the topic: {e}"));
                if !env.sleep(backoff(attempt, MAX_BACKOFF)).await {
                    return None;
                }
                attempt += 1;
                continue;
            }
            Err(e) => {
                env.health.failed(&env.name, &format!("read task: {e}"));
                return None;
            }
        }
        if records.len() >= spec.max_records || bytes >= spec.max_bytes {
            return Some((records, next));
        }
        if records.is_empty() {
            // Caught up: sleep until the next append (or stop/pause).
            tokio::select! {
                r = appended.changed() => if r.is_err() { return None },
                _ = env.cancel.cancelled() => return None,
                _ = env.paused.changed() => return Some((records, next)),
            }
            continue;
        }
        let until =
            *deadline.get_or_insert_with(|| Instant::now() + Duration::from_millis(spec.linger_ms));
        if Instant::now() >= until {
            return Some((records, next));
        }
        tokio::select! {
            _ = appended.changed() => {}
            _ = tokio::time::sleep_until(until.into()) => return Some((records, next)),
            _ = env.cancel.cancelled() => return None,
        }
    }
}

/// Delivers `records` (ending at `next`), bisecting refused sub-batches down to the single
/// records the store refuses. False when the connector stops first.
async fn deliver_all<S: Sink>(
    env: &mut TaskEnv,
    sink: &mut S,
    part: &Partition,
    dlq: &Topic,
    records: &[StoredRecord],
    next: u64,
) -> bool {
    // Ranges still to deliver, the next one on top.
    let mut stack = vec![(0usize, records.len())];
    while let Some((a, b)) = stack.pop() {
        let range_next = records.get(b).map_or(next, |r| r.offset as u64);
        let mut attempt = 0;
        loop {
            if !env.wait_unpaused().await {
                return false;
            }
            let result = tokio::select! {
                r = sink.deliver(&records[a..b], range_next) => r,
                _ = env.cancel.cancelled() => return false,
            };
            match result {
                Ok(()) => {
                    env.health.ok();
                    env.health
                        .records
                        .fetch_add((b - a) as u64, Ordering::Relaxed);
                    env.health.set_position(part.id, range_next);
                    break;
                }
                Err(Failure::Retry(e)) => {
                    env.health.failed(&env.name, &e);
                    if !env.sleep(backoff(attempt, MAX_BACKOFF)).await {
                        return false;
                    }
                    attempt += 1;
                }
                Err(Failure::Reject(e)) if b - a > 1 => {
                    let mid = a + (b - a) / 2;
                    stack.push((mid, b));
                    stack.push((a, mid));
                    tracing::debug!(connector = %env.name, error = %e, "batch refused; bisecting");
                    break;
                }
                Err(Failure::Reject(e)) => {
                    if !dead_letter(env, sink, part, dlq, &records[a], &e, range_next).await {
                        return false;
                    }
                    break;
                }
            }
        }
    }
    true
}

/// Appends a refused record to the dead-letter topic with why, then moves the position past
/// it. A crash between the two repeats the dead letter (at-least-once), never the delivery.
async fn dead_letter<S: Sink>(
    env: &mut TaskEnv,
    sink: &mut S,
    part: &Partition,
    dlq: &Topic,
    r: &StoredRecord,
    reason: &str,
    next: u64,
) -> bool {
    tracing::warn!(connector = %env.name, partition = part.id, offset = r.offset, reason,
        "record refused by the store; sent to the dead-letter topic");
    let rec = dead_letter::record(
        r.clone(),
        reason,
        &part.topic,
        part.id,
        &[("sluice-connector", env.name.clone())],
    );
    let Some(target) = dlq
        .partitions
        .get(dead_letter::partition_for(part.id, dlq) as usize)
        .cloned()
    else {
        return false;
    };
    let mut attempt = 0;
    loop {
        let data = batch::build(std::iter::once(&rec), now_ms());
        let t = target.clone();
        match tokio::task::spawn_blocking(move || t.append(data)).await {
            Ok(Ok(_)) => break,
            Ok(Err(e)) => env
                .health
                .failed(&env.name, &format!("dead-letter append: {e}")),
            Err(e) => env
                .health
                .failed(&env.name, &format!("dead-letter task: {e}")),
        }
        if !env.sleep(backoff(attempt, MAX_BACKOFF)).await {
            return false;
        }
        attempt += 1;
    }
    env.health.dead_letters.fetch_add(1, Ordering::Relaxed);
    let mut attempt = 0;
    loop {
        let r = tokio::select! {
            r = sink.store_position(next) => r,
            _ = env.cancel.cancelled() => return false,
        };
        match r {
            Ok(()) => {
                env.health.set_position(part.id, next);
                return true;
            }
            Err(e) => {
                env.health.failed(&env.name, &e);
                if !env.sleep(backoff(attempt, MAX_BACKOFF)).await {
                    return false;
                }
                attempt += 1;
            }
        }
    }
}
