//! What a worker writes, record by record: outputs keep their keys, timestamps and
//! headers; a dead letter carries its input whole (headers too) with the verdict's
//! headers — through the worker's own send path, against Sluice's listener.

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::worker::{Worker, wait_for};

#[test]
fn worker_outputs_and_dead_letters_keep_keys_times_and_headers() {
    let s = Server::process();
    let kafka = s.kafka.clone().unwrap();
    s.create_topic(json!({"name": "r.in", "partitions": 2}));
    s.create_topic(json!({"name": "r.out", "partitions": 2}));
    s.create_topic(json!({"name": "r.in.dlq", "partitions": 1}));
    let w = Worker::spawn(&kafka, "a", &["--group".into(), "rg".into()]);
    let r = http()
        .put(w.url("/v1/plugins/mis"))
        .body(sluice_tests::fixtures::MISBEHAVE.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    let r = http()
        .put(w.url("/v1/transforms/rec"))
        .json(
            &json!({"plugin": "mis", "input": "r.in", "outputs": ["r.out"],
            "config": {"mode": "reject"}}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    // Every third record is rejected; some have headers, some keys, all a timestamp.
    let n = 300usize;
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let mut r = json!({"value": format!("{i}{}", if i.is_multiple_of(3) { " REJECT" } else { "" }),
                "timestamp": 1_700_000_000_000i64 + i as i64});
            if i.is_multiple_of(2) {
                r["key"] = json!(format!("k{i}"));
            }
            if i.is_multiple_of(5) {
                r["headers"] = json!({"trace": format!("t{i}"), "origin": "test"});
            }
            r
        })
        .collect();
    s.produce("r.in", records);
    let read = |topic: &str, parts: u32| -> Vec<Value> {
        (0..parts).flat_map(|p| s.read_all(topic, p, 0)).collect()
    };
    let rejected = n.div_ceil(3);
    wait_for("every output and dead letter", 60, || {
        read("r.out", 2).len() == n - rejected && read("r.in.dlq", 1).len() == rejected
    });
    let index = |r: &Value| -> usize {
        let v = r["value"].as_str().unwrap();
        v.split(' ').next().unwrap().parse().unwrap()
    };
    let check_input = |r: &Value, i: usize| {
        assert_eq!(r["timestamp"], 1_700_000_000_000i64 + i as i64, "{r}");
        if i.is_multiple_of(2) {
            assert_eq!(r["key"], format!("k{i}"), "{r}");
        } else {
            assert!(r["key"].is_null(), "{r}");
        }
        if i.is_multiple_of(5) {
            assert_eq!(r["headers"]["trace"], format!("t{i}"), "{r}");
            assert_eq!(r["headers"]["origin"], "test", "{r}");
        }
    };
    for r in read("r.out", 2) {
        let i = index(&r);
        assert_ne!(i % 3, 0, "a rejected record was written: {r}");
        check_input(&r, i);
    }
    for r in read("r.in.dlq", 1) {
        let i = index(&r);
        assert_eq!(i % 3, 0, "{r}");
        check_input(&r, i);
        let h = &r["headers"];
        assert!(
            h["sluice-error"].as_str().is_some_and(|e| !e.is_empty()),
            "{r}"
        );
        assert_eq!(h["sluice-source-topic"], "r.in", "{r}");
        assert!(h["sluice-source-offset"].as_str().is_some(), "{r}");
        assert_eq!(h["sluice-plugin"], "mis", "{r}");
    }
}
