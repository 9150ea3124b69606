//! Nexmark q0–q8 (without q6) on Sluice and on Flink SQL, same events, same run.
//!
//! Sluice (the release binary): the `nexmark` connector writes N events into persons,
//! auctions and bids (4 partitions each, durable, fsynced per batch); then each query runs
//! as its deployments (`plugins/nexmark`, `plugins/nexmark-stateless`; the joins over two
//! inputs) from the first offset, timed from the deploy until every deployment of the
//! query has read all of its input (what waits for an idle advance after the last event is
//! not counted: with an endless stream it fires as the stream goes on).
//! Flink (PyFlink from PyPI, `tests/benches/nexmark_flink.py`, local mini-cluster with
//! parallelism = cores, exactly-once checkpoints every 10 s): the same events from JSON
//! files, each query into a blackhole sink, timed around the job.
//! Both rates are over all N events (all types, as Nexmark counts), per core over the
//! machine's cores. `SLUICE_NEXMARK_EVENTS` (default 2,000,000), `SLUICE_NEXMARK_QUERIES`
//! (default all), `SLUICE_NEXMARK_PYTHON` (a python with `pyflink`; none: Sluice only).
//! Run with `scripts/bench-nexmark`, which installs PyFlink and a JRE.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use nexmark::event::Event;

mod common;
use common::Binary;
use serde_json::{Value, json};

const BASE_TIME: u64 = 1_800_000_000_000;
const PARTITIONS: u32 = 4;

/// What the bench asks of the server.
trait Api {
    fn put(&self, path: &str, body: Value) -> Value;
    fn get(&self, path: &str) -> Value;
    fn create_topic(&self, name: &str);
}

impl Api for Binary {
    fn put(&self, path: &str, body: Value) -> Value {
        let r = client().put(self.url(path)).json(&body).send().unwrap();
        let status = r.status();
        let v: Value = r.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "PUT {path}: {status} {v}");
        v
    }

    fn get(&self, path: &str) -> Value {
        client().get(self.url(path)).send().unwrap().json().unwrap()
    }

    fn create_topic(&self, name: &str) {
        let r = client()
            .post(self.url("/v1/topics"))
            .json(&json!({"name": name, "partitions": PARTITIONS}))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap_or_default());
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// One query's deployments: (name, spec), in order; its topics named after the query
/// (`q4.bids`, `q4.finals`, …).
fn deployments(q: &str) -> Vec<(String, Value)> {
    let t = |name: &str| format!("{q}.{name}");
    let stateless = |name: &str, input: String, out: String, config: Value| {
        (
            name.to_string(),
            json!({"plugin": "nexmark-stateless", "input": input, "outputs": [out], "config": config}),
        )
    };
    let stateful = |name: &str, input: Value, out: String, config: Value| {
        let mut spec = json!({"plugin": "nexmark", "outputs": [out], "config": config,
            "idle_timeout_ms": 600_000});
        match input {
            Value::Array(_) => spec["inputs"] = input,
            other => spec["input"] = other,
        }
        (name.to_string(), spec)
    };
    let pa = json!([t("persons"), t("auctions")]);
    let config =
        |query: &str| json!({"query": query, "persons": t("persons"), "auctions": t("auctions")});
    match q {
        "q0" | "q1" | "q2" => vec![stateless(q, t("bids"), t("out"), json!({"query": q}))],
        "q3" | "q8" => vec![stateful(q, pa, t("out"), config(q))],
        "q4" => vec![
            stateless(
                "q4-rekey",
                t("auctions"),
                t("auctions-by-id"),
                json!({"query": "rekey", "field": "id"}),
            ),
            stateful(
                "q4-join",
                json!([t("auctions-by-id"), t("bids")]),
                t("finals"),
                json!({"query": "q4-join", "auctions": t("auctions-by-id"), "bids": t("bids")}),
            ),
            stateful(
                "q4",
                json!(t("finals")),
                t("out"),
                json!({"query": "q4-avg"}),
            ),
        ],
        "q5" | "q7" => {
            let (first, second) = if q == "q5" {
                ("q5-count", "q5-hot")
            } else {
                ("q7-local", "q7-max")
            };
            vec![
                stateful(
                    first,
                    json!(t("bids")),
                    t("stage1"),
                    json!({"query": first}),
                ),
                stateful(q, json!(t("stage1")), t("out"), json!({"query": second})),
            ]
        }
        other => panic!("unknown query {other}"),
    }
}

