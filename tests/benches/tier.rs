//! Tiered storage (`cargo bench -p sluice-tests --bench tier`): upload throughput to a
//! local-directory object store, consume throughput from the remote tier against local
//! disk, and produce latency (fsynced appends) with and without uploads running.
//!
//! `SLUICE_BENCH_MB` sets the data size (default 256 MiB); `SLUICE_BENCH_STORE=moto` uses
//! moto's S3-compatible server (a network store), `memory` an in-process store (what the
//! upload path itself costs), instead of a local directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_log::batch::{self, NewRecord};
use sluice_log::tier::TierSettings;
use sluice_log::{Log, TopicConfig};

const RECORD: usize = 200;
const PER_BATCH: usize = 500;

fn batch_bytes(i: usize) -> bytes::BytesMut {
    let recs: Vec<NewRecord> = (0..PER_BATCH)
        .map(|j| NewRecord {
            key: Some(Bytes::from(format!("k{}", j % 97))),
            value: Some(Bytes::from(format!(
                "{i:08}-{j:04}-{}",
                "v".repeat(RECORD - 14)
            ))),
            headers: vec![],
            timestamp: None,
        })
        .collect();
    batch::build(&recs, sluice_log::now_ms())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// Reads the whole partition from offset 0; returns MB/s.
fn consume(p: &sluice_log::Partition) -> (f64, u64) {
    let t = Instant::now();
    let (mut off, mut bytes) = (0u64, 0u64);
    loop {
        let r = p.read(off, 1 << 20).unwrap();
        if r.data.is_empty() {
            break;
        }
        bytes += r.data.len() as u64;
        off = r.next_offset;
    }
    (bytes as f64 / 1e6 / t.elapsed().as_secs_f64(), off)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    sluice_auth::tls::install_provider();
    let mb: usize = std::env::var("SLUICE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let batches = mb * 1_000_000 / (RECORD * PER_BATCH);
    let tmp = tempfile::tempdir().unwrap();
    let moto = (std::env::var("SLUICE_BENCH_STORE").as_deref() == Ok("moto"))
        .then(|| sluice_tests::Moto::start("bench"));
    let store = sluice_config::TierStore {
        kind: if moto.is_some() {
            sluice_config::TierKind::S3
        } else if std::env::var("SLUICE_BENCH_STORE").as_deref() == Ok("memory") {
            sluice_config::TierKind::Memory
        } else {
            sluice_config::TierKind::Local
        },
        endpoint: moto
            .as_ref()
            .map(|m| format!("http://127.0.0.1:{}", m.port)),
        region: "us-east-1".into(),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
        root: Some(tmp.path().join("store")),
        cache_bytes: 64 << 20,
        upload_interval_ms: 10,
        max_upload_bytes_per_sec: std::env::var("SLUICE_BENCH_UPLOAD_RATE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200 << 20),
        restore_bucket: None,
        restore_prefix: "sluice".into(),
    };
    let backend = sluice_tier::backend(&store).unwrap();
    let log = Log::open_with(tmp.path().join("data"), Some(backend)).unwrap();
    let config = TopicConfig {
        segment_bytes: 16 << 20,
        tiered: Some(TierSettings {
            bucket: "bench".into(),
            prefix: "sluice".into(),
            local_retention_ms: None,
            local_retention_bytes: Some(u64::MAX),
        }),
        ..TopicConfig::default()
    };
    let p = log.create_topic("t", config.clone()).unwrap().partitions[0].clone();

    // Produce with no uploads running: per-append latency (fsync every batch).
    let mut quiet = Vec::new();
    for i in 0..batches {
        let b = batch_bytes(i);
        let t = Instant::now();
        p.append(b).unwrap();
        quiet.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let pending = p.stats().tier.unwrap().pending_bytes;
    // Upload throughput: everything sealed, to the local-directory store.
    let mut published = std::collections::HashMap::new();
    let t = Instant::now();
    while p.stats().tier.unwrap().pending_segments > 0 {
        log.tier_pass(sluice_log::now_ms(), &mut published);
    }
    let up = t.elapsed().as_secs_f64();
    let kind = match std::env::var("SLUICE_BENCH_STORE").as_deref() {
        Ok("moto") => "moto (S3 API on loopback)",
        Ok("memory") => "an in-memory store",
        _ => "a local-directory store",
    };
    println!(
        "upload to {kind}: {:.0} MiB in {up:.2} s = {:.0} MB/s",
        pending as f64 / (1 << 20) as f64,
        pending as f64 / 1e6 / up
    );

    // Produce the same amount again while uploads run beside it.
    let stop = Arc::new(AtomicBool::new(false));
    let tiering = log
        .spawn_tiering(Duration::from_millis(10), stop.clone())
        .unwrap();
    let mut busy = Vec::new();
    let uploads_before = sluice_log::tier::METRICS
        .upload_bytes
        .load(Ordering::Relaxed);
    for i in batches..2 * batches {
        let b = batch_bytes(i);
        let t = Instant::now();
        p.append(b).unwrap();
        busy.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let uploaded = sluice_log::tier::METRICS
        .upload_bytes
        .load(Ordering::Relaxed)
        - uploads_before;
    stop.store(true, Ordering::Release);
    let _ = tiering.join();
    println!(
        "fsynced append of {PER_BATCH}-record batches ({} KB): no uploads p50 {:.2} ms p99 {:.2} ms; with {:.0} MiB uploaded meanwhile p50 {:.2} ms p99 {:.2} ms",
        RECORD * PER_BATCH / 1000,
        pct(&mut quiet, 0.5),
        pct(&mut quiet, 0.99),
        uploaded as f64 / (1 << 20) as f64,
        pct(&mut busy, 0.5),
        pct(&mut busy, 0.99)
    );

    // Consume: all local (every segment still on disk), then remote (local copies gone,
    // a cold 64 MiB cache), best of two each.
    while p.stats().tier.unwrap().pending_segments > 0 {
        log.tier_pass(sluice_log::now_ms(), &mut published);
    }
    let (mut local, n) = consume(&p);
    local = local.max(consume(&p).0);
    let mut remote_only = config;
    if let Some(t) = &mut remote_only.tiered {
        t.local_retention_bytes = None;
    }
    log.alter_topic("t", remote_only).unwrap();
    log.tier_pass(sluice_log::now_ms(), &mut published);
    let st = p.stats().tier.unwrap();
    let (mut remote, m) = consume(&p);
    remote = remote.max(consume(&p).0);
    assert_eq!(n, m);
    println!(
        "consume from offset 0 ({n} records): local disk {local:.0} MB/s, remote tier {remote:.0} MB/s ({:.0}% of local; {} MiB remote, {} MiB local)",
        remote / local * 100.0,
        st.remote_bytes >> 20,
        st.local_bytes >> 20
    );
}
