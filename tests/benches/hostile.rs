//! Hostile plugins, measured: how long `DELETE` and a graceful shutdown (what SIGTERM
//! starts) take while a runaway plugin burns its whole budget on every record of a large
//! batch (in process, through `server::run` and real HTTP), and the latency of a
//! well-behaved transform alone and next to three runaways (the real `sluice` binary over
//! real HTTP), with the runaways' verdicts counted. Run:
//! `cargo bench -p sluice-tests --bench hostile`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::bench::{Running, client, ok, percentiles, start};

mod common;
use common::Binary;

/// Where a server answers: in this process, or the real binary.
trait Server {
    fn url(&self, p: &str) -> String;
}

impl Server for Running {
    fn url(&self, p: &str) -> String {
        Running::url(self, p)
    }
}

/// `sluice serve` (the binary built with the tests), on a free port, killed on drop.
impl Server for Binary {
    fn url(&self, p: &str) -> String {
        Binary::url(self, p)
    }
}

fn setup(s: &impl Server, c: &reqwest::blocking::Client) {
    c.put(s.url("/v1/plugins/hostile"))
        .body(sluice_tests::fixtures::HOSTILE.to_vec())
        .send()
        .unwrap();
    c.put(s.url("/v1/plugins/id"))
        .body(sluice_tests::fixtures::IDENTITY.to_vec())
        .send()
        .unwrap();
}

/// Deploys a runaway transform `name` on its own input with a 1,000-record backlog.
fn runaway(s: &impl Server, c: &reqwest::blocking::Client, name: &str, timeout_ms: u64) {
    let input = format!("{name}.in");
    for t in [&input, &format!("{name}.out")] {
        ok(c.post(s.url("/v1/topics"))
            .json(&json!({ "name": t }))
            .send()
            .unwrap());
    }
    ok(c.put(s.url(&format!("/v1/transforms/{name}")))
        .json(&json!({"plugin": "hostile", "input": input, "outputs": [format!("{name}.out")],
                      "config": {"mode": std::env::var("SLUICE_BENCH_HOSTILE_MODE").unwrap_or_else(|_| "burn".into())},
                      "limits": {"timeout_ms": timeout_ms, "fuel_per_record": 4_000_000_000_000_000u64}}))
        .send()
        .unwrap());
    let recs: Vec<Value> = (0..1000)
        .map(|i| json!({ "value": format!("{i}") }))
        .collect();
    ok(c.post(s.url(&format!("/v1/topics/{input}/records")))
        .json(&json!({ "records": recs }))
        .send()
        .unwrap());
}

