//! Stateful transform benchmarks, in process, in one run so that they compare as ratios:
//!
//! - `window-count` end to end (input topic → plugin with durable keyed state and event
//!   timers → output topic, changelog written with every commit) on 1 and 2 partitions,
//!   next to the same count kept in instance memory (no state access, not durable) and
//!   the stateless `identity` pipeline over the same input;
//! - the plugin alone on one core: ns per record for each, and ns per state `get`/`put`;
//! - restore of 1 M keys from the changelog alone and from a snapshot;
//! - what checkpointing costs: changelog records and bytes per input record.
//!
//! Run: `cargo bench -p sluice-tests --bench stateful`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Env, create, env, total_end};
use sluice_log::batch::{self, NewRecord};
use sluice_pipeline::TransformSpec;
use sluice_pipeline::state::{self as changelog, Commit, Meta};
use sluice_runtime::state::{StateBudget, StateDelta, StateStore};
use sluice_runtime::{BatchInput, CallKind, InstanceConfig, Limits, NoTables, TracingLogs};

const EVENTS: usize = 1_000_000;
const USERS: usize = 1000;
const PER_BATCH: usize = 1000;

/// `n` click events: 1,000 users, event time advancing 1 ms per event and shuffled back
/// by up to 2 s (within the default 5 s lateness), spread over the partitions in turn.
fn fill(e: &Env, topic: &str, n: usize) {
    let t = e.log.topic(topic).unwrap();
    let parts = t.partitions.len();
    let base = 1_800_000_000_000i64;
    let mut rng = fastrand::Rng::with_seed(1);
    for b in 0..n / PER_BATCH {
        let recs: Vec<NewRecord> = (b * PER_BATCH..(b + 1) * PER_BATCH)
            .map(|i| NewRecord {
                key: Some(Bytes::from(format!("u{}", i % USERS))),
                value: Some(Bytes::from(format!(
                    "{{\"user\":\"u{}\",\"action\":\"click\",\"page\":\"/p/{}\"}}",
                    i % USERS,
                    i % 37
                ))),
                headers: Vec::new(),
                timestamp: Some(base + i as i64 - rng.i64(0..2000)),
            })
            .collect();
        t.partitions[b % parts]
            .append(batch::build(&recs, base))
            .unwrap();
    }
}

fn spec(plugin: &str, input: &str, output: &str, config: serde_json::Value) -> TransformSpec {
    serde_json::from_value(serde_json::json!({
        "plugin": plugin, "input": input, "outputs": [output], "config": config,
        "idle_timeout_ms": 3_600_000,
    }))
    .unwrap()
}

