//! Nexmark end to end on the real binary: the `nexmark` connector generates a million
//! events into persons/auctions/bids, the queries that join two streams run as deployments
//! over two inputs — q3 (incremental join), q4 (re-key, windowed join, aggregate), q8
//! (windowed join) — and a SIGKILL in the middle changes nothing: every result equals what
//! a reference computed here from the same generator gives, each exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use nexmark::event::Event;
use serde_json::{Value, json};

use crate::common::Server;
use crate::connectors::{connector, connector_ok};
use crate::pipeline::{all, deploy_ok, status, upload};

const EVENTS: u64 = 1_000_000;
const PARTITIONS: u32 = 4;
const BASE_TIME: u64 = 1_800_000_000_000;
const WINDOW_MS: u64 = 10_000;

fn setup(s: &Server) {
    for t in [
        "persons",
        "auctions",
        "bids",
        "auctions-by-id",
        "q3",
        "q4-finals",
        "q4",
        "q8",
    ] {
        s.create_topic(json!({"name": t, "partitions": PARTITIONS}));
    }
    upload(s, "nexmark", sluice::plugins::NEXMARK_QUERIES);
    upload(s, "nexmark-stateless", sluice::plugins::NEXMARK_STATELESS);
    let joined = |query: &str, inputs: [&str; 2], output: &str, config: Value| {
        let mut config = config;
        config["query"] = json!(query);
        json!({"plugin": "nexmark", "inputs": inputs, "outputs": [output], "config": config,
            "idle_timeout_ms": 2000})
    };
    deploy_ok(
        s,
        "q3",
        joined("q3", ["persons", "auctions"], "q3", json!({})),
    );
    deploy_ok(
        s,
        "q8",
        joined("q8", ["persons", "auctions"], "q8", json!({})),
    );
    // q4: auctions re-keyed by id meet their bids; the finals are averaged per category.
    deploy_ok(
        s,
        "auctions-by-id",
        json!({"plugin": "nexmark-stateless", "input": "auctions", "outputs": ["auctions-by-id"],
            "config": {"query": "rekey", "field": "id"}}),
    );
    deploy_ok(
        s,
        "q4-join",
        joined(
            "q4-join",
            ["auctions-by-id", "bids"],
            "q4-finals",
            json!({"auctions": "auctions-by-id"}),
        ),
    );
    deploy_ok(
        s,
        "q4",
        json!({"plugin": "nexmark", "input": "q4-finals", "outputs": ["q4"],
            "config": {"query": "q4-avg"}, "idle_timeout_ms": 2000}),
    );
}

fn generate(s: &Server) {
    connector_ok(
        s,
        "gen",
        json!({"kind": "nexmark", "persons": "persons", "auctions": "auctions", "bids": "bids",
            "events": EVENTS, "base_time_ms": BASE_TIME}),
    );
}

/// Every query has read everything, fired every timer and committed.
fn wait_done(s: &Server, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let generator = connector(s, "gen");
        let mut waiting = Vec::new();
        for name in ["q3", "q8", "auctions-by-id", "q4-join", "q4"] {
            let st = status(s, name);
            let parts = st["partitions"].as_array().cloned().unwrap_or_default();
            let settled = !parts.is_empty()
                && parts.iter().all(|p| {
                    // Everything read and committed (a partition that never had input has
                    // nothing to commit).
                    p["lag"] == 0
                        && p["timers"].as_u64().unwrap_or(0) == 0
                        && (p["checkpoint"].is_null()
                            || p["checkpoint"]["at"].is_i64()
                            || p["position"] == 0)
                });
            if !settled {
                waiting.push(st);
            }
        }
        if generator["generated"].as_u64() == Some(EVENTS) && waiting.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not done: {generator}\n{}",
            waiting
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn values(s: &Server, topic: &str) -> Vec<(Value, Value)> {
    all(s, topic)
        .into_iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
            (r["key"].clone(), v)
        })
        .collect()
}

/// What the queries give over the whole stream, computed from the generator.
struct Reference {
    q3: BTreeSet<(String, String, String, u64)>,
    q4: BTreeMap<u64, (u64, u64)>,
    q8: BTreeSet<(u64, String, u64)>,
}