fn delete_and_shutdown(tries: usize) {
    let c = client();
    let mut deletes = Vec::new();
    let mut shutdowns = Vec::new();
    for i in 0..tries {
        let dir = tempfile::tempdir().unwrap();
        let s = start(dir.path());
        setup(&s, &c);
        runaway(&s, &c, "burn", 600_000);
        std::thread::sleep(Duration::from_millis(200));
        let t = Instant::now();
        let r = c.delete(s.url("/v1/transforms/burn")).send().unwrap();
        assert_eq!(r.status(), 204);
        deletes.push(t.elapsed().as_secs_f64() * 1e3);
        runaway(&s, &c, &format!("burn{i}"), 600_000);
        std::thread::sleep(Duration::from_millis(200));
        shutdowns.push(s.shutdown().as_secs_f64() * 1e3);
    }
    let (p50, p99, max) = percentiles(&mut deletes);
    println!(
        "DELETE under a runaway plugin ({tries} tries): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
    let (p50, p99, max) = percentiles(&mut shutdowns);
    println!(
        "graceful shutdown (SIGTERM) under a runaway plugin ({tries} tries): p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms"
    );
}

/// Acknowledgement-to-readable latency of an identity transform at 1,000 records/s
/// (batches of 10 every 10 ms over HTTP, 15 s), with `hostile` runaway transforms beside
/// it (each fails every record after burning a whole second of CPU); and the runaways'
/// dead letters (verdicts) written meanwhile.
fn calm_latency(hostile: usize) -> (f64, f64, u64) {
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let s = Binary::start(dir.path());
    setup(&s, &c);
    for t in ["calm", "calm.out"] {
        ok(c.post(s.url("/v1/topics"))
            .json(&json!({ "name": t }))
            .send()
            .unwrap());
    }
    ok(c.put(s.url("/v1/transforms/calm"))
        .json(&json!({"plugin": "id", "input": "calm", "outputs": ["calm.out"]}))
        .send()
        .unwrap());
    for i in 0..hostile {
        runaway(
            &s,
            &c,
            &format!("h{i}"),
            std::env::var("SLUICE_BENCH_HOSTILE_TIMEOUT").map_or(1000, |v| v.parse().unwrap()),
        );
    }
    // Past the runaways' first failing call (1 s): the steady state is measured.
    std::thread::sleep(Duration::from_millis(1500));
    const BATCHES: usize = 1500;
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let producer = {
        let (acks, url, c) = (acks.clone(), s.url("/v1/topics/calm/records"), c.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            for b in 0..BATCHES {
                let due = start + Duration::from_millis(b as u64 * 10);
                if let Some(w) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
                let recs: Vec<Value> = (0..10)
                    .map(|i| json!({ "value": format!("{b}-{i}") }))
                    .collect();
                let r: Value = c
                    .post(&url)
                    .json(&json!({ "records": recs }))
                    .send()
                    .unwrap()
                    .json()
                    .unwrap();
                let last = r["offsets"][9]["offset"].as_u64().unwrap();
                acks.lock().unwrap().push((last, Instant::now()));
            }
        })
    };
    // Long-poll the output and note when each end was seen; batch b was readable at the
    // first sighting of an end past its last offset (possibly before its ack arrived:
    // that counts as 0). Matching afterwards avoids a race between acks and sightings.
    let mut seen: Vec<(u64, Instant)> = Vec::new();
    let mut end = 0u64;
    let total = BATCHES as u64 * 10;
    let deadline = Instant::now() + Duration::from_secs(120);
    while end < total && Instant::now() < deadline {
        let r: Value = c
            .get(s.url(&format!(
                "/v1/topics/calm.out/partitions/0/records?offset={end}&max=10000&wait_ms=1000"
            )))
            .send()
            .unwrap()
            .json()
            .unwrap();
        end = r["next_offset"].as_u64().unwrap();
        seen.push((end, Instant::now()));
    }
    producer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let verdicts: u64 = (0..hostile)
        .map(|i| {
            let st = ok(c
                .get(s.url(&format!("/v1/transforms/h{i}")))
                .send()
                .unwrap());
            st["counters"]["failed"].as_u64().unwrap_or(0)
        })
        .sum();
    drop(s);
    let mut lat: Vec<f64> = acks
        .lock()
        .unwrap()
        .iter()
        .map(|(last, acked)| {
            let readable = seen
                .iter()
                .find(|(e, _)| e > last)
                .map_or(deadline, |(_, t)| *t);
            readable.saturating_duration_since(*acked).as_secs_f64() * 1e3
        })
        .collect();
    if std::env::var("SLUICE_BENCH_SPIKES").is_ok() {
        let slow: Vec<String> = lat
            .iter()
            .enumerate()
            .filter(|(_, l)| **l > 2.0)
            .map(|(i, l)| format!("{i}:{l:.0}"))
            .collect();
        eprintln!(
            "{} of {} batches over 2 ms: {}",
            slow.len(),
            lat.len(),
            slow.join(" ")
        );
    }
    let (p50, p99, _) = percentiles(&mut lat);
    (p50, p99, verdicts)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::var("SLUICE_BENCH_ONLY").as_deref() != Ok("latency") {
        delete_and_shutdown(20);
    }
    let (a50, a99, _) = calm_latency(0);
    let (h50, h99, verdicts) = calm_latency(3);
    println!(
        "well-behaved transform at 1,000 records/s over HTTP: alone p50 {a50:.2} ms, p99 {a99:.2} ms"
    );
    println!(
        "                    next to 3 runaway transforms: p50 {h50:.2} ms, p99 {h99:.2} ms ({:.2}x the p99 alone)",
        h99 / a99
    );
    println!(
        "                    the runaways' verdicts meanwhile: {verdicts} records failed and dead-lettered (each burns 1 s of CPU first)"
    );
}
