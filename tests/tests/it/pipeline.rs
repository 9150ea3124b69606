//! Transform pipelines over real HTTP against the real binary.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::fixtures;

use crate::common::{Server, http};

pub(crate) fn upload(s: &Server, name: &str, bytes: &[u8]) -> Value {
    let r = http()
        .put(s.url(&format!("/v1/plugins/{name}")))
        .body(bytes.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json().unwrap()
}

pub(crate) fn deploy(s: &Server, name: &str, spec: Value) -> reqwest::blocking::Response {
    http()
        .put(s.url(&format!("/v1/transforms/{name}")))
        .json(&spec)
        .send()
        .unwrap()
}

pub(crate) fn deploy_ok(s: &Server, name: &str, spec: Value) -> Value {
    let r = deploy(s, name, spec);
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert!(status == 201 || status == 200, "{status}: {body}");
    body
}

pub(crate) fn status(s: &Server, name: &str) -> Value {
    http()
        .get(s.url(&format!("/v1/transforms/{name}")))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Every record of every partition of a topic.
pub(crate) fn all(s: &Server, topic: &str) -> Vec<Value> {
    let n = s.describe(topic)["partitions"].as_array().unwrap().len() as u32;
    (0..n).flat_map(|p| s.read_all(topic, p, 0)).collect()
}

/// Waits until a topic holds `n` records.
pub(crate) fn wait_for_count(s: &Server, topic: &str, n: usize) -> Vec<Value> {
    wait_for_count_within(s, topic, n, Duration::from_secs(60))
}

/// Waits up to `within` until a topic holds `n` records.
pub(crate) fn wait_for_count_within(
    s: &Server,
    topic: &str,
    n: usize,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let recs = all(s, topic);
        if recs.len() >= n {
            return recs;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} has {} of {n} records",
            recs.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn values(recs: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = recs
        .iter()
        .map(|r| r["value"].as_str().unwrap_or("").to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn mask_filter_enrich_and_route_end_to_end() {
    let s = Server::start();
    for (t, p) in [
        ("ev", 2),
        ("masked", 2),
        ("logins", 1),
        ("enriched", 1),
        ("alerts", 1),
        ("events", 1),
    ] {
        s.create_topic(json!({"name": t, "partitions": p}));
    }
    s.create_topic(json!({"name": "users", "cleanup": "compact"}));
    for (n, b) in sluice::plugins::examples() {
        upload(&s, n, b);
    }
    deploy_ok(
        &s,
        "mask",
        json!({"plugin": "mask", "input": "ev", "outputs": ["masked"]}),
    );
    deploy_ok(
        &s,
        "logins",
        json!({"plugin": "filter", "input": "masked", "outputs": ["logins"],
        "config": {"field": "action", "value": "login"}}),
    );
    deploy_ok(
        &s,
        "enrich",
        json!({"plugin": "enrich", "input": "logins", "outputs": ["enriched"],
        "tables": ["users"], "config": {"table": "users"}}),
    );
    deploy_ok(
        &s,
        "route",
        json!({"plugin": "route", "input": "masked", "outputs": ["events", "alerts"],
        "config": {"field": "level", "routes": "error=alerts", "default": "events"}}),
    );
    s.produce(
        "users",
        vec![json!({"key": "u-1", "value": {"name": "Ann", "country": "DE"}})],
    );
    s.produce(
        "ev",
        vec![
            json!({"key": "u-1", "value": {"user_id": "u-1", "action": "login", "password": "hunter2", "level": "info"}}),
            json!({"key": "u-2", "value": {"user_id": "u-2", "action": "view", "msg": "mail a@b.io", "level": "error"}}),
        ],
    );
    let masked = wait_for_count(&s, "masked", 2);
    let text = values(&masked).join("\n");
    assert!(
        !text.contains("hunter2") && text.contains("********") && !text.contains("a@b.io"),
        "{text}"
    );
    let enriched = wait_for_count(&s, "enriched", 1);
    let e: Value = serde_json::from_str(enriched[0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        (e["name"].as_str(), e["password"].as_str()),
        (Some("Ann"), Some("********"))
    );
    assert_eq!(enriched[0]["key"], "u-1", "keys are kept");
    assert_eq!(wait_for_count(&s, "alerts", 1).len(), 1);
    assert_eq!(wait_for_count(&s, "events", 1).len(), 1);
    // Table updates are visible to the next lookups.
    s.produce(
        "users",
        vec![json!({"key": "u-3", "value": {"name": "Cy"}})],
    );
    let v: Value = http()
        .get(s.url("/v1/topics/users/keys/u-3"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["value"], json!({"name": "Cy"}).to_string());
    s.produce(
        "ev",
        vec![json!({"key": "u-3", "value": {"user_id": "u-3", "action": "login"}})],
    );
    let enriched = wait_for_count(&s, "enriched", 2);
    assert!(
        values(&enriched).iter().any(|v| v.contains("\"Cy\"")),
        "{enriched:?}"
    );
    let st = status(&s, "logins");
    assert_eq!(st["counters"]["records_in"], 3);
    assert_eq!(st["counters"]["records_out"], 2);
}

#[test]
fn rejected_and_poison_records_go_to_the_dead_letter_topic_with_headers() {
    let s = Server::start();
    for t in ["in", "out", "in2", "out2"] {
        s.create_topic(json!({"name": t, "partitions": 1}));
    }
    upload(&s, "mis", fixtures::MISBEHAVE);
    deploy_ok(
        &s,
        "rej",
        json!({"plugin": "mis", "input": "in", "outputs": ["out"], "config": {"mode": "reject"}}),
    );
    deploy_ok(
        &s,
        "trap",
        json!({"plugin": "mis", "input": "in2", "outputs": ["out2"], "config": {"mode": "panic"},
        "dead_letter": "poison"}),
    );
    let recs: Vec<Value> = ["a", "REJECT-1", "b", "REJECT-2"]
        .iter()
        .map(|v| json!({"key": "k", "value": v}))
        .collect();
    s.produce("in", recs);
    let recs: Vec<Value> = ["x", "POISON-7", "y", "z"]
        .iter()
        .map(|v| json!({"value": v}))
        .collect();
    s.produce("in2", recs);
    assert_eq!(values(&wait_for_count(&s, "out", 2)), ["a", "b"]);
    let dlq = wait_for_count(&s, "in.dlq", 2);
    assert_eq!(values(&dlq), ["REJECT-1", "REJECT-2"]);
    let h = &dlq[0]["headers"];
    assert_eq!(dlq[0]["key"], "k", "dead letters keep the original key");
    assert!(
        h["sluice-error"]
            .as_str()
            .unwrap()
            .starts_with("rejected REJECT"),
        "{h}"
    );
    assert_eq!(
        (
            h["sluice-source-topic"].as_str(),
            h["sluice-source-partition"].as_str()
        ),
        (Some("in"), Some("0"))
    );
    assert_eq!(h["sluice-source-offset"], "1");
    assert_eq!(
        (h["sluice-plugin"].as_str(), h["sluice-version"].as_str()),
        (Some("mis"), Some("1"))
    );

    assert_eq!(values(&wait_for_count(&s, "out2", 3)), ["x", "y", "z"]);
    let poison = wait_for_count(&s, "poison", 1);
    assert_eq!(poison[0]["value"], "POISON-7");
    assert!(
        poison[0]["headers"]["sluice-error"]
            .as_str()
            .unwrap()
            .contains("panicked"),
        "{poison:?}"
    );
    let st = status(&s, "trap");
    assert_eq!(st["counters"]["failed"], 1);
    assert!(st["counters"]["traps"].as_u64().unwrap() >= 1);
    assert!(
        st["last_error"].as_str().unwrap().contains("offset 1"),
        "{st}"
    );
    assert_eq!(status(&s, "rej")["counters"]["rejected"], 2);
}

/// Produces `n` sequence numbers in small batches until done or stopped.
fn produce_sequence(
    s: &Server,
    topic: &str,
    n: usize,
    batch: usize,
    pause_ms: u64,
) -> std::thread::JoinHandle<()> {
    let url = s.url(&format!("/v1/topics/{topic}/records"));
    std::thread::spawn(move || {
        let c = http();
        for start in (0..n).step_by(batch) {
            let recs: Vec<Value> = (start..(start + batch).min(n))
                .map(|i| json!({"value": format!("{i}")}))
                .collect();
            let r = c
                .post(&url)
                .json(&json!({ "records": recs }))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
            std::thread::sleep(Duration::from_millis(pause_ms));
        }
    })
}

fn assert_exactly_once(recs: &[Value], n: usize) {
    let mut seen = HashSet::new();
    for r in recs {
        let v = r["value"].as_str().unwrap().to_string();
        assert!(seen.insert(v.clone()), "{v} appears twice");
    }
    for i in 0..n {
        assert!(seen.contains(&i.to_string()), "{i} is missing");
    }
    assert_eq!(recs.len(), n);
}

#[test]
fn hot_swap_under_load_loses_and_doubles_nothing() {
    let s = Server::start();
    s.create_topic(json!({"name": "seq", "partitions": 2}));
    s.create_topic(json!({"name": "seq.out", "partitions": 2}));
    upload(&s, "id", fixtures::IDENTITY);
    upload(&s, "id", fixtures::MISBEHAVE);
    deploy_ok(
        &s,
        "swap",
        json!({"plugin": "id", "version": 1, "input": "seq", "outputs": ["seq.out"]}),
    );
    const N: usize = 3000;
    let producer = produce_sequence(&s, "seq", N, 20, 5);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        deploy_ok(
            &s,
            "swap",
            json!({"plugin": "id", "version": 2, "input": "seq", "outputs": ["seq.out"]})
        )["version_selector"],
        2
    );
    std::thread::sleep(Duration::from_millis(300));
    deploy_ok(
        &s,
        "swap",
        json!({"plugin": "id", "version": 1, "input": "seq", "outputs": ["seq.out"]}),
    );
    producer.join().unwrap();
    let out = wait_for_count(&s, "seq.out", N);
    assert_exactly_once(&out, N);
    let versions: HashMap<String, usize> = out.iter().fold(HashMap::new(), |mut m, r| {
        *m.entry(r["headers"]["sluice-version"].as_str().unwrap().to_string())
            .or_default() += 1;
        m
    });
    assert!(
        versions.contains_key("1") && versions.contains_key("2"),
        "{versions:?}"
    );
    let st = status(&s, "swap");
    let hist: Vec<u64> = st["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["version"].as_u64().unwrap())
        .collect();
    assert_eq!(hist, [1, 1, 2, 2, 1, 1], "{st}");
    // The versions took over at increasing offsets, per partition.
    for p in 0..2 {
        let offs: Vec<u64> = st["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["partition"] == p)
            .map(|h| h["from_offset"].as_u64().unwrap())
            .collect();
        assert!(offs.windows(2).all(|w| w[0] <= w[1]), "{offs:?}");
    }
    // A version that fails init is not activated; the old one keeps running. (The same
    // bytes again would be version 2 again: a new build is a new version.)
    upload(
        &s,
        "id",
        &sluice_tests::new_build(fixtures::MISBEHAVE, "v3"),
    );
    let r = deploy(
        &s,
        "swap",
        json!({"plugin": "id", "version": 3, "input": "seq", "outputs": ["seq.out"],
        "config": {"mode": "fail_init"}}),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("refusing to start"));
    let st = status(&s, "swap");
    assert_eq!(st["version"], 1);
    assert!(
        st["last_error"].as_str().unwrap().contains("not activated"),
        "{st}"
    );
}

#[test]
fn sigkill_during_a_pipeline_then_restart_completes_without_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    s.create_topic(json!({"name": "src", "partitions": 2}));
    s.create_topic(json!({"name": "dst", "partitions": 3}));
    upload(&s, "mask", sluice::plugins::MASK);
    deploy_ok(
        &s,
        "m",
        json!({"plugin": "mask", "input": "src", "outputs": ["dst"]}),
    );
    const N: usize = 20_000;
    for start in (0..N).step_by(2000) {
        let recs: Vec<Value> = (start..start + 2000)
            .map(|i| json!({"key": format!("k{}", i % 50), "value": format!("{i}")}))
            .collect();
        s.produce("src", recs);
    }
    // Kill while the transform is still working through the backlog.
    let deadline = Instant::now() + Duration::from_secs(30);
    while all(&s, "dst").is_empty() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    s.kill9();
    let s = Server::start_in(tmp.path(), &[]);
    let out = wait_for_count(&s, "dst", N);
    std::thread::sleep(Duration::from_millis(500));
    assert_exactly_once(&all(&s, "dst"), N);
    let _ = out;
}

/// A server running transform `name` (identity, `input` → `output`) that has already
/// carried one record through.
fn running_identity(name: &str, input: &str, output: &str) -> Server {
    let s = Server::start();
    s.create_topic(json!({ "name": input }));
    s.create_topic(json!({ "name": output }));
    upload(&s, "id", fixtures::IDENTITY);
    deploy_ok(
        &s,
        name,
        json!({"plugin": "id", "input": input, "outputs": [output]}),
    );
    s.produce(input, vec![json!({"value": "0"})]);
    wait_for_count(&s, output, 1);
    s
}

#[test]
fn pause_holds_output_while_lag_grows_and_resume_catches_up() {
    let s = running_identity("p", "pin", "pout");
    let r = http().post(s.url("/v1/transforms/p/pause")).send().unwrap();
    assert_eq!(r.json::<Value>().unwrap()["status"], "paused");
    s.produce(
        "pin",
        (1..11).map(|i| json!({"value": format!("{i}")})).collect(),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(all(&s, "pout").len(), 1);
    assert_eq!(status(&s, "p")["partitions"][0]["lag"], 10);
    http()
        .post(s.url("/v1/transforms/p/resume"))
        .send()
        .unwrap();
    assert_exactly_once(&wait_for_count(&s, "pout", 11), 11);
    assert_eq!(status(&s, "p")["status"], "running");
}

#[test]
fn failing_appends_are_reported_and_move_nothing() {
    let s = running_identity("a", "ain", "aout");
    // The output goes away under the running transform: every append now fails.
    let r = http().delete(s.url("/v1/topics/aout")).send().unwrap();
    assert_eq!(r.status(), 204);
    s.produce(
        "ain",
        (1..6).map(|i| json!({"value": format!("{i}")})).collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let st = loop {
        let st = status(&s, "a");
        if st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("appending to aout/0"))
        {
            break st;
        }
        assert!(Instant::now() < deadline, "no append error in {st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Nothing counted as done: the five records wait as lag, retried after each pause.
    assert_eq!(st["partitions"][0]["lag"], 5, "{st}");
    assert_eq!(st["counters"]["records_out"], 1, "{st}");
    std::thread::sleep(Duration::from_millis(1200));
    let st = status(&s, "a");
    assert_eq!(st["partitions"][0]["lag"], 5, "{st}");
    let r = http().get(s.url("/healthz")).send().unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn deployment_errors_name_what_is_wrong() {
    let s = Server::start();
    s.create_topic(json!({"name": "a"}));
    s.create_topic(json!({"name": "b"}));
    upload(&s, "id", fixtures::IDENTITY);
    let r = deploy(
        &s,
        "x",
        json!({"plugin": "id", "input": "nope", "outputs": ["b"]}),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("nope"));
    let r = deploy(
        &s,
        "x",
        json!({"plugin": "id", "input": "a", "outputs": ["missing-out"]}),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("missing-out"));
    let r = deploy(
        &s,
        "x",
        json!({"plugin": "ghost", "input": "a", "outputs": ["b"]}),
    );
    assert_eq!(r.status(), 404);
    assert!(r.text().unwrap().contains("ghost"));
    let r = deploy(
        &s,
        "x",
        json!({"plugin": "id", "version": 9, "input": "a", "outputs": ["b"]}),
    );
    assert_eq!(r.status(), 404);
    let r = deploy(
        &s,
        "x",
        json!({"plugin": "id", "input": "a", "outputs": ["b"], "limits": {"memory_bytes": 1}}),
    );
    assert_eq!(r.status(), 400);
    let r = deploy(
        &s,
        "x",
        json!({"plugin": "id", "input": "a", "outputs": ["b"], "bogus": 1}),
    );
    assert_eq!(r.status(), 400);
    deploy_ok(
        &s,
        "x",
        json!({"plugin": "id", "input": "a", "outputs": ["b"]}),
    );
    let r = http().delete(s.url("/v1/plugins/id")).send().unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("x"));
    let r = http()
        .put(s.url("/v1/plugins/bad"))
        .body(b"\0asm\x01\0\0\0".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("core WebAssembly module"));
    assert_eq!(
        http()
            .delete(s.url("/v1/transforms/x"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        http()
            .delete(s.url("/v1/plugins/id"))
            .send()
            .unwrap()
            .status(),
        204
    );
    let _ = Arc::new(AtomicBool::new(false)).load(Ordering::Relaxed);
}

#[test]
fn plugins_directory_uploads_new_versions_and_latest_deployments_follow() {
    let tmp = tempfile::tempdir().unwrap();
    let pdir = tmp.path().join("plugins");
    std::fs::create_dir_all(&pdir).unwrap();
    let s = Server::start_in(
        &tmp.path().join("data"),
        &["--plugins-dir", pdir.to_str().unwrap()],
    );
    s.create_topic(json!({"name": "din"}));
    s.create_topic(json!({"name": "dout"}));
    std::fs::write(pdir.join("dev.wasm"), fixtures::IDENTITY).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http()
        .get(s.url("/v1/plugins/dev"))
        .send()
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "plugin file not picked up");
        std::thread::sleep(Duration::from_millis(100));
    }
    deploy_ok(
        &s,
        "dev",
        json!({"plugin": "dev", "input": "din", "outputs": ["dout"]}),
    );
    s.produce("din", vec![json!({"value": "one"})]);
    wait_for_count(&s, "dout", 1);
    // The author rebuilds: the new file becomes version 2 and the deployment swaps to it.
    std::fs::write(pdir.join("dev.wasm"), fixtures::MISBEHAVE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&s, "dev")["version"] != 2 {
        assert!(
            Instant::now() < deadline,
            "deployment did not follow the new version: {}",
            status(&s, "dev")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    s.produce("din", vec![json!({"value": "two"})]);
    let out = wait_for_count(&s, "dout", 2);
    let v2 = out.iter().find(|r| r["value"] == "two").unwrap();
    assert_eq!(v2["headers"]["sluice-version"], "2");
}

#[test]
fn metrics_expose_partitions_and_transform_counters() {
    // A process of its own: request histograms are process-wide, and this test counts them.
    let s = Server::process();
    s.create_topic(json!({"name": "min", "partitions": 2}));
    s.create_topic(json!({"name": "mout"}));
    upload(&s, "mis", fixtures::MISBEHAVE);
    deploy_ok(
        &s,
        "mt",
        json!({"plugin": "mis", "input": "min", "outputs": ["mout"], "config": {"mode": "reject"}}),
    );
    let recs: Vec<Value> = ["a", "b", "REJECT-1", "c"]
        .iter()
        .map(|v| json!({"value": v, "partition": 0}))
        .collect();
    s.produce("min", recs);
    wait_for_count(&s, "mout", 3);
    wait_for_count(&s, "min.dlq", 1);
    let r = http().get(s.url("/metrics")).send().unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = r.text().unwrap();
    for line in [
        "sluice_partition_end_offset{topic=\"min\",partition=\"0\"} 4",
        "sluice_partition_end_offset{topic=\"mout\",partition=\"0\"} 3",
        "sluice_transform_records_in_total{transform=\"mt\"} 4",
        "sluice_transform_records_out_total{transform=\"mt\"} 3",
        "sluice_transform_rejected_total{transform=\"mt\"} 1",
        "sluice_transform_lag{transform=\"mt\",partition=\"0\"} 0",
        "# TYPE sluice_transform_records_in_total counter",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("process_resident_memory_bytes "));
    // Latency histograms: one produce request, one batch of the one partition with data.
    for line in [
        "sluice_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/topics/{topic}/records\",status=\"200\"} 1",
        "sluice_http_request_duration_seconds_count{method=\"PUT\",route=\"/v1/transforms/{name}\",status=\"201\"} 1",
        "# TYPE sluice_transform_batch_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let batches: u64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("sluice_transform_batch_duration_seconds_count{transform=\"mt\"} ")
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        (1..=4).contains(&batches),
        "{batches} batches for 4 records in one produce"
    );
}

#[test]
fn plugin_logs_are_tagged_followable_and_rate_limited() {
    let s = Server::start();
    s.create_topic(json!({"name": "lin", "partitions": 1}));
    s.create_topic(json!({"name": "lout"}));
    upload(&s, "mis", fixtures::MISBEHAVE);
    deploy_ok(
        &s,
        "chatty",
        json!({"plugin": "mis", "input": "lin", "outputs": ["lout"], "config": {"mode": "log"}}),
    );
    // Follow first (server-sent events), then produce.
    let mut follow = http()
        .get(s.url("/v1/transforms/chatty/logs?follow=true"))
        .send()
        .unwrap();
    assert_eq!(follow.status(), 200);
    s.produce("lin", vec![json!({"value": "first"})]);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&buf).contains("saw first") {
        let n = std::io::Read::read(&mut follow, &mut chunk).unwrap();
        assert!(n > 0, "stream ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    drop(follow);
    let logs = |s: &Server| -> Value {
        http()
            .get(s.url("/v1/transforms/chatty/logs"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let v = logs(&s);
    let lines = v["lines"].as_array().unwrap();
    let saw = lines.iter().find(|l| l["message"] == "saw first").unwrap();
    assert_eq!(
        (
            saw["version"].as_u64(),
            saw["partition"].as_u64(),
            saw["offset"].as_u64()
        ),
        (Some(1), Some(0), Some(0))
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap().contains("stdout first")),
        "{v}"
    );
    // A flood: 40 batches of 100 records, each call logging its limit of 100 lines at once;
    // the transform's rate limit (100 lines/s, burst 500) keeps a bounded share.
    for b in 0..40 {
        s.produce(
            "lin",
            (0..100)
                .map(|i| json!({"value": format!("r{b}-{i}")}))
                .collect(),
        );
    }
    wait_for_count(&s, "lout", 4001);
    let v = logs(&s);
    let dropped = v["dropped"].as_u64().unwrap();
    assert!(dropped > 1000, "{dropped} dropped: {v}");
    let lines = v["lines"].as_array().unwrap();
    assert!(lines.len() <= 1000);
    assert!(
        lines
            .iter()
            .any(|l| l["message"].as_str().unwrap().contains("log lines dropped")),
        "the drop is reported in the log itself"
    );
}

/// Partitions added to an input while deployments run (Kafka's CreatePartitions) are
/// processed without a redeploy: a stateless and a stateful deployment get tasks for them,
/// and the stateful one's changelog grows to match.
#[test]
fn partitions_added_to_an_input_are_processed_without_a_redeploy() {
    let s = Server::start();
    for (t, n) in [("grow_in", 1), ("grow_out", 1), ("grow_counts", 1)] {
        s.create_topic(json!({"name": t, "partitions": n}));
    }
    upload(&s, "mask", sluice::plugins::MASK);
    upload(&s, "window-count", sluice::plugins::WINDOW_COUNT);
    deploy_ok(
        &s,
        "grow_mask",
        json!({"plugin": "mask", "input": "grow_in", "outputs": ["grow_out"]}),
    );
    deploy_ok(
        &s,
        "grow_wc",
        json!({"plugin": "window-count", "input": "grow_in", "outputs": ["grow_counts"]}),
    );
    let script = format!(
        "from confluent_kafka.admin import AdminClient, NewPartitions\n\
         a = AdminClient({{'bootstrap.servers': '{}'}})\n\
         for f in a.create_partitions([NewPartitions('grow_in', 3)]).values():\n    f.result(15)\n",
        s.kafka.as_deref().unwrap()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.produce(
        "grow_in",
        (0..30)
            .map(|i| {
                json!({"key": format!("k{i}"), "value": format!("{{\"n\":{i}}}"),
                       "partition": i % 3, "timestamp": 1_000 + i})
            })
            .collect(),
    );
    assert_eq!(wait_for_count(&s, "grow_out", 30).len(), 30);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = status(&s, "grow_wc");
        let parts = st["partitions"].as_array().cloned().unwrap_or_default();
        let done = parts.len() == 3
            && parts
                .iter()
                .all(|p| p["position"].as_u64().unwrap_or(0) == 10);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        s.describe("grow_wc.state")["partitions"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let st = status(&s, "grow_mask");
    assert_eq!(st["partitions"].as_array().unwrap().len(), 3, "{st}");
    assert!(st["last_error"].is_null(), "{st}");
}
