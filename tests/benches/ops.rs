//! Operations features, measured in process through `server::run` and real HTTP:
//! - a live transform's throughput (draining a backlog) and latency (acknowledgement to
//!   readable at 1,000 records/s) alone, with a shadow of the same plugin, and with a
//!   shadow ten times as costly per record;
//! - lineage queries of a record three hops down (back to the origin and forward);
//! - `GET /metrics` with no consumer group and with 1,000 of them.
//!
//! Run: `cargo bench -p sluice-tests --bench ops` (`SLUICE_BENCH_ONLY=shadow|lineage|groups`
//! for one part).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::bench::{Running, client, ok, percentiles, start_with};

type Client = reqwest::blocking::Client;

fn topic(s: &Running, c: &Client, name: &str, partitions: u32) {
    ok(c.post(s.url("/v1/topics"))
        .json(&json!({"name": name, "partitions": partitions}))
        .send()
        .unwrap());
}

fn upload(s: &Running, c: &Client, name: &str, bytes: &[u8]) {
    ok(c.put(s.url(&format!("/v1/plugins/{name}")))
        .body(bytes.to_vec())
        .send()
        .unwrap());
}

fn deploy(s: &Running, c: &Client, name: &str, spec: Value) {
    ok(c.put(s.url(&format!("/v1/transforms/{name}")))
        .json(&spec)
        .send()
        .unwrap());
}

/// `n` records, one in 1,000 containing `POISON` (which a looping candidate loops on).
fn produce(s: &Running, c: &Client, topic: &str, n: usize, batch: usize) {
    for start in (0..n).step_by(batch) {
        let recs: Vec<Value> = (start..(start + batch).min(n))
            .map(|i| {
                let tag = if i % 1000 == 999 { "POISON" } else { "note" };
                json!({"key": format!("k{i}"), "value": format!("User: u{i}, Password: secret{i}, {tag} {i}")})
            })
            .collect();
        ok(c.post(s.url(&format!("/v1/topics/{topic}/records")))
            .json(&json!({"records": recs}))
            .send()
            .unwrap());
    }
}

fn lag(s: &Running, c: &Client, name: &str) -> u64 {
    let st = ok(c
        .get(s.url(&format!("/v1/transforms/{name}")))
        .send()
        .unwrap());
    st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["lag"].as_u64().unwrap_or(0))
        .sum()
}

/// `candidate`: none, or the shadow's config (the live version does 2,000 rounds).
fn shadow_run(candidate: Option<Value>) -> (f64, f64, f64, Option<Value>) {
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), false);
    upload(&s, &c, "work", sluice_tests::fixtures::MISBEHAVE);
    topic(&s, &c, "in", 1);
    topic(&s, &c, "out", 1);
    deploy(
        &s,
        &c,
        "live",
        json!({"plugin": "work", "input": "in", "outputs": ["out"],
               "config": {"mode": "slow", "rounds": "2000"}}),
    );
    if let Some(config) = &candidate {
        ok(c.put(s.url("/v1/transforms/live/shadow"))
            .json(&json!({ "config": config }))
            .send()
            .unwrap());
    }
    // Throughput: a 200,000-record backlog drained.
    ok(c.post(s.url("/v1/transforms/live/pause")).send().unwrap());
    const N: usize = 200_000;
    produce(&s, &c, "in", N, 5_000);
    let started = Instant::now();
    ok(c.post(s.url("/v1/transforms/live/resume")).send().unwrap());
    while lag(&s, &c, "live") > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let rate = N as f64 / started.elapsed().as_secs_f64();
    // Latency at 1,000 records/s (batches of 10 every 10 ms) for 10 s.
    let mut lat = Vec::new();
    let mut end = N as u64;
    for b in 0..1000u64 {
        let due = Instant::now() + Duration::from_millis(10);
        let recs: Vec<Value> = (0..10)
            .map(|i| {
                let tag = if b % 100 == 99 && i == 9 {
                    "POISON"
                } else {
                    ""
                };
                json!({"value": format!("{b}-{i}{tag}")})
            })
            .collect();
        let acked = ok(c
            .post(s.url("/v1/topics/in/records"))
            .json(&json!({"records": recs}))
            .send()
            .unwrap());
        let t = Instant::now();
        let last = acked["offsets"][9]["offset"].as_u64().unwrap();
        while end <= last {
            let r = ok(c
                .get(s.url(&format!(
                    "/v1/topics/out/partitions/0/records?offset={end}&max=10000&wait_ms=1000"
                )))
                .send()
                .unwrap());
            end = r["next_offset"].as_u64().unwrap();
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
    }
    let view = candidate.map(|_| ok(c.get(s.url("/v1/transforms/live/shadow")).send().unwrap()));
    s.shutdown();
    let (p50, p99, _) = percentiles(&mut lat);
    (rate, p50, p99, view)
}

