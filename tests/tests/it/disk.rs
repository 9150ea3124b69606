//! A full disk: the server's data directory (and its own stdout and stderr) on a small
//! tmpfs the test mounts. Produce over HTTP and Kafka until the disk is full: the danger
//! shows first, refusals are clear and retriable and write nothing, acknowledged records
//! stay, a transform waits instead of dead-lettering, the server keeps serving, survives a
//! SIGKILL and a restart on the full disk, and everything resumes once space returns.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{http, sluice_bin};

/// A size-limited tmpfs, unmounted on drop. Mounting needs root (as CI runs).
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(mib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            st.success(),
            "this test mounts a {mib} MiB tmpfs for the data directory: it needs root, as CI has"
        );
        Tmpfs(dir.path().to_path_buf(), dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

struct Proc {
    child: Child,
    base: String,
    kafka: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sluice serve` with its data, stdout and stderr (at info level) all on `fs`.
fn serve(fs: &Path) -> Proc {
    let out = fs.join("server.out");
    let _ = std::fs::remove_file(&out);
    let open = |p: PathBuf| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    };
    let child = Command::new(sluice_bin())
        .args([
            "serve",
            "--http",
            "127.0.0.1:0",
            "--kafka",
            "127.0.0.1:0",
            "--schema-registry",
            "off",
            "--data-dir",
        ])
        .arg(fs.join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(open(out.clone())))
        .stderr(Stdio::from(open(fs.join("server.err"))))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut base, mut kafka) = (None, None);
    while base.is_none() || kafka.is_none() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(50));
        let Ok(f) = std::fs::File::open(&out) else {
            continue;
        };
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("sluice: listening http=") {
                base = Some(format!("http://{}", a.trim()));
            }
            if let Some(a) = line.strip_prefix("sluice: listening kafka=") {
                kafka = Some(a.trim().to_string());
            }
        }
    }
    Proc {
        child,
        base: base.unwrap(),
        kafka: kafka.unwrap(),
    }
}

fn get(p: &Proc, path: &str) -> Value {
    http()
        .get(format!("{}{path}", p.base))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn disk_state(p: &Proc) -> String {
    get(p, "/v1/disk")["state"].as_str().unwrap().to_string()
}

/// A JSON value of about `size` bytes that starts with [`prefix`].
fn value(tag: &str, i: usize, size: usize) -> String {
    format!(
        "{}\",\"pad\":\"{}\"}}",
        prefix(tag, i),
        "x".repeat(size.saturating_sub(40))
    )
}

fn prefix(tag: &str, i: usize) -> String {
    format!("{{\"id\":\"{tag}-{i:08}")
}

/// One HTTP produce of `n` records of `size` bytes, `tag`-numbered from `from`, spread
/// over the partitions: (status, body, Retry-After).
fn produce(
    p: &Proc,
    tag: &str,
    from: usize,
    n: usize,
    size: usize,
) -> (u16, Value, Option<String>) {
    let records: Vec<Value> = (from..from + n)
        .map(|i| json!({"key": format!("k{i}"), "value": value(tag, i, size), "partition": i % 3}))
        .collect();
    let r = http()
        .post(format!("{}/v1/topics/events/records", p.base))
        .json(&json!({ "records": records }))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().unwrap_or(Value::Null), retry)
}

/// Every record of `topic`, partition by partition: (partition, offset) → value prefix.
fn stored(p: &Proc, topic: &str) -> std::collections::BTreeMap<(u64, u64), String> {
    let mut all = std::collections::BTreeMap::new();
    for part in 0..3u64 {
        let mut offset = 0u64;
        loop {
            let v = get(
                p,
                &format!(
                    "/v1/topics/{topic}/partitions/{part}/records?offset={offset}&max=1000&wait_ms=0"
                ),
            );
            let recs = v["records"].as_array().cloned().unwrap_or_default();
            if recs.is_empty() {
                break;
            }
            for r in &recs {
                let o = r["offset"].as_u64().unwrap();
                let val = r["value"].as_str().unwrap_or_default();
                all.insert((part, o), val.chars().take(40).collect());
                offset = o + 1;
            }
        }
    }
    all
}

#[test]
fn a_full_disk_refuses_clearly_loses_nothing_and_everything_resumes_when_space_returns() {
    let fs = Tmpfs::mount(64);
    // Ballast: freed at the end to give space back.
    std::fs::write(fs.0.join("ballast"), vec![7u8; 12 << 20]).unwrap();
    let s = serve(&fs.0);
    let c = http();
    for t in ["events", "masked"] {
        let r = c
            .post(format!("{}/v1/topics", s.base))
            .json(&json!({"name": t, "partitions": 3}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let up = c
        .put(format!("{}/v1/plugins/mask", s.base))
        .body(sluice::plugins::MASK)
        .send()
        .unwrap();
    assert!(up.status().is_success());
    let r = c
        .put(format!("{}/v1/transforms/masker", s.base))
        .json(&json!({"plugin": "mask", "input": "events", "outputs": ["masked"]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());

    // HTTP until the disk is low; every acknowledged record is remembered.
    let mut acked: Vec<(u64, u64, String)> = Vec::new();
    let mut next = 0usize;
    let mut states = Vec::new();
    loop {
        let (st, body, _) = produce(&s, "http", next, 50, 4000);
        assert_eq!(
            st, 200,
            "the disk refused before it was reported low: {body}"
        );
        for (k, o) in body["offsets"].as_array().unwrap().iter().enumerate() {
            acked.push((
                o["partition"].as_u64().unwrap(),
                o["offset"].as_u64().unwrap(),
                prefix("http", next + k),
            ));
        }
        next += 50;
        let state = disk_state(&s);
        states.push(state.clone());
        if state == "low" {
            break;
        }
        assert!(next < 100_000, "the disk never filled: {states:?}");
    }
    let metrics = c
        .get(format!("{}/metrics", s.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(metrics.contains("sluice_disk_state 1"), "{metrics}");

    // Kafka until the broker refuses: KAFKA_STORAGE_ERROR, and what was delivered is known.
    let k = crate::kafka::script_json(Command::new("python3").args([
        &format!("{}/kafka/disk_full.py", env!("CARGO_MANIFEST_DIR")),
        &s.kafka,
        "events",
        "kafka",
        "20000",
        "4000",
    ]));
    assert_eq!(k["errors"], json!(["KAFKA_STORAGE_ERROR"]), "{k}");
    for d in k["delivered"].as_array().unwrap() {
        acked.push((
            d[0].as_u64().unwrap(),
            d[1].as_u64().unwrap(),
            d[2].as_str().unwrap().to_string(),
        ));
    }
    assert!(!k["delivered"].as_array().unwrap().is_empty(), "{k}");

    // HTTP until refused (a Kafka batch may be refused while a smaller request still
    // fits): then 507 storage_full, retriable, and nothing of that request written.
    let ends = |p: &Proc| -> u64 {
        get(p, "/v1/topics/events")["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["end_offset"].as_u64().unwrap())
            .sum()
    };
    let mut round = 0usize;
    let (before, body, retry) = loop {
        let before = ends(&s);
        let (st, body, retry) = produce(&s, "fill", round * 30, 30, 4000);
        if st == 507 {
            break (before, body, retry);
        }
        assert_eq!(st, 200, "{body}");
        for (k, o) in body["offsets"].as_array().unwrap().iter().enumerate() {
            acked.push((
                o["partition"].as_u64().unwrap(),
                o["offset"].as_u64().unwrap(),
                prefix("fill", round * 30 + k),
            ));
        }
        round += 1;
        assert!(round < 200, "the disk never refused a request");
    };
    assert_eq!(ends(&s), before, "part of a refused request was written");
    assert_eq!(body["error"]["code"], "storage_full", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("full"),
        "{body}"
    );
    assert!(retry.is_some());
    assert_eq!(disk_state(&s), "full");
    assert!(
        c.get(format!("{}/metrics", s.base))
            .send()
            .unwrap()
            .text()
            .unwrap()
            .contains("sluice_disk_state 2")
    );

    // The transform waits with the reason, and dead-letters nothing.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let st = get(&s, "/v1/transforms/masker");
        if st["status"] == "waiting" {
            assert!(st["waiting_for"].as_str().unwrap().contains("disk"), "{st}");
            break;
        }
        // It may also have caught up before the disk filled; then more input makes it wait.
        assert!(
            Instant::now() < deadline,
            "the transform never waited: {st}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Everything acknowledged is readable, and the server answers whatever its own log
    // output (on the same full disk) does.
    let check = |p: &Proc, acked: &[(u64, u64, String)]| {
        let have = stored(p, "events");
        for (part, off, prefix) in acked {
            let v = have
                .get(&(*part, *off))
                .unwrap_or_else(|| panic!("acknowledged {part}/{off} ({prefix}) is gone"));
            assert!(
                v.starts_with(prefix.as_str()),
                "{part}/{off}: {v} is not {prefix}"
            );
        }
        have
    };
    check(&s, &acked);
    assert!(
        c.get(format!("{}/healthz", s.base))
            .send()
            .unwrap()
            .status()
            .is_success()
    );

    // SIGKILL on the full disk, and a restart on it.
    drop(s);
    let s = serve(&fs.0);
    check(&s, &acked);
    let (st, body, _) = produce(&s, "refused", 0, 30, 4000);
    assert_eq!(st, 507, "{body}");
    assert_eq!(disk_state(&s), "full");

    // Space returns: produce works again by itself, the transform catches up, and not one
    // record was dead-lettered.
    std::fs::remove_file(fs.0.join("ballast")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (st, body, _) = produce(&s, "after", 0, 3, 100);
        if st == 200 {
            break;
        }
        assert_eq!(st, 507, "{body}");
        assert!(Instant::now() < deadline, "produce did not resume: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let inputs = check(&s, &acked).len();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let st = get(&s, "/v1/transforms/masker");
        let outs = stored(&s, "masked").len();
        if outs == inputs && st["status"] == "running" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the transform did not catch up: {outs} of {inputs}: {st}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let dead = get(&s, "/v1/topics/events.dlq");
    let dead_count: u64 = dead["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["end_offset"].as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(dead_count, 0, "records were dead-lettered: {dead}");
}
