//! `"state_store": "disk"` end to end on the real binary: a window count whose state is
//! several times its memory, SIGKILLed while it reads and while its windows fire, counts
//! exactly; its memory stays within the cache; restarts replay only the changelog after
//! the disk's checkpoint; the state API reads through the disk; the spec's rules.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::pipeline::{all, deploy, deploy_ok, status, upload};
use crate::stateful::produce_ndjson;

const PARTITIONS: usize = 3;
const WINDOW_MS: i64 = 3_600_000;
const LATENESS_MS: i64 = 5_000;
const CACHE_BYTES: u64 = 16 << 20;

fn spec() -> Value {
    json!({"plugin": "window-count", "input": "events", "outputs": ["counts"],
        "config": {"window_ms": WINDOW_MS.to_string()},
        "allowed_lateness_ms": LATENESS_MS, "idle_timeout_ms": 3_600_000,
        "state_store": "disk",
        "limits": {"state_cache_bytes": CACHE_BYTES, "state_bytes": 100u64 << 30}})
}

/// Records in a topic (the sum of its partitions' high watermarks).
fn records_in(s: &Server, topic: &str) -> u64 {
    s.describe(topic)["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_u64().unwrap())
        .sum()
}

fn lag(st: &Value) -> u64 {
    st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["lag"].as_u64().unwrap_or(u64::MAX))
        .sum()
}

