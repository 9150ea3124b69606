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

pub(crate) struct Worker {
    child: Child,
    /// The worker's status address.
    http: String,
}

impl Worker {
    /// A worker of group `g` running the `copy` deployment of `plugin` (uploaded and
    /// deployed at start unless the group has it already).
    fn start(kafka: &str, id: &str, plugin: &std::path::Path) -> Worker {
        let mut args: Vec<std::ffi::OsString> = [
            "--group", "g", "--name", "copy", "--input", "w.in", "--output", "w.out", "--plugin",
        ]
        .iter()
        .map(Into::into)
        .collect();
        args.push(plugin.into());
        Worker::spawn(kafka, id, &args)
    }

    /// A worker with only the flags given (besides the cluster, id and API address).
    pub(crate) fn spawn(kafka: &str, id: &str, extra: &[std::ffi::OsString]) -> Worker {
        let mut child = Command::new(sluice_bin())
            .args([
                "worker",
                "--bootstrap-servers",
                kafka,
                "--id",
                id,
                "--http",
                "127.0.0.1:0",
            ])
            .args(extra)
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

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `GET path` as JSON.
    pub(crate) fn get(&self, path: &str) -> Value {
        http().get(self.url(path)).send().unwrap().json().unwrap()
    }

    /// `GET path`'s status.
    pub(crate) fn status_of(&self, path: &str) -> u16 {
        http().get(self.url(path)).send().unwrap().status().as_u16()
    }

    /// `PUT path` with a JSON body: the status.
    fn put(&self, path: &str, body: &Value) -> u16 {
        http()
            .put(self.url(path))
            .json(body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    fn status(&self) -> Value {
        http()
            .get(self.url("/v1/worker"))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    pub(crate) fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Worker {
    /// A graceful stop (SIGTERM), and wait for a clean exit.
    pub(crate) fn stop(mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "worker exited with {status}");
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
    // The status shows the rebalances: the three live workers hold one partition each,
    // in their own reports and in the deployment's status on any of them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held: Vec<Value> = [&a, &b, &c]
            .iter()
            .map(|w| w.status()["deployments"]["copy"].clone())
            .collect();
        let mut parts: Vec<i64> = held
            .iter()
            .flat_map(|st| st["partitions"].as_array().cloned().unwrap_or_default())
            .map(|p| p["partition"].as_i64().unwrap())
            .collect();
        parts.sort_unstable();
        let each_one = held
            .iter()
            .all(|st| st["partitions"].as_array().map(Vec::len) == Some(1));
        let status: Value = b.get("/v1/transforms/copy");
        let holders: Vec<&str> = status["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["worker"].as_str().unwrap())
            .collect();
        if parts == [0, 1, 2] && each_one && holders.len() == 3 {
            assert!(
                held.iter()
                    .all(|st| st["rebalances"].as_u64().unwrap() >= 1)
            );
            assert_eq!(status["workers"].as_array().unwrap().len(), 3, "{status}");
            assert_eq!(status["status"], "running");
            break;
        }
        assert!(Instant::now() < deadline, "partitions held: {held:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = http()
        .get(b.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("sluice_transform_records_in_total{transform=\"copy\",worker=\"b\"}"),
        "{metrics}"
    );
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
    use std::sync::atomic::Ordering;

    let mock = MockCluster::new(3).unwrap();
    // The mock's admin API does not create topics: the group's control topics are made here.
    for (t, n) in [
        ("in", 4),
        ("out", 4),
        ("out-day", 4),
        ("in.dlq", 1),
        ("mg.day.state", 4),
        ("mg.sluice.config", 1),
        ("mg.sluice.status", 1),
    ] {
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
    let workers: Vec<_> = ["m1", "m2"]
        .iter()
        .map(|id| {
            let settings = sluice_worker::EngineSettings {
                bootstrap_servers: bootstrap.clone(),
                group: "mg".into(),
                id: id.to_string(),
                commit_interval: sluice_worker::DEFAULT_COMMIT_INTERVAL,
                max_batch: 1000,
                secrets_key: None,
                state_dir: dir.path().join(id).join("state"),
            };
            let runtime = sluice_runtime::Runtime::new(&dir.path().join(id)).unwrap();
            let w = sluice_worker::Worker::start(settings, runtime).unwrap();
            let w2 = w.clone();
            (w, std::thread::spawn(move || w2.run()))
        })
        .collect();
    // Deployed through the first worker; the second follows the control topic.
    let first = &workers[0].0;
    first
        .upload_plugin("identity", sluice_tests::fixtures::IDENTITY)
        .unwrap();
    let spec: sluice_pipeline::TransformSpec =
        serde_json::from_value(json!({"plugin": "identity", "input": "in", "outputs": ["out"]}))
            .unwrap();
    assert!(first.deploy("copy", spec).unwrap());
    // A stateful deployment on the same input: a count per key in day-long windows, its
    // state on disk with a standby copy on the other worker.
    first
        .upload_plugin("window-count", sluice::plugins::WINDOW_COUNT)
        .unwrap();
    let day: sluice_pipeline::TransformSpec = serde_json::from_value(json!({
        "plugin": "window-count", "input": "in", "outputs": ["out-day"],
        "dead_letter": "in.dlq", "config": {"window_ms": "86400000"},
        "idle_timeout_ms": 3_600_000, "state_store": "disk", "standby_replicas": 1}))
    .unwrap();
    assert!(first.deploy("day", day).unwrap());

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
    // Every key counted once in the stateful deployment's state, across the outage.
    let mut counted: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while counted.len() < total && Instant::now() < deadline {
        counted.clear();
        for (w, _) in &workers {
            for p in 0..4 {
                if let Some(store) = w.state_of("day", p) {
                    let page = store.lock().unwrap().page(&[], None, 10 * total).unwrap();
                    counted.extend(page);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(counted.len(), total, "every key counted");
    assert!(
        counted.values().all(|v| v.as_slice() == b"1"),
        "every key counted once"
    );
    let mut per_worker = Vec::new();
    let mut aborts = 0;
    for (w, h) in workers {
        let local = w.local();
        let (_, s) = local.iter().find(|(n, _)| n == "copy").unwrap();
        per_worker.push(s.records_in.load(Ordering::Relaxed));
        aborts += s.restarts.load(Ordering::Relaxed);
        w.stop();
        h.join().unwrap();
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

pub(crate) fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Output records as (seq, password field) in offset order per partition.
fn passwords(s: &Server) -> HashMap<u64, Vec<String>> {
    let mut seen: HashMap<u64, Vec<String>> = HashMap::new();
    for p in 0..3 {
        for r in s.read_all("w.out", p, 0) {
            let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
            seen.entry(v["seq"].as_u64().unwrap())
                .or_default()
                .push(v["password"].as_str().unwrap_or("").to_string());
        }
    }
    seen
}

fn produce_secrets(s: &Server, from: usize, n: usize) {
    let recs: Vec<Value> = (from..from + n)
        .map(|i| {
            json!({"key": format!("k{i}"), "value": json!({"seq": i, "password": "pw"}).to_string()})
        })
        .collect();
    let r = http()
        .post(s.url("/v1/topics/w.in/records"))
        .json(&json!({ "records": recs }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The control plane: plugins (in chunks), deployments and status in the cluster's
/// compacted topics; any worker's API uploads or deploys and every worker follows; hot swap
/// and rollback between transactions; bad requests refused as on a single server; auth.
#[test]
fn any_workers_api_deploys_and_every_worker_follows() {
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "w.in", "partitions": 3}));
    s.create_topic(json!({"name": "w.out", "partitions": 3}));
    let dir = tempfile::tempdir().unwrap();
    let token = |t: &str| sluice_auth::hash_token(t);
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[[auth.identities]]\nname = \"ops\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n\
             [[auth.identities]]\nname = \"dash\"\nrole = \"viewer\"\ntoken_sha256 = \"{}\"\n",
            token("admin-secret"),
            token("viewer-secret")
        ),
    )
    .unwrap();
    let group = |id: &str| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec!["--group".into(), "cp".into()];
        if id == "secured" {
            v.push("--config".into());
            v.push(config.clone().into());
        }
        v
    };
    let a = Worker::spawn(&kafka, "a", &group("a"));
    let b = Worker::spawn(&kafka, "b", &group("b"));

    // Upload on a (mask is > 1 MB: several chunks), read it back on b.
    let r = http()
        .put(a.url("/v1/plugins/p"))
        .body(sluice_tests::fixtures::IDENTITY.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let v1: Value = r.json().unwrap();
    assert_eq!(v1["version"], 1);
    // A plugin of several chunks: mask, padded by a custom section.
    let big = sluice_tests::new_build(
        sluice::plugins::MASK,
        &"x".repeat(4 * sluice_worker::control::CHUNK_BYTES),
    );
    let r = http()
        .put(b.url("/v1/plugins/p"))
        .body(big.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let v2: Value = r.json().unwrap();
    assert_eq!(v2["version"], 2);
    wait_for("b to see both versions", 10, || {
        let p: Value = a.get("/v1/plugins/p");
        p["versions"].as_array().map(Vec::len) == Some(2)
    });
    let p: Value = a.get("/v1/plugins/p");
    assert_eq!(p["versions"][1]["digest"], v2["digest"]);
    assert_eq!(p["versions"][1]["size_bytes"], big.len());

    // Refused as on a single server, with JSON errors.
    for (body, code, err) in [
        (
            json!({"plugin": "nope", "input": "w.in", "outputs": ["w.out"]}),
            404,
            "unknown_plugin",
        ),
        (
            json!({"plugin": "p", "version": 9, "input": "w.in", "outputs": ["w.out"]}),
            404,
            "unknown_plugin",
        ),
        (
            json!({"plugin": "p", "input": "missing", "outputs": ["w.out"]}),
            400,
            "unknown_topic",
        ),
        (
            json!({"plugin": "p", "input": "w.in", "outputs": ["w.in"]}),
            400,
            "invalid_transform",
        ),
        (
            json!({"plugin": "p", "input": "w.in", "outputs": ["w.out"], "dead_letter": "w.out"}),
            400,
            "invalid_transform",
        ),
        (
            json!({"plugin": "p", "input": "w.in"}),
            400,
            "invalid_field",
        ),
    ] {
        let r = http()
            .put(a.url("/v1/transforms/t"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), code, "{body}");
        let e: Value = r.json().unwrap();
        assert_eq!(e["error"]["code"], err, "{body}: {e}");
    }
    let r = http()
        .put(a.url("/v1/transforms/t"))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http()
        .put(a.url("/v1/plugins/bad"))
        .body(b"not a component".to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // Deploy version 1 (identity) on b: both workers run it.
    assert_eq!(
        b.put(
            "/v1/transforms/t",
            &json!({"plugin": "p", "version": 1, "input": "w.in", "outputs": ["w.out"]})
        ),
        201
    );
    produce_secrets(&s, 0, 3000);
    wait_for("version 1's output", 60, || passwords(&s).len() == 3000);
    wait_for("both workers to hold partitions", 30, || {
        let st: Value = a.get("/v1/transforms/t");
        let workers: Vec<String> = st["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["worker"].as_str().unwrap().to_string())
            .collect();
        workers.len() == 3 && workers.contains(&"a".into()) && workers.contains(&"b".into())
    });
    assert!(passwords(&s).values().all(|v| v == &["pw"]));
    // Delete a plugin in use → 409.
    let r = http().delete(a.url("/v1/plugins/p")).send().unwrap();
    assert_eq!(r.status(), 409);

    // Hot swap to version 2 (mask) through a, then roll back to 1 through b.
    assert_eq!(
        a.put(
            "/v1/transforms/t",
            &json!({"plugin": "p", "version": 2, "input": "w.in", "outputs": ["w.out"]})
        ),
        200
    );
    wait_for("both workers on version 2", 30, || {
        let st: Value = b.get("/v1/transforms/t");
        st["version"] == 2
            && st["workers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|w| w["version"] == 2)
    });
    produce_secrets(&s, 3000, 3000);
    wait_for("version 2's output", 60, || passwords(&s).len() == 6000);
    let seen = passwords(&s);
    assert!(
        (3000..6000).all(|i| seen[&i] == ["********"]),
        "masked by v2"
    );
    assert_eq!(
        b.put(
            "/v1/transforms/t",
            &json!({"plugin": "p", "version": 1, "input": "w.in", "outputs": ["w.out"]})
        ),
        200
    );
    wait_for("both workers back on version 1", 30, || {
        let st: Value = a.get("/v1/transforms/t");
        st["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["version"] == 1)
    });
    produce_secrets(&s, 6000, 3000);
    wait_for("the rolled-back output", 60, || passwords(&s).len() == 9000);
    let seen = passwords(&s);
    assert!(seen.values().all(|v| v.len() == 1), "exactly once");
    assert!((6000..9000).all(|i| seen[&i] == ["pw"]), "identity again");
    // History: per partition, 1 → 2 → 1 at increasing offsets (the other workers' parts
    // as of their last reports, every 2 s).
    let history = |st: &Value, p: u64| -> Vec<(u64, u64)> {
        st["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["partition"] == p)
            .map(|h| {
                (
                    h["version"].as_u64().unwrap(),
                    h["from_offset"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let mut st = Value::Null;
    wait_for("the reports to show the rollback", 10, || {
        st = a.get("/v1/transforms/t");
        st["counters"]["records_in"] == 9000
            && (0..3).all(|p| history(&st, p).iter().map(|x| x.0).collect::<Vec<_>>() == [1, 2, 1])
    });
    for p in 0..3 {
        let h = history(&st, p);
        assert!(h.windows(2).all(|w| w[0].1 < w[1].1), "{h:?}");
    }

    // A third worker joins with auth on its API: it follows everything at once.
    let c = Worker::spawn(&kafka, "secured", &group("secured"));
    let r = http().get(c.url("/v1/transforms/t")).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .get(c.url("/v1/transforms/t"))
        .bearer_auth("viewer-secret")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .post(c.url("/v1/transforms/t/pause"))
        .bearer_auth("viewer-secret")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    // Pause through the secured worker: every worker stops taking records.
    let r = http()
        .post(c.url("/v1/transforms/t/pause"))
        .bearer_auth("admin-secret")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for("a to see the pause", 10, || {
        let st: Value = a.get("/v1/transforms/t");
        st["status"] == "paused"
    });
    std::thread::sleep(Duration::from_secs(1));
    produce_secrets(&s, 9000, 300);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(passwords(&s).len(), 9000, "nothing processed while paused");
    let r = http()
        .post(a.url("/v1/transforms/t/resume"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for("output after resume", 60, || passwords(&s).len() == 9300);
    // Logs API and metrics on a worker; delete through b.
    let r = http().get(a.url("/v1/transforms/t/logs")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = http().get(a.url("/v1/transforms/nope")).send().unwrap();
    assert_eq!(r.status(), 404);
    let r = http().delete(b.url("/v1/transforms/t")).send().unwrap();
    assert_eq!(r.status(), 204);
    wait_for("a to drop the deployment", 10, || {
        a.status_of("/v1/transforms/t") == 404
    });
    // Its consumer group goes with it: deployed again, it starts from the beginning.
    {
        use rdkafka::ClientConfig;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let admin: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .create()
            .unwrap();
        wait_for("the deleted deployment's group to go", 60, || {
            admin
                .fetch_group_list(Some("cp.t"), Duration::from_secs(5))
                .map(|l| {
                    l.groups()
                        .iter()
                        .all(|g| g.state() == "Dead" || g.state().is_empty())
                })
                .unwrap_or(true)
        });
    }
    assert_eq!(
        a.put(
            "/v1/transforms/t",
            &json!({"plugin": "p", "version": 1, "input": "w.in", "outputs": ["w.out"]})
        ),
        201
    );
    wait_for("the input processed again from offset 0", 60, || {
        passwords(&s).values().all(|v| v.len() == 2)
    });
    let r = http().delete(a.url("/v1/transforms/t")).send().unwrap();
    assert_eq!(r.status(), 204);
    let r = http().delete(a.url("/v1/plugins/p")).send().unwrap();
    assert_eq!(r.status(), 204);
    wait_for("b to drop the plugin", 10, || {
        b.status_of("/v1/plugins/p") == 404
    });
}

/// Tables in worker mode: a deployment's `tables` are compacted topics of the cluster,
/// loaded before it starts and followed while it runs.
#[test]
fn worker_lookups_read_compacted_cluster_topics() {
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "users", "partitions": 2, "cleanup": "compact"}));
    s.create_topic(json!({"name": "e.in", "partitions": 1}));
    s.create_topic(json!({"name": "e.out", "partitions": 1}));
    let put_user = |id: &str, name: &str| {
        let r = http()
            .post(s.url("/v1/topics/users/records"))
            .json(&json!({"records": [{"key": id, "value": json!({"name": name}).to_string()}]}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    put_user("u-1", "Ann");
    put_user("u-2", "Bo");
    let w = Worker::spawn(&kafka, "t1", &["--group".into(), "tg".into()]);
    let r = http()
        .put(w.url("/v1/plugins/enrich"))
        .body(sluice::plugins::ENRICH.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http()
        .put(w.url("/v1/transforms/enrich"))
        .json(
            &json!({"plugin": "enrich", "input": "e.in", "outputs": ["e.out"],
                      "config": {"table": "users"}, "tables": ["users"]}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let r = http()
        .put(w.url("/v1/transforms/bad"))
        .json(
            &json!({"plugin": "enrich", "input": "e.in", "outputs": ["e.out"],
                      "config": {"table": "users"}, "tables": ["no-such-topic"]}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let produce = |id: &str| {
        let r = http()
            .post(s.url("/v1/topics/e.in/records"))
            .json(&json!({"records": [{"value": json!({"user_id": id}).to_string()}]}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    let names = || -> Vec<String> {
        s.read_all("e.out", 0, 0)
            .iter()
            .map(|r| {
                let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
                v["name"].as_str().unwrap_or("-").to_string()
            })
            .collect()
    };
    produce("u-1");
    produce("u-2");
    produce("u-3");
    wait_for("enriched records", 60, || names().len() == 3);
    assert_eq!(names(), ["Ann", "Bo", "-"]);
    // The table follows its topic.
    put_user("u-1", "Annie");
    std::thread::sleep(Duration::from_secs(2));
    produce("u-1");
    wait_for("the next record", 30, || names().len() == 4);
    assert_eq!(names()[3], "Annie");
}

/// One deployment contract: the same table of specs, valid and invalid, against
/// `sluice serve` and `sluice worker` (over the server's own Kafka listener) gets the same
/// status, code and message from each; what differs is only what a worker cannot run
/// (stateful plugins, secrets), and it says so.
#[test]
fn serve_and_worker_answer_the_deployment_cases_alike() {
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    for t in ["c.in", "c.out", "c.out2", "c.late"] {
        s.create_topic(json!({"name": t, "partitions": 2}));
    }
    s.create_topic(json!({"name": "c.users", "cleanup": "compact"}));
    let w = Worker::spawn(&kafka, "solo", &["--group".into(), "cases".into()]);
    let serve = |p: &str| s.url(p);
    let worker = |p: &str| w.url(p);
    for url in [&serve as &dyn Fn(&str) -> String, &worker] {
        for (name, bytes) in [
            ("p", sluice_tests::fixtures::IDENTITY),
            ("wc", sluice::plugins::WINDOW_COUNT),
        ] {
            let r = http()
                .put(url(&format!("/v1/plugins/{name}")))
                .body(bytes.to_vec())
                .send()
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().unwrap());
        }
    }
    // (name, spec, status, code) — the same on both.
    let ok = json!({"plugin": "p", "input": "c.in", "outputs": ["c.out"]});
    let with = |patch: Value| {
        let mut v = ok.clone();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let long_name = "n".repeat(101);
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        ("valid", "t", ok.clone(), 201, ""),
        ("valid re-PUT", "t", ok.clone(), 200, ""),
        (
            "re-PUT with another input",
            "t",
            with(json!({"input": "c.out2", "outputs": ["c.out"]})),
            400,
            "invalid_transform",
        ),
        (
            "a cycle",
            "back",
            json!({"plugin": "p", "input": "c.out", "outputs": ["c.in"]}),
            400,
            "invalid_transform",
        ),
        (
            "timeout_ms 0",
            "x",
            with(json!({"limits": {"timeout_ms": 0}})),
            400,
            "invalid_transform",
        ),
        (
            "memory_bytes 1 TiB",
            "x",
            with(json!({"limits": {"memory_bytes": 1_099_511_627_776u64}})),
            400,
            "invalid_transform",
        ),
        (
            "fuel_per_record 0",
            "x",
            with(json!({"limits": {"fuel_per_record": 0}})),
            400,
            "invalid_transform",
        ),
        (
            "state_bytes 1",
            "x",
            with(json!({"limits": {"state_bytes": 1}})),
            400,
            "invalid_transform",
        ),
        (
            "init_timeout_ms over 10 min",
            "x",
            with(json!({"limits": {"init_timeout_ms": 600_001}})),
            400,
            "invalid_transform",
        ),
        (
            "max_outputs_per_record 0",
            "x",
            with(json!({"limits": {"max_outputs_per_record": 0}})),
            400,
            "invalid_transform",
        ),
        (
            "an unknown limit",
            "x",
            with(json!({"limits": {"cpu": 1}})),
            400,
            "invalid_field",
        ),
        (
            "unknown input",
            "x",
            with(json!({"input": "nope"})),
            400,
            "unknown_topic",
        ),
        (
            "unknown output",
            "x",
            with(json!({"outputs": ["nope"]})),
            400,
            "unknown_topic",
        ),
        (
            "no outputs",
            "x",
            with(json!({"outputs": []})),
            400,
            "invalid_transform",
        ),
        (
            "output is the input",
            "x",
            with(json!({"outputs": ["c.in"]})),
            400,
            "invalid_transform",
        ),
        (
            "an output twice",
            "x",
            with(json!({"outputs": ["c.out", "c.out"]})),
            400,
            "invalid_transform",
        ),
        (
            "dead letters into the input",
            "x",
            with(json!({"dead_letter": "c.in"})),
            400,
            "invalid_transform",
        ),
        (
            "dead letters into an output",
            "x",
            with(json!({"dead_letter": "c.out"})),
            400,
            "invalid_transform",
        ),
        (
            "a dead-letter name that is no topic name",
            "x",
            with(json!({"dead_letter": "a b"})),
            400,
            "invalid_transform",
        ),
        (
            "a table that is no topic",
            "x",
            with(json!({"tables": ["nope"]})),
            400,
            "invalid_transform",
        ),
        (
            "unknown plugin",
            "x",
            with(json!({"plugin": "nope"})),
            404,
            "unknown_plugin",
        ),
        (
            "unknown version",
            "x",
            with(json!({"version": 9})),
            404,
            "unknown_plugin",
        ),
        (
            "version 0",
            "x",
            with(json!({"version": 0})),
            400,
            "invalid_field",
        ),
        (
            "an unknown field",
            "x",
            with(json!({"inptu": "c.in"})),
            400,
            "invalid_field",
        ),
        (
            "no input",
            "x",
            json!({"plugin": "p", "outputs": ["c.out"]}),
            400,
            "invalid_field",
        ),
        (
            "idle_timeout_ms 0",
            "x",
            with(json!({"idle_timeout_ms": 0})),
            400,
            "invalid_transform",
        ),
        (
            "allowed lateness over a year",
            "x",
            with(json!({"allowed_lateness_ms": 31_536_000_001u64})),
            400,
            "invalid_transform",
        ),
        (
            "an empty event-time field",
            "x",
            with(json!({"event_time": {"field": " "}})),
            400,
            "invalid_transform",
        ),
        (
            "late records to no topic",
            "x",
            with(json!({"late_output": "nope"})),
            400,
            "unknown_topic",
        ),
        (
            "late records into an output",
            "x",
            with(json!({"late_output": "c.out"})),
            400,
            "invalid_transform",
        ),
        ("a bad name", "a%20b", ok.clone(), 400, "invalid_name"),
        (
            "a name too long",
            &long_name,
            ok.clone(),
            400,
            "invalid_name",
        ),
        (
            "start anywhere",
            "x",
            with(json!({"start": "middle"})),
            400,
            "invalid_field",
        ),
    ];
    let answer = |url: &dyn Fn(&str) -> String, name: &str, body: &Value| {
        let r = http()
            .put(url(&format!("/v1/transforms/{name}")))
            .json(body)
            .send()
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().unwrap();
        let code = v["error"]["code"].as_str().unwrap_or_default().to_string();
        let message = v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        (status, code, message)
    };
    for (what, name, body, status, code) in &cases {
        let on_serve = answer(&serve, name, body);
        let on_worker = answer(&worker, name, body);
        assert_eq!(on_serve, on_worker, "{what}: serve and worker differ");
        assert_eq!(
            (on_serve.0, on_serve.1.as_str()),
            (*status, *code),
            "{what}: {}",
            on_serve.2
        );
    }
    // Malformed bodies.
    for body in ["{not json", "", "[]"] {
        let send = |url: &dyn Fn(&str) -> String| {
            let r = http()
                .put(url("/v1/transforms/x"))
                .body(body)
                .send()
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().unwrap()["error"]["code"].clone(),
            )
        };
        let (a, b) = (send(&serve), send(&worker));
        assert_eq!(a, b, "{body:?}");
        assert_eq!(a.0, 400, "{body:?}");
    }
    // Stateful plugins run on both, with the same answer and the same status fields.
    let stateful = json!({"plugin": "wc", "input": "c.in", "outputs": ["c.out2"],
        "event_time": {"field": "ts"}, "allowed_lateness_ms": 2000});
    for url in [&serve as &dyn Fn(&str) -> String, &worker] {
        let (status, _, message) = answer(url, "counting", &stateful);
        assert_eq!(status, 201, "{message}");
        let st: Value = http()
            .get(url("/v1/transforms/counting"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(st["stateful"], true, "{st}");
        assert_eq!(st["allowed_lateness_ms"], 2000, "{st}");
        let r = http()
            .delete(url("/v1/transforms/counting"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    // What only `sluice serve` runs: the worker refuses it and says why.
    {
        let (what, body) = (
            "secrets",
            with(json!({"outputs": ["c.out2"], "secrets": {"key": "k"}})),
        );
        let (status, code, message) = answer(&worker, "only-serve", &body);
        assert_eq!(
            (status, code.as_str()),
            (400, "unsupported_here"),
            "{what}: {message}"
        );
        assert!(message.contains("sluice worker"), "{what}: {message}");
        let (status, _, message) = answer(&serve, "only-serve", &body);
        assert_eq!(status, 201, "{what}: {message}");
        let r = http()
            .delete(serve("/v1/transforms/only-serve"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    // The same status document on both.
    let on_serve: Value = http()
        .get(serve("/v1/transforms/t"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let on_worker: Value = w.get("/v1/transforms/t");
    for field in [
        "name",
        "plugin",
        "version",
        "version_selector",
        "input",
        "outputs",
        "dead_letter",
        "config",
        "limits",
        "tables",
        "stateful",
        "status",
    ] {
        assert_eq!(on_serve[field], on_worker[field], "{field}");
    }
    assert_eq!(on_worker["consumer_group"], "cases.t");
}

/// Partitions added to a worker deployment's input (CreatePartitions) are processed without
/// a redeploy: the group sees them within seconds and rebalances onto them.
#[test]
fn workers_pick_up_partitions_added_to_their_input() {
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "w.in", "partitions": 1}));
    s.create_topic(json!({"name": "w.out", "partitions": 3}));
    s.create_topic(json!({"name": "w.in.dlq", "partitions": 1}));
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("identity.wasm");
    std::fs::write(&plugin, sluice_tests::fixtures::IDENTITY).unwrap();
    let w = Worker::start(&kafka, "a", &plugin);
    // A stateful deployment on the same input: hour-long windows by record key, which stay
    // open through the test (their state is what is checked).
    s.create_topic(json!({"name": "w.counts", "partitions": 1}));
    let r = http()
        .put(w.url("/v1/plugins/wc"))
        .body(sluice::plugins::WINDOW_COUNT.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let wc = json!({"plugin": "wc", "input": "w.in", "outputs": ["w.counts"],
        "dead_letter": "w.counts.dlq", "config": {"window_ms": "3600000"}});
    assert_eq!(w.put("/v1/transforms/wc", &wc), 201);
    produce(&s, 0, 100);
    wait_for("the first 100 records", 60, || output(&s).len() == 100);
    let script = format!(
        "from confluent_kafka.admin import AdminClient, NewPartitions\n\
         a = AdminClient({{'bootstrap.servers': '{kafka}'}})\n\
         for f in a.create_partitions([NewPartitions('w.in', 3)]).values():\n    f.result(15)\n"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Keyed records now land on all three partitions.
    produce(&s, 100, 300);
    let on_new: u64 = s.describe("w.in")["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|p| p["end_offset"].as_u64().unwrap())
        .sum();
    assert!(on_new > 0);
    wait_for("all 400 records", 90, || output(&s).len() == 400);
    assert!(
        output(&s).values().all(|n| *n == 1),
        "a record written twice"
    );
    // The stateful deployment processed the new partitions too (one window per key), its
    // changelog grown to match; after a SIGKILL their state is restored from it.
    let keys_on = |w: &Worker, restored: bool| -> Option<u64> {
        let st: Value = w.get("/v1/transforms/wc");
        let parts = st["partitions"].as_array()?.clone();
        if parts.len() != 3 || parts.iter().any(|p| p["lag"] != 0) {
            return None;
        }
        if restored && parts.iter().any(|p| !p["restore"]["keys"].is_u64()) {
            return None;
        }
        // Committed: the state's changelog and offsets are in the cluster.
        if parts
            .iter()
            .any(|p| p["checkpoint"]["position"] != p["position"])
        {
            return None;
        }
        Some(
            parts
                .iter()
                .map(|p| p["state_keys"].as_u64().unwrap_or(0))
                .sum(),
        )
    };
    wait_for("400 keys of state on three partitions", 60, || {
        keys_on(&w, false) == Some(400)
    });
    assert_eq!(
        s.describe("g.wc.state")["partitions"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    w.kill9();
    let w = Worker::start(&kafka, "a", &plugin);
    let deadline = Instant::now() + Duration::from_secs(60);
    while keys_on(&w, true) != Some(400) {
        assert!(
            Instant::now() < deadline,
            "state not restored on three partitions: {}",
            w.get("/v1/transforms/wc")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let st: Value = w.get("/v1/transforms/wc");
    let restored: u64 = st["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["restore"]["keys"].as_u64().unwrap())
        .sum();
    assert_eq!(restored, 400, "{st}");
    // Each key counted once: nothing was processed twice across the kill.
    let page: Value = w.get("/v1/transforms/wc/state?limit=1000");
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 400, "{page}");
    assert!(entries.iter().all(|e| e["value"] == 1), "{page}");
    drop(w);
}

/// Deployment secrets on workers given a secrets key: sealed in the group's control topic
/// (the cluster never sees them), shown as `***`, opened by the workers that run the
/// deployment; a worker without the key refuses to run it and says why.
#[test]
fn worker_secrets_are_sealed_in_the_control_topic_and_opened_by_the_workers() {
    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    for t in ["pii", "sealed", "opened"] {
        s.create_topic(json!({"name": t, "partitions": 1}));
    }
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("secrets.key");
    std::fs::write(&key, format!("{}\n", "5e".repeat(32))).unwrap();
    let with_key = |id: &str| {
        Worker::spawn(
            &kafka,
            id,
            &[
                "--group".into(),
                "sec".into(),
                "--secrets-key-file".into(),
                key.clone().into(),
            ],
        )
    };
    let a = with_key("a");
    let b = with_key("b");
    let r = http()
        .put(a.url("/v1/plugins/encrypt"))
        .body(sluice::plugins::ENCRYPT.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let keyring = format!("k1:{K1}");
    let spec = json!({"plugin": "encrypt", "input": "pii", "outputs": ["sealed"],
        "config": {"fields": "ssn", "key_id": "k1"}, "secrets": {"keys": keyring}});
    assert_eq!(a.put("/v1/transforms/seal", &spec), 201);
    // The other worker learns of it when its view applies the control topic's record.
    let mut st = Value::Null;
    wait_for("the other worker to know the deployment", 30, || {
        st = b.get("/v1/transforms/seal");
        st.get("error").is_none()
    });
    assert_eq!(st["secrets"], json!({"keys": "***"}), "{st}");
    // The control topic holds the deployment, but not the key.
    let control: Vec<Value> = s.read_all("sec.sluice.config", 0, 0);
    assert!(control.iter().any(|r| r.to_string().contains("seal")));
    assert!(
        control.iter().all(|r| !r.to_string().contains(K1)),
        "the secret in the control topic in the clear"
    );
    // A worker without the key joins the group: it does not run the deployment, and says why.
    let nokey = Worker::spawn(&kafka, "nokey", &["--group".into(), "sec".into()]);
    wait_for(
        "the keyless worker to say why it does not run seal",
        30,
        || {
            nokey.status()["deployments"]["seal"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("--secrets-key-file"))
        },
    );
    // The workers with the key encrypt with it: serve's decrypt, given the same keyring,
    // opens every record.
    crate::pipeline::upload(&s, "decrypt", sluice::plugins::DECRYPT);
    let r = http()
        .put(s.url("/v1/transforms/open"))
        .json(
            &json!({"plugin": "decrypt", "input": "sealed", "outputs": ["opened"],
            "secrets": {"keys": keyring}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    let originals: Vec<Value> = (0..50)
        .map(|i| json!({"user": format!("u{i}"), "ssn": format!("123-45-{i:04}")}))
        .collect();
    s.produce(
        "pii",
        originals
            .iter()
            .map(|v| json!({"value": v.to_string()}))
            .collect(),
    );
    wait_for("50 records through seal and open", 60, || {
        s.read_all("opened", 0, 0).len() == 50
    });
    let sealed = s.read_all("sealed", 0, 0);
    assert!(
        sealed
            .iter()
            .all(|r| !r["value"].as_str().unwrap().contains("123-45-"))
    );
    let opened: Vec<Value> = s
        .read_all("opened", 0, 0)
        .iter()
        .map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(opened, originals);
    // A re-PUT with `***` keeps the secret; the keyless worker refuses a spec with secrets.
    let mut again = spec.clone();
    again["secrets"] = json!({"keys": "***"});
    again["config"]["fields"] = json!("ssn,user");
    assert_eq!(b.put("/v1/transforms/seal", &again), 200);
    s.produce(
        "pii",
        vec![json!({"value": json!({"user": "late", "ssn": "123-45-9999"}).to_string()})],
    );
    wait_for("the re-PUT version's record opened", 60, || {
        s.read_all("opened", 0, 0).len() == 51
    });
    let last: Value =
        serde_json::from_str(s.read_all("opened", 0, 50)[0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(last, json!({"user": "late", "ssn": "123-45-9999"}));
    let r = http()
        .put(nokey.url("/v1/transforms/other"))
        .json(&spec)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--secrets-key-file"),
        "{body}"
    );
}
