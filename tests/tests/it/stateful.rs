//! Stateful transforms end to end on the real binary: windowed counts against a reference
//! computed here, SIGKILL at random moments, hot swap and reset, dedupe and sessionize,
//! the state API, the state limit, protected changelog topics.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::fixtures;

use crate::common::{Server, http};
use crate::pipeline::{all, deploy, deploy_ok, status, upload, wait_for_count};

pub(crate) const WINDOW_MS: i64 = 10_000;
const LATENESS_MS: i64 = 5_000;
pub(crate) const PARTITIONS: usize = 3;

/// Events for `window-count`, the counts it must produce, and how many are late.
pub(crate) struct Workload {
    /// NDJSON produce bodies, partitions interleaved.
    pub(crate) bodies: Vec<String>,
    /// (key, window start) → count, from the events that are not late.
    pub(crate) windows: BTreeMap<(String, i64), u64>,
    pub(crate) late: usize,
}

/// `per_partition` events on each of 3 partitions, users `u<n>` on partition n % 3. Event
/// times advance 2 ms per event and are shuffled back by up to the lateness less a second,
/// so none is late; after the first third, every 500th event is followed by one an hour
/// older than anything sent, which is late whatever the batching.
pub(crate) fn workload(per_partition: usize, seed: u64) -> Workload {
    workload_in(per_partition, seed, 5000)
}

/// [`workload`] in produce bodies of `chunk` events per partition.
pub(crate) fn workload_in(per_partition: usize, seed: u64, chunk: usize) -> Workload {
    let mut rng = fastrand::Rng::with_seed(seed);
    let base = (sluice_log::now_ms() - 3_600_000) / WINDOW_MS * WINDOW_MS;
    let mut windows = BTreeMap::new();
    let mut late = 0;
    let mut lines: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS];
    for (p, lines) in lines.iter_mut().enumerate() {
        for i in 0..per_partition {
            let user = format!("u{}", PARTITIONS * rng.usize(0..34) + p);
            let ts = base + 2 * i as i64 - rng.i64(0..LATENESS_MS - 1000);
            *windows
                .entry((user.clone(), ts.div_euclid(WINDOW_MS) * WINDOW_MS))
                .or_insert(0) += 1;
            lines.push(format!(
                r#"{{"key":"{user}","value":"e{i}","partition":{p},"timestamp":{ts}}}"#
            ));
            if i >= per_partition / 3 && i % 500 == 0 {
                late += 1;
                lines.push(format!(
                    r#"{{"key":"{user}","value":"late{i}","partition":{p},"timestamp":{}}}"#,
                    base - 3_600_000
                ));
            }
        }
    }
    let mut bodies = Vec::new();
    let longest = lines.iter().map(Vec::len).max().unwrap_or(0);
    for start in (0..longest).step_by(chunk) {
        let mut body = String::new();
        for l in &lines {
            for line in l.iter().skip(start).take(chunk) {
                body.push_str(line);
                body.push('\n');
            }
        }
        bodies.push(body);
    }
    Workload {
        bodies,
        windows,
        late,
    }
}