/// Topics the query reads and writes.
fn topics(q: &str, specs: &[(String, Value)]) -> Vec<String> {
    ["persons", "auctions", "bids"]
        .iter()
        .map(|t| format!("{q}.{t}"))
        .chain(
            specs
                .iter()
                .map(|(_, s)| s["outputs"][0].as_str().unwrap().to_string()),
        )
        .collect()
}

/// Whether every deployment read all its input.
fn caught_up(s: &Binary, specs: &[(String, Value)]) -> bool {
    specs.iter().all(|(name, _)| {
        let st = s.get(&format!("/v1/transforms/{name}"));
        st["partitions"].as_array().is_some_and(|ps| {
            ps.iter().all(|p| p["lag"] == 0) && ps.iter().any(|p| p["position"] != 0)
        })
    })
}

/// Runs query `q` while the generator writes `events` into its own topics: from the
/// generator's start until it wrote everything and every stage has read all its input.
fn run_sluice(s: &Binary, q: &str, events: u64) -> (f64, u64, u64) {
    let specs = deployments(q);
    for t in topics(q, &specs) {
        s.create_topic(&t);
    }
    for (name, spec) in &specs {
        s.put(&format!("/v1/transforms/{name}"), spec.clone());
    }
    let gen_name = format!("gen-{q}");
    let started = Instant::now();
    s.put(
        &format!("/v1/connectors/{gen_name}"),
        json!({"kind": "nexmark", "persons": format!("{q}.persons"),
            "auctions": format!("{q}.auctions"), "bids": format!("{q}.bids"),
            "events": events, "base_time_ms": BASE_TIME}),
    );
    let deadline = started + Duration::from_secs(1800);
    loop {
        let generated = s.get(&format!("/v1/connectors/{gen_name}"))["generated"].as_u64();
        if generated == Some(events) && caught_up(s, &specs) {
            break;
        }
        assert!(Instant::now() < deadline, "{q} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed().as_secs_f64();
    let late: u64 = specs
        .iter()
        .map(|(name, _)| {
            s.get(&format!("/v1/transforms/{name}"))["counters"]["late"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    let out: u64 = s.get(&format!("/v1/topics/{q}.out"))["partitions"]
        .as_array()
        .map_or(0, |ps| {
            ps.iter()
                .map(|p| p["end_offset"].as_u64().unwrap_or(0))
                .sum()
        });
    for (name, _) in specs.iter().rev() {
        let _ = client()
            .delete(s.url(&format!("/v1/transforms/{name}")))
            .send();
    }
    let _ = client()
        .delete(s.url(&format!("/v1/connectors/{gen_name}")))
        .send();
    for t in topics(q, &specs) {
        let _ = client().delete(s.url(&format!("/v1/topics/{t}"))).send();
    }
    (took, out, late)
}

/// The events as Flink's JSON files (one per type).
fn write_files(dir: &std::path::Path, events: u64) {
    let open = |n: &str| std::io::BufWriter::new(std::fs::File::create(dir.join(n)).unwrap());
    let (mut p, mut a, mut b) = (open("person.json"), open("auction.json"), open("bid.json"));
    let config = sluice_connect::nexmark::config_at(BASE_TIME);
    for e in sluice_connect::nexmark::events(&config, 0, events) {
        let f = match &e {
            Event::Person(_) => &mut p,
            Event::Auction(_) => &mut a,
            Event::Bid(_) => &mut b,
        };
        f.write_all(&sluice_connect::nexmark::event_json(&e))
            .unwrap();
        f.write_all(b"\n").unwrap();
    }
    for mut f in [p, a, b] {
        f.flush().unwrap();
    }
}

fn run_flink(python: &str, dir: &std::path::Path, cores: usize, queries: &[&str]) -> Vec<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/nexmark_flink.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(dir)
        .arg(cores.to_string())
        .args(queries)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "PyFlink failed");
    let text = String::from_utf8_lossy(&out.stdout);
    queries
        .iter()
        .map(|q| {
            text.lines()
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some("flink") && w.next() == Some(q))
                        .then(|| w.next()?.parse().ok())
                        .flatten()
                })
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// Flink 1.13's published per-core figures (github.com/nexmark/nexmark), events/s.
fn published(q: &str) -> u64 {
    match q {
        "q0" => 155_000,
        "q1" => 158_000,
        "q2" => 175_000,
        "q3" => 152_000,
        "q4" => 34_000,
        "q5" => 22_000,
        "q7" => 12_000,
        "q8" => 146_000,
        _ => 0,
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    sluice_auth::tls::install_provider();
    let events: u64 = std::env::var("SLUICE_NEXMARK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let all = "q0,q1,q2,q3,q4,q5,q7,q8".to_string();
    let wanted = std::env::var("SLUICE_NEXMARK_QUERIES").unwrap_or(all);
    let queries: Vec<&str> = wanted.split(',').map(str::trim).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir().unwrap();

    let s = Binary::start(&tmp.path().join("data"));
    for (name, bytes) in [
        ("nexmark", sluice::plugins::NEXMARK_QUERIES),
        ("nexmark-stateless", sluice::plugins::NEXMARK_STATELESS),
    ] {
        let r = client()
            .put(s.url(&format!("/v1/plugins/{name}")))
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert!(r.status().is_success());
    }
    // The generator alone: events into durable topics, no query.
    for t in ["persons", "auctions", "bids"] {
        s.create_topic(t);
    }
    let started = Instant::now();
    s.put(
        "/v1/connectors/gen",
        json!({"kind": "nexmark", "persons": "persons", "auctions": "auctions", "bids": "bids",
            "events": events, "base_time_ms": BASE_TIME}),
    );
    while s.get("/v1/connectors/gen")["generated"].as_u64() != Some(events) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let generated = started.elapsed().as_secs_f64();
    println!(
        "nexmark: {events} events generated into durable topics in {generated:.2} s ({:.0} events/s); {cores} cores",
        events as f64 / generated
    );
    let mut sluice = Vec::new();
    for q in &queries {
        let (took, out, late) = run_sluice(&s, q, events);
        println!("sluice {q}: {took:.2} s, {out} results, {late} late");
        sluice.push(took);
    }
    drop(s);

    let flink = match std::env::var("SLUICE_NEXMARK_PYTHON") {
        Ok(python) if !python.is_empty() => {
            write_files(tmp.path(), events);
            run_flink(&python, tmp.path(), cores, &queries)
        }
        _ => vec![f64::NAN; queries.len()],
    };
    println!(
        "\n{:<5} {:>14} {:>14} {:>14} {:>14} {:>8} {:>16}",
        "query",
        "sluice ev/s",
        "sluice /core",
        "flink ev/s",
        "flink /core",
        "ratio",
        "flink 1.13 /core"
    );
    for (i, q) in queries.iter().enumerate() {
        let rate = |t: f64| events as f64 / t;
        println!(
            "{q:<5} {:>14.0} {:>14.0} {:>14.0} {:>14.0} {:>7.2}x {:>16}",
            rate(sluice[i]),
            rate(sluice[i]) / cores as f64,
            rate(flink[i]),
            rate(flink[i]) / cores as f64,
            flink[i] / sluice[i],
            published(q)
        );
    }
}
