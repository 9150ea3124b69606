//! End-to-end pipeline benchmarks, in process: input topic → plugin → output topic with
//! durable appends, next to the log-only and runtime-only rates measured in the same run;
//! produce-to-readable latency at a steady rate; hot swaps under that load.
//! Run: `cargo bench -p sluice-tests --bench pipeline`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Env, total_end};
use sluice_log::batch::{self, NewRecord};
use sluice_log::{Log, TopicConfig};
use sluice_pipeline::TransformSpec;
use sluice_runtime::Runtime;

const PER_BATCH: usize = 1000;

fn value(i: usize) -> Bytes {
    let mut v = format!(
        "{{\"user_id\":\"u-{}\",\"action\":\"login\",\"password\":\"hunter{i}\",\"email\":\"user{i}@example.com\"",
        i % 97
    );
    while v.len() < 149 {
        v.push(' ');
    }
    v.push('}');
    Bytes::from(v)
}

fn batch_of(start: usize, n: usize) -> bytes::BytesMut {
    let recs: Vec<NewRecord> = (start..start + n)
        .map(|i| NewRecord {
            value: Some(value(i)),
            ..Default::default()
        })
        .collect();
    batch::build(&recs, sluice_log::now_ms())
}

fn env() -> Env {
    common::env(&[
        ("mask", sluice::plugins::MASK),
        ("identity", sluice_tests::fixtures::IDENTITY),
        ("identity", sluice_tests::fixtures::IDENTITY),
    ])
}

fn spec(plugin: &str, version: Option<u32>, input: &str, output: &str) -> TransformSpec {
    let mut v = serde_json::json!({"plugin": plugin, "input": input, "outputs": [output]});
    if let Some(n) = version {
        v["version"] = serde_json::json!(n);
    }
    serde_json::from_value(v).unwrap()
}

/// Appends `n` records to `topic` (partitions round-robin, batches of 1,000); records/s.
fn fill(log: &Log, topic: &str, n: usize) -> f64 {
    let t = log.topic(topic).unwrap();
    let batches: Vec<_> = (0..n / PER_BATCH)
        .map(|b| batch_of(b * PER_BATCH, PER_BATCH))
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for (i, p) in t.partitions.iter().enumerate() {
            let mine: Vec<_> = batches
                .iter()
                .skip(i)
                .step_by(t.partitions.len())
                .cloned()
                .collect();
            s.spawn(move || {
                for b in mine {
                    p.append(b).unwrap();
                }
            });
        }
    });
    n as f64 / start.elapsed().as_secs_f64()
}

