//! `GET /v1/lineage/{topic}/{partition}/{offset}` through mask → enrich → window-count: a
//! window's count traces back hop by hop (each transform, plugin and version) to a record
//! that entered Sluice; an input traces forward to its outputs and to the dead letter of the
//! hop that refused it.

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::pipeline::{deploy_ok, upload, wait_for_count};

fn lineage(s: &Server, topic: &str, p: u64, o: u64) -> (u16, Value) {
    let r = http()
        .get(s.url(&format!("/v1/lineage/{topic}/{p}/{o}")))
        .send()
        .unwrap();
    (r.status().as_u16(), r.json().unwrap())
}

fn at(topic: &str, p: u64, o: u64) -> Value {
    json!({"topic": topic, "partition": p, "offset": o})
}

/// (partition, offset, value) of every record of a topic.
fn records(s: &Server, topic: &str) -> Vec<(u64, u64, String)> {
    let n = s.describe(topic)["partitions"].as_array().unwrap().len() as u32;
    (0..n)
        .flat_map(|p| {
            s.read_all(topic, p, 0).into_iter().map(move |r| {
                (
                    u64::from(p),
                    r["offset"].as_u64().unwrap(),
                    r["value"].as_str().unwrap_or_default().to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn lineage_follows_records_back_to_their_origin_and_forward_to_outputs_and_dead_letters() {
    let s = Server::start();
    for (t, p) in [
        ("lin_ev", 2),
        ("lin_masked", 2),
        ("lin_enriched", 2),
        ("lin_counts", 1),
    ] {
        s.create_topic(json!({"name": t, "partitions": p}));
    }
    s.create_topic(json!({"name": "lin_users", "cleanup": "compact"}));
    upload(&s, "mask", sluice::plugins::MASK);
    upload(&s, "enrich", sluice::plugins::ENRICH);
    upload(&s, "window-count", sluice::plugins::WINDOW_COUNT);
    deploy_ok(
        &s,
        "lin_mask",
        json!({"plugin": "mask", "input": "lin_ev", "outputs": ["lin_masked"]}),
    );
    let enrich = deploy_ok(
        &s,
        "lin_enrich",
        json!({"plugin": "enrich", "input": "lin_masked", "outputs": ["lin_enriched"],
               "tables": ["lin_users"], "config": {"table": "lin_users", "on_missing": "reject"}}),
    );
    let dlq = enrich["dead_letter"].as_str().unwrap().to_string();
    deploy_ok(
        &s,
        "lin_wc",
        json!({"plugin": "window-count", "input": "lin_enriched", "outputs": ["lin_counts"],
               "config": {"window_ms": "1000", "key_field": "user_id"}}),
    );
    s.produce(
        "lin_users",
        vec![
            json!({"key": "u-1", "value": {"name": "Ann"}}),
            json!({"key": "u-2", "value": {"name": "Bob"}}),
        ],
    );
    // Two users in the table and one that is not (enrich dead-letters it), in the window
    // [1000, 2000); then one far later that closes the window.
    let mut events: Vec<Value> = (0..6)
        .map(|i| {
            let user = ["u-1", "u-2", "u-9"][i % 3];
            json!({"key": user, "timestamp": 1_000 + i as i64 * 100,
                   "value": {"user_id": user, "password": format!("secret{i}"), "n": i}})
        })
        .collect();
    events.push(json!({"key": "u-1", "timestamp": 60_000,
                       "value": {"user_id": "u-1", "password": "late", "n": 6}}));
    let produced = s.produce("lin_ev", events);
    let counts = wait_for_count(&s, "lin_counts", 2);
    assert_eq!(counts.len(), 2, "{counts:?}");
    wait_for_count(&s, &dlq, 2);

    // Back from a window's count: window-count (a timer) ← enrich ← mask ← the origin.
    let (code, l) = lineage(&s, "lin_counts", 0, 0);
    assert_eq!(code, 200, "{l}");
    assert_eq!(l["record"]["topic"], "lin_counts");
    assert!(
        l["record"]["value"].as_str().unwrap().contains("count"),
        "{l}"
    );
    let hops = l["hops"].as_array().unwrap();
    let names: Vec<(&str, &str, &str, u64)> = hops
        .iter()
        .map(|h| {
            (
                h["transform"].as_str().unwrap(),
                h["plugin"].as_str().unwrap(),
                h["via"].as_str().unwrap(),
                h["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("lin_wc", "window-count", "timer", 1),
            ("lin_enrich", "enrich", "record", 1),
            ("lin_mask", "mask", "record", 1),
        ],
        "{l}"
    );
    assert_eq!(hops[0]["output"], at("lin_counts", 0, 0));
    assert!(hops[0]["watermark"].is_i64(), "{l}");
    for w in hops.windows(2) {
        assert_eq!(w[0]["input"], w[1]["output"], "the chain is unbroken: {l}");
    }
    let origin = &l["origin"];
    assert_eq!(origin, &hops[2]["input"]);
    assert_eq!(origin["topic"], "lin_ev");
    let (p, o) = (
        origin["partition"].as_u64().unwrap(),
        origin["offset"].as_u64().unwrap(),
    );
    assert!(produced.contains(&(p, o)), "{origin} is a record produced");
    assert_eq!(l["truncated"], false);
    // The origin's own lineage: no hops, itself the origin.
    let (code, own) = lineage(&s, "lin_ev", p, o);
    assert_eq!(code, 200);
    assert_eq!(own["hops"], json!([]));
    assert_eq!(own["origin"], at("lin_ev", p, o));

    // Forward from a record enrich refused: mask's output, then enrich's dead letter with
    // its reason.
    let all_ev = records(&s, "lin_ev");
    let (p9, o9, _) = all_ev
        .iter()
        .find(|r| r.2.contains("\"u-9\"") && r.2.contains("\"n\":2"))
        .unwrap()
        .clone();
    let (code, f) = lineage(&s, "lin_ev", p9, o9);
    assert_eq!(code, 200, "{f}");
    let derived = f["derived"].as_array().unwrap();
    let kinds: Vec<(&str, &str, &str)> = derived
        .iter()
        .map(|d| {
            (
                d["transform"].as_str().unwrap(),
                d["kind"].as_str().unwrap(),
                d["topic"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("lin_mask", "output", "lin_masked"),
            ("lin_enrich", "dead_letter", dlq.as_str()),
        ],
        "{f}"
    );
    assert_eq!(derived[0]["from"], at("lin_ev", p9, o9));
    assert_eq!(
        derived[1]["from"],
        json!({"topic": "lin_masked", "partition": derived[0]["partition"], "offset": derived[0]["offset"]})
    );
    assert!(derived[1]["reason"].is_string(), "{f}");
    // The dead letter traces back to the same input.
    let (code, back) = lineage(
        &s,
        &dlq,
        derived[1]["partition"].as_u64().unwrap(),
        derived[1]["offset"].as_u64().unwrap(),
    );
    assert_eq!(code, 200);
    assert_eq!(back["hops"][0]["via"], "dead_letter");
    assert_eq!(back["origin"], at("lin_ev", p9, o9), "{back}");

    // Forward from a record of u-1: mask's and enrich's outputs (window-count keeps it in
    // its state, and its count comes from a timer).
    let (p1, o1, _) = all_ev
        .iter()
        .find(|r| r.2.contains("\"n\":0"))
        .unwrap()
        .clone();
    let (_, f) = lineage(&s, "lin_ev", p1, o1);
    let topics: Vec<&str> = f["derived"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["topic"].as_str().unwrap())
        .collect();
    assert_eq!(topics, ["lin_masked", "lin_enriched"], "{f}");

    // Records that are not there: 404; a partition that is not: 400.
    assert_eq!(lineage(&s, "lin_ev", 0, 1_000_000).0, 404);
    assert_eq!(lineage(&s, "nope", 0, 0).0, 404);
    assert_eq!(lineage(&s, "lin_ev", 9, 0).0, 400);
}
