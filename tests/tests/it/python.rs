//! Plugins written in Python (componentize-py, `sdk-python`) on the real binary: deployed
//! over REST they transform records end to end, and misbehaving ones are contained like
//! Rust ones — the poison record is dead-lettered with its reason, the rest flow.

use serde_json::{Value, json};

use crate::common::{Server, sluice_bin};
use crate::pipeline::{deploy_ok, status, wait_for_count};

/// Uploads a (big) Python component: a debug server compiling 18 MB of wasm for both its
/// engines while other tests run takes longer than the usual client timeout.
fn upload(s: &Server, name: &str, bytes: &[u8]) {
    let r = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .unwrap()
        .put(s.url(&format!("/v1/plugins/{name}")))
        .body(bytes.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
}

fn values(recs: &[Value]) -> Vec<&str> {
    recs.iter().map(|r| r["value"].as_str().unwrap()).collect()
}

#[test]
fn a_python_filter_deployed_over_rest_filters_end_to_end() {
    let s = Server::start();
    s.create_topic(json!({"name": "events"}));
    s.create_topic(json!({"name": "logins"}));
    upload(
        &s,
        "filter-py",
        &sluice_tests::python_plugin("sdk-python/examples/filter"),
    );
    deploy_ok(
        &s,
        "logins",
        json!({"plugin": "filter-py", "input": "events", "outputs": ["logins"],
            "config": {"field": "action", "value": "login"}}),
    );
    let recs: Vec<Value> = (0..300)
        .map(|i| {
            let action = if i % 3 == 0 { "login" } else { "view" };
            json!({"key": format!("u{i}"), "value": json!({"n": i, "action": action}).to_string()})
        })
        .chain([json!({"value": "not json"})])
        .collect();
    s.produce("events", recs);
    let out = wait_for_count(&s, "logins", 100);
    assert_eq!(out.len(), 100);
    for (k, r) in out.iter().enumerate() {
        let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        assert_eq!(v["n"], 3 * k, "order and content kept: {r}");
        assert_eq!(r["key"], format!("u{}", 3 * k));
    }
    let dlq = wait_for_count(&s, "events.dlq", 1);
    assert_eq!(values(&dlq), ["not json"]);
    let reason = dlq[0]["headers"]["sluice-error"].as_str().unwrap();
    assert!(reason.contains("invalid JSON"), "{reason}");
}

#[test]
fn misbehaving_python_plugins_are_contained() {
    let s = Server::start();
    upload(
        &s,
        "mis-py",
        &sluice_tests::python_plugin("tests/python/misbehave"),
    );
    for (mode, expect) in [
        ("raise", &["ValueError: poison record POISON-1"][..]),
        // The call times out; alone in its isolating call, the record meets its fuel.
        ("loop", &["fuel exhausted", "timed out"]),
        // Zero-filling a MiB at a time meets the fuel or the memory limit, whichever first.
        ("memhog", &["memory", "MemoryError", "fuel exhausted"]),
        ("exit", &["the plugin exited (status 1)"]),
        ("network", &["the plugin used the network (wasi:sockets/"]),
    ] {
        let (input, output) = (format!("in-{mode}"), format!("out-{mode}"));
        s.create_topic(json!({"name": input}));
        s.create_topic(json!({"name": output}));
        deploy_ok(
            &s,
            mode,
            json!({"plugin": "mis-py", "input": input, "outputs": [output],
                "config": {"mode": mode},
                "limits": {"timeout_ms": 1000, "memory_bytes": 128 << 20}}),
        );
        let recs: Vec<Value> = ["a", "b", "POISON-1", "c"]
            .iter()
            .map(|v| json!({"value": v}))
            .collect();
        s.produce(&input, recs);
        assert_eq!(
            values(&wait_for_count(&s, &output, 3)),
            ["a", "b", "c"],
            "{mode}"
        );
        let dlq = wait_for_count(&s, &format!("{input}.dlq"), 1);
        assert_eq!(values(&dlq), ["POISON-1"], "{mode}");
        let reason = dlq[0]["headers"]["sluice-error"].as_str().unwrap();
        assert!(
            expect.iter().any(|e| reason.contains(e)),
            "{mode}: {reason}"
        );
        eprintln!("{mode}: {reason}");
        let st = status(&s, mode);
        assert_eq!(st["status"], "running", "{mode}: {st}");
    }
}

/// `sluice plugin new NAME --lang python` writes a project whose native test passes as
/// written, and `sluice plugin push NAME` in it builds it with componentize-py and uploads
/// a component the server accepts and runs.
#[test]
fn a_scaffolded_python_plugin_tests_builds_pushes_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{cmd:?}: {text}");
        text
    };
    run(std::process::Command::new(sluice_bin())
        .args(["plugin", "new", "shout", "--lang", "python"])
        .current_dir(dir.path()));
    let project = dir.path().join("shout");
    let tested = run(std::process::Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .current_dir(&project));
    assert!(
        tested.contains("test_case_table") && tested.contains("\nOK"),
        "{tested}"
    );
    let s = Server::start();
    s.create_topic(json!({"name": "words"}));
    s.create_topic(json!({"name": "loud"}));
    run(std::process::Command::new(sluice_bin())
        .args(["--server", &s.url(""), "plugin", "push", "shout"])
        .env("COMPONENTIZE_PY", sluice_tests::componentize_py())
        .current_dir(&project));
    deploy_ok(
        &s,
        "shouter",
        json!({"plugin": "shout", "input": "words", "outputs": ["loud"]}),
    );
    s.produce(
        "words",
        vec![json!({"value": "hello"}), json!({"value": ""})],
    );
    assert_eq!(values(&wait_for_count(&s, "loud", 1)), ["HELLO"]);
}
