//! Identities, roles and TLS over the real listeners: an auth matrix over HTTPS and Kafka
//! SASL/PLAIN over TLS (confluent-kafka), with a self-signed certificate from rcgen.

use std::process::Command;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::common::Server;

pub(crate) const TOKENS: [(&str, &str, &str, &str); 5] = [
    ("ops", "admin", "", "ops-token-1"),
    ("ingest", "producer", "[\"user_*\"]", "ingest-token-2"),
    ("reader", "consumer", "[\"user_*\"]", "reader-token-3"),
    ("watch", "viewer", "", "watch-token-4"),
    ("oper", "operator", "", "oper-token-5"),
];

/// Who (none, `bad` token, or an identity), method, path, body, expected status.
type Case<'a> = (Option<&'a str>, &'a str, &'a str, Option<Value>, u16);

fn sha256_hex(s: &str) -> String {
    sluice_auth::hash_token(s)
}

/// A data dir with a config naming the four identities and a self-signed certificate.
pub(crate) fn secure_setup(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert_pem = ck.cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let mut cfg = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    );
    for (name, role, topics, token) in TOKENS {
        cfg.push_str(&format!(
            "\n[[auth.identities]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(token)
        ));
        if !topics.is_empty() {
            cfg.push_str(&format!("topics = {topics}\n"));
        }
    }
    let path = dir.join("sluice.toml");
    std::fs::write(&path, cfg).unwrap();
    (path, cert_pem)
}

fn https_client(cert_pem: &str) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from(rcgen_pem_to_der(cert_pem));
    roots.add(der).unwrap();
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap()
}

