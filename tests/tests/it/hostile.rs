//! Hostile plugins against the real binary over HTTP: calls that block in WASI, runaway
//! transforms stopped by pause/delete/redeploy/SIGTERM, malformed outputs with one verdict
//! per input, a non-deterministic plugin across SIGKILLs, loops refused at deploy time,
//! undeclared tables, one server per data directory, and early HTTP answers a simple
//! client can read.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::fixtures;

use crate::common::{Server, http};
use crate::pipeline::{all, deploy_ok, upload, wait_for_count};

fn deploy(s: &Server, name: &str, spec: Value) -> reqwest::blocking::Response {
    http()
        .put(s.url(&format!("/v1/transforms/{name}")))
        .json(&spec)
        .send()
        .unwrap()
}

fn status(s: &Server, name: &str) -> Value {
    http()
        .get(s.url(&format!("/v1/transforms/{name}")))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn value(r: &Value) -> String {
    r["value"].as_str().unwrap_or("").to_string()
}

fn header(r: &Value, h: &str) -> String {
    r["headers"][h].as_str().unwrap_or("").to_string()
}

/// A server with topic `in` (1 partition), `out` and plugin `hostile` uploaded.
fn hostile_server() -> Server {
    let s = Server::start();
    s.create_topic(json!({"name": "in"}));
    s.create_topic(json!({"name": "out"}));
    upload(&s, "hostile", fixtures::HOSTILE);
    s
}

/// Waits until `topic` holds `n` records; returns them sorted by value.
fn wait_sorted(s: &Server, topic: &str, n: usize) -> Vec<Value> {
    let mut v = wait_for_count(s, topic, n);
    v.sort_by_key(value);
    v
}

#[test]
fn calls_blocked_in_wasi_end_at_their_deadline() {
    let s = hostile_server();
    for (i, mode) in ["sleep", "poll_timer", "block_forever"].iter().enumerate() {
        let (input, output, dlq) = (format!("in{i}"), format!("out{i}"), format!("dlq{i}"));
        s.create_topic(json!({ "name": input }));
        s.create_topic(json!({ "name": output }));
        deploy_ok(
            &s,
            &format!("t{i}"),
            json!({"plugin": "hostile", "input": input, "outputs": [output], "dead_letter": dlq,
                   "config": {"mode": mode}, "limits": {"timeout_ms": 300}}),
        );
        let started = Instant::now();
        s.produce(
            &input,
            vec![
                json!({"value": "a"}),
                json!({"value": "POISON"}),
                json!({"value": "b"}),
            ],
        );
        let dead = wait_for_count(&s, &dlq, 1);
        let out = wait_sorted(&s, &output, 2);
        // A sleep of an hour ended by a deadline of 300 ms (the test's own limit is only a
        // guard against hanging; timings are measured by the bench).
        assert!(started.elapsed() < Duration::from_secs(30), "{mode}");
        assert_eq!(out.iter().map(value).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(value(&dead[0]), "POISON");
        assert_eq!(
            header(&dead[0], "sluice-error"),
            "timed out: limit 300 ms per call (blocked in a WASI call)",
            "{mode}"
        );
    }
    // A loop of clock calls is cut by the epoch deadline (it is not blocked).
    s.create_topic(json!({"name": "in9"}));
    deploy_ok(
        &s,
        "spin",
        json!({"plugin": "hostile", "input": "in9", "outputs": ["out"], "dead_letter": "dlq9",
               "config": {"mode": "spin_clock"}, "limits": {"timeout_ms": 200}}),
    );
    s.produce("in9", vec![json!({"value": "POISON"})]);
    let dead = wait_for_count(&s, "dlq9", 1);
    assert_eq!(
        header(&dead[0], "sluice-error"),
        "timed out: limit 200 ms per call"
    );
    // A request for a gigabyte of randomness is refused by the host, not served.
    s.create_topic(json!({"name": "in8"}));
    deploy_ok(
        &s,
        "rand",
        json!({"plugin": "hostile", "input": "in8", "outputs": ["out"], "dead_letter": "dlq8",
               "config": {"mode": "random_flood"}}),
    );
    s.produce("in8", vec![json!({"value": "POISON"})]);
    let dead = wait_for_count(&s, "dlq8", 1);
    let e = header(&dead[0], "sluice-error");
    assert!(e.contains("exceeds limit 1048576"), "{e}");
    assert_eq!(http().get(s.url("/healthz")).send().unwrap().status(), 200);
}

#[test]
fn init_that_sleeps_is_refused_at_its_own_deadline_while_other_deploys_go_on() {
    let s = hostile_server();
    s.create_topic(json!({"name": "other"}));
    s.create_topic(json!({"name": "other.out"}));
    upload(&s, "id", fixtures::IDENTITY);
    let slow = {
        let (url, started) = (s.url("/v1/transforms/sleepy"), Instant::now());
        std::thread::spawn(move || {
            let r = http()
                .put(url)
                .json(
                    &json!({"plugin": "hostile", "input": "in", "outputs": ["out"],
                               "config": {"mode": "sleep_init"},
                               "limits": {"init_timeout_ms": 3000}}),
                )
                .send()
                .unwrap();
            (r.status(), r.json::<Value>().unwrap(), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // Another deployment, and the deletion of another, do not wait for the sleeping init.
    let started = Instant::now();
    deploy_ok(
        &s,
        "quick",
        json!({"plugin": "id", "input": "other", "outputs": ["other.out"]}),
    );
    let r = http().delete(s.url("/v1/transforms/quick")).send().unwrap();
    assert_eq!(r.status(), 204);
    let quick = started.elapsed();
    let (code, body, took) = slow.join().unwrap();
    assert_eq!(code, 400, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "timed out during init: limit 3000 ms (init_timeout_ms) (blocked in a WASI call)"
        ),
        "{msg}"
    );
    assert!(
        quick < took,
        "the other deploy took {quick:?}, the sleeping one {took:?}"
    );
    assert!(s.describe("in")["partitions"].is_array());
}

/// A runaway transform (every record burns until stopped, an hour of budget) on `in`,
/// with a backlog, and a well-behaved one on `calm` → `calm.out`.
fn runaway(dir: Option<&std::path::Path>) -> Server {
    // A process: the test reads its CPU time and signals it.
    let s = match dir {
        Some(d) => Server::start_in(d, &[]),
        None => Server::process(),
    };
    s.create_topic(json!({"name": "in"}));
    s.create_topic(json!({"name": "out"}));
    s.create_topic(json!({"name": "calm"}));
    s.create_topic(json!({"name": "calm.out"}));
    upload(&s, "hostile", fixtures::HOSTILE);
    upload(&s, "id", fixtures::IDENTITY);
    deploy_ok(
        &s,
        "calm",
        json!({"plugin": "id", "input": "calm", "outputs": ["calm.out"]}),
    );
    deploy_ok(
        &s,
        "burn",
        json!({"plugin": "hostile", "input": "in", "outputs": ["out"],
               "config": {"mode": "burn"},
               "limits": {"timeout_ms": 600000, "fuel_per_record": 4000000000000000u64}}),
    );
    s.produce(
        "in",
        (0..1000)
            .map(|i| json!({"value": format!("{i}")}))
            .collect(),
    );
    // Let the first call get going.
    std::thread::sleep(Duration::from_millis(300));
    s
}

/// CPU seconds the process has used (user + system).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_runaway_transform_stops_at_once_on_pause_delete_redeploy_and_sigterm() {
    // Pause: the burning call ends; the server goes quiet.
    let s = runaway(None);
    let r = http()
        .post(s.url("/v1/transforms/burn/pause"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_seconds(s.pid());
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu_seconds(s.pid()) - before;
    assert!(
        used < 0.5,
        "paused, yet the server used {used} s of CPU in 1 s"
    );
    assert_eq!(status(&s, "burn")["partitions"][0]["position"], 0);
    // The well-behaved transform works alongside.
    s.produce("calm", vec![json!({"value": "fine"})]);
    assert_eq!(value(&wait_for_count(&s, "calm.out", 1)[0]), "fine");

    // Redeploy to a plugin that behaves: the batch runs again on it, nothing lost.
    let r = http()
        .post(s.url("/v1/transforms/burn/resume"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    deploy_ok(
        &s,
        "burn",
        json!({"plugin": "id", "input": "in", "outputs": ["out"]}),
    );
    let out = wait_for_count(&s, "out", 1000);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.len(), 1000);
    assert_eq!(status(&s, "burn")["counters"]["failed"], 0);
    drop(s);

    // Delete answers at once.
    let s = runaway(None);
    let started = Instant::now();
    let r = http().delete(s.url("/v1/transforms/burn")).send().unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(s);

    // SIGTERM: a clean exit, then the batch runs again after a restart.
    let tmp = tempfile::tempdir().unwrap();
    let mut s = runaway(Some(tmp.path()));
    let started = Instant::now();
    s.stop();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let s = Server::start_in(tmp.path(), &[]);
    assert_eq!(status(&s, "burn")["partitions"][0]["position"], 0);
    assert!(all(&s, "out").is_empty());
}

#[test]
fn many_failing_records_in_one_batch_are_isolated_within_the_batch_budget() {
    // Every one of 40 records times out (an infinite loop and a 100 ms deadline): each is
    // dead-lettered once, and the batch is worked off in budgeted runs, not 2N calls.
    let s = hostile_server();
    deploy_ok(
        &s,
        "burner",
        json!({"plugin": "hostile", "input": "in", "outputs": ["out"], "dead_letter": "dead",
               "config": {"mode": "burn"},
               "limits": {"timeout_ms": 100, "fuel_per_record": 4000000000000000u64}}),
    );
    s.produce(
        "in",
        (0..40).map(|i| json!({"value": format!("{i}")})).collect(),
    );
    let dead = wait_sorted(&s, "dead", 40);
    let mut seen: Vec<String> = dead.iter().map(value).collect();
    seen.dedup();
    assert_eq!(seen.len(), 40);
    // Counters move just after the records are appended.
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        let st = status(&s, "burner");
        if st["counters"]["failed"] == 40 || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st["counters"]["failed"], 40, "{st}");
    // One failed call of the whole batch, then one call per record: 41 — give or take a
    // record run again because its run was interrupted (its verdicts dropped: an
    // idle-priority isolating thread that got no CPU on a loaded CI machine; seen as 42 in
    // 3 of ~10 CI runs). Far from the 2N calls of isolating each record from scratch.
    assert!(st["counters"]["traps"].as_u64().unwrap() <= 50, "{st}");
    assert!(all(&s, "out").is_empty());
}

#[test]
fn each_input_gets_one_verdict_whatever_its_entries() {
    let s = hostile_server();
    let cases = [
        ("bad_index", "emitted to output 7"),
        ("bad_record", "malformed output"),
        ("two_bad", "malformed output"),
        ("bad_header_key", "header key is not UTF-8"),
        ("lying_length", "malformed output"),
    ];
    for (i, (mode, why)) in cases.iter().enumerate() {
        let (input, output, dlq) = (format!("v{i}"), format!("v{i}.out"), format!("v{i}.dlq"));
        s.create_topic(json!({ "name": input }));
        s.create_topic(json!({ "name": output }));
        deploy_ok(
            &s,
            &format!("v{i}"),
            json!({"plugin": "hostile", "input": input, "outputs": [output], "dead_letter": dlq,
                   "config": {"mode": mode}}),
        );
        s.produce(
            &input,
            ["a", "POISON-1", "b", "POISON-2", "c"]
                .iter()
                .map(|v| json!({ "value": v }))
                .collect(),
        );
        let out = wait_sorted(&s, &output, 3);
        let dead = wait_sorted(&s, &dlq, 2);
        std::thread::sleep(Duration::from_millis(300));
        let out_now = all(&s, &output);
        assert_eq!(
            out_now.iter().map(value).collect::<Vec<_>>().len(),
            3,
            "{mode}: {out_now:?}"
        );
        assert_eq!(
            out.iter().map(value).collect::<Vec<_>>(),
            ["a", "b", "c"],
            "{mode}"
        );
        let dead_now = all(&s, &dlq);
        assert_eq!(dead_now.len(), 2, "{mode}: {dead_now:?}");
        assert_eq!(
            dead.iter().map(value).collect::<Vec<_>>(),
            ["POISON-1", "POISON-2"],
            "{mode}"
        );
        for d in &dead {
            let e = header(d, "sluice-error");
            assert!(e.contains(why), "{mode}: {e}");
        }
        let st = status(&s, &format!("v{i}"));
        assert_eq!(st["counters"]["failed"], 2, "{mode}: {st}");
        assert_eq!(st["counters"]["records_out"], 3, "{mode}: {st}");
    }
}

#[test]
fn a_plugin_with_random_keys_is_exactly_once_across_twenty_sigkills() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    s.create_topic(json!({"name": "in", "partitions": 2}));
    s.create_topic(json!({"name": "out", "partitions": 4}));
    upload(&s, "hostile", fixtures::HOSTILE);
    deploy_ok(
        &s,
        "rnd",
        json!({"plugin": "hostile", "input": "in", "outputs": ["out"],
               "config": {"mode": "random_key"}}),
    );
    let mut next = 0usize;
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut random = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for _cycle in 0..20 {
        // Producers run while the server is killed at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let (url, stop2, first) = (s.url("/v1/topics/in/records"), stop.clone(), next);
        let producer = std::thread::spawn(move || {
            let c = http();
            let mut i = first;
            while !stop2.load(Ordering::Relaxed) {
                let recs: Vec<Value> = (i..i + 50)
                    .map(|j| {
                        let v = if j % 7 == 0 {
                            format!("{j}-TWICE")
                        } else {
                            j.to_string()
                        };
                        json!({ "value": v })
                    })
                    .collect();
                match c.post(&url).json(&json!({ "records": recs })).send() {
                    Ok(r) if r.status() == 200 => i += 50,
                    _ => break,
                }
            }
            i
        });
        std::thread::sleep(Duration::from_millis(100 + random(600)));
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        next = producer.join().unwrap() + 50;
        s = Server::start_in(tmp.path(), &[]);
    }
    // Everything in the input (acknowledged or not) comes out exactly once per slot.
    let inputs = all(&s, "in");
    assert!(inputs.len() > 1000, "only {} inputs", inputs.len());
    let expected: usize = inputs
        .iter()
        .map(|r| if value(r).ends_with("TWICE") { 2 } else { 1 })
        .sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status(&s, "rnd");
        let lag: u64 = st["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["lag"].as_u64().unwrap())
            .sum();
        if lag == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let outputs = all(&s, "out");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for o in &outputs {
        *counts.entry(value(o)).or_default() += 1;
    }
    for r in &inputs {
        let v = value(r);
        let want = if v.ends_with("TWICE") { 2 } else { 1 };
        assert_eq!(counts.get(&v).copied().unwrap_or(0), want, "outputs of {v}");
    }
    assert_eq!(outputs.len(), expected);
}

#[test]
fn deployments_that_loop_are_refused_unless_meant() {
    let s = Server::start();
    for t in ["x", "y", "z", "w"] {
        s.create_topic(json!({ "name": t }));
    }
    upload(&s, "id", fixtures::IDENTITY);
    let refused = |name: &str, spec: Value, needle: &str| {
        let r = deploy(&s, name, spec);
        assert_eq!(r.status(), 400);
        let body: Value = r.json().unwrap();
        let msg = body["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{msg}");
    };
    refused(
        "self",
        json!({"plugin": "id", "input": "x", "outputs": ["y"], "dead_letter": "x"}),
        "dead_letter x is the input topic",
    );
    refused(
        "same",
        json!({"plugin": "id", "input": "x", "outputs": ["y"], "dead_letter": "y"}),
        "dead_letter y is also an output",
    );
    deploy_ok(
        &s,
        "a",
        json!({"plugin": "id", "input": "x", "outputs": ["y"], "dead_letter": "w"}),
    );
    refused(
        "b",
        json!({"plugin": "id", "input": "y", "outputs": ["x"]}),
        "would make a cycle: y -[b]-> x, x -[a]-> y",
    );
    // Through dead letters too.
    refused(
        "c",
        json!({"plugin": "id", "input": "w", "outputs": ["z"], "dead_letter": "x"}),
        "cycle",
    );
    // A three-step loop.
    deploy_ok(
        &s,
        "d",
        json!({"plugin": "id", "input": "y", "outputs": ["z"]}),
    );
    refused(
        "e",
        json!({"plugin": "id", "input": "z", "outputs": ["x"]}),
        "cycle",
    );
    deploy_ok(
        &s,
        "e",
        json!({"plugin": "id", "input": "z", "outputs": ["x"], "allow_cycles": true}),
    );
    let list: Value = http()
        .get(s.url("/v1/transforms"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["transforms"].as_array().unwrap().len(), 3, "{list}");
}

#[test]
fn lookups_of_undeclared_tables_find_nothing() {
    let s = hostile_server();
    s.create_topic(json!({"name": "users", "cleanup": "compact"}));
    s.create_topic(json!({"name": "secrets", "cleanup": "compact"}));
    s.produce("users", vec![json!({"key": "u1", "value": "Ann"})]);
    s.produce("secrets", vec![json!({"key": "u1", "value": "hunter2"})]);
    s.create_topic(json!({"name": "in2"}));
    s.create_topic(json!({"name": "out2"}));
    deploy_ok(
        &s,
        "declared",
        json!({"plugin": "hostile", "input": "in", "outputs": ["out"], "tables": ["users"],
               "config": {"mode": "lookup", "table": "users"}}),
    );
    deploy_ok(
        &s,
        "sneaky",
        json!({"plugin": "hostile", "input": "in2", "outputs": ["out2"], "tables": ["users"],
               "config": {"mode": "lookup", "table": "secrets"}}),
    );
    s.produce("in", vec![json!({"key": "u1", "value": "x"})]);
    s.produce("in2", vec![json!({"key": "u1", "value": "x"})]);
    assert_eq!(value(&wait_for_count(&s, "out", 1)[0]), "Ann");
    assert_eq!(value(&wait_for_count(&s, "out2", 1)[0]), "MISSING");
    assert_eq!(status(&s, "declared")["tables"], json!(["users"]));
}

#[test]
fn a_second_server_on_a_data_dir_is_refused_while_the_first_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let first = Server::start_in(tmp.path(), &[]);
    first.create_topic(json!({"name": "t"}));
    let out = std::process::Command::new(crate::common::sluice_bin())
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--kafka",
            "127.0.0.1:0",
            "--schema-registry",
            "off",
            "--data-dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is in use by another sluice server")
            && err.contains(&format!("pid {}", first.pid())),
        "{err}"
    );
    let o = first.produce("t", vec![json!({"value": "still here"})]);
    assert_eq!(o, [(0, 0)]);
    assert_eq!(value(&first.read_all("t", 0, 0)[0]), "still here");
}

/// Sends a whole request (head and body) before reading anything, as simple clients do,
/// and returns the status line and body of the answer.
fn send_all_then_read(addr: &str, head: &str, body_len: usize) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 1 << 16];
    let mut left = body_len;
    while left > 0 {
        let n = left.min(chunk.len());
        s.write_all(&chunk[..n])
            .unwrap_or_else(|e| panic!("the server stopped reading the body: {e}"));
        left -= n;
    }
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn early_answers_reach_clients_that_send_the_whole_body_first() {
    let s = Server::start();
    s.create_topic(json!({"name": "t"}));
    let addr = s.base.trim_start_matches("http://").to_string();
    let len = 20 << 20; // over the 16 MiB default limit
    let head = format!(
        "POST /v1/topics/t/records HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    );
    let (status, body) = send_all_then_read(&addr, &head, len);
    assert!(status.contains("413"), "{status}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "body_too_large");
    let head = format!(
        "POST /v1/topics/nope/records HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        4 << 20
    );
    let (status, body) = send_all_then_read(&addr, &head, 4 << 20);
    assert!(status.contains("404"), "{status}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "unknown_topic");
    // Over the connection limit, a request with a large body still gets its 503.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("sluice.toml");
    std::fs::write(&cfg, "[limits]\nmax_connections = 1\n").unwrap();
    let s = Server::start_in(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    let addr = s.base.trim_start_matches("http://").to_string();
    let _idle = std::net::TcpStream::connect(&addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let head = format!(
        "POST /v1/topics HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        8 << 20
    );
    let (status, body) = send_all_then_read(&addr, &head, 8 << 20);
    assert!(status.contains("503"), "{status}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "too_many_connections");
}

/// With no idle CPU at all (six threads spinning at normal priority, on two or more
/// cores), a failing plugin's records still get their verdicts in bounded time: the
/// isolation thread at idle priority is seen waiting for a CPU it never gets, and its
/// records run again at background priority (never starved). At idle priority alone they
/// waited for minutes (a Python record's isolation once waited 300 s in CI).
#[test]
fn verdicts_of_a_failing_plugin_come_in_bounded_time_with_no_idle_cpu() {
    let s = hostile_server();
    s.create_topic(json!({"name": "starve.dlq"}));
    deploy_ok(
        &s,
        "starve",
        // Deadlines far away: the verdicts wait for CPU, not for a timeout to cut them.
        json!({"plugin": "hostile", "input": "in", "outputs": ["out"], "dead_letter": "starve.dlq",
               "config": {"mode": "work_trap"},
               "limits": {"timeout_ms": 120000, "fuel_per_record": 100000000000u64}}),
    );
    // Warm: the isolation path (and the fuel-metered build it uses) is ready.
    s.produce("in", vec![json!({"value": "POISON-warm"})]);
    wait_for_count(&s, "starve.dlq", 1);

    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..6)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let started = Instant::now();
    s.produce(
        "in",
        (0..12)
            .map(|i| {
                let v = if i % 2 == 0 {
                    format!("ok-{i}")
                } else {
                    format!("POISON-{i}")
                };
                json!({ "value": v })
            })
            .collect(),
    );
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let dead =
            crate::pipeline::wait_for_count_within(&s, "starve.dlq", 7, Duration::from_secs(90));
        let out = crate::pipeline::wait_for_count_within(&s, "out", 6, Duration::from_secs(90));
        (dead.len(), out.len())
    }));
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in spinners {
        t.join().unwrap();
    }
    let (dead, out) = outcome.expect("verdicts did not come");
    assert_eq!((dead, out), (7, 6));
    assert!(took < Duration::from_secs(75), "took {took:?}");
    eprintln!("verdicts of 12 records with no idle CPU: {took:?}");
}
