//! Stateful deployments on `sluice worker`s (real processes) over Sluice's Kafka listener:
//! the changelog, outputs, dead letters and input offsets of each read in one
//! transaction, so windows come out exactly once and exactly right while workers are
//! SIGKILLed, added and stopped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::pipeline::all;
use crate::stateful::{
    PARTITIONS, Workload, check_counts, produce_ndjson, window_count_spec, workload_in,
};
use crate::worker::{Worker, wait_for};

fn worker(kafka: &str, id: &str) -> Worker {
    Worker::spawn(kafka, id, &["--group".into(), "sg".into()])
}

/// Waits until `n` windows are in `counts` (each fires once the watermark passes it).
fn wait_windows(s: &Server, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = all(s, "counts").len();
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} windows in the output"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

const GAP_MS: i64 = 100;

/// Sessions of the workload's events that are not late, per user: (user, start) → (end,
/// count), where a session is events less than GAP_MS apart and ends GAP_MS after its last.
fn sessions_of(w: &Workload) -> BTreeMap<(String, i64), (i64, u64)> {
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for body in &w.bodies {
        for line in body.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["value"].as_str().unwrap().starts_with('e') {
                let user = v["key"].as_str().unwrap().to_string();
                times
                    .entry(user)
                    .or_default()
                    .push(v["timestamp"].as_i64().unwrap());
            }
        }
    }
    let mut sessions = BTreeMap::new();
    for (user, mut ts) in times {
        ts.sort_unstable();
        let (mut start, mut last, mut count) = (ts[0], ts[0], 0u64);
        for t in ts {
            if t - last >= GAP_MS {
                sessions.insert((user.clone(), start), (last + GAP_MS, count));
                (start, count) = (t, 0);
            }
            last = t;
            count += 1;
        }
        sessions.insert((user, start), (last + GAP_MS, count));
    }
    sessions
}

/// The sessions in the output, each once, are the reference's.
fn check_sessions(s: &Server, w: &Workload) {
    let want = sessions_of(w);
    let mut got = BTreeMap::new();
    let mut twice = Vec::new();
    for r in all(s, "sessions") {
        let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        let key = (
            v["key"].as_str().unwrap().to_string(),
            v["session_start"].as_i64().unwrap(),
        );
        let val = (
            v["session_end"].as_i64().unwrap(),
            v["count"].as_u64().unwrap(),
        );
        if got.insert(key.clone(), val).is_some() {
            twice.push(key);
        }
    }
    assert!(
        twice.is_empty(),
        "sessions emitted twice: {:?}",
        &twice[..twice.len().min(10)]
    );
    let wrong: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty() && got.len() == want.len(),
        "{} sessions expected, {} emitted; wrong or missing: {wrong:?}",
        want.len(),
        got.len()
    );
}

