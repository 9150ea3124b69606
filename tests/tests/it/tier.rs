//! Tiered storage against a real S3-compatible server (moto, from PyPI, on loopback):
//! segments upload and leave local disk, HTTP consume, Kafka fetch (kcat) and a transform
//! from `earliest` read through the remote tier with the same results; the store going
//! down never blocks produce; SIGKILL between upload and manifest loses and duplicates
//! nothing; a lost data directory is restored from the bucket.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_tests::Moto;

use crate::common::{Server, http};
use crate::pipeline::{deploy_ok, upload, wait_for_count_within};

const BUCKET: &str = "tiered";

/// A TCP proxy in front of the store that can fail like an unreachable one: while down it
/// cuts every open connection and refuses new ones.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn to(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                {
                    let mut c = conns2.lock().unwrap();
                    c.push(client.try_clone().unwrap());
                    c.push(server.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 64 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, up, conns }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn config_file(dir: &Path, store_port: u16, upload_interval_ms: u64) -> std::path::PathBuf {
    config_file_with(dir, store_port, upload_interval_ms, 4 << 20)
}

fn config_file_with(
    dir: &Path,
    store_port: u16,
    upload_interval_ms: u64,
    cache_bytes: u64,
) -> std::path::PathBuf {
    let path = dir.join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[tier]
kind = "s3"
endpoint = "http://127.0.0.1:{store_port}"
access_key_id = "test"
secret_access_key = "test"
allow_http = true
upload_interval_ms = {upload_interval_ms}
cache_bytes = {cache_bytes}
restore_bucket = "{BUCKET}"
"#
        ),
    )
    .unwrap();
    path
}

fn tiered_topic(s: &Server, name: &str) {
    s.create_topic(json!({"name": name, "segment_bytes": 16384,
        "tiered": {"bucket": BUCKET, "prefix": "sluice"}}));
}

/// NDJSON produce of `n` records `{prefix}-{i}` (keys spread, timestamps rising), 100 per
/// request (a request is one batch; segments roll between batches).
fn produce(s: &Server, topic: &str, prefix: &str, n: usize) {
    for start in (0..n).step_by(100) {
        let mut body = String::new();
        for i in start..(start + 100).min(n) {
            body += &format!(
                "{}\n",
                json!({"key": format!("k{}", i % 17), "value": format!("{prefix}-{i}-{}", "x".repeat(60)),
                    "timestamp": 1_700_000_000_000i64 + i as i64})
            );
        }
        let r = http()
            .post(s.url(&format!("/v1/topics/{topic}/records")))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    }
}

fn tier_stats(s: &Server, topic: &str) -> Value {
    s.describe(topic)["partitions"][0]["tier"].clone()
}