/// Deploys, waits until every input record is processed and committed; records/s.
fn run_to_end(e: &Env, name: &str, spec: TransformSpec, n: u64) -> f64 {
    let start = Instant::now();
    e.pipelines.deploy(name, spec).unwrap();
    let t = e.pipelines.get(name).unwrap();
    loop {
        let st = e.pipelines.status(&t);
        let done: u64 = st.partitions.iter().filter_map(|p| p.position).sum();
        if done >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    e.pipelines.delete(name).unwrap();
    rate
}

fn end_to_end(partitions: u32) {
    let e = env(&[
        ("window-count", sluice::plugins::WINDOW_COUNT),
        ("state-ops", sluice_tests::fixtures::STATE_OPS),
        ("identity", sluice_tests::fixtures::IDENTITY),
    ]);
    for t in ["in", "out-id", "out-mem", "out-wc"] {
        create(&e.log, t, partitions);
    }
    fill(&e, "in", EVENTS);
    let n = EVENTS as u64;
    let id = run_to_end(&e, "id", spec("identity", "in", "out-id", json_obj()), n);
    let mem = run_to_end(
        &e,
        "mem",
        spec(
            "state-ops",
            "in",
            "out-mem",
            serde_json::json!({"mode": "memory"}),
        ),
        n,
    );
    let wc = run_to_end(
        &e,
        "wc",
        spec(
            "window-count",
            "in",
            "out-wc",
            serde_json::json!({"window_ms": "60000"}),
        ),
        n,
    );
    let windows = total_end(&e.log, "out-wc");
    println!(
        "window-count, {partitions} partition(s), durable state: {wc:>10.0} events/s   (same count in instance memory, not durable: {mem:.0}/s = {:.0}%; stateless identity pipeline: {id:.0}/s; {windows} windows emitted)",
        wc / mem * 100.0
    );
    e.pipelines.shutdown();
}

fn json_obj() -> serde_json::Value {
    serde_json::json!({})
}

/// The plugin alone over `topic` partition 0 on this thread, with a state store when it
/// is stateful: ns per record.
fn plugin_ns(e: &Env, plugin: &str, config: &[(&str, &str)], topic: &str, limit: usize) -> f64 {
    let version = e.plugins.latest(plugin).unwrap();
    let compiled = e.plugins.compiled(plugin, version).unwrap();
    let stateful = compiled.stateful();
    let cfg = Arc::new(InstanceConfig {
        plugin: plugin.into(),
        version,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        outputs: vec!["out".into()],
        limits: Limits::default(),
        tables: Arc::new(NoTables),
        tables_allowed: Vec::new(),
        logs: Arc::new(TracingLogs),
        recycle_after: u64::MAX,
    });
    let mut ex = e.plugins.runtime().executor(compiled, cfg, 0).unwrap();
    let store = Arc::new(Mutex::new(StateStore::new(Arc::new(StateBudget::new(
        8 << 30,
    )))));
    if stateful {
        ex.set_state(store.clone());
    }
    let p = e.log.topic(topic).unwrap().partitions[0].clone();
    let (mut off, mut n) = (0u64, 0usize);
    let start = Instant::now();
    while off < p.high_watermark() && n < limit {
        let r = p.read(off, 1 << 20).unwrap();
        for (h, raw) in batch::split(r.data).unwrap() {
            store.lock().unwrap().begin_run();
            let out = ex.run(&BatchInput {
                kind: CallKind::Records,
                watermark: h.base_timestamp - 5000,
                ..BatchInput::records(
                    topic,
                    0,
                    h.base_offset,
                    h.base_timestamp,
                    batch::records_section(&raw, &h).unwrap(),
                    h.record_count as u32,
                )
            });
            assert!(out.failed.is_empty(), "{:?}", out.failed);
            store.lock().unwrap().end_run(true);
            n += h.record_count as usize;
        }
        off = r.next_offset;
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn per_record() {
    let e = env(&[
        ("window-count", sluice::plugins::WINDOW_COUNT),
        ("state-ops", sluice_tests::fixtures::STATE_OPS),
        ("identity", sluice_tests::fixtures::IDENTITY),
    ]);
    create(&e.log, "in", 1);
    fill(&e, "in", 200_000);
    let id = plugin_ns(&e, "identity", &[], "in", usize::MAX);
    let mem = plugin_ns(&e, "state-ops", &[("mode", "memory")], "in", usize::MAX);
    let wc = plugin_ns(
        &e,
        "window-count",
        &[("window_ms", "60000")],
        "in",
        usize::MAX,
    );
    let get = plugin_ns(&e, "state-ops", &[("mode", "get")], "in", usize::MAX);
    let put = plugin_ns(&e, "state-ops", &[("mode", "put")], "in", 100_000);
    println!(
        "plugin alone, one core: identity {id:.0} ns/record; count in memory {mem:.0}; window-count with state {wc:.0}"
    );
    println!(
        "state ops inside a plugin (8 distinct keys per record, less identity): get {:.0} ns/op (miss: a host call), put {:.0} ns/op (cached, one apply per call)",
        (get - id) / 8.0,
        (put - id) / 8.0
    );
}

fn restore(keys: usize) {
    let e = env(&[]);
    create(&e.log, "r.state", 1);
    let part = e.log.topic("r.state").unwrap().partitions[0].clone();
    let budget = Arc::new(StateBudget::new(8 << 30));
    let mut store = StateStore::new(budget.clone());
    let per_commit = 10_000;
    let mut written = 0u64;
    let mut bytes = 0u64;
    for c in 0..keys / per_commit {
        let mut delta = StateDelta::default();
        for k in c * per_commit..(c + 1) * per_commit {
            let key = format!("count\0user-{k:08}").into_bytes();
            let value = (k as u64).to_string().into_bytes();
            bytes += (key.len() + value.len()) as u64;
            store
                .restore_value(key.clone(), Some(value.clone()))
                .unwrap();
            delta.values.insert(key, Some(value));
        }
        let commit = Commit {
            delta,
            meta: Meta::starting_at(c as u64),
        };
        written = changelog::append(&part, &commit).unwrap();
    }
    part.flush().unwrap();
    let dir = e.dir.path().join("snap");
    std::fs::create_dir_all(&dir).unwrap();
    let mut fresh = StateStore::new(budget.clone());
    let r = changelog::restore(&mut fresh, &part, &dir, 0).unwrap();
    assert_eq!(fresh.keys(), keys);
    let from_log = r.took;
    let meta = r.meta.unwrap();
    let snap_start = Instant::now();
    changelog::write_snapshot(&dir, 0, &store, &meta, part.high_watermark()).unwrap();
    let snap_write = snap_start.elapsed();
    let mut fresh = StateStore::new(budget);
    let r = changelog::restore(&mut fresh, &part, &dir, 0).unwrap();
    assert_eq!((fresh.keys(), r.replayed), (keys, 0));
    println!(
        "restore {keys} keys ({:.0} MB of keys+values): changelog only {:.2} s ({written} records replayed); from a snapshot {:.2} s (writing it took {:.2} s)",
        bytes as f64 / 1e6,
        from_log.as_secs_f64(),
        r.took.as_secs_f64(),
        snap_write.as_secs_f64()
    );
}

/// Changelog records and bytes written per input record by `window-count` (the cost of
/// checkpointing with every commit).
fn checkpoint_cost() {
    let e = env(&[("window-count", sluice::plugins::WINDOW_COUNT)]);
    create(&e.log, "in", 1);
    create(&e.log, "out", 1);
    fill(&e, "in", 200_000);
    run_to_end(
        &e,
        "wc",
        spec(
            "window-count",
            "in",
            "out",
            serde_json::json!({"window_ms": "60000"}),
        ),
        200_000,
    );
    // The changelog is deleted with the deployment: measure a second one, kept.
    e.pipelines
        .deploy(
            "wc2",
            spec(
                "window-count",
                "in",
                "out",
                serde_json::json!({"window_ms": "60000"}),
            ),
        )
        .unwrap();
    let t = e.pipelines.get("wc2").unwrap();
    while e.pipelines.status(&t).partitions[0].position < Some(200_000) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cl = e.log.topic("wc2.state").unwrap().partitions[0].clone();
    let records = cl.high_watermark();
    let size = cl.stats().size_bytes;
    println!(
        "checkpointing (window-count, 1,000 keys, 60 s windows): {:.3} changelog records and {:.1} bytes per input record",
        records as f64 / 200_000.0,
        size as f64 / 200_000.0
    );
    e.pipelines.shutdown();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    match std::env::var("SLUICE_BENCH_ONLY").as_deref() {
        Ok("restore") => return restore(1_000_000),
        Ok("ops") => return per_record(),
        _ => {}
    }
    end_to_end(1);
    end_to_end(2);
    per_record();
    checkpoint_cost();
    restore(1_000_000);
}
