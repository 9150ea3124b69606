//! Plugins written in Python (componentize-py, `sdk-python`) and JavaScript
//! (componentize-js, `sdk-js`) on the real binary: deployed over REST they transform records
//! end to end, and misbehaving ones are contained like Rust ones — the poison record is
//! dead-lettered with its reason, the rest flow — and stateful ones (keyed state and
//! event-time timers) count exactly, across a SIGKILL.

use serde_json::{Value, json};

use crate::common::{Server, sluice_bin};
use crate::pipeline::{deploy_ok, status, wait_for_count, wait_for_count_within};

/// Uploads a (big) Python component: a debug server compiling 18 MB of wasm for both its
/// engines while other tests run takes longer than the usual client timeout.
fn upload(s: &Server, name: &str, bytes: &[u8]) {
    sluice_auth::tls::install_provider();
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

/// Python and JS plugins are CPU-heavy interpreters, and the containment checks depend on
/// runs at idle priority (isolating a runaway record) getting CPU: these tests take turns
/// rather than starve each other on a 2-core machine.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

fn values(recs: &[Value]) -> Vec<&str> {
    recs.iter().map(|r| r["value"].as_str().unwrap()).collect()
}

#[test]
fn a_python_filter_deployed_over_rest_filters_end_to_end() {
    let _turn = one_at_a_time();
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
    // Built against `transform-stateless`: no state import, so no changelog topic.
    let st = status(&s, "logins");
    assert_eq!(st["stateful"], false, "{st}");
    let reason = dlq[0]["headers"]["sluice-error"].as_str().unwrap();
    assert!(reason.contains("invalid JSON"), "{reason}");
}

/// `window-count` in Python and in JavaScript (built against the `transform` world) runs
/// stateful — changelog topic, checkpoints, watermark — and counts a shuffled workload with
/// late events exactly like the Rust plugin, across a SIGKILL in the middle of the work.
#[test]
fn python_and_js_window_counts_are_stateful_and_exact_across_a_sigkill() {
    let _turn = one_at_a_time();
    use crate::stateful::{
        PARTITIONS, check_counts, produce_ndjson, wait_settled, window_count_spec, workload_in,
    };
    let plugins = [
        sluice_tests::stateful_python_plugin("sdk-python/examples/window-count"),
        sluice_tests::stateful_js_plugin("sdk-js/examples/window-count"),
    ];
    let per_partition = 6_000;
    for (seed, bytes) in plugins.iter().enumerate() {
        // The first body holds the first third of each partition: no late events in it.
        let w = workload_in(per_partition, 21 + seed as u64, per_partition / 3);
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut s = Server::start_in(&data, &[]);
        s.create_topic(json!({"name": "events", "partitions": PARTITIONS}));
        s.create_topic(json!({"name": "counts", "partitions": PARTITIONS}));
        upload(&s, "window-count", bytes);
        let mut spec = window_count_spec();
        // Long enough that the partitions do not go idle (and close every window) between
        // the two parts of the input.
        spec["idle_timeout_ms"] = json!(5000);
        deploy_ok(&s, "wc", spec);
        let st = status(&s, "wc");
        assert_eq!(st["stateful"], true, "{st}");
        assert_eq!(st["state_topic"], "wc.state", "{st}");
        produce_ndjson(&s, "events", &w.bodies[0]);
        wait_for_lag_zero(&s, "wc");
        for b in &w.bodies[1..] {
            produce_ndjson(&s, "events", b);
        }
        // Killed in the middle of the rest of the work.
        std::thread::sleep(std::time::Duration::from_millis(400));
        s.kill9();
        let s = Server::start_in(&data, &[]);
        wait_settled(&s, "wc", std::time::Duration::from_secs(300));
        check_counts(&s, &w);
    }
}

fn wait_for_lag_zero(s: &Server, name: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        let st = status(s, name);
        let parts = st["partitions"].as_array().cloned().unwrap_or_default();
        if !parts.is_empty() && parts.iter().all(|p| p["lag"] == 0) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "input not read: {st}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Deploys `plugin` once per mode over 4 records, the third a poison one, and checks that
/// the other three flow, the poison one is dead-lettered with one of the expected reasons,
/// and the deployment keeps running.
fn contained(s: &Server, plugin: &str, modes: &[(&str, &[&str])]) {
    for &(mode, expect) in modes {
        let name = format!("{plugin}-{mode}");
        let (input, output) = (format!("in-{name}"), format!("out-{name}"));
        s.create_topic(json!({"name": input}));
        s.create_topic(json!({"name": output}));
        deploy_ok(
            s,
            &name,
            json!({"plugin": plugin, "input": input, "outputs": [output],
                "config": {"mode": mode},
                "limits": {"timeout_ms": 1000, "memory_bytes": 48 << 20}}),
        );
        let recs: Vec<Value> = ["a", "b", "POISON-1", "c"]
            .iter()
            .map(|v| json!({"value": v}))
            .collect();
        s.produce(&input, recs);
        // Runs of a failing plugin go on an idle-priority thread: on a machine busy with
        // other tests, isolating the poison record can take a while.
        let out = wait_for_count_within(s, &output, 3, std::time::Duration::from_secs(300));
        assert_eq!(values(&out), ["a", "b", "c"], "{name}");
        let dlq = wait_for_count(s, &format!("{input}.dlq"), 1);
        assert_eq!(values(&dlq), ["POISON-1"], "{name}");
        let reason = dlq[0]["headers"]["sluice-error"].as_str().unwrap();
        assert!(
            expect.iter().any(|e| reason.contains(e)),
            "{name}: {reason}"
        );
        let st = status(s, &name);
        assert_eq!(st["status"], "running", "{name}: {st}");
    }
}

#[test]
fn misbehaving_python_plugins_are_contained() {
    let _turn = one_at_a_time();
    let s = Server::start();
    let plugin = sluice_tests::python_plugin("tests/python/misbehave");
    upload(&s, "mis-py", &plugin);
    contained(
        &s,
        "mis-py",
        &[
            ("raise", &["ValueError: poison record POISON-1"]),
            // The call times out; alone in its isolating call, the record meets its fuel.
            ("loop", &["fuel exhausted", "timed out"]),
            // Zero-filling a MiB at a time meets the fuel, the memory limit or the
            // deadline: whichever first (a loaded machine decides).
            (
                "memhog",
                &["memory", "MemoryError", "fuel exhausted", "timed out"],
            ),
            ("exit", &["the plugin exited (status 1)"]),
            ("network", &["the plugin used the network (wasi:sockets/"]),
            ("state", &["this plugin was built without state"]),
        ],
    );
}

#[test]
fn misbehaving_javascript_plugins_are_contained() {
    let _turn = one_at_a_time();
    let s = Server::start();
    upload(&s, "mis-js", &sluice_tests::js_plugin("tests/js/misbehave"));
    contained(
        &s,
        "mis-js",
        &[
            ("throw", &["RangeError: poison record POISON-1"]),
            ("loop", &["fuel exhausted", "timed out"]),
            ("memhog", &["memory", "fuel exhausted", "timed out"]),
        ],
    );
}

/// `sluice plugin new NAME --lang python|js` writes a project whose native test passes as
/// written, and `sluice plugin push NAME` in it builds it (componentize-py or
/// componentize-js) and uploads a component the server accepts and runs.
#[test]
fn scaffolded_python_and_js_plugins_test_build_push_and_run() {
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
    let s = Server::start();
    for lang in ["python", "js"] {
        let name = format!("shout-{lang}");
        run(std::process::Command::new(sluice_bin())
            .args(["plugin", "new", &name, "--lang", lang])
            .current_dir(dir.path()));
        let project = dir.path().join(&name);
        let tested = if lang == "python" {
            run(std::process::Command::new("python3")
                .args(["-m", "unittest", "-v"])
                .current_dir(&project))
        } else {
            run(std::process::Command::new("npm")
                .args(["install", "--silent"])
                .current_dir(&project));
            run(std::process::Command::new("node")
                .arg("--test")
                .current_dir(&project))
        };
        assert!(
            tested.replace('_', " ").contains("case table")
                && (tested.contains("\nOK") || tested.contains("# pass 1")),
            "{lang}: {tested}"
        );
        let mut push = std::process::Command::new(sluice_bin());
        push.args(["--server", &s.url(""), "plugin", "push", &name])
            .current_dir(&project);
        run(&mut push);
        let (words, loud) = (format!("words-{lang}"), format!("loud-{lang}"));
        s.create_topic(json!({"name": words}));
        s.create_topic(json!({"name": loud}));
        deploy_ok(
            &s,
            &name,
            json!({"plugin": name, "input": words, "outputs": [loud]}),
        );
        s.produce(
            &words,
            vec![json!({"value": "hello"}), json!({"value": ""})],
        );
        assert_eq!(values(&wait_for_count(&s, &loud, 1)), ["HELLO"], "{lang}");
    }
}
