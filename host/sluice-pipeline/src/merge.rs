//! Deployments over two inputs: one thread per partition copies the records of both input
//! partitions into the same partition of the deployment's own topic (`<name>.inputs`),
//! whose tasks then read it as any input — so the order in which the two streams meet is
//! written down once, and a replay after a crash sees the same interleaving, the same
//! watermarks and the same outputs (effectively once, as for one input).
//!
//! Every copied record carries `sluice-input: <0|1>` (which input), and the last record of
//! each copied batch `sluice-input-end: <offset>` (that input's next offset after it). A
//! batch holds records of one input only. Where each input stands is therefore in the
//! merged partition itself: a restart reads it back from the batches after the last saved
//! checkpoint (`merge-<p>.json`, written without fsync — a lower bound), so a batch is
//! neither copied twice nor skipped. The input behind in event time is copied first, which
//! keeps the two streams close together and the state that waits for the slower one small.
//! What the tasks have committed is deleted from the merged topic every 10 s (the inputs
//! keep their own retention).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sluice_log::batch::{self, Builder};
use sluice_log::{LogError, Partition, Topic};

/// Which input a merged record came from (`0` or `1`).
pub const INPUT_HEADER: &str = "sluice-input";
/// On the last record of a merged batch: its input's next offset.
pub const INPUT_END_HEADER: &str = "sluice-input-end";
/// Bytes read from an input per copy.
const READ_BYTES: usize = 256 << 10;
/// How often the place is saved.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// How often what the tasks committed is deleted from the merged topic.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// The copying threads of one deployment.
#[derive(Debug)]
pub struct Merger {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Per partition: its two input partitions and how far each is copied.
    copied: Vec<Copied>,
}

/// One merged partition's inputs and how far each is copied.
type Copied = (u32, [Arc<Partition>; 2], Arc<[AtomicU64; 2]>);

impl Merger {
    /// Starts a copying thread per partition of `merged` (`inputs` have as many).
    pub fn start(
        name: &str,
        dir: &Path,
        inputs: [Arc<Topic>; 2],
        merged: &Topic,
        start_latest: bool,
    ) -> std::io::Result<Merger> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut copied = Vec::new();
        for out in &merged.partitions {
            let (Some(a), Some(b)) = (
                inputs[0].partitions.get(out.id as usize),
                inputs[1].partitions.get(out.id as usize),
            ) else {
                continue;
            };
            let progress = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
            copied.push((out.id, [a.clone(), b.clone()], progress.clone()));
            let copy = Copier {
                name: name.to_string(),
                file: dir.join(format!("merge-{}.json", out.id)),
                inputs: [a.clone(), b.clone()],
                out: out.clone(),
                stop: stop.clone(),
                progress,
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("sluice-merge-{name}-{}", out.id))
                    .spawn(move || copy.run(start_latest))?,
            );
        }
        Ok(Merger {
            stop,
            threads,
            copied,
        })
    }

    /// Records of both inputs of `partition` not merged yet.
    pub fn behind(&self, partition: u32) -> u64 {
        self.copied
            .iter()
            .find(|(p, _, _)| *p == partition)
            .map_or(0, |(_, inputs, done)| {
                inputs
                    .iter()
                    .zip(done.iter())
                    .map(|(i, d)| i.high_watermark().saturating_sub(d.load(Ordering::Relaxed)))
                    .sum()
            })
    }

    /// Stops copying (what was appended stays) and waits for the threads.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Where a merged partition stands: every input's next offset once `merged_end` is
/// reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Place {
    merged_end: u64,
    inputs: [u64; 2],
}

struct Copier {
    name: String,
    file: PathBuf,
    inputs: [Arc<Partition>; 2],
    out: Arc<Partition>,
    stop: Arc<AtomicBool>,
    /// Each input's place, for the status.
    progress: Arc<[AtomicU64; 2]>,
}