/// Waits until nothing is waiting for upload and only the active segment is local.
fn wait_uploaded(s: &Server, topic: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let t = tier_stats(s, topic);
        if t["pending_segments"] == 0
            && t["remote_segments"].as_u64().unwrap_or(0) > 0
            && t["local_start_offset"] == t["remote_end_offset"]
        {
            return t;
        }
        assert!(Instant::now() < deadline, "not uploaded: {t}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn values_from(s: &Server, topic: &str, offset: u64) -> Vec<(u64, String)> {
    s.read_all(topic, 0, offset)
        .iter()
        .map(|r| {
            (
                r["offset"].as_u64().unwrap(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn segments_go_to_the_store_and_every_reader_reads_through_it() {
    let moto = Moto::start(BUCKET);
    let proxy = Proxy::to(moto.port);
    let tmp = tempfile::tempdir().unwrap();
    // A cache of one chunk: reads below the local data really go to the store.
    let config = config_file_with(tmp.path(), proxy.port, 100, 1);
    let s = Server::start_in(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    tiered_topic(&s, "events");
    produce(&s, "events", "a", 4000);
    let t = wait_uploaded(&s, "events");
    assert!(t["remote_segments"].as_u64().unwrap() >= 10, "{t}");
    assert!(
        t["local_bytes"].as_u64().unwrap() < 16384,
        "only the active segment: {t}"
    );
    let desc = s.describe("events");
    assert_eq!(desc["partitions"][0]["start_offset"], 0);
    assert_eq!(desc["partitions"][0]["end_offset"], 4000);
    let keys = moto.keys(BUCKET);
    assert!(
        keys.contains(&"sluice/events/topic.json".to_string()),
        "{keys:?}"
    );
    let logs = keys.iter().filter(|k| k.ends_with(".log")).count() as u64;
    assert_eq!(logs, t["remote_segments"].as_u64().unwrap());

    // HTTP from offset 0: every record, in order, from the store.
    let all = values_from(&s, "events", 0);
    assert_eq!(all.len(), 4000);
    for (i, (o, v)) in all.iter().enumerate() {
        assert_eq!(*o, i as u64);
        assert!(v.starts_with(&format!("a-{i}-")), "{v}");
    }
    // Kafka Fetch (kcat), the same records.
    let out = Command::new("kcat")
        .args([
            "-C",
            "-b",
            s.kafka.as_deref().unwrap(),
            "-t",
            "events",
            "-p",
            "0",
        ])
        .args(["-o", "beginning", "-e", "-q", "-f", "%o %s\n"])
        .output()
        .expect("kcat");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kcat: Vec<(u64, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (o, v) = l.split_once(' ').unwrap();
            (o.parse().unwrap(), v.to_string())
        })
        .collect();
    assert_eq!(kcat, all, "Kafka reads the remote tier like HTTP");
    // Seek by time lands inside a remote segment.
    let at: Value = http()
        .get(s.url("/v1/topics/events/partitions/0/records?timestamp=1700000001234&max=1"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(at["records"][0]["offset"], 1234);
    // A transform from `earliest` reads through the remote tier.
    s.create_topic(json!({"name": "copied"}));
    upload(&s, "identity", sluice_tests::fixtures::IDENTITY);
    deploy_ok(
        &s,
        "copy",
        json!({"plugin": "identity", "input": "events", "outputs": ["copied"], "start": "earliest"}),
    );
    let copied = wait_for_count_within(&s, "copied", 4000, Duration::from_secs(120));
    assert_eq!(copied.len(), 4000);
    assert!(
        copied[3999]["value"]
            .as_str()
            .unwrap()
            .starts_with("a-3999-")
    );
    let metrics = http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for m in [
        "sluice_tier_uploads_total",
        "sluice_tier_download_bytes_total",
        "sluice_partition_remote_bytes{topic=\"events\"",
    ] {
        assert!(metrics.contains(m), "{m}");
    }

    // The store goes away: produce goes on, nothing is lost, the failure is reported.
    proxy.down();
    produce(&s, "events", "b", 2000);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = tier_stats(&s, "events");
        if t["failures"].as_u64().unwrap_or(0) > 0
            && t["pending_segments"].as_u64().unwrap_or(0) > 0
        {
            assert!(t["last_error"].is_string(), "{t}");
            break;
        }
        assert!(Instant::now() < deadline, "no failure reported: {t}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.describe("events")["partitions"][0]["end_offset"], 6000);
    // Remote data cannot be read meanwhile: an error that says so, never "out of range"
    // (a Kafka consumer would reset its position and skip the data).
    let r = http()
        .get(s.url("/v1/topics/events/partitions/0/records?offset=0"))
        .send()
        .unwrap();
    let status = r.status();
    let body = r.text().unwrap();
    assert!(status.is_server_error(), "{status}: {body}");
    assert!(!body.contains("out of range"), "{body}");
    let consumer = kafka_consumer_at_zero(&s);
    let early = poll_for(&consumer, Duration::from_secs(3));
    assert!(
        early.is_none(),
        "read remote data while the store was down: {early:?}"
    );
    // It comes back: uploads resume (after the backoff) and everything reads back.
    proxy.up();
    let first = poll_for(&consumer, Duration::from_secs(60));
    assert_eq!(
        first,
        Some(0),
        "the consumer kept its position through the outage"
    );
    let t = wait_uploaded(&s, "events");
    assert!(t["last_error"].is_null(), "{t}");
    let all = values_from(&s, "events", 0);
    assert_eq!(all.len(), 6000);
    assert!(all[5999].1.starts_with("b-1999-"));
}

/// A consumer assigned offset 0 of `events` that would jump to the end on
/// OFFSET_OUT_OF_RANGE (`auto.offset.reset=latest`).
fn kafka_consumer_at_zero(s: &Server) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let c: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", s.kafka.as_deref().unwrap())
        .set("group.id", "tier-outage")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("events", 0, rdkafka::Offset::Offset(0))
        .unwrap();
    c.assign(&tpl).unwrap();
    c
}

/// The offset of the first record polled within `within`, if any.
fn poll_for(c: &rdkafka::consumer::BaseConsumer, within: Duration) -> Option<i64> {
    use rdkafka::Message;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            return Some(m.offset());
        }
    }
    None
}

#[test]
fn sigkill_between_upload_and_manifest_then_a_lost_disk_restored_from_the_bucket() {
    let moto = Moto::start(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    // Uploads wait long enough for the whole produce to land first.
    let config = config_file(tmp.path(), moto.port, 1500);
    let config = config.to_str().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in_env(
        &data,
        &["--config", config],
        &[("SLUICE_FAILPOINT", "tier-after-upload")],
    );
    tiered_topic(&s, "events");
    produce(&s, "events", "a", 3000);
    // The first segment's objects are uploaded, then the process dies before the manifest.
    let status = s.wait_exit(Duration::from_secs(60));
    assert!(!status.success(), "{status}");
    assert!(
        moto.keys(BUCKET)
            .iter()
            .any(|k| k.ends_with(".json") && k.contains("/0/"))
    );
    let mut s = Server::start_in(&data, &["--config", config]);
    let t = wait_uploaded(&s, "events");
    let keys = moto.keys(BUCKET);
    let logs: Vec<&String> = keys.iter().filter(|k| k.ends_with(".log")).collect();
    assert_eq!(
        logs.len() as u64,
        t["remote_segments"].as_u64().unwrap(),
        "one object per segment: {logs:?}"
    );
    let all = values_from(&s, "events", 0);
    assert_eq!(all.len(), 3000, "nothing lost, nothing twice");
    for (i, (o, v)) in all.iter().enumerate() {
        assert_eq!(*o, i as u64);
        assert!(v.starts_with(&format!("a-{i}-")));
    }

    // The data directory is lost; the bucket restores what was uploaded.
    let end = t["remote_end_offset"].as_u64().unwrap();
    s.stop();
    std::fs::remove_dir_all(&data).unwrap();
    let s = Server::start_in(&data, &["--config", config, "--restore-from-tier"]);
    let desc = s.describe("events");
    assert_eq!(desc["partitions"][0]["end_offset"], end, "{desc}");
    assert_eq!(values_from(&s, "events", 0), all[..end as usize].to_vec());
    // The log goes on after the restored end.
    produce(&s, "events", "c", 10);
    let after = values_from(&s, "events", end);
    assert_eq!(after.len(), 10);
    assert_eq!(after[0].0, end);
}
