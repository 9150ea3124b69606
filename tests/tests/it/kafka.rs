//! The Kafka listener with a real client (kafka-python) and with malformed frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::Server;

fn script() -> String {
    format!(
        "{}/kafka/kafka_python_roundtrip.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn kafka_python_produces_and_consumes_and_interoperates_with_http() {
    let s = Server::start();
    let kafka = s.kafka.clone().expect("kafka listener");
    s.create_topic(json!({"name": "user_activity_events", "partitions": 3}));
    s.create_topic(json!({"name": "from_http", "partitions": 2}));
    let http_values = ["plain text", "{\"a\":1}", "ünïcödé"];
    s.produce(
        "from_http",
        http_values
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"key": format!("k{i}"), "value": v, "headers": {"h": "x"}}))
            .collect(),
    );
    let out = Command::new("python3")
        .args([
            &script(),
            &kafka,
            "user_activity_events",
            "500",
            "from_http",
        ])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafka-python failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("500 produced and consumed"), "{stdout}");
    // Kafka → HTTP: every record readable, on the partition murmur2 picks for its key.
    let mut n = 0;
    for p in 0..3 {
        for r in s.read_all("user_activity_events", p, 0) {
            let key = r["key"].as_str().unwrap();
            assert_eq!(sluice_log::partition_for_key(key.as_bytes(), 3), p, "{key}");
            let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
            assert_eq!(v["user_id"], key);
            n += 1;
        }
    }
    assert_eq!(n, 500);
    // HTTP → Kafka: byte-identical keys, values and headers.
    let got: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), http_values.len(), "{stdout}");
    for (i, v) in http_values.iter().enumerate() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let rec = got
            .iter()
            .find(|r| r["key"] == hex(format!("k{i}").as_bytes()))
            .expect("record");
        assert_eq!(rec["value"], hex(v.as_bytes()));
        assert_eq!(rec["headers"], json!([["h", hex(b"x")]]));
    }
}

/// A v0 ApiVersions request with correlation id 7.
fn api_versions_frame() -> Vec<u8> {
    let mut body = vec![0, 18, 0, 0, 0, 0, 0, 7, 0xff, 0xff];
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.append(&mut body);
    f
}