impl Copier {
    fn run(self, start_latest: bool) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                return tracing::error!(transform = %self.name, error = %e, "merge cannot start");
            }
        };
        // Until the place is known, nothing is copied (a guess would copy twice or skip).
        let mut place = loop {
            match self.recover(start_latest) {
                Ok(p) => break p,
                Err(e) => {
                    tracing::error!(transform = %self.name, partition = self.out.id, error = %e, "merge cannot find its place; retrying");
                    if self.pause(Duration::from_secs(5)) {
                        return;
                    }
                }
            }
        };
        // The largest event time copied of each input.
        let mut times = [i64::MIN; 2];
        // Copies in a row from one input while the other had data waiting.
        let mut streak = 0;
        let mut saved = Instant::now();
        let mut trimmed = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            if let Some(gone) = self.inputs.iter().find(|p| p.is_deleted()) {
                tracing::warn!(transform = %self.name, topic = %gone.topic, "an input of the deployment was deleted; nothing is merged until it is deployed anew");
                if self.pause(Duration::from_secs(10)) {
                    break;
                }
                continue;
            }
            // The input behind in event time first; the other when it has nothing — or
            // when the first was taken 16 times in a row while the other waited (inputs
            // whose clocks differ must not starve one another).
            let mut first = usize::from(times[1] < times[0]);
            let other_waits = place.inputs[1 - first] < self.inputs[1 - first].high_watermark();
            if streak >= 16 && other_waits {
                first = 1 - first;
                streak = 0;
            }
            let mut copied = false;
            for i in [first, 1 - first] {
                match self.copy(i, &mut place, &mut times[i]) {
                    Ok(true) => {
                        copied = true;
                        streak = if i == first && other_waits {
                            streak + 1
                        } else {
                            0
                        };
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(transform = %self.name, partition = self.out.id, input = i, error = %e, "merge failed; retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
            for (p, at) in self.progress.iter().zip(place.inputs) {
                p.store(at, Ordering::Relaxed);
            }
            if saved.elapsed() >= SAVE_EVERY {
                self.save(place);
                saved = Instant::now();
            }
            if trimmed.elapsed() >= TRIM_EVERY {
                self.trim(place);
                trimmed = Instant::now();
            }
            if !copied {
                let [a, b] = &self.inputs;
                let wait = Duration::from_millis(100);
                rt.block_on(async {
                    tokio::select! {
                        _ = a.wait_for(place.inputs[0], wait) => {}
                        _ = b.wait_for(place.inputs[1], wait) => {}
                    }
                });
            }
        }
        self.save(place);
    }

    /// Sleeps up to `d`; true when the merge is stopping.
    fn pause(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stop.load(Ordering::Acquire) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.load(Ordering::Acquire)
    }

    /// Copies what input `i` has from its place as one batch; whether there was any.
    fn copy(&self, i: usize, place: &mut Place, time: &mut i64) -> Result<bool, LogError> {
        let input = &self.inputs[i];
        let from = place.inputs[i];
        let read = match input.read_committed(from, READ_BYTES) {
            Ok(r) => r,
            Err(LogError::OffsetOutOfRange { start, .. }) if from < start => {
                tracing::warn!(transform = %self.name, partition = input.id, from, to = start,
                    "input deleted by retention before it was merged; skipping ahead");
                place.inputs[i] = start;
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        if read.next_offset <= from {
            return Ok(false);
        }
        let mut records = Vec::new();
        for (h, raw) in batch::split(read.data)? {
            if h.is_control() || (h.last_offset() as u64) < from || input.is_aborted(&h) {
                continue;
            }
            records.extend(
                batch::decode(&raw)?
                    .into_iter()
                    .filter(|r| r.offset as u64 >= from),
            );
        }
        let end = read.next_offset;
        if records.is_empty() {
            // Only control or aborted batches: nothing to copy, but the place moves (a
            // crash finds them again, which is harmless).
            place.inputs[i] = end;
            return Ok(true);
        }
        let tag = if i == 0 { &b"0"[..] } else { &b"1"[..] };
        let end_text = end.to_string();
        let n = records.len();
        let mut out = Builder::new();
        for (j, r) in records.iter().enumerate() {
            *time = (*time).max(r.timestamp);
            // The input's end rides on the batch's last record.
            let last =
                (j + 1 == n).then_some((INPUT_END_HEADER.as_bytes(), Some(end_text.as_bytes())));
            // A record merged before (an input that is itself a merged topic, a forwarded
            // header) loses its old tags: only this merge's count.
            let headers = r
                .headers
                .iter()
                .filter(|(k, _)| k != INPUT_HEADER && k != INPUT_END_HEADER)
                .map(|(k, v)| (k.as_bytes(), v.as_deref()))
                .chain(std::iter::once((INPUT_HEADER.as_bytes(), Some(tag))))
                .chain(last);
            out.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), headers);
        }
        let appended = self.out.append(out.finish())?;
        place.inputs[i] = end;
        place.merged_end = appended.last_offset + 1;
        Ok(true)
    }

    /// Where each input stands: the saved place, moved on by the batches appended after it.
    fn recover(&self, start_latest: bool) -> Result<Place, String> {
        let saved = match std::fs::read(&self.file) {
            Ok(b) => Some(
                serde_json::from_slice::<Place>(&b)
                    .map_err(|e| format!("{}: {e}", self.file.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{}: {e}", self.file.display())),
        };
        let mut place = match saved {
            Some(p) => p,
            None => {
                let at = |p: &Partition| {
                    if start_latest {
                        p.high_watermark()
                    } else {
                        p.start_offset()
                    }
                };
                let first = Place {
                    merged_end: self.out.start_offset(),
                    inputs: [at(&self.inputs[0]), at(&self.inputs[1])],
                };
                // Durably, before anything is copied: a `latest` start holds.
                if !self.save_durably(first) {
                    return Err("the merge place cannot be saved".into());
                }
                first
            }
        };
        let mut from = place.merged_end.max(self.out.start_offset());
        while from < self.out.high_watermark() {
            let read = self.out.read(from, 1 << 20).map_err(|e| e.to_string())?;
            for (_, raw) in batch::split(read.data).map_err(|e| e.to_string())? {
                let records = batch::decode(&raw).map_err(|e| e.to_string())?;
                let Some(last) = records.last() else { continue };
                let header = |k: &str| {
                    last.headers
                        .iter()
                        .find(|(n, _)| n == k)
                        .and_then(|(_, v)| v.as_deref())
                        .and_then(|v| std::str::from_utf8(v).ok())
                };
                if let (Some(i), Some(end)) = (header(INPUT_HEADER), header(INPUT_END_HEADER))
                    && let (Ok(i), Ok(end)) = (i.parse::<usize>(), end.parse::<u64>())
                    && i < 2
                {
                    place.inputs[i] = place.inputs[i].max(end);
                }
            }
            if read.next_offset <= from {
                break;
            }
            from = read.next_offset;
        }
        place.merged_end = from;
        Ok(place)
    }

    /// Deletes the merged records the task has committed (its checkpoint's position): the
    /// inputs keep the data; the merged copy is only the order the task reads it in.
    /// The place is saved durably first, and nothing past it is deleted: a restart reads
    /// the inputs' ends back from the merged batches after it.
    fn trim(&self, place: Place) {
        let Some(dir) = self.file.parent() else {
            return;
        };
        let Some(cp) = crate::checkpoint::read(dir, self.out.id) else {
            return;
        };
        if !self.save_durably(place) {
            return;
        }
        let to = cp.position.min(place.merged_end);
        if to > self.out.start_offset()
            && let Err(e) = self.out.delete_records(to)
        {
            tracing::debug!(transform = %self.name, error = %e, "merged input not trimmed");
        }
    }

    /// Saves the place (a lower bound: a crash finds the batches after it), replacing the
    /// file whole, without waiting for the disk.
    fn save(&self, place: Place) {
        let tmp = self.file.with_extension("tmp");
        if let Ok(b) = serde_json::to_vec(&place)
            && std::fs::write(&tmp, b).is_ok()
        {
            let _ = std::fs::rename(&tmp, &self.file);
        }
    }

    /// Saves the place on disk (before anything it covers is deleted); whether it is.
    fn save_durably(&self, place: Place) -> bool {
        let saved = serde_json::to_vec(&place)
            .map_err(std::io::Error::other)
            .and_then(|b| sluice_common::fs::write_file(&self.file, &b))
            .and_then(|()| match self.file.parent() {
                Some(d) => sluice_common::fs::sync_dir(d),
                None => Ok(()),
            });
        match saved {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(transform = %self.name, error = %e, "merge place not saved");
                false
            }
        }
    }
}

/// Which input a stored batch of a merged topic came from (its first record's header).
pub fn input_of(raw: &Bytes) -> Option<usize> {
    let first = batch::first_record(raw).ok()??;
    let (_, v) = first.headers.iter().find(|(k, _)| k == INPUT_HEADER)?;
    match v.as_deref()? {
        b"0" => Some(0),
        b"1" => Some(1),
        _ => None,
    }
}