fn shadows() {
    let (r0, a50, a99, _) = shadow_run(None);
    println!(
        "live transform alone: {r0:.0} records/s draining; at 1,000 records/s p50 {a50:.2} ms, p99 {a99:.2} ms"
    );
    for (what, config) in [
        ("the same plugin", json!({"mode": "slow", "rounds": "2000"})),
        (
            "a 10x costlier candidate",
            json!({"mode": "slow", "rounds": "20000"}),
        ),
        (
            "a candidate looping on 1 record in 1,000",
            json!({"mode": "loop"}),
        ),
    ] {
        let (r, p50, p99, view) = shadow_run(Some(config));
        let v = view.unwrap();
        println!(
            "with a shadow of {what}: {r:.0} records/s ({:.2}x alone); p50 {p50:.2} ms, p99 {p99:.2} ms ({:.2}x alone); \
             shadow compared {} (CPU/record live {:.2} µs, candidate {:.2} µs; candidate traps {})",
            r / r0,
            p99 / a99,
            v["compared"],
            v["live"]["cpu_us_per_record"].as_f64().unwrap_or(0.0),
            v["candidate"]["cpu_us_per_record"].as_f64().unwrap_or(0.0),
            v["candidate"]["traps"],
        );
    }
}

fn lineage() {
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), false);
    upload(&s, &c, "mask", sluice::plugins::MASK);
    upload(&s, &c, "work", sluice_tests::fixtures::MISBEHAVE);
    for t in ["l0", "l1", "l2", "l3"] {
        topic(&s, &c, t, 3);
    }
    deploy(
        &s,
        &c,
        "hop1",
        json!({"plugin": "work", "input": "l0", "outputs": ["l1"]}),
    );
    deploy(
        &s,
        &c,
        "hop2",
        json!({"plugin": "mask", "input": "l1", "outputs": ["l2"]}),
    );
    deploy(
        &s,
        &c,
        "hop3",
        json!({"plugin": "work", "input": "l2", "outputs": ["l3"]}),
    );
    const N: usize = 300_000;
    produce(&s, &c, "l0", N, 5_000);
    while ["hop1", "hop2", "hop3"].iter().any(|t| lag(&s, &c, t) > 0) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut back = Vec::new();
    let mut both = Vec::new();
    let mut rng = fastrand_seed();
    for _ in 0..50 {
        let p = rng() % 3;
        let o = rng() % (N as u64 / 3 - 10);
        let t = Instant::now();
        let v = ok(c
            .get(s.url(&format!("/v1/lineage/l3/{p}/{o}")))
            .send()
            .unwrap());
        back.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(v["hops"].as_array().unwrap().len(), 3, "{v}");
        let origin = &v["origin"];
        let t = Instant::now();
        let f = ok(c
            .get(s.url(&format!(
                "/v1/lineage/l0/{}/{}",
                origin["partition"], origin["offset"]
            )))
            .send()
            .unwrap());
        both.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(f["derived"].as_array().unwrap().len(), 3, "{f}");
    }
    s.shutdown();
    let (b50, b99, _) = percentiles(&mut back);
    let (f50, f99, _) = percentiles(&mut both);
    println!(
        "lineage of a record 3 hops down ({N} records per topic, 3 partitions): back to the origin p50 {b50:.2} ms, p99 {b99:.2} ms; \
         from the origin forward through 3 hops p50 {f50:.2} ms, p99 {f99:.2} ms"
    );
}

/// A small deterministic generator (xorshift).
fn fastrand_seed() -> impl FnMut() -> u64 {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

fn metrics_ms(s: &Running, c: &Client) -> (f64, usize) {
    let mut t = Vec::new();
    let mut len = 0;
    for _ in 0..30 {
        let started = Instant::now();
        len = c
            .get(s.url("/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap()
            .len();
        t.push(started.elapsed().as_secs_f64() * 1e3);
    }
    (percentiles(&mut t).0, len)
}

fn groups() {
    let c = client();
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), true);
    topic(&s, &c, "g", 10);
    produce(&s, &c, "g", 10_000, 5_000);
    let (none, len0) = metrics_ms(&s, &c);
    for g in 0..1000 {
        ok(c.post(s.url(&format!("/v1/groups/group-{g}/reset")))
            .json(&json!({"to": "earliest", "topic": "g"}))
            .send()
            .unwrap());
    }
    let (many, len1) = metrics_ms(&s, &c);
    let started = Instant::now();
    let list = ok(c.get(s.url("/v1/groups")).send().unwrap());
    let list_ms = started.elapsed().as_secs_f64() * 1e3;
    assert_eq!(list["groups"].as_array().unwrap().len(), 1000);
    s.shutdown();
    println!(
        "GET /metrics: no group {none:.2} ms ({len0} bytes); 1,000 groups x 10 partitions {many:.2} ms ({len1} bytes, +{:.2} ms); GET /v1/groups with 1,000 groups {list_ms:.1} ms",
        many - none
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only = std::env::var("SLUICE_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "groups" {
        groups();
    }
    if only.is_empty() || only == "lineage" {
        lineage();
    }
    if only.is_empty() || only == "shadow" {
        shadows();
    }
}