fn wait_sessions(s: &Server, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while all(s, "sessions").len() < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} sessions in the output"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn stateful_workers_count_windows_exactly_through_a_sigkill_a_join_and_a_stop() {
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "events", "partitions": PARTITIONS}));
    s.create_topic(json!({"name": "counts", "partitions": PARTITIONS}));
    s.create_topic(json!({"name": "sessions", "partitions": PARTITIONS}));
    let a = worker(&kafka, "a");
    let b = worker(&kafka, "b");
    let c = worker(&kafka, "c");

    // Two thirds of the events wait before the deployment exists: the workers start on a
    // backlog (late events among it, which are late whatever a read gathers).
    let w = workload_in(20_000, 11, 1000);
    let (backlog, rest) = w.bodies.split_at(w.bodies.len() * 2 / 3);
    for body in backlog {
        produce_ndjson(&s, "events", body);
    }

    // Upload and deploy through one worker's API, as on a single server.
    let r = http()
        .put(a.url("/v1/plugins/window-count"))
        .body(sluice::plugins::WINDOW_COUNT.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    // The test pauses the input (a worker joins, another stops) for longer than the
    // usual idle timeout, and an idle partition's watermark moves with the clock: the
    // timeout here outlasts those pauses, so the reference holds.
    let mut spec = window_count_spec();
    spec["idle_timeout_ms"] = json!(10_000);
    let r = http()
        .put(a.url("/v1/transforms/wc"))
        .json(&spec)
        .send()
        .unwrap();
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["stateful"], true, "{body}");
    // Sessions of the same events, on the same workers, through c's API.
    let r = http()
        .put(c.url("/v1/plugins/sessionize"))
        .body(sluice::plugins::SESSIONIZE.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http()
        .put(c.url("/v1/transforms/sess"))
        .json(
            &json!({"plugin": "sessionize", "input": "events", "outputs": ["sessions"],
            "dead_letter": "sessions.dlq", "config": {"gap_ms": GAP_MS.to_string()},
            "allowed_lateness_ms": spec["allowed_lateness_ms"], "idle_timeout_ms": 10_000,
            // Its state in each worker's disk store (restored there from the changelog).
            "state_store": "disk"}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    // Day-long windows, which never close here: their state stays to be read.
    s.create_topic(json!({"name": "daily", "partitions": PARTITIONS}));
    let r = http()
        .put(b.url("/v1/transforms/day"))
        .json(
            &json!({"plugin": "window-count", "input": "events", "outputs": ["daily"],
            "dead_letter": "daily.dlq", "config": {"window_ms": "86400000"},
            "allowed_lateness_ms": spec["allowed_lateness_ms"], "idle_timeout_ms": 10_000}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    assert_eq!(body["state_topic"], "sg.wc.state", "{body}");
    // The changelog exists, compacted, one partition per input partition.
    let changelog = s.describe("sg.wc.state");
    assert_eq!(
        changelog["partitions"].as_array().unwrap().len(),
        PARTITIONS
    );
    assert_eq!(changelog["cleanup"], "compact", "{changelog}");

    // Some windows have fired: a dies mid-run, with state in memory and a transaction
    // open.
    wait_windows(&s, 20, Duration::from_secs(120));
    a.kill9();
    let (more, last) = rest.split_at(rest.len() / 2);
    for body in more {
        produce_ndjson(&s, "events", body);
    }
    // Another worker joins; one of the first stops cleanly.
    let d = worker(&kafka, "d");
    std::thread::sleep(Duration::from_secs(2));
    b.stop();
    for body in last {
        produce_ndjson(&s, "events", body);
    }
    wait_windows(&s, w.windows.len(), Duration::from_secs(240));
    // Nothing more arrives once every window fired.
    std::thread::sleep(Duration::from_secs(3));
    check_counts(&s, &w);
    wait_sessions(&s, sessions_of(&w).len(), Duration::from_secs(120));
    std::thread::sleep(Duration::from_secs(1));
    check_sessions(&s, &w);
    assert_eq!(
        all(&s, "sessions.dlq").len(),
        w.late,
        "late events dead-lettered once"
    );

    // The deployment's status on any live worker shows each partition's event time and
    // state, held by c and d.
    wait_for("c and d to hold every partition", 60, || {
        let st: Value = c.get("/v1/transforms/wc");
        let parts = st["partitions"].as_array().cloned().unwrap_or_default();
        parts.len() == PARTITIONS
            && parts.iter().all(|p| {
                p["watermark"].is_i64()
                    && p["state_keys"] == 0
                    && p["timers"] == 0
                    && p["restore"]["took_ms"].is_u64()
                    && matches!(p["worker"].as_str(), Some("c" | "d"))
            })
    });
    let st: Value = d.get("/v1/transforms/wc");
    assert_eq!(st["stateful"], true, "{st}");
    check_state_reads(&s, &w, &c, &d);
    // Deleting a deployment deletes its changelog once its workers left the group: a new
    // deployment of the same name starts from nothing, as on sluice serve.
    let r = http().delete(c.url("/v1/transforms/day")).send().unwrap();
    assert_eq!(r.status(), 204);
    wait_for("the deleted deployment's changelog to go", 60, || {
        http()
            .get(s.url("/v1/topics/sg.day.state"))
            .send()
            .unwrap()
            .status()
            == 404
    });
    assert!(st["counters"]["late"].as_u64().unwrap() >= 1, "{st}");
}

/// Day windows' counts per user, from the workload's events that are not late.
fn daily(w: &Workload) -> BTreeMap<String, u64> {
    let mut per_user = BTreeMap::new();
    for ((user, _), n) in &w.windows {
        *per_user.entry(user.clone()).or_insert(0) += n;
    }
    per_user
}

/// `GET /v1/transforms/day/state` on any worker reads every partition's state, each from
/// the worker that holds it.
fn check_state_reads(s: &Server, w: &Workload, c: &Worker, d: &Worker) {
    let want = daily(w);
    wait_for("the day windows to hold every event", 60, || {
        let st: Value = d.get("/v1/transforms/day");
        st["partitions"].as_array().is_some_and(|ps| {
            ps.len() == PARTITIONS && ps.iter().all(|p| p["lag"] == 0 && p["worker"].is_string())
        })
    });
    // One user's windows, asked of both workers: the same answer, from its partition.
    for user in ["u4", "u5", "u9"] {
        let partition = user[1..].parse::<usize>().unwrap() % PARTITIONS;
        for worker in [c, d] {
            let page: Value = worker.get(&format!("/v1/transforms/day/state?key={user}"));
            let entries = page["entries"]
                .as_array()
                .unwrap_or_else(|| panic!("{page}"));
            assert!(!entries.is_empty(), "{page}");
            let mut total = 0;
            for e in entries {
                assert_eq!(e["partition"], partition, "{e}");
                assert_eq!(e["parts"]["key"], user, "{e}");
                total += e["value"].as_u64().unwrap_or_else(|| panic!("{e}"));
            }
            assert_eq!(Some(&total), want.get(user), "{user}: {page}");
        }
    }
    // A listing pages through every partition's keys, whichever worker holds them.
    let mut seen = BTreeMap::new();
    let mut query = "limit=25".to_string();
    loop {
        let page: Value = c.get(&format!("/v1/transforms/day/state?{query}"));
        for e in page["entries"]
            .as_array()
            .unwrap_or_else(|| panic!("{page}"))
        {
            let user = e["parts"]["key"].as_str().unwrap().to_string();
            *seen.entry(user).or_insert(0) += e["value"].as_u64().unwrap();
        }
        let next = &page["next"];
        if next.is_null() {
            break;
        }
        query = format!("limit=25&from_partition={}", next["from_partition"]);
        if let Some(a) = next["after"].as_str() {
            query.push_str(&format!("&after={}", urlencode(a)));
        }
        if let Some(a) = next["after_base64"].as_str() {
            query.push_str(&format!("&after_base64={}", urlencode(a)));
        }
    }
    assert_eq!(seen, want, "the listing covers every partition's state");
    // Not a stateful deployment, not a partition: the same errors as on sluice serve.
    assert_eq!(c.status_of("/v1/transforms/day/state?partition=9"), 404);
    let _ = s;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Each partition held by `w` (of deployment `name`) with its state, from `/v1/worker`.
fn held(w: &Worker, name: &str) -> Vec<Value> {
    w.get("/v1/worker")["deployments"][name]["partitions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The standby copies `w` keeps for deployment `name`, from `/v1/worker`.
fn standbys(w: &Worker, name: &str) -> Vec<Value> {
    w.get("/v1/worker")["deployments"][name]["standbys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_standby_replica_takes_a_killed_workers_partitions_over_from_its_copy() {
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "events", "partitions": PARTITIONS}));
    s.create_topic(json!({"name": "daily", "partitions": PARTITIONS}));
    let group = |id: &str| Worker::spawn(&kafka, id, &["--group".into(), "sb".into()]);
    let a = group("a");
    let b = group("b");
    let r = http()
        .put(a.url("/v1/plugins/window-count"))
        .body(sluice::plugins::WINDOW_COUNT.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    // Day-long windows: the state stays, to be compared.
    let spec = json!({"plugin": "window-count", "input": "events", "outputs": ["daily"],
        "config": {"window_ms": "86400000"}, "allowed_lateness_ms": 5000,
        "idle_timeout_ms": 3_600_000, "standby_replicas": 1});
    let r = http()
        .put(a.url("/v1/transforms/day"))
        .json(&spec)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let w = workload_in(10_000, 17, 1000);
    let (first, second) = w.bodies.split_at(w.bodies.len() / 2);
    for body in first {
        produce_ndjson(&s, "events", body);
    }
    // Both workers hold partitions, and each keeps a copy of the other's, caught up.
    let mut a_held = Vec::new();
    wait_for("standby copies caught up", 90, || {
        let (ha, hb) = (held(&a, "day"), held(&b, "day"));
        let (sa, sb) = (standbys(&a, "day"), standbys(&b, "day"));
        if ha.is_empty() || hb.is_empty() || ha.len() + hb.len() != PARTITIONS {
            return false;
        }
        let changelog = s.describe("sb.day.state");
        let caught_up = |holder: &[Value], copies: &[Value]| {
            holder.iter().all(|h| {
                let p = h["partition"].as_u64().unwrap();
                let end = changelog["partitions"][p as usize]["end_offset"].as_i64();
                h["lag"] == 0
                    && copies.iter().any(|c| {
                        c["partition"] == p
                            && c["keys"] == h["state"]["state_keys"]
                            && c["changelog_offset"].as_i64() >= end.map(|e| e - 1)
                    })
            })
        };
        a_held = ha
            .iter()
            .map(|h| h["partition"].as_u64().unwrap())
            .collect();
        caught_up(&ha, &sb) && caught_up(&hb, &sa)
    });
    let status: Value = a.get("/v1/transforms/day");
    assert_eq!(status["standby_replicas"], 1, "{status}");

    // a dies; b takes its partitions over from its copies: the restore goes on from the
    // copy's changelog offset and replays (almost) nothing.
    a.kill9();
    let mut restored = Vec::new();
    wait_for("b holds every partition", 90, || {
        let hb = held(&b, "day");
        restored = hb
            .iter()
            .filter(|h| a_held.contains(&h["partition"].as_u64().unwrap()))
            .filter(|h| h["state"]["restore"].is_object())
            .cloned()
            .collect();
        hb.len() == PARTITIONS && restored.len() == a_held.len()
    });
    for h in &restored {
        let r = &h["state"]["restore"];
        assert!(r["snapshot_offset"].is_u64(), "restored from the copy: {h}");
        assert!(
            r["replayed"].as_u64().unwrap() < h["state"]["state_keys"].as_u64().unwrap(),
            "replayed less than a full restore: {h}"
        );
    }
    assert!(
        standbys(&b, "day").is_empty(),
        "no other worker to copy for"
    );

    // The rest of the events; every user's day counts are the reference's.
    for body in second {
        produce_ndjson(&s, "events", body);
    }
    let mut want: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for body in &w.bodies {
        for line in body.lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["value"].as_str().unwrap().starts_with('e') {
                let day = v["timestamp"].as_i64().unwrap().div_euclid(86_400_000) * 86_400_000;
                *want
                    .entry(v["key"].as_str().unwrap().to_string())
                    .or_default()
                    .entry(day + 86_400_000)
                    .or_default() += 1;
            }
        }
    }
    let got = |user: &str| -> BTreeMap<i64, u64> {
        let r: Value = b.get(&format!("/v1/transforms/day/state?key={user}"));
        r["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e["parts"]["window_end"].as_i64().unwrap(),
                    e["value"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    wait_for("every count as the reference", 90, || {
        want.iter().all(|(user, days)| got(user) == *days)
    });
    let dead = all(&s, "events.dlq");
    assert_eq!(dead.len(), w.late, "late events dead-lettered once each");
}