fn reference() -> Reference {
    let config = sluice_connect::nexmark::config_at(BASE_TIME);
    let mut persons: BTreeMap<u64, (String, String, String, u64)> = BTreeMap::new();
    let mut auctions = Vec::new();
    let mut bids: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for e in sluice_connect::nexmark::events(&config, 0, EVENTS) {
        match e {
            Event::Person(p) => {
                persons.insert(p.id as u64, (p.name, p.city, p.state, p.date_time));
            }
            Event::Auction(a) => auctions.push(a),
            Event::Bid(b) => bids
                .entry(b.auction as u64)
                .or_default()
                .push((b.date_time, b.price as u64)),
        }
    }
    let mut q3 = BTreeSet::new();
    let mut q8 = BTreeSet::new();
    let mut q4: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    let window = |t: u64| t - t % WINDOW_MS;
    for a in &auctions {
        if let Some((name, city, state, at)) = persons.get(&(a.seller as u64)) {
            if a.category == 10 && ["OR", "ID", "CA"].contains(&state.as_str()) {
                q3.insert((name.clone(), city.clone(), state.clone(), a.id as u64));
            }
            if window(*at) == window(a.date_time) {
                q8.insert((a.seller as u64, name.clone(), window(*at)));
            }
        }
        let best = bids
            .get(&(a.id as u64))
            .into_iter()
            .flatten()
            .filter(|(t, _)| (a.date_time..=a.expires).contains(t))
            .map(|(_, p)| *p)
            .max();
        if let Some(best) = best {
            let c = q4.entry(a.category as u64).or_default();
            c.0 += best;
            c.1 += 1;
        }
    }
    Reference { q3, q4, q8 }
}

fn check(s: &Server, r: &Reference) {
    let mut q3 = BTreeSet::new();
    for (_, v) in values(s, "q3") {
        let row = (
            v["name"].as_str().unwrap().to_string(),
            v["city"].as_str().unwrap().to_string(),
            v["state"].as_str().unwrap().to_string(),
            v["id"].as_u64().unwrap(),
        );
        assert!(q3.insert(row.clone()), "q3 row twice: {row:?}");
    }
    assert!(!r.q3.is_empty());
    assert_eq!(q3, r.q3, "q3");

    let mut q8 = BTreeSet::new();
    for (_, v) in values(s, "q8") {
        let row = (
            v["id"].as_u64().unwrap(),
            v["name"].as_str().unwrap().to_string(),
            v["starttime"].as_u64().unwrap(),
        );
        assert!(q8.insert(row.clone()), "q8 row twice: {row:?}");
    }
    assert!(!r.q8.is_empty());
    assert_eq!(q8, r.q8, "q8");

    // q4 emits a running average per closed auction: the last one per category is final,
    // and the count of updates is the number of auctions.
    let mut q4: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    let mut updates: BTreeMap<u64, u64> = BTreeMap::new();
    for (key, v) in values(s, "q4") {
        let category = v["category"].as_u64().unwrap();
        assert_eq!(key, json!(category.to_string()), "keyed by category");
        *updates.entry(category).or_default() += 1;
        q4.insert(
            category,
            (
                v["sum"].as_u64().unwrap(),
                v["count"].as_u64().unwrap(),
                v["avg"].as_u64().unwrap(),
            ),
        );
    }
    let want: BTreeMap<u64, (u64, u64, u64)> =
        r.q4.iter()
            .map(|(c, (sum, n))| (*c, (*sum, *n, sum / n)))
            .collect();
    assert_eq!(q4, want, "q4");
    for (c, (_, n, _)) in &want {
        assert_eq!(
            updates.get(c),
            Some(n),
            "category {c}: one update per auction"
        );
    }
}

fn restart(data: &Path) -> Server {
    Server::start_in(data, &[])
}

#[test]
fn q3_q4_and_q8_over_a_million_events_are_exact_across_a_sigkill() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    setup(&s);
    generate(&s);
    // Killed while the generator writes and the joins run.
    let deadline = Instant::now() + Duration::from_secs(120);
    while connector(&s, "gen")["generated"].as_u64().unwrap_or(0) < EVENTS / 3 {
        assert!(Instant::now() < deadline, "{}", connector(&s, "gen"));
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kill9();
    s = restart(&data);
    wait_done(&s, Duration::from_secs(600));
    check(&s, &reference);
    // Each query's inputs went through its merged topic, which it owns.
    let st = status(&s, "q3");
    assert_eq!(st["input"], "q3.inputs", "{st}");
    assert_eq!(st["inputs"], json!(["persons", "auctions"]), "{st}");
}

/// Over two inputs, one that stays silent does not hold the watermark of the other for
/// ever: after `idle_timeout_ms` it is left out, and windows close while the other flows.
#[test]
fn a_silent_input_is_left_out_of_the_watermark_while_the_other_flows() {
    let s = Server::start();
    for t in ["busy", "silent", "counts"] {
        s.create_topic(json!({"name": t, "partitions": 1}));
    }
    upload(&s, "window-count", sluice::plugins::WINDOW_COUNT);
    deploy_ok(
        &s,
        "per-second",
        json!({"plugin": "window-count", "inputs": ["busy", "silent"], "outputs": ["counts"],
            "config": {"window_ms": "1000"}, "allowed_lateness_ms": 0, "idle_timeout_ms": 1000}),
    );
    let t0 = 1_800_000_000_000i64;
    for i in 0..40 {
        s.produce(
            "busy",
            vec![json!({"key": "k", "value": "x", "timestamp": t0 + i * 1000})],
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still flowing (the last record is fresh): only leaving the silent input out can have
    // closed these windows.
    let counts = values(&s, "counts");
    assert!(counts.len() >= 10, "{} windows closed", counts.len());
    for (_, v) in &counts {
        assert_eq!(v["count"], 1, "{v}");
    }
}