fn rcgen_pem_to_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[test]
fn roles_decide_over_https_and_kafka_sasl_ssl() {
    let tmp = tempfile::tempdir().unwrap();
    let (config, cert_pem) = secure_setup(tmp.path());
    let data = tmp.path().join("data");
    let s = Server::start_in(&data, &["--config", config.to_str().unwrap()]);
    let base = s.base.replace("http://", "https://");
    let c = https_client(&cert_pem);
    let token = |who: &str| TOKENS.iter().find(|t| t.0 == who).unwrap().3;
    let call = |who: Option<&str>, method: &str, path: &str, body: Option<Value>| -> (u16, Value) {
        let mut req = c.request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(w) = who {
            req = req.bearer_auth(if w == "bad" { "wrong" } else { token(w) });
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let text = r.text().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    };
    // Set-up as admin.
    for t in ["user_events", "secret_events"] {
        let (st, b) = call(
            Some("ops"),
            "POST",
            "/v1/topics",
            Some(json!({"name": t, "partitions": 2})),
        );
        assert_eq!(st, 201, "{b}");
    }
    let rec = json!({"records": [{"key": "k", "value": "v"}]});
    let matrix: Vec<Case> = vec![
        (None, "GET", "/healthz", None, 200),
        (None, "GET", "/v1/topics", None, 401),
        (Some("bad"), "GET", "/v1/topics", None, 401),
        (
            None,
            "POST",
            "/v1/topics/user_events/records",
            Some(rec.clone()),
            401,
        ),
        // admin
        (
            Some("ops"),
            "POST",
            "/v1/topics/secret_events/records",
            Some(rec.clone()),
            200,
        ),
        (
            Some("ops"),
            "GET",
            "/v1/topics/secret_events/partitions/0/records",
            None,
            200,
        ),
        (Some("ops"), "GET", "/metrics", None, 200),
        (Some("ops"), "GET", "/v1/transforms", None, 200),
        // producer
        (
            Some("ingest"),
            "POST",
            "/v1/topics/user_events/records",
            Some(rec.clone()),
            200,
        ),
        (
            Some("ingest"),
            "POST",
            "/v1/topics/secret_events/records",
            Some(rec.clone()),
            403,
        ),
        (
            Some("ingest"),
            "GET",
            "/v1/topics/user_events/partitions/0/records",
            None,
            403,
        ),
        (Some("ingest"), "GET", "/v1/topics/user_events", None, 200),
        (
            Some("ingest"),
            "POST",
            "/v1/topics",
            Some(json!({"name": "x"})),
            403,
        ),
        (Some("ingest"), "GET", "/metrics", None, 403),
        (
            Some("ingest"),
            "PUT",
            "/v1/connectors/c",
            Some(json!({})),
            403,
        ),
        // consumer
        (
            Some("reader"),
            "GET",
            "/v1/topics/user_events/partitions/0/records",
            None,
            200,
        ),
        (
            Some("reader"),
            "GET",
            "/v1/topics/secret_events/partitions/0/records",
            None,
            403,
        ),
        (
            Some("reader"),
            "POST",
            "/v1/topics/user_events/records",
            Some(rec.clone()),
            403,
        ),
        (
            Some("reader"),
            "DELETE",
            "/v1/topics/user_events",
            None,
            403,
        ),
        // viewer
        (Some("watch"), "GET", "/v1/topics", None, 200),
        (Some("watch"), "GET", "/v1/topics/secret_events", None, 200),
        (Some("watch"), "GET", "/metrics", None, 200),
        (Some("watch"), "GET", "/v1/plugins", None, 200),
        (
            Some("watch"),
            "GET",
            "/v1/topics/user_events/partitions/0/records",
            None,
            403,
        ),
        (
            Some("watch"),
            "POST",
            "/v1/topics/user_events/records",
            Some(rec.clone()),
            403,
        ),
        (Some("watch"), "DELETE", "/v1/topics/user_events", None, 403),
        (Some("watch"), "PUT", "/v1/plugins/p", Some(json!({})), 403),
        (
            Some("watch"),
            "GET",
            "/v1/transforms/t/state?key=k",
            None,
            403,
        ),
        (Some("watch"), "POST", "/v1/transforms/t/pause", None, 403),
        (
            Some("reader"),
            "GET",
            "/v1/transforms/t/state?key=k",
            None,
            403,
        ),
        // operator: reads state and pauses/resumes (404: allowed, but no such transform)
        (
            Some("oper"),
            "GET",
            "/v1/transforms/t/state?key=k",
            None,
            404,
        ),
        (Some("oper"), "POST", "/v1/transforms/t/pause", None, 404),
        (Some("oper"), "POST", "/v1/connectors/c/resume", None, 404),
        (Some("oper"), "GET", "/v1/topics", None, 200),
        (
            Some("oper"),
            "GET",
            "/v1/topics/user_events/partitions/0/records",
            None,
            403,
        ),
        (Some("oper"), "DELETE", "/v1/topics/user_events", None, 403),
        (
            Some("oper"),
            "PUT",
            "/v1/transforms/t",
            Some(json!({})),
            403,
        ),
        (
            Some("ops"),
            "GET",
            "/v1/transforms/t/state?key=k",
            None,
            404,
        ),
    ];
    for (who, method, path, body, want) in matrix {
        let (st, b) = call(who, method, path, body);
        assert_eq!(st, want, "{who:?} {method} {path}: {b}");
        match want {
            401 => assert_eq!(b["error"]["code"], "unauthorized", "{b}"),
            403 => {
                assert_eq!(b["error"]["code"], "forbidden", "{b}");
                assert!(
                    b["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains(who.unwrap())
                );
            }
            _ => {}
        }
    }
    // Plain HTTP to the TLS port gets no answer.
    assert!(crate::common::http().get(s.url("/healthz")).send().is_err());

    // Kafka: SASL/PLAIN over TLS with the same identities.
    let kafka = s.kafka.clone().unwrap();
    let base_cfg = json!({"security.protocol": "SASL_SSL",
        "ssl.ca.location": tmp.path().join("cert.pem")});
    let out = Command::new("python3")
        .args([
            &format!("{}/kafka/confluent_secure.py", env!("CARGO_MANIFEST_DIR")),
            &kafka,
            &base_cfg.to_string(),
            token("ingest"),
            token("reader"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["producer_allowed"]["delivered"], 5, "{v}");
    assert_eq!(v["producer_denied_topic"]["delivered"], 0, "{v}");
    assert!(
        v["producer_denied_topic"]["errors"]
            .to_string()
            .to_lowercase()
            .contains("authorization"),
        "{v}"
    );
    assert_eq!(v["wrong_password"]["delivered"], 0, "{v}");
    assert!(
        v["wrong_password"]["client_errors"]
            .to_string()
            .to_lowercase()
            .contains("auth"),
        "{v}"
    );
    assert!(
        v["consumer_allowed"]["consumed"].as_u64().unwrap() >= 5,
        "{v}"
    );
    assert_eq!(v["producer_as_consumer"]["consumed"], 0, "{v}");
    assert_eq!(v["consumer_commit_allowed"], "ok", "{v}");
    assert!(
        v["consumer_commit_denied"]
            .as_str()
            .unwrap()
            .to_uppercase()
            .contains("TOPIC_AUTHORIZATION_FAILED"),
        "{v}"
    );
    assert!(
        v["producer_as_consumer"]["errors"]
            .to_string()
            .to_lowercase()
            .contains("authorization"),
        "{v}"
    );
}

#[test]
fn without_identities_a_public_address_is_refused_unless_insecure() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(crate::common::sluice_bin())
        .args([
            "serve",
            "--http",
            "0.0.0.0:0",
            "--kafka",
            "off",
            "--schema-registry",
            "off",
            "--data-dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

#[test]
fn configured_limits_answer_with_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        "[limits]\nmax_connections = 3\nmax_plugin_bytes = 1000\nmax_records_per_request = 5\nmax_body_bytes = 4096\n",
    )
    .unwrap();
    let s = Server::start_in(
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    s.create_topic(json!({"name": "t"}));
    let c = crate::common::http();
    let check = |r: reqwest::blocking::Response, status: u16, code: &str| {
        assert_eq!(r.status().as_u16(), status);
        let b: Value = r.json().unwrap();
        assert_eq!(b["error"]["code"], code, "{b}");
    };
    check(
        c.put(s.url("/v1/plugins/big"))
            .body(vec![0u8; 2000])
            .send()
            .unwrap(),
        413,
        "plugin_too_large",
    );
    let six: Vec<Value> = (0..6).map(|i| json!({"value": i})).collect();
    check(
        c.post(s.url("/v1/topics/t/records"))
            .json(&json!({"records": six}))
            .send()
            .unwrap(),
        413,
        "too_many_records",
    );
    check(
        c.post(s.url("/v1/topics/t/records"))
            .json(&json!({"records": [{"value": "x".repeat(5000)}]}))
            .send()
            .unwrap(),
        413,
        "body_too_large",
    );
    // Three idle connections take every place; the next one hears why it is turned away.
    let addr = s.base.trim_start_matches("http://").to_string();
    let idle: Vec<std::net::TcpStream> = (0..3)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let fresh = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    check(
        fresh.get(s.url("/healthz")).send().unwrap(),
        503,
        "too_many_connections",
    );
    drop(idle);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(fresh.get(s.url("/healthz")).send().unwrap().status(), 200);
}

#[test]
fn graceful_shutdown_under_load_keeps_every_acknowledged_record() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    s.create_topic(json!({"name": "load", "partitions": 3}));
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for w in 0..4 {
        let (url, stop) = (s.url("/v1/topics/load/records"), stop.clone());
        producers.push(std::thread::spawn(move || {
            let c = crate::common::http();
            let mut acked: Vec<(u64, u64, String)> = Vec::new();
            for b in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let values: Vec<String> = (0..50).map(|i| format!("w{w}-b{b}-{i}")).collect();
                let body = json!({"records": values.iter().map(|v| json!({"key": v, "value": v})).collect::<Vec<_>>()});
                let Ok(r) = c.post(&url).json(&body).send() else { break };
                if r.status() != 200 {
                    break;
                }
                let Ok(v) = r.json::<Value>() else { break };
                for (o, val) in v["offsets"].as_array().unwrap().iter().zip(values) {
                    acked.push((o["partition"].as_u64().unwrap(), o["offset"].as_u64().unwrap(), val));
                }
            }
            acked
        }));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    s.stop(); // SIGTERM while the producers are busy; must exit 0
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(u64, u64, String)> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert!(
        acked.len() > 1000,
        "only {} records acknowledged",
        acked.len()
    );
    let s = Server::start_in(tmp.path(), &[]);
    let mut stored = std::collections::HashMap::new();
    for p in 0..3u64 {
        for r in s.read_all("load", p as u32, 0) {
            stored.insert(
                (p, r["offset"].as_u64().unwrap()),
                r["value"].as_str().unwrap().to_string(),
            );
        }
    }
    for (p, o, v) in &acked {
        assert_eq!(
            stored.get(&(*p, *o)),
            Some(v),
            "acknowledged record {p}/{o} lost"
        );
    }
}

/// The topics the server keeps for itself hold state (a transform's changelog, the
/// transaction log, the schema registry's journal, a worker group's specs): only identities
/// that may read state read them, over HTTP and Kafka alike, whatever their topic patterns
/// match; and only the server (or, for workers' control topics, an admin) writes them.
#[test]
fn server_owned_topics_follow_the_state_permission_over_http_and_kafka() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = [
        ("ops", "admin", "", "ops-token-1"),
        ("oper", "operator", "", "oper-token-5"),
        ("watch", "viewer", "", "watch-token-4"),
        // Patterns that match every topic: the server's own are still out of reach.
        ("ingest", "producer", "[\"*\"]", "ingest-token-2"),
        ("reader", "consumer", "[\"*\"]", "reader-token-3"),
    ];
    let mut cfg = String::new();
    for (name, role, topics, token) in ids {
        cfg.push_str(&format!(
            "\n[[auth.identities]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n",
            sha256_hex(token)
        ));
        if !topics.is_empty() {
            cfg.push_str(&format!("topics = {topics}\n"));
        }
    }
    let config = tmp.path().join("sluice.toml");
    std::fs::write(&config, cfg).unwrap();
    let s = Server::start_in(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let c = crate::common::http();
    let token = |who: &str| ids.iter().find(|i| i.0 == who).unwrap().3;
    let call = |who: &str, method: &str, path: &str, body: Option<Value>| -> (u16, String) {
        let mut req = c
            .request(method.parse().unwrap(), s.url(path))
            .bearer_auth(token(who));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    // A stateful deployment with a name the consumer's pattern matches, and state in it.
    for t in ["c_in", "c_out"] {
        let (st, b) = call("ops", "POST", "/v1/topics", Some(json!({"name": t})));
        assert_eq!(st, 201, "{b}");
    }
    let up = c
        .put(s.url("/v1/plugins/window-count"))
        .bearer_auth(token("ops"))
        .body(sluice::plugins::WINDOW_COUNT)
        .send()
        .unwrap();
    assert!(up.status().is_success(), "{}", up.text().unwrap());
    let (st, b) = call(
        "ops",
        "PUT",
        "/v1/transforms/c_wc",
        Some(json!({"plugin": "window-count", "input": "c_in", "outputs": ["c_out"]})),
    );
    assert_eq!(st, 201, "{b}");
    let recs: Vec<Value> = (0..5)
        .map(|i| json!({"key": "alice", "value": "{}", "timestamp": 1000 + i}))
        .collect();
    let (st, b) = call(
        "ops",
        "POST",
        "/v1/topics/c_in/records",
        Some(json!({ "records": recs })),
    );
    assert_eq!(st, 200, "{b}");
    // A schema (the registry's journal), a worker group's control topic with a spec in it.
    let (st, b) = call(
        "ops",
        "POST",
        "/v1/registry/subjects/c_in-value/versions",
        Some(json!({"schema": "\"string\""})),
    );
    assert_eq!(st, 200, "{b}");
    let (st, b) = call(
        "ops",
        "POST",
        "/v1/topics",
        Some(json!({"name": "wg.sluice.config"})),
    );
    assert_eq!(st, 201, "{b}");
    let (st, b) = call(
        "ops",
        "POST",
        "/v1/topics/wg.sluice.config/records",
        Some(json!({"records": [{"key": "deployment:x", "value": "{\"secret\":1}"}]})),
    );
    assert_eq!(st, 200, "{b}");
    // The changelog has the state's records once the transform has run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, b) = call("ops", "GET", "/v1/topics/c_wc.state", None);
        let v: Value = serde_json::from_str(&b).unwrap();
        if v["partitions"][0]["end_offset"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no state written: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let owned = [
        "c_wc.state",
        "__sluice_transactions",
        "_schemas",
        "wg.sluice.config",
    ];
    let readers = ["ops", "oper"];
    for (who, ..) in ids {
        for t in owned {
            let may_read = readers.contains(&who);
            for path in [
                format!("/v1/topics/{t}/partitions/0/records"),
                format!("/v1/topics/{t}/keys/alice"),
            ] {
                let (st, b) = call(who, "GET", &path, None);
                if may_read {
                    // Allowed (a key lookup may still find the topic is not a table).
                    assert!(st != 401 && st != 403, "{who} {path}: {st} {b}");
                } else {
                    assert_eq!(st, 403, "{who} {path}: {b}");
                    assert!(b.contains("state permission"), "{who} {path}: {b}");
                }
            }
            let (st, b) = call(
                who,
                "POST",
                &format!("/v1/topics/{t}/records"),
                Some(json!({"records": [{"value": "intruder"}]})),
            );
            let may_write = who == "ops" && t == "wg.sluice.config";
            assert_eq!(st == 200, may_write, "{who} produce {t}: {st} {b}");
        }
    }
    // The admin reads the changelog's records (the consumer of the same name may not).
    let (_, b) = call(
        "ops",
        "GET",
        "/v1/topics/c_wc.state/partitions/0/records",
        None,
    );
    let v: Value = serde_json::from_str(&b).unwrap();
    assert!(!v["records"].as_array().unwrap().is_empty(), "{b}");

    // Kafka, SASL/PLAIN with the same identities.
    let users: serde_json::Map<String, Value> =
        ids.iter().map(|i| (i.0.to_string(), json!(i.3))).collect();
    let v = crate::kafka::script_json(Command::new("python3").args([
        &format!("{}/kafka/owned_topics.py", env!("CARGO_MANIFEST_DIR")),
        s.kafka.as_deref().unwrap(),
        &Value::Object(users).to_string(),
        &json!(owned).to_string(),
    ]));
    for (who, ..) in ids {
        for t in owned {
            let r = &v[who][t];
            if readers.contains(&who) {
                assert!(
                    !r["fetch_error"]
                        .as_str()
                        .unwrap()
                        .contains("TOPIC_AUTHORIZATION"),
                    "{who} {t}: {r}"
                );
            } else {
                assert_eq!(r["fetched"], 0, "{who} {t}: {r}");
                assert!(
                    r["fetch_error"]
                        .as_str()
                        .unwrap()
                        .to_lowercase()
                        .contains("authoriz"),
                    "{who} {t}: {r}"
                );
            }
            let may_write = who == "ops" && t == "wg.sluice.config";
            assert_eq!(r["produced"], may_write, "{who} {t}: {r}");
        }
    }
    assert!(
        v["ops"]["c_wc.state"]["fetched"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(
        v["oper"]["_schemas"]["fetched"].as_u64().unwrap() > 0,
        "{v}"
    );
}