fn wait_until(
    s: &Server,
    what: &str,
    within: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let st = status(s, "wc");
        if done(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "{what}: {st}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_disk_store_several_times_its_cache_counts_exactly_across_sigkills() {
    // 600,000 events of 240,000 users in one hour-long window per partition: ~240,000
    // keys, about 25 MB of state against 8 MiB for cached values.
    let mut rng = fastrand::Rng::with_seed(5);
    let base = (sluice_log::now_ms() - 10 * WINDOW_MS) / WINDOW_MS * WINDOW_MS;
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut bodies = Vec::new();
    for chunk in 0..60 {
        let mut body = String::new();
        for i in 0..10_000 {
            let p = i % PARTITIONS;
            let user = format!("user-{:06}", PARTITIONS * rng.usize(0..80_000) + p);
            let ts = base + 1000 + (chunk * 10_000 + i) as i64 / 200;
            *expected.entry(user.clone()).or_default() += 1;
            body.push_str(&format!(
                r#"{{"key":"{user}","value":"e","partition":{p},"timestamp":{ts}}}"#
            ));
            body.push('\n');
        }
        bodies.push(body);
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    s.create_topic(json!({"name": "events", "partitions": PARTITIONS}));
    s.create_topic(json!({"name": "counts", "partitions": PARTITIONS}));
    upload(&s, "window-count", sluice::plugins::WINDOW_COUNT);

    // The spec's rules.
    let mut too_big = spec();
    too_big["limits"]["state_bytes"] = json!(2u64 << 40);
    assert_eq!(deploy(&s, "wc", too_big).status(), 400);
    let mut in_memory = spec();
    in_memory["state_store"] = json!("memory");
    in_memory["limits"]["state_bytes"] = json!(32u64 << 30);
    let r = deploy(&s, "wc", in_memory);
    assert_eq!(r.status(), 400);
    let body = r.text().unwrap();
    assert!(
        body.contains("state_store") && body.contains("disk"),
        "{body}"
    );
    let mut small_cache = spec();
    small_cache["limits"]["state_cache_bytes"] = json!(1 << 20);
    assert_eq!(deploy(&s, "wc", small_cache).status(), 400);

    for b in &bodies {
        produce_ndjson(&s, "events", b);
    }
    deploy_ok(&s, "wc", spec());
    let st = status(&s, "wc");
    assert_eq!(st["state_store"], "disk", "{st}");
    // The store cannot change under a deployment.
    let mut to_memory = spec();
    to_memory["state_store"] = json!("memory");
    let r = deploy(&s, "wc", to_memory);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("state_store"));

    // SIGKILLs while the input is read.
    let mut rng = fastrand::Rng::with_seed(9);
    let mut mid_work = 0;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(rng.u64(300..1500)));
        mid_work += usize::from(lag(&status(&s, "wc")) > 0);
        s.kill9();
        s = Server::start_in(&data, &[]);
    }
    assert!(mid_work >= 1, "no kill came while input was left");
    let st = wait_until(&s, "reading the input", Duration::from_secs(300), |st| {
        lag(st) == 0
    });
    let keys: u64 = st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state_keys"].as_u64().unwrap())
        .sum();
    let bytes: u64 = st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(keys as usize, expected.len(), "{st}");
    let memory = st["state_memory_bytes"].as_u64().unwrap();
    assert!(
        memory <= CACHE_BYTES / 2 + (1 << 20) && bytes > 2 * memory,
        "state {bytes} bytes, memory {memory}: {st}"
    );
    assert!(st["state_disk_bytes"].as_u64().unwrap() > 0, "{st}");
    // The state API reads through to the disk: every window of a user, one key.
    let user = expected.keys().nth(12_345).unwrap().clone();
    let r: Value = http()
        .get(s.url(&format!("/v1/transforms/wc/state?key={user}")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["entries"].as_array().map(Vec::len), Some(1), "{r}");
    assert_eq!(r["entries"][0]["value"], json!(expected[&user]), "{r}");

    // A clean restart replays nothing: the disk's checkpoint is at the changelog's end.
    s.stop();
    s = Server::start_in(&data, &[]);
    let st = wait_until(&s, "restored", Duration::from_secs(60), |st| {
        st["partitions"]
            .as_array()
            .is_some_and(|ps| ps.len() == PARTITIONS && ps.iter().all(|p| p["restore"].is_object()))
    });
    for p in st["partitions"].as_array().unwrap() {
        assert_eq!(p["restore"]["replayed"], 0, "{p}");
        assert!(p["restore"]["snapshot_offset"].is_u64(), "{p}");
    }

    // Each partition's watermark passes the window: 240,000 timers fire, from disk; a
    // SIGKILL while they do.
    let mut body = String::new();
    for p in 0..PARTITIONS {
        body.push_str(&format!(
            r#"{{"key":"closer","value":"e","partition":{p},"timestamp":{}}}"#,
            base + 2 * WINDOW_MS + LATENESS_MS
        ));
        body.push('\n');
    }
    produce_ndjson(&s, "events", &body);
    let deadline = Instant::now() + Duration::from_secs(60);
    while records_in(&s, "counts") < expected.len() as u64 / 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    s.kill9();
    s = Server::start_in(&data, &[]);
    let deadline = Instant::now() + Duration::from_secs(300);
    while records_in(&s, "counts") < expected.len() as u64 {
        assert!(
            Instant::now() < deadline,
            "{} of {} windows out: {}",
            records_in(&s, "counts"),
            expected.len(),
            status(&s, "wc")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut got: BTreeMap<String, u64> = BTreeMap::new();
    let mut twice = Vec::new();
    for r in all(&s, "counts") {
        let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        assert_eq!(v["window_start"].as_i64(), Some(base), "{v}");
        let key = v["key"].as_str().unwrap().to_string();
        if got
            .insert(key.clone(), v["count"].as_u64().unwrap())
            .is_some()
        {
            twice.push(key);
        }
    }
    assert!(
        twice.is_empty(),
        "windows emitted twice: {:?}",
        &twice[..twice.len().min(10)]
    );
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(k, n)| got.get(*k) != Some(n))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty() && got.len() == expected.len(),
        "{} windows expected, {} emitted; wrong: {wrong:?}",
        expected.len(),
        got.len()
    );
    let st = wait_until(&s, "windows forgotten", Duration::from_secs(60), |st| {
        st["partitions"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["state_keys"] == 1 && p["timers"] == 1))
    });
    assert!(all(&s, "events.dlq").is_empty(), "{st}");
}