fn closed_by_server(addr: &str, bytes: &[u8]) -> bool {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = c.write_all(bytes);
    let _ = c.shutdown(std::net::Shutdown::Write);
    let mut buf = [0u8; 64];
    matches!(c.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn malformed_frames_close_only_their_connection() {
    let s = Server::start();
    let addr = s.kafka.clone().unwrap();
    let mut good = TcpStream::connect(&addr).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cases: Vec<Vec<u8>> = vec![
        vec![0, 0],                        // short length
        (-5i32).to_be_bytes().to_vec(),    // negative length
        (i32::MAX).to_be_bytes().to_vec(), // ~2 GB length
        [
            &12i32.to_be_bytes()[..],
            &[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0, 0],
        ]
        .concat(), // unknown api key
        [&40i32.to_be_bytes()[..], &[0, 3, 0, 9, 0, 0, 0, 1]].concat(), // truncated body
        [
            &10i32.to_be_bytes()[..],
            &[0, 3, 0, 9, 0, 0, 0, 1, 0xff, 0xff],
        ]
        .concat(), // metadata with no body
        {
            // Found by the fuzzer: a 27-byte Metadata request whose topic count reads as
            // two billion; the codec allocated from it and the allocation abort killed
            // the whole server.
            let body =
                b"\x00\x03\x00\x01\x00\x00\x00\x02\x00\x04-fuzz\x00\x00\x00\x01\x00\x06events";
            [&(body.len() as i32).to_be_bytes()[..], &body[..]].concat()
        },
    ];
    for c in &cases {
        assert!(closed_by_server(&addr, c), "{c:?} was not refused");
    }
    // The listener still serves, including a connection opened before the garbage.
    good.write_all(&api_versions_frame()).unwrap();
    let mut len = [0u8; 4];
    good.read_exact(&mut len).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(len) as usize];
    good.read_exact(&mut resp).unwrap();
    assert_eq!(&resp[..4], &7i32.to_be_bytes(), "correlation id");
    assert_eq!(&resp[4..6], &[0, 0], "no error");
    assert_eq!(http_ok(&s), 200);
}

fn http_ok(s: &Server) -> u16 {
    crate::common::http()
        .get(s.url("/healthz"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn groups_script(args: &[&str]) -> Vec<String> {
    let script = format!(
        "{}/kafka/kafka_python_groups.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn kafka_python_consumer_groups_commit_durably_and_read_masked_output() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    let k = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "user_activity_events", "partitions": 3}));
    groups_script(&["produce", &k, "user_activity_events", "200"]);
    let first = groups_script(&["group-read", &k, "user_activity_events", "g1", "200"]);
    assert_eq!(first.len(), 200, "{first:?}");
    let seqs: std::collections::HashSet<u64> = first
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs.len(), 200);
    // Committed offsets survive a restart: the group then reads only what is new.
    s.stop();
    let s = Server::start_in(tmp.path(), &[]);
    let k = s.kafka.clone().unwrap();
    groups_script(&["produce", &k, "user_activity_events", "50"]);
    let second = groups_script(&["group-read", &k, "user_activity_events", "g1", "50"]);
    assert_eq!(second.len(), 50, "{second:?}");
    assert!(second.iter().all(|l| {
        serde_json::from_str::<Value>(l).unwrap()["seq"]
            .as_u64()
            .unwrap()
            < 50
    }));

    // Kafka producer → mask transform → Kafka consumer group.
    s.create_topic(json!({"name": "logins", "partitions": 2}));
    s.create_topic(json!({"name": "logins.masked", "partitions": 2}));
    let r = crate::common::http()
        .put(s.url("/v1/plugins/mask"))
        .body(sluice::plugins::MASK.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = crate::common::http()
        .put(s.url("/v1/transforms/mask-logins"))
        .json(&json!({"plugin": "mask", "input": "logins", "outputs": ["logins.masked"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    groups_script(&["produce-lines", &k, "logins", "30"]);
    let masked = groups_script(&["group-read", &k, "logins.masked", "readers", "30"]);
    assert_eq!(masked.len(), 30, "{masked:?}");
    assert!(
        masked.iter().all(|l| l == "User: john, Password: ********"),
        "{masked:?}"
    );
}

#[test]
fn librdkafka_compressed_idempotent_producer_and_a_two_member_group() {
    let s = Server::start();
    let k = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "six", "partitions": 6}));
    let script = format!("{}/kafka/confluent_groups.py", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([&script, &k, "six", "3000"])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(r["produce_errors"], json!([]), "{r}");
    let split = r["split"].as_array().unwrap();
    assert!(
        split[0].as_u64().unwrap() >= 1 && split[1].as_u64().unwrap() >= 1,
        "partitions were never split: {r}"
    );
    assert_eq!(
        split[0].as_u64().unwrap() + split[1].as_u64().unwrap(),
        6,
        "{r}"
    );
    assert_eq!(
        r["final_a"], 6,
        "the remaining member takes every partition: {r}"
    );
    assert_eq!(r["unique"], 3000, "{r}");
    assert_eq!(
        r["total"], 3000,
        "nothing read twice across the hand-over: {r}"
    );
    // The lz4 batches are stored as sent and read back over HTTP too.
    let total: usize = (0..6).map(|p| s.read_all("six", p, 0).len()).sum();
    assert_eq!(total, 3000);
    // A transform reads the compressed batches like any others (decompressed for the plugin).
    s.create_topic(json!({"name": "six.out", "partitions": 2}));
    let c = crate::common::http();
    let r = c
        .put(s.url("/v1/plugins/id"))
        .body(sluice_tests::fixtures::IDENTITY.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .put(s.url("/v1/transforms/copy"))
        .json(&json!({"plugin": "id", "input": "six", "outputs": ["six.out"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out: Vec<Value> = (0..2).flat_map(|p| s.read_all("six.out", p, 0)).collect();
        if out.len() >= 3000 {
            let seqs: std::collections::HashSet<u64> = out
                .iter()
                .map(|r| {
                    serde_json::from_str::<Value>(r["value"].as_str().unwrap()).unwrap()["seq"]
                        .as_u64()
                        .unwrap()
                })
                .collect();
            assert_eq!((out.len(), seqs.len()), (3000, 3000));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of 3000 transformed",
            out.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kcat_lists_produces_and_consumes() {
    let s = Server::start();
    let k = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "kc", "partitions": 2}));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("lines.txt");
    let lines: Vec<String> = (0..50).map(|i| format!("line {i}")).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("kcat")
            .args(["-b", &k])
            .args(args)
            .output()
            .expect("kcat");
        assert!(
            out.status.success(),
            "kcat {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let meta = run(&["-L"]);
    assert!(meta.contains("topic \"kc\" with 2 partitions"), "{meta}");
    run(&["-P", "-t", "kc", "-l", file.to_str().unwrap()]);
    let mut got: Vec<String> = run(&["-C", "-t", "kc", "-e", "-q"])
        .lines()
        .map(str::to_owned)
        .collect();
    got.sort();
    let mut want = lines.clone();
    want.sort();
    assert_eq!(got, want);
    // Every request kcat made is counted and timed per API.
    let metrics = crate::common::http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for api in ["Metadata", "Produce", "Fetch"] {
        let count: u64 = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "sluice_kafka_request_duration_seconds_count{{api=\"{api}\"}} "
                ))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(count >= 1, "no {api} requests counted:\n{metrics}");
    }
}

#[test]
fn kafka_admin_creates_describes_and_deletes_topics() {
    let s = Server::start();
    let k = s.kafka.clone().unwrap();
    let out = groups_script(&["admin", &k]).join("\n");
    assert!(
        out.contains("duplicate refused: TopicAlreadyExistsError"),
        "{out}"
    );
    assert!(
        out.contains("retention.ms") && out.contains("3600000") && out.contains("compact"),
        "{out}"
    );
    assert!(out.contains("deleted"), "{out}");
    let r = crate::common::http()
        .get(s.url("/v1/topics/admin_made"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404, "deleted over Kafka, gone over HTTP");
}

#[test]
fn a_crashed_group_member_expires_and_the_survivor_takes_its_partitions() {
    let s = Server::start();
    let k = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "crash_g", "partitions": 2}));
    groups_script(&["produce", &k, "crash_g", "100"]);
    let script = format!(
        "{}/kafka/kafka_python_groups.py",
        env!("CARGO_MANIFEST_DIR")
    );
    // Member A joins and reads without committing, then dies without leaving the group.
    let mut a = Command::new("python3")
        .args([&script, "group-read", &k, "crash_g", "gx", "1000000"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    a.kill().unwrap();
    a.wait().unwrap();
    // B joins; A's session times out during the rebalance and B gets every partition.
    let t = std::time::Instant::now();
    let got = groups_script(&["group-read", &k, "crash_g", "gx", "100"]);
    assert_eq!(got.len(), 100, "{got:?}");
    assert!(
        t.elapsed() < Duration::from_secs(40),
        "took {:?}",
        t.elapsed()
    );
}

/// Runs a client script that prints a JSON summary as its last line; fails with its
/// output when it fails.
pub(crate) fn script_json(cmd: &mut Command) -> Value {
    let out = cmd
        .output()
        .expect("the client runtime (scripts/setup installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap()
}

/// librdkafka's transactional producer and read_committed consumers against the listener:
/// committed records once, aborted ones never, an open transaction holds readers back, a
/// zombie is fenced, consume-transform-produce commits its offsets in the transaction; HTTP
/// consume reads committed data too; a transaction left open by a crash is aborted when
/// the server restarts.
#[test]
fn transactions_commit_abort_fence_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &[]);
    let k = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "tx", "partitions": 3}));
    s.create_topic(json!({"name": "tx.upper", "partitions": 3}));
    let script = format!(
        "{}/kafka/confluent_transactions.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let run =
        |k: &str, mode: &str| script_json(Command::new("python3").args([&script, k, "tx", mode]));
    let r = run(&k, "all");
    assert_eq!(
        (
            &r["committed"],
            &r["committed_unique"],
            &r["committed_has_aborted"]
        ),
        (&json!(200), &json!(200), &json!(false)),
        "{r}"
    );
    assert_eq!(r["uncommitted"], 250, "aborted records are in the log: {r}");
    assert_eq!(r["while_open"], 0, "{r}");
    assert_eq!(r["after_commit"], 30, "{r}");
    assert_eq!(r["zombie_fenced"], true, "{r}");
    assert_eq!(
        (&r["zombie_visible"], &r["fresh_visible"]),
        (&json!(0), &json!(10)),
        "{r}"
    );
    assert_eq!(r["final_committed"], 240, "{r}");
    assert_eq!(
        (&r["ctp_moved"], &r["ctp_out"]),
        (&json!(240), &json!(240)),
        "{r}"
    );
    let ends: u64 = s.describe("tx")["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(
        r["ctp_committed_offsets"].as_u64(),
        Some(ends),
        "the group's offsets were committed with the last transaction"
    );
    let http: Vec<Value> = (0..3).flat_map(|p| s.read_all("tx", p, 0)).collect();
    assert_eq!(http.len(), 240, "HTTP consume reads committed records only");
    assert!(http.iter().all(|r| {
        let v = r["value"].as_str().unwrap();
        !v.starts_with("a1") && !v.starts_with("zombie")
    }));

    // A transaction left open, then a crash: the restart aborts it.
    let open = run(&k, "open");
    assert_eq!(open["open"], 20);
    s.kill9();
    s = Server::start_in(&data, &[]);
    s.produce("tx", vec![json!({"value": "after", "partition": 0})]);
    let http: Vec<Value> = (0..3).flat_map(|p| s.read_all("tx", p, 0)).collect();
    assert_eq!(
        http.len(),
        241,
        "the aborted records stay hidden, later ones show"
    );
    assert!(
        !http
            .iter()
            .any(|r| r["value"].as_str().unwrap().starts_with("open"))
    );
    // A transform reads committed records only.
    s.create_topic(json!({"name": "tx.copy", "partitions": 1}));
    crate::pipeline::upload(&s, "id", sluice_tests::fixtures::IDENTITY);
    crate::pipeline::deploy_ok(
        &s,
        "copy",
        json!({"plugin": "id", "input": "tx", "outputs": ["tx.copy"]}),
    );
    let copied = crate::pipeline::wait_for_count(&s, "tx.copy", 241);
    assert_eq!(copied.len(), 241);
    // The coordinator's state topic is the server's.
    let r = crate::common::http()
        .delete(s.url("/v1/topics/__sluice_transactions"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
}

/// librdkafka's admin client (CreatePartitions, IncrementalAlterConfigs, DeleteRecords,
/// DescribeCluster, DeleteGroups) and group membership: members starting together land
/// in one generation (the initial rebalance delay), a static member that restarts gets its
/// partitions back without a rebalance of the others.
#[test]
fn admin_apis_initial_rebalance_delay_and_static_membership() {
    let s = Server::start();
    let k = s.kafka.clone().unwrap();
    let script = format!("{}/kafka/confluent_admin.py", env!("CARGO_MANIFEST_DIR"));
    let r = script_json(Command::new("python3").args([&script, &k]));
    assert_eq!(r["partitions_after"], 4, "{r}");
    assert_eq!(r["shrink_refused"], true, "{r}");
    assert_eq!(r["retention_ms"], "3600000", "{r}");
    assert_eq!(
        s.describe("adm")["retention_ms"],
        3_600_000,
        "the change reached the topic"
    );
    assert_eq!(s.describe("adm")["partitions"].as_array().unwrap().len(), 4);
    assert_eq!(
        (&r["low_watermark"], &r["first_offset_after_delete"]),
        (&json!(40), &json!(40)),
        "{r}"
    );
    assert_eq!(s.describe("adm")["partitions"][0]["start_offset"], 40);
    assert_eq!(r["cluster_nodes"], 1, "{r}");
    assert_eq!(r["together_split"], json!([2, 2]), "{r}");
    // One assignment each, taken back only when they closed.
    let once = json!([["assign", 2], ["revoke", 2]]);
    assert_eq!(r["together_events"], json!([once, once]), "{r}");
    assert_eq!(r["static_back"], 2, "{r}");
    assert_eq!(r["b_events"], once, "no rebalance for the others: {r}");
    assert_eq!(r["group_deleted"], true, "{r}");
}

/// kafkajs 2.2 (installed by scripts/setup): CreatePartitions from its admin client, a
/// transactional send that commits and one that aborts, a read_committed consumer.
#[test]
fn kafkajs_creates_partitions_and_sends_transactionally() {
    let s = Server::start();
    let k = s.kafka.clone().unwrap();
    let node_dir =
        std::env::var("SLUICE_NODE_DIR").unwrap_or_else(|_| "/var/tmp/sluice-node".into());
    let script = format!(
        "{}/kafka/kafkajs_transactions.js",
        env!("CARGO_MANIFEST_DIR")
    );
    let r = script_json(
        Command::new("node")
            .arg(&script)
            .arg(&k)
            .env("NODE_PATH", format!("{node_dir}/node_modules")),
    );
    assert_eq!(r, json!({"partitions": 3, "committed": 20, "aborted": 0}));
}

/// Static membership (KIP-345): a second consumer joining with a `group.instance.id` already
/// in use takes over, and the displaced one is told at once — a fatal FENCED_INSTANCE_ID —
/// instead of both believing they own the partitions (librdkafka's 0102 case).
#[test]
fn a_displaced_static_member_is_fenced() {
    let s = Server::start();
    let k = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "static_t", "partitions": 2}));
    let v = script_json(Command::new("python3").args([
        &format!("{}/kafka/static_fencing.py", env!("CARGO_MANIFEST_DIR")),
        &k,
        "static_t",
        "static_g",
    ]));
    assert_eq!(v["a_assigned"], true, "{v}");
    assert!(
        v["fenced"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("fenced")),
        "{v}"
    );
    assert_eq!(v["fatal"], true, "{v}");
    assert!(v["seconds"].as_f64().unwrap() < 10.0, "{v}");
    assert_eq!(v["b_assigned"], true, "{v}");
}
