//! Crash safety and corruption recovery of the real binary's data directory.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, http, sluice_bin};
use crate::pipeline::{all, deploy_ok, upload};

#[test]
fn sigkill_under_load_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    s.create_topic(json!({"name": "crash", "partitions": 3, "segment_bytes": 65536}));
    let acked: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for t in 0..3 {
        let (acked, stop, url) = (
            acked.clone(),
            stop.clone(),
            s.url("/v1/topics/crash/records"),
        );
        producers.push(std::thread::spawn(move || {
            let c = http();
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<String> = (0..20).map(|i| format!("t{t}-{}", seq + i)).collect();
                seq += 20;
                let recs: Vec<Value> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| json!({"value": v, "key": if i % 2 == 0 { Value::Null } else { json!(v) }}))
                    .collect();
                let Ok(r) = c.post(&url).json(&json!({ "records": recs })).send() else { return };
                if r.status() != 200 {
                    return;
                }
                let Ok(v) = r.json::<Value>() else { return };
                let mut a = acked.lock().unwrap();
                for (val, o) in values.iter().zip(v["offsets"].as_array().unwrap()) {
                    a.insert(val.clone(), (o["partition"].as_u64().unwrap(), o["offset"].as_u64().unwrap()));
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(2500));
    s.kill9();
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 1000,
        "only {} records acknowledged before the kill",
        acked.len()
    );

    let s = Server::start_in(tmp.path(), &[]);
    let mut seen = HashSet::new();
    let mut found: HashMap<String, (u64, u64)> = HashMap::new();
    for p in 0..3u32 {
        for (i, r) in s.read_all("crash", p, 0).iter().enumerate() {
            assert_eq!(
                r["offset"].as_u64().unwrap(),
                i as u64,
                "offsets continue without gaps"
            );
            let v = r["value"].as_str().unwrap().to_string();
            assert!(seen.insert(v.clone()), "{v} appears twice");
            found.insert(v, (u64::from(p), i as u64));
        }
    }
    for (v, at) in &acked {
        assert_eq!(
            found.get(v),
            Some(at),
            "acknowledged record {v} lost or moved"
        );
    }
    // Appends continue after the recovered end.
    let end = s.describe("crash")["partitions"][0]["end_offset"]
        .as_u64()
        .unwrap();
    let o = s.produce("crash", vec![json!({"value": "after", "partition": 0})]);
    assert_eq!(o[0], (0, end));
}

fn segment_file(data: &std::path::Path, topic: &str, p: u32) -> std::path::PathBuf {
    let dir = data.join("topics").join(topic).join(p.to_string());
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn garbage_tail_torn_batch_and_mid_segment_damage_recover_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    s.create_topic(json!({"name": "dmg", "partitions": 3}));
    for i in 0..5 {
        for p in 0..3 {
            let recs = (0..4)
                .map(|j| json!({"value": format!("{p}-{i}-{j}"), "partition": p}))
                .collect();
            s.produce("dmg", recs);
        }
    }
    s.stop();
    // p0: garbage appended; p1: last batch cut in half; p2: a byte flipped in batch 2 of 5.
    let f0 = segment_file(tmp.path(), "dmg", 0);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&f0)
        .unwrap()
        .write_all(&[0x5a; 1000])
        .unwrap();
    let f1 = segment_file(tmp.path(), "dmg", 1);
    let len1 = std::fs::metadata(&f1).unwrap().len();
    let batch_len = len1 / 5;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f1)
        .unwrap()
        .set_len(len1 - batch_len / 2)
        .unwrap();
    let f2 = segment_file(tmp.path(), "dmg", 2);
    let mut bytes = std::fs::read(&f2).unwrap();
    let at = (batch_len + batch_len - 3) as usize;
    bytes[at] ^= 0xff;
    std::fs::write(&f2, &bytes).unwrap();

    let s = Server::start_in(tmp.path(), &[]);
    let p0 = s.read_all("dmg", 0, 0);
    assert_eq!(p0.len(), 20);
    let p1 = s.read_all("dmg", 1, 0);
    assert_eq!(p1.len(), 16, "the torn batch is dropped, the rest kept");
    assert_eq!(p1.last().unwrap()["value"], "1-3-3");
    // The damaged batch is reported, not served; data around it is intact.
    let r = http()
        .get(s.url("/v1/topics/dmg/partitions/2/records?offset=4"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "corrupt_data");
    let v: Value = http()
        .get(s.url("/v1/topics/dmg/partitions/2/records?offset=0"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 4);
    assert_eq!(v["next_offset"], 4);
    assert_eq!(s.read_all("dmg", 2, 8).len(), 12);
    // New appends go after the recovered ends.
    let o = s.produce("dmg", vec![json!({"value": "new", "partition": 1})]);
    assert_eq!(o[0], (1, 16));
}

/// A crash while a restarted transform replays what its last run wrote past the
/// checkpoint (skipping those outputs), then another crash: the checkpoints the replay
/// writes keep the outputs ahead of them in the next recovery's sight, so nothing is
/// written twice. `SLUICE_FAILPOINT=checkpoint-while-replaying` aborts the server right
/// after such a checkpoint.
#[test]
fn a_crash_during_the_replay_after_a_crash_doubles_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    s.create_topic(json!({"name": "src", "partitions": 1}));
    s.create_topic(json!({"name": "dst", "partitions": 2}));
    upload(&s, "id", sluice_tests::fixtures::IDENTITY);
    deploy_ok(
        &s,
        "m",
        json!({"plugin": "id", "input": "src", "outputs": ["dst"]}),
    );
    let end = |s: &Server| -> u64 {
        let t: Value = http()
            .get(s.url("/v1/topics/dst"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        t["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["end_offset"].as_u64().unwrap())
            .sum()
    };
    // Values of 8 KB: a read of 1 MiB is about 128 records, so the outputs of the last
    // quarter second before a kill span several reads of the replay, even on a loaded
    // machine.
    let pad = "x".repeat(8000);
    let (mut n, mut cut) = (0usize, 0);
    let logs = tempfile::tempdir().unwrap();
    let stderr = logs.path().join("stderr");
    for _ in 0..10 {
        for _ in 0..10 {
            let recs: Vec<Value> = (n..n + 300)
                .map(|i| json!({"key": format!("k{}", i % 7), "value": format!("{i}:{pad}")}))
                .collect();
            s.produce("src", recs);
            n += 300;
        }
        // Kill in the middle of the backlog.
        let deadline = Instant::now() + Duration::from_secs(60);
        while end(&s) < (n - 1800) as u64 {
            assert!(Instant::now() < deadline, "the transform did not get going");
            std::thread::sleep(Duration::from_millis(5));
        }
        s.kill9();
        // A restart that aborts after its replay's first checkpoint (or is killed when
        // it found nothing to replay).
        let mut child = std::process::Command::new(sluice_bin())
            .args(["serve", "--http", "127.0.0.1:0", "--kafka", "127.0.0.1:0"])
            .args(["--schema-registry", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path())
            .env("RUST_LOG", "warn")
            .env("SLUICE_FAILPOINT", "checkpoint-while-replaying")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        // A replay begins within seconds of the start.
        let deadline = Instant::now() + Duration::from_secs(10);
        let aborted = loop {
            if child.try_wait().unwrap().is_some() {
                let log = std::fs::read_to_string(&stderr).unwrap();
                assert!(
                    log.contains("failpoint checkpoint-while-replaying"),
                    "the server ended otherwise: {log}"
                );
                break true;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        cut += usize::from(aborted);
        s = Server::start_in(tmp.path(), &[]);
        if cut > 0 {
            break;
        }
    }
    assert!(cut >= 1, "no restart ever replayed past its checkpoint");
    let deadline = Instant::now() + Duration::from_secs(120);
    while end(&s) < n as u64 {
        assert!(Instant::now() < deadline, "{} of {n} outputs", end(&s));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let out = all(&s, "dst");
    let mut seen = HashSet::new();
    for r in &out {
        let v = r["value"].as_str().unwrap();
        let i = v.split(':').next().unwrap().to_string();
        assert!(seen.insert(i.clone()), "input {i} has two outputs");
    }
    assert_eq!(out.len(), n, "every input has its output");
}
