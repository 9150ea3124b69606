//! `/v1/groups`: the consumer groups of real Kafka clients (kafka-python, confluent-kafka,
//! kafkajs) and of transforms, with their members, lag and offset resets — what
//! `kafka-consumer-groups` shows and does.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::pipeline::{deploy_ok, upload};

/// A group member running in its own process until its stdin closes.
struct Member {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
}

impl Member {
    fn start(cmd: &mut Command) -> Member {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the client runtime (scripts/setup installs it)");
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        Member { child, stdin, out }
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap_or_else(|_| panic!("member said {l:?}"))
    }

    /// Closes its stdin: it leaves the group and exits.
    fn leave(mut self) {
        if let Some(mut i) = self.stdin.take() {
            let _ = i.flush();
        }
        assert_eq!(self.line(), json!({"left": true}));
        assert!(self.child.wait().unwrap().success());
    }
}

fn script(name: &str) -> String {
    format!("{}/kafka/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn python_member(client: &str, k: &str, topic: &str, group: &str, n: i64) -> Member {
    Member::start(Command::new("python3").args([
        &script("group_member.py"),
        client,
        k,
        topic,
        group,
        &n.to_string(),
    ]))
}

fn kafkajs_member(k: &str, topic: &str, group: &str, n: i64) -> Member {
    let node_dir =
        std::env::var("SLUICE_NODE_DIR").unwrap_or_else(|_| "/var/tmp/sluice-node".into());
    Member::start(
        Command::new("node")
            .args([
                &script("kafkajs_group_member.js"),
                k,
                topic,
                group,
                &n.to_string(),
            ])
            .env("NODE_PATH", format!("{node_dir}/node_modules")),
    )
}

/// Reads everything `group` has not consumed with kafka-python: the (partition, offset)s.
fn read_rest(k: &str, topic: &str, group: &str) -> Vec<(u64, u64)> {
    let mut m = python_member("kafka-python", k, topic, group, -1);
    let v = m.line();
    assert!(m.child.wait().unwrap().success());
    v["read"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect()
}

fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = http().get(s.url(path)).send().unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn reset(s: &Server, group: &str, body: Value) -> (u16, Value) {
    let r = http()
        .post(s.url(&format!("/v1/groups/{group}/reset")))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

fn delete(s: &Server, group: &str) -> (u16, Value) {
    let r = http()
        .delete(s.url(&format!("/v1/groups/{group}")))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Waits until `GET /v1/groups/{group}` satisfies `ok`; its last answer.
fn wait_for(s: &Server, group: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, v) = get(s, &format!("/v1/groups/{group}"));
        if code == 200 && ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "group {group}: {code} {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each partition's end offset.
fn ends(s: &Server, topic: &str) -> Vec<u64> {
    s.describe(topic)["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_u64().unwrap())
        .collect()
}

fn sum(v: &Value, field: &str) -> u64 {
    v["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o[field].as_u64())
        .sum()
}

/// Three client libraries' groups show with their members (client id, host, assignment)
/// and exact lag, over HTTP and in the metrics; a transform's positions show as a group;
/// changes are refused while members are active; once they left, offsets reset (dry run,
/// to an offset, to the end, shifted, by time) and consumers start exactly there; a group
/// is deleted with its offsets.
#[test]
fn consumer_groups_show_members_and_lag_and_reset_their_offsets() {
    let s = Server::start();
    let k = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "gl", "partitions": 3}));
    s.create_topic(json!({"name": "gl.masked", "partitions": 3}));
    let records = (0..300)
        .map(|i| json!({"key": format!("k{i}"), "value": format!("User: u{i}, Password: p{i}")}))
        .collect();
    s.produce("gl", records);

    let mut members = vec![
        (
            "g-kp",
            40,
            python_member("kafka-python", &k, "gl", "g-kp", 40),
        ),
        ("g-ck", 50, python_member("confluent", &k, "gl", "g-ck", 50)),
        ("g-kj", 60, kafkajs_member(&k, "gl", "g-kj", 60)),
    ];
    for (g, n, m) in &mut members {
        assert_eq!(m.line(), json!({"consumed": *n}), "{g}");
    }
    upload(&s, "mask", sluice::plugins::MASK);
    deploy_ok(
        &s,
        "mask-gl",
        json!({"plugin": "mask", "input": "gl", "outputs": ["gl.masked"]}),
    );

    // Each group: one member of its client, on every partition, lag = 300 - consumed.
    let clients = [
        ("g-kp", "kafka-python-member"),
        ("g-ck", "confluent-member"),
        ("g-kj", "kafkajs-member"),
    ];
    let mut lags = Vec::new();
    for ((g, n, _), (_, client)) in members.iter().zip(clients) {
        let v = wait_for(&s, g, |v| v["state"] == "Stable");
        assert_eq!(v["kind"], "consumer", "{v}");
        assert_eq!(v["protocol_type"], "consumer", "{v}");
        let m = &v["members"].as_array().unwrap();
        assert_eq!(m.len(), 1, "{v}");
        assert_eq!(m[0]["client_id"], client, "{v}");
        assert_eq!(m[0]["client_host"], "127.0.0.1", "{v}");
        assert_eq!(
            m[0]["assignment"],
            json!([{"topic": "gl", "partitions": [0, 1, 2]}]),
            "{v}"
        );
        // Committed partitions have a lag; the others (nothing consumed there yet) have
        // none, as `kafka-consumer-groups` shows "-".
        assert_eq!(sum(&v, "committed"), *n as u64, "{v}");
        assert_eq!(sum(&v, "end"), 300, "{v}");
        let mut lag = 0;
        for o in v["offsets"].as_array().unwrap() {
            assert_eq!(o["member_id"], m[0]["member_id"], "{v}");
            match o["committed"].as_u64() {
                Some(c) => {
                    assert_eq!(o["lag"].as_u64(), Some(o["end"].as_u64().unwrap() - c));
                    lag += o["end"].as_u64().unwrap() - c;
                }
                None => assert!(o["lag"].is_null(), "{v}"),
            }
        }
        assert_eq!(v["lag"], lag, "{v}");
        lags.push(lag);
    }
    let t = wait_for(&s, "transform:mask-gl", |v| v["lag"] == 0);
    assert_eq!(t["kind"], "transform");
    assert_eq!(sum(&t, "committed"), 300, "{t}");
    let (code, list) = get(&s, "/v1/groups");
    assert_eq!(code, 200);
    let listed: Vec<(String, String, u64, u64)> = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_string(),
                g["kind"].as_str().unwrap().to_string(),
                g["members"].as_u64().unwrap(),
                g["lag"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        vec![
            ("g-ck".into(), "consumer".into(), 1, lags[1]),
            ("g-kj".into(), "consumer".into(), 1, lags[2]),
            ("g-kp".into(), "consumer".into(), 1, lags[0]),
            ("transform:mask-gl".into(), "transform".into(), 0, 0),
        ]
    );
    let metrics = http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let lag_of = |group: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("sluice_consumer_group_lag{{group=\"{group}\",")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!(
        (lag_of("g-kp"), lag_of("g-ck"), lag_of("g-kj")),
        (lags[0], lags[1], lags[2])
    );
    assert!(metrics.contains("sluice_consumer_group_members{group=\"g-kp\"} 1"));

    // The CLI prints the same, as `kafka-consumer-groups` would.
    let cli = |args: &[&str]| -> (bool, String) {
        let out = Command::new(crate::common::sluice_bin())
            .args(args)
            .arg("--server")
            .arg(s.url(""))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let (ok, text) = cli(&["group", "list"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("GROUP"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["g-kp", "consumer", "Stable", "1", &lags[0].to_string()]),
        "{text}"
    );
    let (ok, text) = cli(&["group", "describe", "g-ck"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("confluent-member") && text.contains("127.0.0.1"),
        "{text}"
    );
    let (ok, text) = cli(&["group", "reset", "g-ck", "--to", "earliest"]);
    assert!(!ok && text.contains("active members"), "{text}");

    // Nothing changes under active members, and a transform's positions are its own.
    let (code, e) = reset(&s, "g-kp", json!({"to": "earliest"}));
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (409, Some("group_active")),
        "{e}"
    );
    let (code, e) = delete(&s, "g-kp");
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (409, Some("group_active")),
        "{e}"
    );
    let (code, e) = delete(&s, "transform:mask-gl");
    assert_eq!(
        (code, e["error"]["code"].as_str()),
        (409, Some("transform_group")),
        "{e}"
    );
    let (code, e) = reset(&s, "transform:mask-gl", json!({"to": "earliest"}));
    assert_eq!(code, 409, "{e}");

    for (_, _, m) in members {
        m.leave();
    }
    for g in ["g-kp", "g-ck", "g-kj"] {
        let v = wait_for(&s, g, |v| v["state"] == "Empty");
        assert_eq!(v["members"], json!([]), "{v}");
    }

    // Bad requests: 4xx with a JSON error, nothing changed.
    for (body, want) in [
        (json!({"to": "sideways"}), 400),
        (json!({"to": "earliest", "partitions": [0]}), 400),
        (
            json!({"to": "earliest", "topic": "gl", "partitions": [7]}),
            400,
        ),
        (json!({"to": "earliest", "topic": "nope"}), 404),
        (json!({"to": {"offset": "ten"}}), 400),
        (json!({"to": "earliest", "extra": 1}), 400),
    ] {
        let (code, e) = reset(&s, "g-kp", body.clone());
        assert_eq!(code, want, "{body}: {e}");
        assert!(e["error"]["message"].is_string(), "{e}");
    }
    let (code, e) = reset(&s, "never-committed", json!({"to": "earliest"}));
    assert_eq!(code, 400, "{e}");

    // A dry run answers and changes nothing.
    let ends = ends(&s, "gl");
    let (code, v) = reset(&s, "g-kp", json!({"to": "earliest", "dry_run": true}));
    assert_eq!(code, 200, "{v}");
    assert!(!v["offsets"].as_array().unwrap().is_empty(), "{v}");
    assert!(
        v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["offset"] == 0)
    );
    assert_eq!(sum(&get(&s, "/v1/groups/g-kp").1, "committed"), 40);

    // To an offset: kafka-python then reads exactly from there.
    let (code, v) = reset(&s, "g-kp", json!({"to": {"offset": 10}, "topic": "gl"}));
    assert_eq!(code, 200, "{v}");
    let read = read_rest(&k, "gl", "g-kp");
    let want: Vec<(u64, u64)> = (0..3u64)
        .flat_map(|p| (10.min(ends[p as usize])..ends[p as usize]).map(move |o| (p, o)))
        .collect();
    assert_eq!(read, want);

    // To the end: only what is produced afterwards is read.
    let (code, v) = reset(&s, "g-ck", json!({"to": "latest"}));
    assert_eq!(code, 200, "{v}");
    let after = s.produce(
        "gl",
        (0..5)
            .map(|i| json!({"key": format!("n{i}"), "value": "late"}))
            .collect(),
    );
    let mut after: Vec<(u64, u64)> = after;
    after.sort();
    assert_eq!(read_rest(&k, "gl", "g-ck"), after);

    // Shifted back by 5 from each committed offset; by time (none that late: the end).
    let before = get(&s, "/v1/groups/g-kj").1;
    let (code, v) = reset(&s, "g-kj", json!({"to": {"shift_by": -5}}));
    assert_eq!(code, 200, "{v}");
    let now = get(&s, "/v1/groups/g-kj").1;
    for (b, n) in before["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .zip(now["offsets"].as_array().unwrap())
    {
        let b = b["committed"].as_u64().unwrap();
        assert_eq!(
            n["committed"].as_u64().unwrap(),
            b.saturating_sub(5),
            "{now}"
        );
    }
    let (code, v) = reset(
        &s,
        "g-kj",
        json!({"to": {"timestamp": 4_102_444_800_000i64}, "dry_run": true}),
    );
    assert_eq!(code, 200, "{v}");
    let new_ends = crate::groups::ends(&s, "gl");
    for o in v["offsets"].as_array().unwrap() {
        let p = o["partition"].as_u64().unwrap() as usize;
        assert_eq!(o["offset"].as_u64().unwrap(), new_ends[p], "{v}");
    }
    let (code, v) = reset(&s, "g-kj", json!({"to": {"timestamp": 0}, "dry_run": true}));
    assert_eq!(code, 200, "{v}");
    assert!(
        v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["offset"] == 0),
        "{v}"
    );
    let (ok, text) = cli(&[
        "group",
        "reset",
        "g-kj",
        "--to",
        "@0",
        "--topic",
        "gl",
        "--partitions",
        "0,2",
        "--dry-run",
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("PREVIOUS") && text.contains("dry run"),
        "{text}"
    );

    // Deleted with its offsets: gone from the API and the metrics.
    assert_eq!(delete(&s, "g-kj").0, 204);
    assert_eq!(get(&s, "/v1/groups/g-kj").0, 404);
    assert_eq!(delete(&s, "g-kj").0, 404);
    let metrics = http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!metrics.contains("group=\"g-kj\""));
}
