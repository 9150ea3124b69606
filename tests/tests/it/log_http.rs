//! The log through the HTTP API: round trips, partitioning, long polls, streams, bad input.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, http, sluice_bin};

#[test]
fn hundred_thousand_records_round_trip_in_order_on_the_murmur2_partition() {
    let s = Server::start();
    s.create_topic(json!({"name": "rt", "partitions": 3}));
    const N: usize = 100_000;
    // Alternate keyed (JSON body) and unkeyed (NDJSON body) requests of 5,000 records.
    let mut acked: HashMap<String, (u64, u64)> = HashMap::new();
    for chunk in 0..N / 5000 {
        let ids: Vec<usize> = (chunk * 5000..(chunk + 1) * 5000).collect();
        let keyed = chunk % 2 == 0;
        let offsets: Vec<(u64, u64)> = if keyed {
            let recs = ids
                .iter()
                .map(|i| json!({"key": format!("user-{}", i % 977), "value": format!("v{i}")}))
                .collect();
            s.produce("rt", recs)
        } else {
            let body: String = ids
                .iter()
                .map(|i| format!("{}\n", json!({"value": {"n": i}})))
                .collect();
            let r = http()
                .post(s.url("/v1/topics/rt/records"))
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().unwrap();
            v["offsets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    (
                        o["partition"].as_u64().unwrap(),
                        o["offset"].as_u64().unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(offsets.len(), ids.len());
        for (i, o) in ids.iter().zip(offsets) {
            let value = if keyed {
                format!("v{i}")
            } else {
                json!({"n": i}).to_string()
            };
            acked.insert(value, o);
        }
    }
    let mut total = 0;
    for p in 0..3u32 {
        let recs = s.read_all("rt", p, 0);
        let mut last_seq: Option<usize> = None;
        for (expect_offset, r) in recs.iter().enumerate() {
            let value = r["value"].as_str().unwrap().to_string();
            let (ap, ao) = acked[&value];
            assert_eq!((ap, ao), (u64::from(p), r["offset"].as_u64().unwrap()));
            assert_eq!(ao, expect_offset as u64, "offsets are dense");
            // Order per partition = produce order.
            let seq: usize = match value.strip_prefix('v') {
                Some(n) => n.parse().unwrap(),
                None => serde_json::from_str::<Value>(&value).unwrap()["n"]
                    .as_u64()
                    .unwrap() as usize,
            };
            assert!(last_seq.is_none_or(|l| l < seq));
            last_seq = Some(seq);
            if let Some(key) = r["key"].as_str() {
                assert_eq!(
                    sluice_log::partition_for_key(key.as_bytes(), 3),
                    p,
                    "key {key}"
                );
            }
        }
        total += recs.len();
    }
    assert_eq!(total, N);
}

#[test]
fn long_poll_waits_for_data_and_stream_delivers_every_partition() {
    let s = Server::start();
    s.create_topic(json!({"name": "lp", "partitions": 2}));
    // A long poll at the end returns as soon as a record arrives.
    let url = s.url("/v1/topics/lp/partitions/1/records?offset=0&wait_ms=10000");
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let v: Value = http().get(url).send().unwrap().json().unwrap();
        (v, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    s.produce(
        "lp",
        vec![json!({"value": "hello", "partition": 1, "headers": {"h": "x"}})],
    );
    let (v, took) = waiter.join().unwrap();
    assert_eq!(v["records"][0]["value"], "hello");
    assert_eq!(v["records"][0]["headers"]["h"], "x");
    assert_eq!(v["next_offset"], 1);
    assert!(
        took < Duration::from_secs(5),
        "long poll returned after {took:?}"
    );
    // With nothing new, the poll times out empty.
    let v: Value = http()
        .get(s.url("/v1/topics/lp/partitions/1/records?offset=1&wait_ms=200"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 0);
    assert_eq!(v["high_watermark"], 1);

    // SSE from earliest: the old record, then new ones from both partitions.
    let resp = http()
        .get(s.url("/v1/topics/lp/stream?from=earliest"))
        .send()
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    s.produce(
        "lp",
        vec![
            json!({"value": "a", "partition": 0}),
            json!({"value": "b", "partition": 1}),
        ],
    );
    let mut values = Vec::new();
    for line in BufReader::new(resp).lines() {
        let line = line.unwrap();
        if let Some(d) = line.strip_prefix("data: ") {
            let r: Value = serde_json::from_str(d).unwrap();
            values.push(r["value"].as_str().unwrap().to_string());
            if values.len() == 3 {
                break;
            }
        }
    }
    values.sort();
    assert_eq!(values, ["a", "b", "hello"]);
}

#[test]
fn binary_values_and_base64_round_trip() {
    let s = Server::start();
    s.create_topic(json!({"name": "bin"}));
    s.produce(
        "bin",
        vec![json!({"key_base64": "gAEC", "value_base64": "/wD+", "timestamp": 1234})],
    );
    let r = &s.read_all("bin", 0, 0)[0];
    assert_eq!(r["key_base64"], "gAEC");
    assert_eq!(r["value_base64"], "/wD+");
    assert_eq!(r["timestamp"], 1234);
}

/// `?timestamp=T` starts at the first record stamped at or after T, across segments and
/// with timestamps out of order; past every record it starts at the high watermark.
#[test]
fn consume_seeks_by_timestamp() {
    let s = Server::start();
    s.create_topic(json!({"name": "timed", "segment_bytes": 4096}));
    // Timestamps rise by 10 ms per record, except record 250, stamped in the past.
    let recs: Vec<Value> = (0..400i64)
        .map(|i| {
            let ts = if i == 250 { 5 } else { 1_000 + 10 * i };
            json!({"value": format!("r{i}-{}", "x".repeat(40)), "timestamp": ts})
        })
        .collect();
    s.produce("timed", recs);
    let at = |q: &str| -> Value {
        http()
            .get(s.url(&format!("/v1/topics/timed/partitions/0/records?max=2&{q}")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let first = |q: &str| at(q)["records"][0]["offset"].as_u64();
    assert_eq!(first("timestamp=0"), Some(0));
    assert_eq!(first("timestamp=1000"), Some(0));
    assert_eq!(first("timestamp=1001"), Some(1));
    assert_eq!(first("timestamp=3000"), Some(200));
    assert_eq!(first("timestamp=4985"), Some(399));
    let past = at("timestamp=999999");
    assert_eq!(past["records"], json!([]));
    assert_eq!(past["next_offset"], 400);
    expect_error(
        http()
            .get(s.url("/v1/topics/timed/partitions/0/records?offset=1&timestamp=5"))
            .send()
            .unwrap(),
        400,
        "bad_query",
    );
    expect_error(
        http()
            .get(s.url("/v1/topics/timed/partitions/0/records?timestamp=soon"))
            .send()
            .unwrap(),
        400,
        "bad_query",
    );
}

fn expect_error(resp: reqwest::blocking::Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let v: Value = resp.json().unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
}

#[test]
fn bad_input_gets_json_errors_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("sluice.toml");
    std::fs::write(&cfg, "[limits]\nmax_body_bytes = 65536\n").unwrap();
    let s = Server::start_in(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    s.create_topic(json!({"name": "ok", "partitions": 2}));
    s.produce("ok", vec![json!({"value": "keep"})]);
    let c = http();
    let post = |path: &str, body: &str| {
        c.post(s.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    expect_error(
        post("/v1/topics/ok/records", "{not json"),
        400,
        "invalid_json",
    );
    expect_error(
        post("/v1/topics/ok/records", r#"{"records": 5}"#),
        400,
        "invalid_field",
    );
    expect_error(
        post("/v1/topics/ok/records", r#"{"records": [{"key": 7}]}"#),
        400,
        "invalid_field",
    );
    expect_error(
        post("/v1/topics/ok/records", r#"{"records": []}"#),
        400,
        "bad_request",
    );
    expect_error(post("/v1/topics/ok/records", ""), 400, "bad_request");
    expect_error(
        post(
            "/v1/topics/ok/records",
            r#"{"records": [{"value": "x", "partition": 2}]}"#,
        ),
        400,
        "unknown_partition",
    );
    expect_error(
        post(
            "/v1/topics/ok/records",
            r#"{"records": [{"value_base64": "!!"}]}"#,
        ),
        400,
        "bad_request",
    );
    expect_error(
        post("/v1/topics/nope/records", r#"{"records": [{"value": 1}]}"#),
        404,
        "unknown_topic",
    );
    let big = format!(r#"{{"records": [{{"value": "{}"}}]}}"#, "x".repeat(100_000));
    expect_error(post("/v1/topics/ok/records", &big), 413, "body_too_large");
    for name in ["../x", "", "a/b", &"n".repeat(250), "..", "with space"] {
        let body = json!({"name": name}).to_string();
        expect_error(post("/v1/topics", &body), 400, "invalid_topic_name");
    }
    expect_error(
        post("/v1/topics", r#"{"name": "p0", "partitions": 0}"#),
        400,
        "invalid_config",
    );
    expect_error(
        post("/v1/topics", r#"{"name": "typo", "partitons": 3}"#),
        400,
        "bad_request",
    );
    expect_error(post("/v1/topics", r#"{"name": "ok"}"#), 409, "topic_exists");
    let get = |path: &str| c.get(s.url(path)).send().unwrap();
    expect_error(
        get("/v1/topics/ok/partitions/9/records"),
        404,
        "unknown_partition",
    );
    expect_error(
        get("/v1/topics/ok/partitions/-1/records"),
        404,
        "unknown_partition",
    );
    expect_error(get("/v1/topics/ok/partitions/x/records"), 400, "bad_path");
    expect_error(
        get("/v1/topics/ok/partitions/0/records?offset=abc"),
        400,
        "bad_query",
    );
    expect_error(
        get("/v1/topics/ok/partitions/0/records?offset=99"),
        416,
        "offset_out_of_range",
    );
    expect_error(get("/v1/topics/nope"), 404, "unknown_topic");
    expect_error(get("/v1/nothing/here"), 404, "not_found");
    expect_error(get("/v1/topics/ok/stream?from=middle"), 400, "bad_request");
    let r = c.delete(s.url("/v1/topics/nope")).send().unwrap();
    expect_error(r, 404, "unknown_topic");

    // Still serving, and what was written is unchanged.
    assert_eq!(get("/healthz").status(), 200);
    let all: Vec<Value> = (0..2).flat_map(|p| s.read_all("ok", p, 0)).collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["value"], "keep");
    let topics: Value = get("/v1/topics").json().unwrap();
    assert_eq!(topics["topics"].as_array().unwrap().len(), 1);
}

#[test]
fn retention_deletes_old_segments_and_reads_below_start_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("sluice.toml");
    std::fs::write(&cfg, "[log]\nretention_check_ms = 100\n").unwrap();
    let s = Server::start_in(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    s.create_topic(json!({"name": "bysize", "segment_bytes": 4096, "retention_bytes": 16384}));
    let old = sluice_log::now_ms() - 3_600_000;
    s.create_topic(json!({"name": "bytime", "segment_bytes": 4096, "retention_ms": 600000}));
    for i in 0..40 {
        let recs: Vec<Value> = (0..10)
            .map(|j| json!({"value": format!("{i}-{j}-{}", "p".repeat(50))}))
            .collect();
        s.produce("bysize", recs);
        let recs: Vec<Value> = (0..10)
            .map(|j| json!({"value": format!("old-{i}-{j}"), "timestamp": old}))
            .collect();
        s.produce("bytime", recs);
    }
    s.produce(
        "bytime",
        (0..5)
            .map(|j| json!({"value": format!("new-{j}")}))
            .collect(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = &s.describe("bysize")["partitions"][0];
        let time = &s.describe("bytime")["partitions"][0];
        if size["start_offset"].as_u64().unwrap() > 0
            && time["start_offset"].as_u64().unwrap() > 300
        {
            assert!(
                size["size_bytes"].as_u64().unwrap() <= 16384 + 4096,
                "{size}"
            );
            assert_eq!(size["end_offset"], 400);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not run: {size} {time}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = http()
        .get(s.url("/v1/topics/bysize/partitions/0/records?offset=0"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);
    let v: Value = r.json().unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("out of range"),
        "{v}"
    );
    let start = s.describe("bytime")["partitions"][0]["start_offset"]
        .as_u64()
        .unwrap();
    let left = s.read_all("bytime", 0, start);
    assert!(left.iter().any(|r| r["value"] == "new-4"));
}

#[test]
fn cli_creates_produces_and_consumes() {
    let s = Server::start();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(sluice_bin())
            .args(args)
            .args(["--server", &s.base])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["topic", "create", "clitopic", "--partitions", "2"], None);
    assert!(run(&["topic", "list"], None).contains("clitopic"));
    run(
        &["produce", "clitopic", "--key", "k1"],
        Some("one\ntwo\nthree\n"),
    );
    let out = run(&["consume", "clitopic"], None);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["one", "two", "three"]);
    let described: Value =
        serde_json::from_str(&run(&["topic", "describe", "clitopic"], None)).unwrap();
    assert_eq!(described["partitions"].as_array().unwrap().len(), 2);
    run(&["topic", "delete", "clitopic"], None);
    assert!(!run(&["topic", "list"], None).contains("clitopic"));
}
