//! Log throughput: appends with each flush policy next to the raw fdatasync bandwidth of the
//! same disk, and a sequential read scan. Run: `cargo bench -p sluice --bench log`.
//! `SLUICE_BENCH_DIR` picks the disk (default: the system temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_log::batch::{self, NewRecord};
use sluice_log::{FlushPolicy, Log, TopicConfig};

const RECORD: usize = 150;
const PER_BATCH: usize = 1000;
const BATCHES: usize = 1500;

fn sample_batch(seed: usize) -> bytes::BytesMut {
    let recs: Vec<NewRecord> = (0..PER_BATCH)
        .map(|i| {
            let mut v = format!(
                "{{\"user_id\":\"u-{}\",\"event\":\"view\",\"n\":{}",
                i % 97,
                seed * PER_BATCH + i
            );
            while v.len() < RECORD - 1 {
                v.push('x');
            }
            v.push('}');
            NewRecord {
                value: Some(Bytes::from(v)),
                ..Default::default()
            }
        })
        .collect();
    batch::build(&recs, 1_700_000_000_000)
}

fn report(name: &str, records: usize, bytes: usize, took: Duration) -> f64 {
    let s = took.as_secs_f64();
    let mbps = bytes as f64 / s / 1e6;
    println!(
        "{name:<44} {:>12.0} records/s {:>9.1} MB/s  ({records} records, {:.2} s)",
        records as f64 / s,
        mbps,
        s
    );
    mbps
}

fn raw_fdatasync(dir: &std::path::Path, chunk: &[u8]) -> f64 {
    let path = dir.join("raw.bin");
    let mut f = std::fs::File::create(&path).unwrap();
    let start = Instant::now();
    for _ in 0..BATCHES {
        f.write_all(chunk).unwrap();
        f.sync_data().unwrap();
    }
    let took = start.elapsed();
    std::fs::remove_file(&path).unwrap();
    report(
        &format!("raw write+fdatasync ({} KiB chunks)", chunk.len() / 1024),
        BATCHES * PER_BATCH,
        BATCHES * chunk.len(),
        took,
    )
}

fn append(
    dir: &std::path::Path,
    name: &str,
    flush: FlushPolicy,
    writers: usize,
    batches: &[bytes::BytesMut],
) -> f64 {
    let log = Log::open(dir.join(name)).unwrap();
    let t = log
        .create_topic(
            name,
            TopicConfig {
                flush,
                flush_interval_ms: 100,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let p = t.partitions[0].clone();
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let p = p.clone();
            s.spawn(move || {
                for b in batches.iter().skip(w).step_by(writers) {
                    p.append(b.clone()).unwrap();
                }
            });
        }
    });
    p.flush().unwrap();
    let took = start.elapsed();
    let bytes: usize = batches.iter().map(|b| b.len()).sum();
    report(
        &format!(
            "append {name} ({writers} writer{})",
            if writers > 1 { "s" } else { "" }
        ),
        batches.len() * PER_BATCH,
        bytes,
        took,
    )
}

fn scan(dir: &std::path::Path) {
    let log = Log::open(dir.join("every_batch")).unwrap();
    let p = log.topic("every_batch").unwrap().partitions[0].clone();
    let start = Instant::now();
    let (mut off, mut bytes) = (0, 0);
    while off < p.high_watermark() {
        let r = p.read(off, 1 << 20).unwrap();
        bytes += r.data.len();
        off = r.next_offset;
    }
    report(
        "read scan (whole batches, CRC checked)",
        off as usize,
        bytes,
        start.elapsed(),
    );
    let start = Instant::now();
    let (mut off, mut n) = (0, 0usize);
    while off < p.high_watermark() {
        let r = p.read(off, 1 << 20).unwrap();
        for (_, b) in batch::split(r.data).unwrap() {
            n += batch::decode(&b).unwrap().len();
        }
        off = r.next_offset;
    }
    report("read scan + decode every record", n, bytes, start.elapsed());
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches` probe
    }
    let base = std::env::var_os("SLUICE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let batches: Vec<_> = (0..BATCHES).map(sample_batch).collect();
    println!(
        "{} batches of {PER_BATCH} × {RECORD}-byte records ({} KiB per batch) in {}",
        BATCHES,
        batches[0].len() / 1024,
        dir.path().display()
    );
    let raw = raw_fdatasync(dir.path(), &batches[0]);
    let every = append(
        dir.path(),
        "every_batch",
        FlushPolicy::EveryBatch,
        1,
        &batches,
    );
    append(
        dir.path(),
        "every_batch4",
        FlushPolicy::EveryBatch,
        4,
        &batches,
    );
    let interval = append(dir.path(), "interval", FlushPolicy::Interval, 1, &batches);
    append(dir.path(), "os", FlushPolicy::Os, 1, &batches);
    println!(
        "every_batch = {:.0}% of raw fdatasync bandwidth; interval = {:.0}%",
        every / raw * 100.0,
        interval / raw * 100.0
    );
    scan(dir.path());
}