pub(crate) fn produce_ndjson(s: &Server, topic: &str, body: &str) {
    let r = http()
        .post(s.url(&format!("/v1/topics/{topic}/records")))
        .header("content-type", "application/x-ndjson")
        .body(body.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

/// Waits until every partition of a stateful transform has read its input and fired
/// every timer.
pub(crate) fn wait_settled(s: &Server, name: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let st = status(s, name);
        let parts = st["partitions"].as_array().cloned().unwrap_or_default();
        if !parts.is_empty()
            && parts
                .iter()
                .all(|p| p["lag"] == 0 && p["timers"] == 0 && p["checkpoint"]["at"].is_i64())
        {
            return st;
        }
        assert!(Instant::now() < deadline, "not settled: {st}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The windows in the output, each once, and the late dead letters.
pub(crate) fn check_counts(s: &Server, w: &Workload) {
    let mut got: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut twice = Vec::new();
    for r in all(s, "counts") {
        let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        let start = v["window_start"].as_i64().unwrap();
        assert_eq!(v["window_end"].as_i64().unwrap(), start + WINDOW_MS, "{v}");
        assert_eq!(r["key"], key.as_str(), "output keyed by the key");
        if got
            .insert((key.clone(), start), v["count"].as_u64().unwrap())
            .is_some()
        {
            twice.push((key, start));
        }
    }
    assert!(twice.is_empty(), "windows emitted twice: {twice:?}");
    let wrong: Vec<_> = w
        .windows
        .iter()
        .filter(|(k, n)| got.get(*k) != Some(n))
        .map(|(k, n)| (k.clone(), *n, got.get(k).copied()))
        .take(10)
        .collect();
    let extra: Vec<_> = got
        .iter()
        .filter(|(k, _)| !w.windows.contains_key(*k))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty() && got.len() == w.windows.len(),
        "{} windows expected, {} emitted; (window, expected, got): {wrong:?}; not expected: {extra:?}; \
         dead letters: {:?}",
        w.windows.len(),
        got.len(),
        all(s, "events.dlq")
            .iter()
            .filter(|d| !d["value"].as_str().unwrap_or("").starts_with("late"))
            .take(5)
            .collect::<Vec<_>>()
    );
    let dlq = all(s, "events.dlq");
    assert_eq!(dlq.len(), w.late, "every late event dead-lettered once");
    let mut seen = std::collections::BTreeSet::new();
    for d in &dlq {
        assert_eq!(d["headers"]["sluice-error"], "late", "{d}");
        assert!(d["value"].as_str().unwrap().starts_with("late"), "{d}");
        assert!(d["headers"]["sluice-watermark"].is_string(), "{d}");
        assert!(seen.insert((
            d["headers"]["sluice-source-partition"].to_string(),
            d["headers"]["sluice-source-offset"].to_string()
        )));
    }
}

fn setup_window_count(s: &Server) {
    s.create_topic(json!({"name": "events", "partitions": PARTITIONS}));
    s.create_topic(json!({"name": "counts", "partitions": PARTITIONS}));
    upload(s, "window-count", sluice::plugins::WINDOW_COUNT);
}

pub(crate) fn window_count_spec() -> Value {
    json!({"plugin": "window-count", "input": "events", "outputs": ["counts"],
        "config": {"window_ms": WINDOW_MS.to_string()},
        "allowed_lateness_ms": LATENESS_MS, "idle_timeout_ms": 1000})
}

#[test]
fn a_million_shuffled_events_count_exactly_per_window_and_late_ones_are_dead_lettered() {
    let w = workload(1_000_000 / PARTITIONS, 7);
    let s = Server::process();
    setup_window_count(&s);
    deploy_ok(&s, "wc", window_count_spec());
    for b in &w.bodies {
        produce_ndjson(&s, "events", b);
    }
    let st = wait_settled(&s, "wc", Duration::from_secs(300));
    check_counts(&s, &w);
    let late: u64 = st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["late"].as_u64().unwrap())
        .sum();
    assert_eq!(late as usize, w.late, "{st}");
    assert_eq!(st["counters"]["late"].as_u64().unwrap() as usize, w.late);
    assert_eq!(st["stateful"], true);
    assert_eq!(st["state_topic"], "wc.state");
    let p0 = &st["partitions"][0];
    assert!(p0["watermark"].as_i64().unwrap() > p0["max_event_time"].as_i64().unwrap() - 1);
    // Every window fired and was forgotten: no keys left.
    assert_eq!(p0["state_keys"], 0, "{p0}");
    let metrics = http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("sluice_transform_late_total{transform=\"wc\",partition=\"0\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_transform_watermark_ms{transform=\"wc\""));
}

/// A stateful component built against `sluice:transform@0.2.0` (kept prebuilt in
/// tests/prebuilt) links against the 0.2.2 host unchanged and counts exactly.
#[test]
fn a_stateful_plugin_built_for_contract_0_2_0_still_counts_exactly() {
    let w = workload(20_000, 11);
    let s = Server::process();
    s.create_topic(json!({"name": "events", "partitions": PARTITIONS}));
    s.create_topic(json!({"name": "counts", "partitions": PARTITIONS}));
    upload(
        &s,
        "window-count",
        include_bytes!("../../prebuilt/window-count-v0.2.0.wasm"),
    );
    deploy_ok(&s, "wc", window_count_spec());
    for b in &w.bodies {
        produce_ndjson(&s, "events", b);
    }
    wait_settled(&s, "wc", Duration::from_secs(120));
    check_counts(&s, &w);
}

#[test]
fn ten_sigkills_at_random_moments_change_no_count_and_fire_no_window_twice() {
    let w = workload(1_000_000 / PARTITIONS, 11);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    setup_window_count(&s);
    for b in &w.bodies {
        produce_ndjson(&s, "events", b);
    }
    deploy_ok(&s, "wc", window_count_spec());
    let mut rng = fastrand::Rng::with_seed(3);
    let mut mid_work = 0;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(rng.u64(20..250)));
        let st = status(&s, "wc");
        let lag: u64 = st["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["lag"].as_u64().unwrap_or(0))
            .sum();
        mid_work += usize::from(lag > 0);
        s.kill9();
        s = restart(&data);
    }
    assert!(
        mid_work >= 5,
        "only {mid_work} of 10 kills came while input was left"
    );
    wait_settled(&s, "wc", Duration::from_secs(300));
    check_counts(&s, &w);
    // The changelog is a topic like any other: readable, compacted.
    assert!(!all(&s, "wc.state").is_empty());
}

