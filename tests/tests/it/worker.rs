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
    /// The worker's status address.
    http: String,
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
                "--http",
                "127.0.0.1:0",
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
        let http = loop {
            let line = lines.next().unwrap().unwrap();
            if let Some(a) = line.strip_prefix("sluice worker: http=") {
                break a.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Worker { child, http }
    }

    fn status(&self) -> Value {
        http()
            .get(format!("http://{}/v1/worker", self.http))
            .send()
            .unwrap()
            .json()
            .unwrap()
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
    let b = Worker::start(&kafka, "b", &plugin);
    produce(&s, 0, 10_000);
    // Kill a while it works, produce more, restart it, then add a third worker.
    let deadline = Instant::now() + Duration::from_secs(60);
    while output(&s).len() < 2_000 {
        assert!(Instant::now() < deadline, "no output from the workers");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill9();
    produce(&s, 10_000, 10_000);
    let a = Worker::start(&kafka, "a", &plugin);
    produce(&s, 20_000, 5_000);
    let c = Worker::start(&kafka, "c", &plugin);
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
    // The status shows the rebalances: the three live workers hold one partition each.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held: Vec<Value> = [&a, &b, &c].iter().map(|w| w.status()).collect();
        let mut parts: Vec<i64> = held
            .iter()
            .flat_map(|st| st["assigned"].as_array().unwrap().clone())
            .map(|p| p.as_i64().unwrap())
            .collect();
        parts.sort_unstable();
        let each_one = held
            .iter()
            .all(|st| st["assigned"].as_array().unwrap().len() == 1);
        if parts == [0, 1, 2] && each_one {
            assert!(
                held.iter()
                    .all(|st| st["rebalances"].as_u64().unwrap() >= 1)
            );
            assert_eq!(held[1]["deployment"], "copy");
            break;
        }
        assert!(Instant::now() < deadline, "partitions held: {held:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = http()
        .get(format!("http://{}/metrics", b.http))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("sluice_worker_records_in_total{deployment=\"copy\",worker=\"b\"}"));
}

/// In process against librdkafka's mock cluster (3 brokers, no external service): two
/// workers share the input; a broker goes down and comes back mid-run; every record
/// comes out. The mock broker has no last stable offset nor aborted-transaction index (it
/// serves aborted records to read_committed consumers) and does not check generations in
/// TxnOffsetCommit, so "exactly once" is asserted here only for runs where no transaction
/// aborted; through aborts and crashes it is asserted against Sluice's listener above.
#[test]
fn workers_on_a_mock_cluster_share_partitions_and_survive_a_broker_outage() {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let mock = MockCluster::new(3).unwrap();
    for (t, n) in [("in", 4), ("out", 4), ("in.dlq", 1)] {
        mock.create_topic(t, n, 3).unwrap();
    }
    let bootstrap = mock.bootstrap_servers();
    let total = 4000usize;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..total {
        let key = format!("k{i}");
        let value = json!({"seq": i}).to_string();
        loop {
            match producer.send(BaseRecord::to("in").key(&key).payload(&value)) {
                Ok(()) => break,
                Err(_) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = ["m1", "m2"]
        .iter()
        .map(|id| {
            let cfg = sluice_worker::WorkerConfig {
                bootstrap_servers: bootstrap.clone(),
                group: "mg".into(),
                id: id.to_string(),
                deployment: sluice_worker::Deployment {
                    name: "copy".into(),
                    plugin: "identity".into(),
                    plugin_bytes: sluice_tests::fixtures::IDENTITY.to_vec(),
                    input: "in".into(),
                    outputs: vec!["out".into()],
                    dead_letter: None,
                    config: Default::default(),
                    limits: Default::default(),
                },
                cache_dir: dir.path().join(id),
                commit_interval: sluice_worker::DEFAULT_COMMIT_INTERVAL,
                max_batch: 1000,
            };
            let stop = stop.clone();
            let counters = Arc::new(sluice_worker::Counters::default());
            let c = counters.clone();
            let handle = std::thread::spawn(move || sluice_worker::run(&cfg, &stop, &c));
            (handle, counters)
        })
        .collect();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "checker")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["out"]).unwrap();
    let mut seen: HashMap<u64, usize> = HashMap::new();
    let mut outage_done = false;
    let deadline = Instant::now() + Duration::from_secs(180);
    while seen.len() < total && Instant::now() < deadline {
        if !outage_done && seen.len() > total / 4 {
            mock.broker_down(2).unwrap();
            std::thread::sleep(Duration::from_secs(2));
            mock.broker_up(2).unwrap();
            outage_done = true;
        }
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        *seen.entry(v["seq"].as_u64().unwrap()).or_insert(0) += 1;
    }
    // Anything late (a duplicate) would arrive now.
    let quiet = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            *seen.entry(v["seq"].as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    stop.store(true, Ordering::Release);
    let mut per_worker = Vec::new();
    let mut aborts = 0;
    for (h, c) in workers {
        h.join().unwrap().unwrap();
        per_worker.push(c.records_in.load(Ordering::Relaxed));
        aborts += c.aborts.load(Ordering::Relaxed);
    }
    assert!(outage_done, "the outage happened mid-run");
    assert_eq!(seen.len(), total, "every record transformed");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(10).collect();
    if aborts == 0 {
        assert!(twice.is_empty(), "seen twice: {twice:?}");
    }
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "both workers took partitions: {per_worker:?}"
    );
}
