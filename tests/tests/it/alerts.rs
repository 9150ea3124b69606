//! Built-in alerts against real webhook receivers: a failing deployment, dead letters, lag
//! growing behind a paused transform, a consumer group falling behind and a sink whose store
//! stopped each fire once and resolve once, in Alertmanager's webhook format (and to an
//! Alertmanager-style receiver, re-sent while firing); a receiver that cannot be reached
//! shows why. The shipped Prometheus rules pass `promtool check rules` and their unit tests,
//! and the Grafana dashboard names only metrics the server exports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::connectors::{Endpoint, Seen, connector, connector_ok, wait_until};
use crate::pipeline::{deploy_ok, upload};

/// (alertname, what it is about, status) of every alert in the webhook payloads seen.
fn notes(seen: &[Seen]) -> Vec<(String, String, String, Value)> {
    let mut out = Vec::new();
    for s in seen {
        let p: Value = serde_json::from_str(&s.body).unwrap();
        for a in p["alerts"].as_array().unwrap() {
            let l = &a["labels"];
            let about = ["transform", "connector", "group"]
                .iter()
                .find_map(|k| l[*k].as_str())
                .unwrap_or("")
                .to_string();
            out.push((
                l["alertname"].as_str().unwrap().to_string(),
                about,
                a["status"].as_str().unwrap().to_string(),
                a.clone(),
            ));
        }
    }
    out
}

fn count(seen: &[Seen], name: &str, about: &str, status: &str) -> usize {
    notes(seen)
        .iter()
        .filter(|n| n.0 == name && n.1 == about && n.2 == status)
        .count()
}

fn post(s: &Server, path: &str, body: Value) -> Value {
    let r = http().post(s.url(path)).json(&body).send().unwrap();
    let code = r.status();
    let v: Value = r.json().unwrap_or(Value::Null);
    assert!(code.is_success(), "{path}: {code} {v}");
    v
}