fn throughput(plugin: &str, n: usize) {
    let e = env();
    for t in ["in", "out"] {
        e.log
            .create_topic(
                t,
                TopicConfig {
                    partitions: 2,
                    ..TopicConfig::default()
                },
            )
            .unwrap();
    }
    e.log
        .create_topic(
            "logonly",
            TopicConfig {
                partitions: 2,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    let log_rate = fill(&e.log, "logonly", n);
    fill(&e.log, "in", n);
    let runtime_rate = runtime_only(&e, plugin, "in");
    let start = Instant::now();
    e.pipelines
        .deploy("t", spec(plugin, None, "in", "out"))
        .unwrap();
    while total_end(&e.log, "out") < n as u64 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "{plugin:<9} end to end, 2 partitions, every_batch fsync: {rate:>11.0} records/s   (log-only append {log_rate:.0}/s: {:.0}%; runtime only, one core: {runtime_rate:.0}/s)",
        rate / log_rate * 100.0
    );
    e.pipelines.shutdown();
}

/// The plugin alone over partition 0 of `topic`, on this thread: records/s.
fn runtime_only(e: &Env, plugin: &str, topic: &str) -> f64 {
    use sluice_runtime::{BatchInput, InstanceConfig, Limits, NoTables, TracingLogs};
    let version = e.plugins.latest(plugin).unwrap();
    let compiled = e.plugins.compiled(plugin, version).unwrap();
    let cfg = Arc::new(InstanceConfig {
        plugin: plugin.into(),
        version,
        config: Default::default(),
        outputs: vec!["out".into()],
        limits: Limits::default(),
        tables: Arc::new(NoTables),
        tables_allowed: Vec::new(),
        logs: Arc::new(TracingLogs),
        recycle_after: u64::MAX,
    });
    let mut ex = e.plugins.runtime().executor(compiled, cfg, 0).unwrap();
    let p = e.log.topic(topic).unwrap().partitions[0].clone();
    let (mut off, mut n) = (0u64, 0u64);
    let start = Instant::now();
    while off < p.high_watermark() {
        let r = p.read(off, 1 << 20).unwrap();
        for (h, raw) in batch::split(r.data).unwrap() {
            let out = ex.run(&BatchInput::records(
                topic,
                0,
                h.base_offset,
                h.base_timestamp,
                batch::records_section(&raw, &h).unwrap(),
                h.record_count as u32,
            ));
            n += out.emitted.len() as u64;
        }
        off = r.next_offset;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// Steady 10,000 records/s (batches of 10 every ms) into a running transform; measures
/// acknowledgement-to-readable latency on the output. With `swaps`, the deployment swaps
/// versions every 100 ms meanwhile.
fn latency(plugin: &str, swaps: bool) {
    let e = env();
    e.log.create_topic("lin", TopicConfig::default()).unwrap();
    e.log.create_topic("lout", TopicConfig::default()).unwrap();
    let version = if swaps { Some(1) } else { None };
    e.pipelines
        .deploy("l", spec(plugin, version, "lin", "lout"))
        .unwrap();
    let input = e.log.topic("lin").unwrap().partitions[0].clone();
    let output = e.log.topic("lout").unwrap().partitions[0].clone();
    const SECONDS: u64 = 4;
    let total = 10 * 1000 * SECONDS as usize;
    let acks = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total / 10)));
    let done = Arc::new(AtomicBool::new(false));
    let producer = {
        let (acks, input) = (acks.clone(), input.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            for b in 0..total / 10 {
                let due = start + Duration::from_micros(b as u64 * 1000);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let a = input.append(batch_of(b * 10, 10)).unwrap();
                acks.lock().unwrap().push((a.last_offset, Instant::now()));
            }
        })
    };
    let swapper = swaps.then(|| {
        let (p, done) = (e.pipelines.clone(), done.clone());
        std::thread::spawn(move || {
            let mut v = 1;
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                v = 3 - v;
                p.deploy("l", spec("identity", Some(v), "lin", "lout"))
                    .unwrap();
                n += 1;
            }
            n
        })
    });
    // Poll the output end; an output batch for input batch b is readable when end > 10*(b+1)-1.
    let mut lat = Vec::with_capacity(total / 10);
    let mut next_batch = 0usize;
    let deadline = Instant::now() + Duration::from_secs(SECONDS + 30);
    while next_batch < total / 10 && Instant::now() < deadline {
        let end = output.high_watermark() as usize;
        let now = Instant::now();
        let acks = acks.lock().unwrap();
        while next_batch < acks.len() && end >= (next_batch + 1) * 10 {
            lat.push(now.duration_since(acks[next_batch].1).as_secs_f64() * 1e3);
            next_batch += 1;
        }
        drop(acks);
        std::thread::sleep(Duration::from_micros(100));
    }
    producer.join().unwrap();
    done.store(true, Ordering::Relaxed);
    let swaps_done = swapper.map(|h| h.join().unwrap());
    let out = output.high_watermark();
    let (p50, p99) = (percentile(&mut lat, 0.50), percentile(&mut lat, 0.99));
    let max = percentile(&mut lat, 1.0);
    println!(
        "{plugin:<9} latency at 10,000 records/s{}: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms; {} in, {out} out",
        swaps_done.map_or(String::new(), |n| format!(" with {n} hot swaps")),
        total
    );
    if swaps {
        // Exactly once across swaps: every input offset once in the output.
        let mut seen = vec![false; total];
        let mut off = 0;
        let mut dups = 0;
        while off < out {
            let r = output.read(off, 1 << 20).unwrap();
            for (_, b) in batch::split(r.data).unwrap() {
                for rec in batch::decode(&b).unwrap() {
                    let src = rec
                        .headers
                        .iter()
                        .find(|(k, _)| k == "sluice-src")
                        .unwrap()
                        .1
                        .clone()
                        .unwrap();
                    let o: usize = std::str::from_utf8(&src)
                        .unwrap()
                        .split(':')
                        .nth(2)
                        .unwrap()
                        .parse()
                        .unwrap();
                    dups += usize::from(seen[o]);
                    seen[o] = true;
                }
            }
            off = r.next_offset;
        }
        println!(
            "          swaps: lost {}, duplicated {dups}",
            seen.iter().filter(|s| !**s).count()
        );
    }
    e.pipelines.shutdown();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt_dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(rt_dir.path()).unwrap();
    let _ = rt;
    // `SLUICE_BENCH_ONLY=identity|mask`: that throughput line alone (for profiling);
    // `latency`: the two latency lines.
    match std::env::var("SLUICE_BENCH_ONLY").as_deref() {
        Ok("latency") => {
            latency("mask", false);
            latency("identity", true);
            return;
        }
        Ok(plugin) => {
            throughput(plugin, 1_000_000);
            return;
        }
        Err(_) => {}
    }
    throughput("identity", 1_000_000);
    throughput("mask", 200_000);
    latency("mask", false);
    latency("identity", true);
}