fn restart(data: &Path) -> Server {
    Server::start_in(data, &[])
}

fn state_page(s: &Server, name: &str, query: &str) -> (u16, Value) {
    let r = http()
        .get(s.url(&format!("/v1/transforms/{name}/state?{query}")))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn rec(key: &str, ts: i64) -> Value {
    json!({"key": key, "value": "x", "timestamp": ts})
}

/// Waits until the transform has read every input record (state committed with it).
fn wait_caught_up(s: &Server, name: &str, input_end: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status(s, name);
        if st["partitions"][0]["checkpoint"]["position"].as_u64() == Some(input_end) {
            return;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hot_swap_inherits_state_reset_starts_empty_and_the_state_api_shows_it() {
    let s = Server::start();
    s.create_topic(json!({"name": "clicks", "partitions": 1}));
    s.create_topic(json!({"name": "per-min", "partitions": 1}));
    upload(&s, "wc", sluice::plugins::WINDOW_COUNT);
    let spec = json!({"plugin": "wc", "version": 1, "input": "clicks", "outputs": ["per-min"],
        "config": {"window_ms": "60000"}, "allowed_lateness_ms": 0, "idle_timeout_ms": 3_600_000});
    deploy_ok(&s, "wc", spec.clone());
    let t0 = 1_800_000_000_000i64; // a minute boundary
    s.produce("clicks", (0..4).map(|i| rec("ann", t0 + i)).collect());
    wait_caught_up(&s, "wc", 4);

    // The state API: the window's counter under its binary key, as of the last commit.
    let (code, page) = state_page(&s, "wc", "prefix=count");
    assert_eq!(code, 200, "{page}");
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["partition"], 0);
    assert_eq!(
        (&entries[0]["encoding"], &entries[0]["value"]),
        (&json!("json"), &json!(4))
    );
    let key = entries[0]["key_base64"].as_str().unwrap().to_string();
    let q = format!(
        "key_base64={}",
        key.replace('+', "%2B")
            .replace('/', "%2F")
            .replace('=', "%3D")
    );
    let (code, one) = state_page(&s, "wc", &q);
    assert_eq!(
        (code, &one["entries"][0]["value"]),
        (200, &json!(4)),
        "{one}"
    );
    let (code, none) = state_page(&s, "wc", "key=nothing");
    assert_eq!((code, &none["error"]["code"]), (404, &json!("unknown_key")));
    let (code, bad) = state_page(&s, "wc", "key=a&prefix=b");
    assert_eq!(code, 400, "{bad}");
    let (code, bad) = state_page(&s, "wc", "limit=0");
    assert_eq!(code, 400, "{bad}");
    let st = status(&s, "wc");
    let p = &st["partitions"][0];
    assert_eq!(
        (p["state_keys"].as_u64(), p["timers"].as_u64()),
        (Some(1), Some(1)),
        "{p}"
    );
    assert_eq!(p["next_timer"].as_i64(), Some(t0 + 60_000));
    assert_eq!(p["watermark"].as_i64(), Some(t0 + 3));

    // The changelog topic is the server's: no produce, no delete.
    let r = http()
        .post(s.url("/v1/topics/wc.state/records"))
        .json(&json!({"records": [{"value": "x"}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = http().delete(s.url("/v1/topics/wc.state")).send().unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().unwrap().contains("topic_in_use"));

    // A new version mid-window inherits the count.
    upload(
        &s,
        "wc",
        &sluice_tests::new_build(sluice::plugins::WINDOW_COUNT, "v2"),
    );
    let mut v2 = spec.clone();
    v2["version"] = json!(2);
    deploy_ok(&s, "wc", v2.clone());
    s.produce("clicks", (4..6).map(|i| rec("ann", t0 + i)).collect());
    s.produce("clicks", vec![rec("ann", t0 + 60_000)]); // closes the first minute
    let out = wait_for_count(&s, "per-min", 1);
    let v: Value = serde_json::from_str(out[0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"key": "ann", "window_start": t0, "window_end": t0 + 60_000, "count": 6})
    );
    assert_eq!(status(&s, "wc")["partitions"][0]["version"], 2);

    // Reset: the open second minute (1 event so far) starts again from nothing.
    s.produce("clicks", vec![rec("ann", t0 + 60_001)]);
    wait_caught_up(&s, "wc", 8);
    let mut reset = v2.clone();
    reset["state"] = json!("reset");
    deploy_ok(&s, "wc", reset);
    let st = status(&s, "wc");
    assert_eq!(st["partitions"][0]["state_keys"], 0, "{st}");
    s.produce("clicks", vec![rec("ann", t0 + 60_002)]);
    s.produce("clicks", vec![rec("ann", t0 + 120_000)]);
    let out = wait_for_count(&s, "per-min", 2);
    let v: Value = serde_json::from_str(out[1]["value"].as_str().unwrap()).unwrap();
    assert_eq!(v["count"], 1, "only the event after the reset: {v}");

    // A plugin that never uses state runs stateless: no changelog topic, no checkpoints.
    s.create_topic(json!({"name": "masked", "partitions": 1}));
    upload(&s, "mask", sluice::plugins::MASK);
    deploy_ok(
        &s,
        "m",
        json!({"plugin": "mask", "input": "clicks", "outputs": ["masked"]}),
    );
    let st = status(&s, "m");
    assert_eq!(st["stateful"], false, "{st}");
    assert!(st["partitions"][0].get("watermark").is_none(), "{st}");
    let r = http().get(s.url("/v1/topics/m.state")).send().unwrap();
    assert_eq!(r.status(), 404);

    // Delete removes the state with the deployment.
    let r = http().delete(s.url("/v1/transforms/wc")).send().unwrap();
    assert!(r.status().is_success());
    let r = http().get(s.url("/v1/topics/wc.state")).send().unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn dedupe_and_sessionize_end_to_end_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    for t in ["orders", "unique", "clicks", "sessions"] {
        s.create_topic(json!({"name": t, "partitions": 1}));
    }
    upload(&s, "dedupe", sluice::plugins::DEDUPE);
    upload(&s, "sessionize", sluice::plugins::SESSIONIZE);
    deploy_ok(
        &s,
        "dd",
        json!({"plugin": "dedupe", "input": "orders", "outputs": ["unique"],
            "config": {"id_field": "id", "window_ms": "60000"}, "event_time": {"field": "ts"},
            "allowed_lateness_ms": 0}),
    );
    deploy_ok(
        &s,
        "sess",
        json!({"plugin": "sessionize", "input": "clicks", "outputs": ["sessions"],
            "config": {"gap_ms": "1000"}, "allowed_lateness_ms": 0, "idle_timeout_ms": 3_600_000}),
    );
    let t0 = 1_800_000_000_000i64;
    let order = |id: &str, ts: i64| json!({"value": json!({"id": id, "ts": ts}).to_string()});
    s.produce(
        "orders",
        vec![order("a", t0), order("b", t0 + 1), order("a", t0 + 2)],
    );
    s.produce(
        "clicks",
        vec![rec("u1", t0), rec("u1", t0 + 500), rec("u2", t0 + 600)],
    );
    assert_eq!(wait_for_count(&s, "unique", 2).len(), 2);
    wait_caught_up(&s, "sess", 3);

    // State survives a SIGKILL: "a" is still a duplicate, u1's session still open.
    s.kill9();
    s = restart(&data);
    s.produce(
        "orders",
        vec![order("a", t0 + 3), order("c", t0 + 4), order("b", t0 + 5)],
    );
    s.produce("clicks", vec![rec("u1", t0 + 1200), rec("u2", t0 + 5000)]);
    let unique = wait_for_count(&s, "unique", 3);
    let ids: Vec<String> = unique
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
    // u1: t0..t0+1200 (the third click within the gap of the second); u2's first session
    // closes when its next click is 4.4 s later; both close at watermark t0+5000.
    let sessions = wait_for_count(&s, "sessions", 2);
    let mut got: Vec<Value> = sessions
        .iter()
        .map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap())
        .collect();
    got.sort_by_key(|v| v["key"].as_str().unwrap().to_string());
    assert_eq!(
        got,
        [
            json!({"key": "u1", "session_start": t0, "session_end": t0 + 2200, "count": 3}),
            json!({"key": "u2", "session_start": t0 + 600, "session_end": t0 + 1600, "count": 1}),
        ]
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(all(&s, "unique").len(), 3, "no duplicate after the restart");
}

#[test]
fn unbounded_state_hits_the_deployment_limit_and_is_reported_not_an_oom() {
    let s = Server::start();
    s.create_topic(json!({"name": "in", "partitions": 1}));
    s.create_topic(json!({"name": "out", "partitions": 1}));
    upload(&s, "hostile", fixtures::STATE_HOSTILE);
    let r = deploy(
        &s,
        "hog",
        json!({"plugin": "hostile", "input": "in", "outputs": ["out"],
            "config": {"mode": "hog"}, "limits": {"state_bytes": 512}}),
    );
    assert_eq!(r.status(), 400, "below the minimum: {}", r.text().unwrap());
    deploy_ok(
        &s,
        "hog",
        json!({"plugin": "hostile", "input": "in", "outputs": ["out"],
            "config": {"mode": "hog"}, "limits": {"state_bytes": 1 << 20}}),
    );
    // ~1.1 KiB of state per record: about 900 fit in 1 MiB.
    for chunk in 0..4 {
        s.produce(
            "in",
            (0..500)
                .map(|i| json!({"value": format!("r{chunk}-{i}")}))
                .collect(),
        );
    }
    let dlq = wait_for_count(&s, "in.dlq", 1);
    let reason = dlq[0]["headers"]["sluice-error"].as_str().unwrap();
    assert!(reason.contains("state"), "{reason}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        let st = status(&s, "hog");
        if st["partitions"][0]["lag"] == 0 {
            break st;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let p = &st["partitions"][0];
    assert!(p["state_bytes"].as_u64().unwrap() <= 1 << 20, "{p}");
    assert!(st["last_error"].as_str().unwrap().contains("state"), "{st}");
    // Records within the limit passed, the rest were dead-lettered: none lost.
    let out = all(&s, "out").len();
    let dlq = all(&s, "in.dlq").len();
    assert_eq!(out + dlq, 2000, "out {out} + dead letters {dlq}");
    assert!(out > 500 && dlq > 500, "out {out}, dead letters {dlq}");
}

#[test]
fn misused_state_and_timers_are_contained() {
    let s = Server::start();
    upload(&s, "hostile", fixtures::STATE_HOSTILE);
    for mode in [
        "huge_key",
        "bad_ops",
        "timer_trap",
        "timer_loop",
        "state_in_init",
    ] {
        let (input, output) = (format!("{mode}-in"), format!("{mode}-out"));
        s.create_topic(json!({"name": input, "partitions": 1}));
        s.create_topic(json!({"name": output, "partitions": 1}));
        let r = deploy(
            &s,
            mode,
            json!({"plugin": "hostile", "input": input, "outputs": [output],
                "config": {"mode": mode}, "allowed_lateness_ms": 0}),
        );
        if mode == "state_in_init" {
            assert_eq!(r.status(), 400, "init may not touch state");
            assert!(r.text().unwrap().contains("state"));
            continue;
        }
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        s.produce(
            &input,
            ["ok-1", "POISON", "ok-2"]
                .iter()
                .enumerate()
                .map(|(i, v)| json!({"value": v, "timestamp": 1000 + i as i64}))
                .collect(),
        );
    }
    // State written from an SDK plugin's `init` is refused at deploy, not dropped.
    upload(&s, "state-ops", fixtures::STATE_OPS);
    s.create_topic(json!({"name": "seeded-in", "partitions": 1}));
    s.create_topic(json!({"name": "seeded-out", "partitions": 1}));
    let r = deploy(
        &s,
        "seeded",
        json!({"plugin": "state-ops", "input": "seeded-in", "outputs": ["seeded-out"],
            "config": {"mode": "put_in_init"}}),
    );
    assert_eq!(r.status(), 400);
    let body = r.text().unwrap();
    assert!(body.contains("init wrote state"), "{body}");
    // A bad key or malformed operations fail only the poison record.
    for mode in ["huge_key", "bad_ops"] {
        let dlq = wait_for_count(&s, &format!("{mode}-in.dlq"), 1);
        assert_eq!(dlq.len(), 1);
        assert_eq!(dlq[0]["value"], "POISON");
        assert_eq!(
            wait_for_count(&s, &format!("{mode}-out"), 2).len(),
            2,
            "{mode}"
        );
    }
    // A timer that traps is dead-lettered, the others fire.
    let dlq = wait_for_count(&s, "timer_trap-in.dlq", 1);
    assert_eq!(dlq[0]["key"], "POISON", "{dlq:?}");
    assert_eq!(dlq[0]["headers"]["sluice-timer-at"], "1001", "{dlq:?}");
    assert!(dlq[0]["headers"]["sluice-error"].is_string());
    // A timer that re-arms itself for ever is cut off and reported; the server lives on.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status(&s, "timer_loop");
        if st["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("timer"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(http().get(s.url("/healthz")).send().unwrap().status(), 200);
}

/// `sluice demo` (the README's first command) runs the whole story, window counts included.
#[test]
fn the_demo_runs_end_to_end_with_per_user_window_counts() {
    let out = std::process::Command::new(crate::common::sluice_bin())
        .arg("demo")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("◷ activity_counts: u-1001"), "{stdout}");
    assert!(
        stdout
            .contains("demo complete: 12 events masked and enriched, 1 dead-lettered, 13 counted"),
        "{stdout}"
    );
}
