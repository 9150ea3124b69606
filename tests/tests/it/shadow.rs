//! Shadow deploys: a candidate `mask` config next to the live one counts exactly the
//! records whose output differs, with readable examples, and writes nothing; promotion
//! under load loses and doubles nothing (checked per record); a candidate that traps only
//! shows in the shadow; what cannot be shadowed says why.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::pipeline::{deploy_ok, status, upload, wait_for_count};

fn shadow(s: &Server, name: &str) -> (u16, Value) {
    let r = http()
        .get(s.url(&format!("/v1/transforms/{name}/shadow")))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn put_shadow(s: &Server, name: &str, body: Value) -> (u16, Value) {
    let r = http()
        .put(s.url(&format!("/v1/transforms/{name}/shadow")))
        .json(&body)
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap_or(Value::Null))
}

/// Waits until the shadow of `name` compared `n` records.
fn compared(s: &Server, name: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = shadow(s, name);
        assert_eq!(code, 200, "{v}");
        if v["compared"].as_u64() >= Some(n) {
            return v;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every record of a topic with its partition.
fn records(s: &Server, topic: &str) -> Vec<(u64, Value)> {
    let n = s.describe(topic)["partitions"].as_array().unwrap().len() as u32;
    (0..n)
        .flat_map(|p| {
            s.read_all(topic, p, 0)
                .into_iter()
                .map(move |r| (u64::from(p), r))
        })
        .collect()
}

#[test]
fn a_shadow_counts_exactly_what_differs_and_promotes_without_loss() {
    let s = Server::start();
    for t in ["sh_in", "sh_out"] {
        s.create_topic(json!({"name": t, "partitions": 2}));
    }
    upload(&s, "mask", sluice::plugins::MASK);
    deploy_ok(
        &s,
        "sh_mask",
        json!({"plugin": "mask", "input": "sh_in", "outputs": ["sh_out"]}),
    );
    let line = |i: usize| {
        if i.is_multiple_of(5) {
            format!("User: u{i}, Password: x{i}")
        } else {
            format!("plain record {i}")
        }
    };
    s.produce(
        "sh_in",
        (0..50)
            .map(|i| json!({"key": format!("k{i}"), "value": line(i)}))
            .collect(),
    );
    wait_for_count(&s, "sh_out", 50);

    // The candidate keeps each secret's length instead of eight stars.
    let (code, v) = put_shadow(
        &s,
        "sh_mask",
        json!({"version": 1, "config": {"mask_length": "preserve"}}),
    );
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["live_version"], 1);
    assert_eq!(v["compared"], 0, "it starts from the live position");
    s.produce(
        "sh_in",
        (50..150)
            .map(|i| json!({"key": format!("k{i}"), "value": line(i)}))
            .collect(),
    );
    let v = compared(&s, "sh_mask", 100);
    assert_eq!(v["compared"], 100, "{v}");
    let counts = &v["counts"];
    assert_eq!(
        (counts["different"].as_u64(), counts["same"].as_u64()),
        (Some(20), Some(80)),
        "{v}"
    );
    for class in [
        "only_live",
        "only_candidate",
        "candidate_dead_letter",
        "live_dead_letter",
        "both_dead_letter",
    ] {
        assert_eq!(counts[class], 0, "{class}: {v}");
    }
    let examples = v["examples"]["different"].as_array().unwrap();
    assert!(!examples.is_empty() && examples.len() <= 10);
    for e in examples {
        let input = e["value"].as_str().unwrap();
        assert!(input.contains("Password: x"), "{e}");
        let change = &e["changes"][0];
        assert_eq!(change["field"], "value", "{e}");
        let (live, cand) = (
            change["live"].as_str().unwrap(),
            change["candidate"].as_str().unwrap(),
        );
        assert!(live.ends_with("Password: ********"), "{e}");
        let secret_len = input.rsplit(": ").next().unwrap().len();
        assert!(
            cand.ends_with(&format!("Password: {}", "*".repeat(secret_len))),
            "{e}"
        );
    }
    assert!(v["candidate"]["records"].as_u64().unwrap() >= 100, "{v}");
    assert!(
        v["live"]["cpu_us_per_record"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    // The live outputs are the live version's alone.
    let out = wait_for_count(&s, "sh_out", 150);
    assert_eq!(out.len(), 150);
    assert!(
        out.iter()
            .filter(|r| r["value"].as_str().unwrap().contains("Password"))
            .all(|r| r["value"].as_str().unwrap().ends_with("********")),
        "the shadow wrote nothing"
    );

    // Promote while records keep coming: every input gets exactly one output, the old
    // masking up to a point per partition and the new one after it.
    let producer = {
        let url = s.url("/v1/topics/sh_in/records");
        std::thread::spawn(move || {
            for chunk in 0..40 {
                let recs: Vec<Value> = (0..5)
                    .map(|j| {
                        let i = 150 + chunk * 5 + j;
                        json!({"key": format!("k{i}"), "value": format!("User: u{i}, Password: y{i}")})
                    })
                    .collect();
                let r = http()
                    .post(&url)
                    .json(&json!({"records": recs}))
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = http()
        .post(s.url("/v1/transforms/sh_mask/shadow/promote"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let st: Value = r.json().unwrap();
    assert_eq!(st["config"]["mask_length"], "preserve", "{st}");
    producer.join().unwrap();
    assert_eq!(shadow(&s, "sh_mask").0, 404, "promotion drops the shadow");
    wait_for_count(&s, "sh_out", 350);
    std::thread::sleep(Duration::from_millis(500));
    let out = records(&s, "sh_out");
    assert_eq!(out.len(), 350, "nothing doubled");
    let mut by_input: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for (_, r) in &out {
        let src = r["headers"]["sluice-src"].as_str().unwrap();
        let parts: Vec<&str> = src.split(':').collect();
        assert_eq!(parts[0], "sh_mask");
        by_input
            .entry((parts[1].parse().unwrap(), parts[2].parse().unwrap()))
            .or_default()
            .push(r["value"].as_str().unwrap().to_string());
    }
    assert_eq!(by_input.len(), 350, "every input once");
    assert!(by_input.values().all(|v| v.len() == 1));
    for p in 0..2u64 {
        let styles: Vec<bool> = by_input
            .iter()
            .filter(|((ip, _), _)| *ip == p)
            .filter(|(_, v)| v[0].contains("Password"))
            .map(|(_, v)| v[0].ends_with("********"))
            .collect();
        let first_new = styles.iter().position(|old| !old).unwrap_or(styles.len());
        assert!(
            styles[first_new..].iter().all(|old| !old),
            "partition {p}: old masking after new: {styles:?}"
        );
    }
    assert!(
        by_input
            .values()
            .any(|v| v[0].contains("Password") && !v[0].ends_with("********")),
        "the candidate is live: {}",
        status(&s, "sh_mask")
    );
}

#[test]
fn a_trapping_candidate_shows_only_in_the_shadow_and_what_cannot_be_shadowed_says_why() {
    let s = Server::start();
    for t in ["sb_in", "sb_out", "sb_counts"] {
        s.create_topic(json!({"name": t}));
    }
    upload(&s, "misbehave", sluice_tests::fixtures::MISBEHAVE);
    deploy_ok(
        &s,
        "sb",
        json!({"plugin": "misbehave", "input": "sb_in", "outputs": ["sb_out"]}),
    );
    let (code, v) = put_shadow(&s, "sb", json!({"config": {"mode": "panic"}}));
    assert_eq!(code, 201, "{v}");
    s.produce(
        "sb_in",
        (0..30)
            .map(|i| {
                json!({"value": if i % 10 == 3 { format!("POISON {i}") } else { format!("ok {i}") }})
            })
            .collect(),
    );
    let v = compared(&s, "sb", 30);
    assert_eq!(v["counts"]["candidate_dead_letter"], 3, "{v}");
    assert_eq!(v["counts"]["same"], 27, "{v}");
    let ex = &v["examples"]["candidate_dead_letter"][0];
    assert_eq!(ex["live"]["verdict"], "emitted", "{ex}");
    assert_eq!(ex["candidate"]["verdict"], "failed", "{ex}");
    assert!(
        ex["candidate"]["reason"]
            .as_str()
            .unwrap()
            .contains("poison"),
        "{ex}"
    );
    assert!(v["candidate"]["traps"].as_u64().unwrap() >= 3, "{v}");
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{v}");
    assert_eq!(v["live"]["traps"], 0);
    // The live deployment passed everything, and never trapped.
    assert_eq!(wait_for_count(&s, "sb_out", 30).len(), 30);
    let st = status(&s, "sb");
    assert_eq!(st["counters"]["traps"], 0, "{st}");
    assert!(st["last_error"].is_null(), "{st}");
    // Dropped: the live version runs on as it was.
    let r = http()
        .delete(s.url("/v1/transforms/sb/shadow"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(shadow(&s, "sb").0, 404);
    // Stopping it stopped only its instances: new ones start (a redeploy, a new shadow).
    deploy_ok(
        &s,
        "sb",
        json!({"plugin": "misbehave", "input": "sb_in", "outputs": ["sb_out"], "config": {"mode": "log"}}),
    );
    s.produce("sb_in", vec![json!({"value": "after"})]);
    assert_eq!(wait_for_count(&s, "sb_out", 31).len(), 31);
    upload(&s, "mask", sluice::plugins::MASK);
    s.create_topic(json!({"name": "sb_masked"}));
    deploy_ok(
        &s,
        "sb_mask",
        json!({"plugin": "mask", "input": "sb_in", "outputs": ["sb_masked"]}),
    );
    assert_eq!(put_shadow(&s, "sb", json!({})).0, 201);
    let r = http()
        .delete(s.url("/v1/transforms/sb/shadow"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http()
        .post(s.url("/v1/transforms/sb/shadow/promote"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);

    // What cannot be shadowed, or is asked wrongly.
    upload(&s, "window-count", sluice::plugins::WINDOW_COUNT);
    deploy_ok(
        &s,
        "sb_wc",
        json!({"plugin": "window-count", "input": "sb_in", "outputs": ["sb_counts"]}),
    );
    let (code, e) = put_shadow(&s, "sb_wc", json!({}));
    assert_eq!(code, 409, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("state"),
        "{e}"
    );
    assert_eq!(put_shadow(&s, "nope", json!({})).0, 404);
    assert_eq!(put_shadow(&s, "sb", json!({"version": 7})).0, 404);
    assert_eq!(put_shadow(&s, "sb", json!({"version": "newest"})).0, 400);
    assert_eq!(put_shadow(&s, "sb", json!({"extra": 1})).0, 400);
}
