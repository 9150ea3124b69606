//! `sluice worker` against a Kafka cluster — here Sluice's own listener, a real binary —
//! with workers as real processes: outputs exactly once (read committed, which is what
//! Sluice's HTTP consume serves) while a worker is SIGKILLed mid-run, restarted, and
//! another one joins.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, http, sluice_bin};

struct Worker {
    child: Child,
}

impl Worker {
    fn start(kafka: &str, id: &str, plugin: &std::path::Path) -> Worker {
        let mut child = Command::new(sluice_bin())
            .args([
                "worker",
                "--bootstrap-servers",
                kafka,
                "--group",
                "g",
                "--id",
                id,
                "--name",
                "copy",
                "--input",
                "w.in",
                "--output",
                "w.out",
                "--plugin",
            ])
            .arg(plugin)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().unwrap().unwrap();
        assert!(first.starts_with("sluice worker:"), "{first}");
        std::thread::spawn(move || for _ in lines {});
        Worker { child }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn produce(s: &Server, from: usize, n: usize) {
    let recs: Vec<Value> = (from..from + n)
        .map(|i| json!({"key": format!("k{i}"), "value": json!({"seq": i}).to_string()}))
        .collect();
    let r = http()
        .post(s.url("/v1/topics/w.in/records"))
        .json(&json!({ "records": recs }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Sequence numbers in the output (committed records only) and how often each appears.
fn output(s: &Server) -> HashMap<u64, usize> {
    let mut seen = HashMap::new();
    for p in 0..3 {
        for r in s.read_all("w.out", p, 0) {
            let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
            *seen.entry(v["seq"].as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn workers_transform_exactly_once_through_a_sigkill_and_a_join() {
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "w.in", "partitions": 3}));
    s.create_topic(json!({"name": "w.out", "partitions": 3}));
    s.create_topic(json!({"name": "w.in.dlq", "partitions": 1}));
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("identity.wasm");
    std::fs::write(&plugin, sluice_tests::fixtures::IDENTITY).unwrap();

    let total = 30_000;
    let a = Worker::start(&kafka, "a", &plugin);
    let _b = Worker::start(&kafka, "b", &plugin);
    produce(&s, 0, 10_000);
    // Kill a while it works, produce more, restart it, then add a third worker.
    let deadline = Instant::now() + Duration::from_secs(60);
    while output(&s).len() < 2_000 {
        assert!(Instant::now() < deadline, "no output from the workers");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill9();
    produce(&s, 10_000, 10_000);
    let _a = Worker::start(&kafka, "a", &plugin);
    produce(&s, 20_000, 5_000);
    let _c = Worker::start(&kafka, "c", &plugin);
    produce(&s, 25_000, 5_000);

    let deadline = Instant::now() + Duration::from_secs(180);
    let seen = loop {
        let seen = output(&s);
        if seen.len() == total {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} sequence numbers in the output",
            seen.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
    assert!(twice.is_empty(), "written twice: {twice:?}");
    std::thread::sleep(Duration::from_secs(2));
    let again = output(&s);
    assert_eq!(again.values().sum::<usize>(), total, "nothing more arrived");
    // The group's committed offsets reached the input's ends.
    let ends: u64 = s.describe("w.in")["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["end_offset"].as_u64().unwrap())
        .sum();
    assert_eq!(ends, total as u64);
}