#[test]
fn alerts_fire_and_resolve_once_each_at_webhook_receivers() {
    let hook = Endpoint::start(|_| (200, "ok".into(), vec![]));
    let am = Endpoint::start(|_| (200, "ok".into(), vec![]));
    let down = Arc::new(AtomicBool::new(true));
    let d2 = down.clone();
    let store = Endpoint::start(move |_| {
        if d2.load(Ordering::SeqCst) {
            (503, "stopped".into(), vec![])
        } else {
            (200, "ok".into(), vec![])
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[alerts]
evaluation_interval_ms = 200
[alerts.rules.transform_failing]
traps = 3
window_ms = 3000
[alerts.rules.lag_growing]
for_ms = 1500
[alerts.rules.dead_letters]
per_second = 0.5
window_ms = 3000
[alerts.rules.group_lag]
threshold = 5
for_ms = 600
[alerts.rules.disk]
enabled = false

[[alerts.receivers]]
name = "ops"
url = "{}/hook"
bearer_token = "hook-secret"

[[alerts.receivers]]
name = "am"
url = "{}/api/v2/alerts"
format = "alertmanager"
resend_ms = 1000

[[alerts.receivers]]
name = "nowhere"
url = "http://127.0.0.1:1/hook"
"#,
            hook.url, am.url
        ),
    )
    .unwrap();
    let s = Server::start_in(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    for t in ["jobs", "jobs.out", "feed", "feed.out", "sinked"] {
        s.create_topic(json!({"name": t}));
    }
    upload(&s, "misbehave", sluice_tests::fixtures::MISBEHAVE);
    let deploy = |name: &str, input: &str, mode: &str| {
        deploy_ok(
            &s,
            name,
            json!({"plugin": "misbehave", "input": input,
                   "outputs": [format!("{input}.out")], "config": {"mode": mode}}),
        );
    };

    // A deployment whose plugin traps: failing, and dead-lettering above the rate.
    deploy("bad", "jobs", "panic");
    s.produce(
        "jobs",
        (0..4)
            .map(|i| json!({"value": format!("POISON {i}")}))
            .collect(),
    );
    wait_until("SluiceTransformFailing fires", 30, || {
        count(&hook.seen(), "SluiceTransformFailing", "bad", "firing") == 1
    });
    wait_until("SluiceDeadLetters fires", 30, || {
        count(&hook.seen(), "SluiceDeadLetters", "bad", "firing") == 1
    });

    // Lag growing behind a paused transform.
    deploy("slow", "feed", "");
    post(&s, "/v1/transforms/slow/pause", json!({}));
    for i in 0..20 {
        s.produce("feed", vec![json!({"value": format!("r{i}")})]);
        std::thread::sleep(Duration::from_millis(150));
    }
    wait_until("SluiceLagGrowing fires", 30, || {
        count(&hook.seen(), "SluiceLagGrowing", "slow", "firing") == 1
    });
    post(&s, "/v1/transforms/slow/resume", json!({}));

    // A consumer group behind by more than its threshold.
    post(
        &s,
        "/v1/groups/lagging/reset",
        json!({"to": "earliest", "topic": "feed"}),
    );
    wait_until("SluiceConsumerGroupLag fires", 30, || {
        count(&hook.seen(), "SluiceConsumerGroupLag", "lagging", "firing") == 1
    });
    post(&s, "/v1/groups/lagging/reset", json!({"to": "latest"}));

    // A sink whose store stopped, until it is back.
    connector_ok(
        &s,
        "sink",
        json!({"kind": "http-sink", "topic": "sinked", "url": format!("{}/ingest", store.url),
               "format": "json-array", "batch": {"max_records": 8, "max_bytes": 1048576, "linger_ms": 20}}),
    );
    s.produce("sinked", vec![json!({"value": "x"})]);
    wait_until("SluiceConnectorFailing fires", 30, || {
        count(&hook.seen(), "SluiceConnectorFailing", "sink", "firing") == 1
    });
    down.store(false, Ordering::SeqCst);
    wait_until("the sink delivers", 60, || {
        connector(&s, "sink")["lag"] == 0
    });

    // Everything resolves, once.
    let fired = [
        ("SluiceTransformFailing", "bad"),
        ("SluiceDeadLetters", "bad"),
        ("SluiceLagGrowing", "slow"),
        ("SluiceConsumerGroupLag", "lagging"),
        ("SluiceConnectorFailing", "sink"),
    ];
    for (name, about) in fired {
        wait_until(&format!("{name} {about} resolves"), 60, || {
            count(&hook.seen(), name, about, "resolved") == 1
        });
    }
    // A few more evaluations: no repeats of anything.
    std::thread::sleep(Duration::from_millis(1500));
    let seen = hook.seen();
    for (name, about) in fired {
        assert_eq!(count(&seen, name, about, "firing"), 1, "{name} {about}");
        assert_eq!(count(&seen, name, about, "resolved"), 1, "{name} {about}");
    }

    // Alertmanager's webhook format, with the receiver's token.
    for req in &seen {
        assert_eq!(req.url, "/hook");
        assert_eq!(
            req.headers.get("authorization").map(String::as_str),
            Some("Bearer hook-secret")
        );
        let p: Value = serde_json::from_str(&req.body).unwrap();
        assert_eq!(p["version"], "4", "{p}");
        assert_eq!(p["receiver"], "ops", "{p}");
        let name = p["groupLabels"]["alertname"].as_str().unwrap();
        assert_eq!(p["commonLabels"]["alertname"], name, "{p}");
        assert!(p["externalURL"].as_str().unwrap().starts_with("http://"));
        for a in p["alerts"].as_array().unwrap() {
            assert_eq!(a["labels"]["alertname"], name);
            assert!(a["labels"]["severity"].is_string(), "{a}");
            assert!(a["annotations"]["summary"].is_string(), "{a}");
            assert!(a["startsAt"].as_str().unwrap().ends_with('Z'), "{a}");
            assert_eq!(a["fingerprint"].as_str().unwrap().len(), 16, "{a}");
            match a["status"].as_str().unwrap() {
                "firing" => assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z"),
                _ => assert!(a["endsAt"].as_str().unwrap() > a["startsAt"].as_str().unwrap()),
            }
        }
    }
    let all = notes(&seen);
    for (name, about) in fired {
        let prints: Vec<&Value> = all
            .iter()
            .filter(|n| n.0 == name && n.1 == about)
            .map(|n| &n.3["fingerprint"])
            .collect();
        assert_eq!(prints.len(), 2);
        assert_eq!(prints[0], prints[1], "firing and resolved are one alert");
    }

    // The Alertmanager-style receiver heard the failing deployment more than once while it
    // fired (resends), then that it ended.
    let am_alerts: Vec<Value> = am
        .seen()
        .iter()
        .flat_map(|r| serde_json::from_str::<Vec<Value>>(&r.body).unwrap())
        .filter(|a| a["labels"]["alertname"] == "SluiceConnectorFailing")
        .collect();
    assert!(am_alerts.len() >= 2, "{am_alerts:?}");
    assert!(am_alerts.iter().all(|a| a["generatorURL"].is_string()));

    // The API: nothing pending or firing, what resolved, how deliveries went.
    let v: Value = http()
        .get(s.url("/v1/alerts"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["alerts"], json!([]), "{v}");
    for (name, _) in fired {
        assert!(
            v["resolved"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["alertname"] == name && a["state"] == "resolved"),
            "{name}: {v}"
        );
    }
    let receiver = |n: &str| {
        v["receivers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(receiver("ops")["sent"], seen.len(), "{v}");
    assert_eq!(receiver("ops")["last_error"], Value::Null, "{v}");
    assert!(
        receiver("nowhere")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{v}"
    );
}

/// A receiver that is not a URL stops the server at start, with the reason.
#[test]
fn a_bad_receiver_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[[alerts.receivers]]\nname = \"ops\"\nurl = \"ftp://example\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::common::sluice_bin())
        .args(["serve", "--http", "127.0.0.1:0", "--kafka", "off"])
        .args(["--schema-registry", "off", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not http(s)"), "{err}");
}

/// The shipped Prometheus rules pass `promtool check rules` and their unit tests, and every
/// metric the rules and the Grafana dashboard name is one the server exports.
#[test]
fn shipped_rules_and_dashboard_check_and_name_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let rules = root.join("prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .current_dir(&rules)
            .output()
            .expect("promtool (Debian's prometheus; scripts/setup installs it)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Every family the server exports, from a server with a Kafka group, a transform and a
    // connector (families are declared whether or not they have samples yet).
    let s = Server::start();
    s.create_topic(json!({"name": "m"}));
    s.create_topic(json!({"name": "m.out"}));
    post(
        &s,
        "/v1/groups/g/reset",
        json!({"to": "earliest", "topic": "m"}),
    );
    // Histograms show once they have a sample: a transform batch and a Kafka request.
    upload(&s, "misbehave", sluice_tests::fixtures::MISBEHAVE);
    deploy_ok(
        &s,
        "pass",
        json!({"plugin": "misbehave", "input": "m", "outputs": ["m.out"]}),
    );
    s.produce("m", vec![json!({"value": "one"})]);
    wait_until("the transform's batch", 30, || {
        s.describe("m.out")["partitions"][0]["end_offset"] == 1
    });
    {
        use std::io::{Read, Write};
        // ApiVersions v0: api key 18, version 0, correlation id 1, client id "t".
        let body = [0u8, 18, 0, 0, 0, 0, 0, 1, 0, 1, b't'];
        let mut k = std::net::TcpStream::connect(s.kafka.clone().unwrap()).unwrap();
        k.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
        k.write_all(&body).unwrap();
        let mut len = [0u8; 4];
        k.read_exact(&mut len).unwrap();
    }
    let metrics = http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let families: std::collections::HashSet<&str> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let exported = |name: &str| {
        families.contains(name)
            || ["_bucket", "_sum", "_count", "_total"]
                .iter()
                .any(|suffix| {
                    name.strip_suffix(suffix)
                        .is_some_and(|f| families.contains(f))
                })
    };
    let names_in = |text: &str| -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        for c in text.chars().chain([' ']) {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                word.push(c);
            } else {
                if word.starts_with("sluice_") || word.starts_with("process_") {
                    out.push(word.clone());
                }
                word.clear();
            }
        }
        out
    };
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/sluice.json")).unwrap())
            .unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules_text = std::fs::read_to_string(rules.join("alerts.yml")).unwrap();
    exprs.extend(
        rules_text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("expr:"))
            .map(str::to_string),
    );
    let mut named = 0;
    for e in &exprs {
        for name in names_in(e) {
            named += 1;
            assert!(
                exported(&name),
                "`{name}` (in `{e}`) is not exported:\n{metrics}"
            );
        }
    }
    assert!(named >= 20);
}
