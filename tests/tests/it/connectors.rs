//! Connectors against real endpoints: a local HTTP server as the pulled API and as the sink's
//! receiver, and a real PostgreSQL server (scripts/test-postgres) for the postgres sink.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::pipeline::{all, deploy_ok, upload, wait_for_count};

/// What the handler of a test endpoint answers: status, body, headers.
pub(crate) type Reply = (u16, String, Vec<(&'static str, String)>);

/// A local HTTP endpoint; every request is recorded (method+url, headers, body).
pub(crate) struct Endpoint {
    pub(crate) url: String,
    server: Arc<tiny_http::Server>,
    requests: Arc<Mutex<Vec<Seen>>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) url: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: String,
}

impl Endpoint {
    pub(crate) fn start(handler: impl Fn(&Seen) -> Reply + Send + 'static) -> Endpoint {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (server.clone(), requests.clone());
        std::thread::spawn(move || {
            for mut req in s.incoming_requests() {
                let mut body = String::new();
                let _ = req.as_reader().read_to_string(&mut body);
                let seen = Seen {
                    url: req.url().to_string(),
                    headers: req
                        .headers()
                        .iter()
                        .map(|h| {
                            (
                                h.field.as_str().as_str().to_ascii_lowercase(),
                                h.value.as_str().to_string(),
                            )
                        })
                        .collect(),
                    body,
                };
                let (status, text, headers) = handler(&seen);
                r.lock().unwrap().push(seen);
                let mut resp = tiny_http::Response::from_string(text).with_status_code(status);
                for (k, v) in headers {
                    resp.add_header(tiny_http::Header::from_bytes(k, v).unwrap());
                }
                let _ = req.respond(resp);
            }
        });
        Endpoint {
            url,
            server,
            requests,
        }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn put_connector(s: &Server, name: &str, spec: Value) -> reqwest::blocking::Response {
    http()
        .put(s.url(&format!("/v1/connectors/{name}")))
        .json(&spec)
        .send()
        .unwrap()
}

pub(crate) fn connector_ok(s: &Server, name: &str, spec: Value) -> Value {
    let r = put_connector(s, name, spec);
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert!(status == 201 || status == 200, "{status}: {body}");
    body
}

pub(crate) fn connector(s: &Server, name: &str) -> Value {
    http()
        .get(s.url(&format!("/v1/connectors/{name}")))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

pub(crate) fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The JSON values of a topic's records.
fn json_values(recs: &[Value]) -> Vec<Value> {
    recs.iter()
        .map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap())
        .collect()
}

/// An API that pages records with `id > since`, five at a time.
fn paged_api(source: Arc<Mutex<Vec<Value>>>) -> Endpoint {
    Endpoint::start(move |req| {
        if req.headers.get("authorization").map(String::as_str) != Some("Bearer pull-secret") {
            return (401, "no".into(), vec![]);
        }
        let since: i64 = req
            .url
            .split_once("since=")
            .and_then(|(_, v)| v.split('&').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let page: Vec<Value> = source
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["id"].as_i64().unwrap() > since)
            .take(5)
            .cloned()
            .collect();
        (
            200,
            json!({ "data": { "items": page } }).to_string(),
            vec![],
        )
    })
}

#[test]
fn http_pull_imports_each_record_once_across_polls_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Arc::new(Mutex::new(Vec::new()));
    let add = |from: i64, to: i64| {
        let mut s = source.lock().unwrap();
        for id in from..=to {
            s.push(json!({"id": id, "user": format!("u-{}", id % 4), "action": "view"}));
        }
    };
    let api = paged_api(source.clone());
    let mut s = Server::start_in(tmp.path(), &[]);
    s.create_topic(json!({"name": "pulled", "partitions": 2}));
    let st = connector_ok(
        &s,
        "api",
        json!({"kind": "http-pull", "topic": "pulled", "url": format!("{}/events", api.url),
               "interval_ms": 100, "format": {"array_field": "data.items"}, "key_field": "user",
               "cursor": {"field": "id", "param": "since", "initial": "0"},
               "headers": {"Authorization": "Bearer pull-secret"}}),
    );
    assert_eq!(st["kind"], "http-pull");
    assert!(
        !st.to_string().contains("pull-secret"),
        "secrets are never returned: {st}"
    );
    add(1, 12);
    wait_for_count(&s, "pulled", 12);
    add(13, 19);
    wait_for_count(&s, "pulled", 19);
    // Several more polls find nothing new.
    let polls = api.seen().len();
    wait_until("more polls", 10, || api.seen().len() >= polls + 3);
    assert_eq!(all(&s, "pulled").len(), 19);
    // A crash, new records while Sluice is down, a restart.
    s.kill9();
    add(20, 26);
    let mut s = Server::start_in(tmp.path(), &[]);
    wait_for_count(&s, "pulled", 26);
    let polls = api.seen().len();
    wait_until("polls after restart", 10, || api.seen().len() >= polls + 3);
    let recs = all(&s, "pulled");
    let ids: Vec<i64> = json_values(&recs)
        .iter()
        .map(|v| v["id"].as_i64().unwrap())
        .collect();
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!((ids.len(), unique.len()), (26, 26), "ids: {ids:?}");
    // Keys come from the field, so one user's records share a partition.
    for r in &recs {
        let v: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
        assert_eq!(r["key"], v["user"]);
    }
    let st = connector(&s, "api");
    assert_eq!(st["status"], "running", "{st}");
    assert!(!st.to_string().contains("pull-secret"));
    // Between polls the status says when the next one runs (during a poll it is null).
    wait_until("a scheduled next poll", 10, || {
        connector(&s, "api")["next_run_ms"].as_i64().is_some()
    });
    // The cursor went back to the API.
    assert!(api.seen().iter().any(|r| r.url.contains("since=26")));
    s.stop();
}

#[test]
fn http_pull_with_etag_imports_a_changed_document_once() {
    let doc = Arc::new(Mutex::new((
        "\"v1\"".to_string(),
        "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n".to_string(),
    )));
    let d = doc.clone();
    let api = Endpoint::start(move |req| {
        let (etag, body) = d.lock().unwrap().clone();
        if req.headers.get("if-none-match") == Some(&etag) {
            return (304, String::new(), vec![]);
        }
        (200, body, vec![("ETag", etag)])
    });
    let s = Server::start();
    s.create_topic(json!({"name": "doc", "partitions": 1}));
    connector_ok(
        &s,
        "doc",
        json!({"kind": "http-pull", "topic": "doc", "url": api.url, "interval_ms": 50,
               "format": "ndjson"}),
    );
    wait_for_count(&s, "doc", 3);
    wait_until("conditional polls", 10, || {
        api.seen()
            .iter()
            .filter(|r| r.headers.contains_key("if-none-match"))
            .count()
            >= 3
    });
    assert_eq!(all(&s, "doc").len(), 3);
    *doc.lock().unwrap() = ("\"v2\"".to_string(), "{\"n\":4}\n{\"n\":5}\n".to_string());
    wait_for_count(&s, "doc", 5);
    std::thread::sleep(Duration::from_millis(300));
    let ns: Vec<i64> = json_values(&all(&s, "doc"))
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, vec![1, 2, 3, 4, 5]);
}

#[test]
fn http_pull_failures_are_retried_and_reported_without_blocking_others() {
    let s = Server::start();
    s.create_topic(json!({"name": "a", "partitions": 1}));
    s.create_topic(json!({"name": "b", "partitions": 1}));
    let flaky = Arc::new(Mutex::new(0));
    let f = flaky.clone();
    let api = Endpoint::start(move |_| {
        let mut n = f.lock().unwrap();
        *n += 1;
        if *n <= 2 {
            (500, "down".into(), vec![])
        } else {
            (
                200,
                "[{\"ok\":true}]".into(),
                vec![("ETag", "\"x\"".into())],
            )
        }
    });
    // A dead endpoint (nothing listens there) next to a flaky one.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/", dead.local_addr().unwrap());
    drop(dead);
    connector_ok(
        &s,
        "dead",
        json!({"kind": "http-pull", "topic": "a", "url": dead_url, "interval_ms": 50, "timeout_ms": 500}),
    );
    connector_ok(
        &s,
        "flaky",
        json!({"kind": "http-pull", "topic": "b", "url": api.url, "interval_ms": 50}),
    );
    wait_for_count(&s, "b", 1);
    let st = connector(&s, "dead");
    assert_eq!(st["status"], "failed", "{st}");
    assert!(
        st["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("GET"),
        "{st}"
    );
    assert!(st["failures"].as_u64().unwrap() >= 1);
    let flaky_st = connector(&s, "flaky");
    assert_eq!(flaky_st["status"], "running", "{flaky_st}");
    assert_eq!(flaky_st["failures"], 2, "{flaky_st}");
    let metrics = http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics
            .contains("sluice_connector_failures_total{connector=\"flaky\",kind=\"http-pull\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_connector_up{connector=\"dead\"} 0"));
}

#[test]
fn connector_requests_with_bad_input_get_clear_errors() {
    let s = Server::start();
    s.create_topic(json!({"name": "t", "partitions": 1}));
    for (spec, code, needle) in [
        (json!({"topic": "t"}), "invalid_field", "kind"),
        (
            json!({"kind": "ftp-pull", "topic": "t"}),
            "invalid_field",
            "ftp-pull",
        ),
        (
            json!({"kind": "http-pull", "topic": "nope", "url": "http://x/"}),
            "unknown_topic",
            "nope",
        ),
        (
            json!({"kind": "http-pull", "topic": "t", "url": "http://x/", "format": "csv"}),
            "invalid_field",
            "csv",
        ),
        (
            json!({"kind": "http-pull", "topic": "t", "url": "file:///etc/passwd"}),
            "invalid_connector",
            "scheme",
        ),
        (
            json!({"kind": "http-sink", "topic": "t", "url": "http://x/", "batch": {"max_records": 0}}),
            "invalid_connector",
            "max_records",
        ),
        (
            json!({"kind": "postgres-sink", "topic": "t", "dsn": "postgres://u@h/db", "table": "x",
                   "mode": "upsert", "columns": {"a": "a"}}),
            "invalid_connector",
            "key_column",
        ),
        (
            json!({"kind": "postgres-sink", "topic": "t", "dsn": "postgres://u@h/db", "table": "a.b.c",
                   "columns": {"a": "a"}}),
            "invalid_connector",
            "schema.table",
        ),
    ] {
        let r = put_connector(&s, "c", spec.clone());
        assert_eq!(r.status(), 400, "{spec}");
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"]["code"], code, "{spec}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{spec}: {body}"
        );
    }
    let r = put_connector(
        &s,
        "../x",
        json!({"kind": "http-pull", "topic": "t", "url": "http://x/"}),
    );
    assert_eq!(r.status(), 404, "a name with a slash is not a route");
    let r = put_connector(
        &s,
        "bad name",
        json!({"kind": "http-pull", "topic": "t", "url": "http://x/"}),
    );
    assert_eq!(r.status(), 400);
    let r = http().get(s.url("/v1/connectors/missing")).send().unwrap();
    assert_eq!(r.status(), 404);
    let r = http()
        .put(s.url("/v1/connectors/c"))
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = http()
        .get(s.url("/v1/connectors"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["connectors"], json!([]));
}

#[test]
fn http_sink_retries_outages_dead_letters_a_refused_record_and_keeps_order() {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let attempts = Arc::new(Mutex::new(0u32));
    let (r2, a2) = (received.clone(), attempts.clone());
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let d2 = down.clone();
    let receiver = Endpoint::start(move |req| {
        *a2.lock().unwrap() += 1;
        if d2.load(std::sync::atomic::Ordering::SeqCst) {
            return (503, "maintenance".into(), vec![]);
        }
        assert_eq!(
            req.headers.get("x-api-key").map(String::as_str),
            Some("sink-secret")
        );
        let batch: Vec<Value> = serde_json::from_str(&req.body).unwrap();
        if batch.iter().any(|r| r["value"]["bad"] == true) {
            return (400, "field bad is not allowed".into(), vec![]);
        }
        r2.lock().unwrap().extend(batch);
        (200, "ok".into(), vec![])
    });
    let s = Server::start();
    s.create_topic(json!({"name": "out", "partitions": 2}));
    let records: Vec<Value> = (0..60)
        .map(|i| {
            let mut v = json!({"seq": i});
            if i == 33 {
                v["bad"] = json!(true);
            }
            json!({"key": format!("k{}", i % 7), "value": v})
        })
        .collect();
    s.produce("out", records[..40].to_vec());
    connector_ok(
        &s,
        "hook",
        json!({"kind": "http-sink", "topic": "out", "url": format!("{}/ingest", receiver.url),
               "headers": {"X-Api-Key": "sink-secret"}, "format": "json-array", "envelope": true,
               "batch": {"max_records": 8, "max_bytes": 1048576, "linger_ms": 20}}),
    );
    // While the receiver is down nothing is lost: it shows as lag.
    wait_until("retries", 20, || *attempts.lock().unwrap() >= 3);
    let st = connector(&s, "hook");
    assert_eq!(st["status"], "failed", "{st}");
    assert_eq!(st["lag"], 40, "{st}");
    assert!(
        st["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("503")
    );
    assert!(!st.to_string().contains("sink-secret"));
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    s.produce("out", records[40..].to_vec());
    wait_until("delivery", 60, || received.lock().unwrap().len() >= 59);
    wait_until("lag 0", 20, || connector(&s, "hook")["lag"] == 0);
    let got = received.lock().unwrap().clone();
    let seqs: HashSet<i64> = got
        .iter()
        .map(|r| r["value"]["seq"].as_i64().unwrap())
        .collect();
    let want: HashSet<i64> = (0..60).filter(|i| *i != 33).collect();
    assert_eq!(seqs, want);
    // In order per partition.
    let mut last: BTreeMap<u64, i64> = BTreeMap::new();
    for r in &got {
        let p = r["partition"].as_u64().unwrap();
        let o = r["offset"].as_i64().unwrap();
        assert!(
            last.get(&p).is_none_or(|l| o > *l),
            "partition {p} out of order at {o}"
        );
        last.insert(p, o);
    }
    // The refused record is in the dead-letter topic with the response.
    let dlq = wait_for_count(&s, "out.sink.dlq", 1);
    assert_eq!(dlq.len(), 1);
    let v: Value = serde_json::from_str(dlq[0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(v["seq"], 33);
    let h = &dlq[0]["headers"];
    assert!(h["sluice-error"].as_str().unwrap().contains("400"), "{h}");
    assert!(
        h["sluice-error"]
            .as_str()
            .unwrap()
            .contains("field bad is not allowed")
    );
    assert_eq!(h["sluice-connector"], "hook");
    assert_eq!(h["sluice-source-topic"], "out");
    // Requests name their range so a receiver can drop repeats.
    let seen = receiver.seen();
    let ok = seen
        .iter()
        .find(|r| r.headers.contains_key("sluice-first-offset"))
        .unwrap();
    assert_eq!(ok.headers["sluice-topic"], "out");
    let st = connector(&s, "hook");
    assert_eq!(st["records"], 59, "{st}");
    assert_eq!(st["dead_letters"], 1, "{st}");
    // Pause holds delivery; resume catches up.
    http()
        .post(s.url("/v1/connectors/hook/pause"))
        .send()
        .unwrap();
    s.produce("out", vec![json!({"key": "k1", "value": {"seq": 100}})]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(received.lock().unwrap().len(), 59);
    assert_eq!(connector(&s, "hook")["status"], "paused");
    http()
        .post(s.url("/v1/connectors/hook/resume"))
        .send()
        .unwrap();
    wait_until("delivery after resume", 20, || {
        received.lock().unwrap().len() == 60
    });
    let r = http().delete(s.url("/v1/connectors/hook")).send().unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        http()
            .get(s.url("/v1/connectors/hook"))
            .send()
            .unwrap()
            .status(),
        404
    );
}

/// A fresh database on the test PostgreSQL server.
fn pg_database() -> (String, postgres::Client) {
    static DSN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let base = DSN.get_or_init(sluice_tests::test_postgres_dsn);
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let db = format!(
        "t_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut admin = postgres::Client::connect(base, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    // The test server trusts loopback, so any password works: it shows whether GET hides it.
    let dsn = format!("{}/{db}", base.rsplit_once('/').unwrap().0).replacen(
        "sluice@",
        "sluice:pg-secret@",
        1,
    );
    let client = postgres::Client::connect(&dsn, postgres::NoTls).unwrap();
    (dsn, client)
}

fn count(pg: &mut postgres::Client, sql: &str) -> i64 {
    pg.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn postgres_sink_append_and_upsert_survive_sigkill_exactly_once() {
    let (dsn, mut pg) = pg_database();
    pg.batch_execute(
        "CREATE TABLE events (id bigint, user_id text, action text, src_offset bigint, at_ms bigint, doc jsonb);
         CREATE TABLE latest (user_id text PRIMARY KEY, visits integer, name text);",
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(tmp.path(), &[]);
    s.create_topic(json!({"name": "acts", "partitions": 2}));
    connector_ok(
        &s,
        "pg-append",
        json!({"kind": "postgres-sink", "topic": "acts", "dsn": dsn, "table": "events",
               "mode": "append",
               "columns": {"id": "id", "user_id": "user.id", "action": "action",
                           "src_offset": "$offset", "at_ms": "$timestamp", "doc": "$value"},
               "batch": {"max_records": 50, "linger_ms": 5}}),
    );
    let st = connector_ok(
        &s,
        "pg-upsert",
        json!({"kind": "postgres-sink", "topic": "acts", "dsn": dsn, "table": "latest",
               "mode": "upsert", "key_column": "user_id",
               "columns": {"user_id": "$key", "visits": "visits", "name": "user.name"},
               "batch": {"max_records": 50, "linger_ms": 5}}),
    );
    assert!(dsn.contains("pg-secret"));
    assert!(
        !st.to_string().contains("pg-secret"),
        "password shown: {st}"
    );
    // 4000 records in chunks; SIGKILL while the sinks are busy.
    let n = 4000;
    let rec = |i: i64| {
        json!({"key": format!("u{}", i % 40),
               "value": {"id": i, "user": {"id": format!("u{}", i % 40), "name": format!("name-{i}")},
                          "action": "click", "visits": i}})
    };
    let mut produced = 0;
    while produced < n / 2 {
        s.produce("acts", (produced..produced + 250).map(rec).collect());
        produced += 250;
    }
    wait_until("some rows", 30, || {
        count(&mut pg, "SELECT count(*) FROM events") > 0
    });
    s.kill9();
    let mut s = Server::start_in(tmp.path(), &[]);
    while produced < n {
        s.produce("acts", (produced..produced + 250).map(rec).collect());
        produced += 250;
    }
    // Tombstones delete keys in upsert mode.
    s.produce(
        "acts",
        vec![
            json!({"key": "u3", "value": null}),
            json!({"key": "u5", "value": null}),
        ],
    );
    wait_until("all rows", 90, || {
        count(&mut pg, "SELECT count(*) FROM events") >= n
            && connector(&s, "pg-upsert")["lag"] == 0
            && connector(&s, "pg-append")["lag"] == 0
    });
    // Append: each record exactly once (tombstones have no row to append).
    assert_eq!(count(&mut pg, "SELECT count(*) FROM events"), n);
    assert_eq!(count(&mut pg, "SELECT count(DISTINCT id) FROM events"), n);
    assert_eq!(
        count(
            &mut pg,
            "SELECT count(*) FROM events WHERE doc->>'action' = 'click' AND user_id LIKE 'u%'"
        ),
        n
    );
    // Upsert: the latest value per key, deleted keys gone.
    assert_eq!(count(&mut pg, "SELECT count(*) FROM latest"), 38);
    let rows = pg
        .query("SELECT user_id, visits, name FROM latest", &[])
        .unwrap();
    for r in rows {
        let user: String = r.get(0);
        let k: i64 = user[1..].parse().unwrap();
        let last = (0..n).filter(|i| i % 40 == k).max().unwrap();
        assert_eq!(r.get::<_, i32>(1) as i64, last, "{user}");
        assert_eq!(r.get::<_, String>(2), format!("name-{last}"));
    }
    // Positions live in the same database, one per connector and partition.
    assert_eq!(
        count(&mut pg, "SELECT count(*) FROM sluice_sink_positions"),
        4
    );
    s.stop();
}

#[test]
fn postgres_sink_dead_letters_rows_the_table_refuses_and_waits_for_a_missing_table() {
    let (dsn, mut pg) = pg_database();
    let s = Server::start();
    s.create_topic(json!({"name": "nums", "partitions": 1}));
    connector_ok(
        &s,
        "pg",
        json!({"kind": "postgres-sink", "topic": "nums", "dsn": dsn, "table": "nums",
               "columns": {"n": "n"}, "batch": {"max_records": 100, "linger_ms": 5}}),
    );
    s.produce(
        "nums",
        (0..20)
            .map(|i| {
                let v = if i == 7 {
                    json!({"n": "seven"})
                } else {
                    json!({"n": i})
                };
                json!({"value": v})
            })
            .chain(std::iter::once(json!({"value": "not json"})))
            .collect(),
    );
    // The table does not exist yet: the sink waits (failed, lag), nothing is dead-lettered.
    wait_until("failure", 20, || connector(&s, "pg")["status"] == "failed");
    let st = connector(&s, "pg");
    assert_eq!(st["lag"], 21, "{st}");
    assert!(
        st["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("nums"),
        "{st}"
    );
    pg.batch_execute("CREATE TABLE nums (n integer NOT NULL)")
        .unwrap();
    wait_until("rows", 60, || connector(&s, "pg")["lag"] == 0);
    assert_eq!(count(&mut pg, "SELECT count(*) FROM nums"), 19);
    let dlq = wait_for_count(&s, "nums.sink.dlq", 2);
    let errors: Vec<&str> = dlq
        .iter()
        .map(|r| r["headers"]["sluice-error"].as_str().unwrap())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("22P02") || e.contains("invalid input")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("not a JSON object")),
        "{errors:?}"
    );
    assert_eq!(connector(&s, "pg")["status"], "running");
}

#[test]
fn pull_and_push_through_mask_and_enrich_into_postgres() {
    let (dsn, mut pg) = pg_database();
    pg.batch_execute(
        "CREATE TABLE activity (user_id text, action text, password text, name text, country text, doc jsonb)",
    )
    .unwrap();
    let api = Endpoint::start(|_| {
        (
            200,
            "{\"user_id\":\"u-1\",\"action\":\"login\",\"password\":\"hunter2\"}\n{\"user_id\":\"u-2\",\"action\":\"logout\",\"note\":\"mail ann@example.com\"}\n".into(),
            vec![("ETag", "\"page-1\"".into())],
        )
    });
    let s = Server::start();
    for (t, p) in [("activity", 2), ("masked", 2), ("enriched", 2)] {
        s.create_topic(json!({"name": t, "partitions": p}));
    }
    s.create_topic(json!({"name": "users", "cleanup": "compact"}));
    s.produce(
        "users",
        vec![
            json!({"key": "u-1", "value": {"name": "Ann", "country": "DE"}}),
            json!({"key": "u-2", "value": {"name": "Bo", "country": "SE"}}),
        ],
    );
    for (n, b) in sluice::plugins::examples() {
        upload(&s, n, b);
    }
    deploy_ok(
        &s,
        "mask",
        json!({"plugin": "mask", "input": "activity", "outputs": ["masked"]}),
    );
    deploy_ok(
        &s,
        "enrich",
        json!({"plugin": "enrich", "input": "masked", "outputs": ["enriched"],
               "tables": ["users"], "config": {"table": "users"}}),
    );
    connector_ok(
        &s,
        "sink",
        json!({"kind": "postgres-sink", "topic": "enriched", "dsn": dsn, "table": "activity",
               "columns": {"user_id": "user_id", "action": "action", "password": "password",
                           "name": "name", "country": "country", "doc": "$value"},
               "batch": {"linger_ms": 5}}),
    );
    connector_ok(
        &s,
        "pull",
        json!({"kind": "http-pull", "topic": "activity", "url": api.url, "interval_ms": 100,
               "key_field": "user_id"}),
    );
    s.produce(
        "activity",
        vec![json!({"key": "u-2", "value": {"user_id": "u-2", "action": "buy", "password": "pw-push"}})],
    );
    wait_until("rows in postgres", 60, || {
        count(&mut pg, "SELECT count(*) FROM activity") >= 3
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count(&mut pg, "SELECT count(*) FROM activity"),
        3,
        "the page is imported once"
    );
    let rows = pg
        .query("SELECT user_id, action, password, name, country, doc::text FROM activity ORDER BY action", &[])
        .unwrap();
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let got: Vec<Row> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let docs: Vec<String> = rows.iter().map(|r| r.get(5)).collect();
    assert_eq!(
        got,
        vec![
            (
                "u-2".into(),
                "buy".into(),
                Some("********".into()),
                Some("Bo".into()),
                Some("SE".into())
            ),
            (
                "u-1".into(),
                "login".into(),
                Some("********".into()),
                Some("Ann".into()),
                Some("DE".into())
            ),
            (
                "u-2".into(),
                "logout".into(),
                None,
                Some("Bo".into()),
                Some("SE".into())
            ),
        ],
        "{docs:#?}"
    );
    let all_docs = docs.join(" ");
    assert!(
        !all_docs.contains("hunter2")
            && !all_docs.contains("pw-push")
            && !all_docs.contains("ann@example.com"),
        "{all_docs}"
    );
}

#[test]
fn the_cli_deploys_lists_pauses_and_deletes_connectors() {
    let received = Arc::new(Mutex::new(0usize));
    let r2 = received.clone();
    let receiver = Endpoint::start(move |req| {
        let batch: Vec<Value> = serde_json::from_str(&req.body).unwrap_or_default();
        *r2.lock().unwrap() += batch.len();
        (200, "ok".into(), vec![])
    });
    let s = Server::start();
    s.create_topic(json!({"name": "cli_events"}));
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("hook.json");
    std::fs::write(
        &spec,
        json!({"kind": "http-sink", "topic": "cli_events", "url": receiver.url,
               "headers": {"Authorization": "Bearer cli-secret"}, "batch": {"linger_ms": 5}})
        .to_string(),
    )
    .unwrap();
    let run = |args: &[&str]| -> String {
        let out = std::process::Command::new(crate::common::sluice_bin())
            .args(args)
            .args(["--server", &s.base])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run(&[
        "connector",
        "deploy",
        "hook",
        "--file",
        spec.to_str().unwrap(),
    ]);
    assert!(out.contains("connector hook: http-sink"), "{out}");
    assert!(run(&["connector", "list"]).contains("hook"));
    s.produce(
        "cli_events",
        vec![json!({"value": {"n": 1}}), json!({"value": {"n": 2}})],
    );
    wait_until("delivery", 20, || *received.lock().unwrap() == 2);
    let status: Value = serde_json::from_str(&run(&["connector", "status", "hook"])).unwrap();
    assert_eq!(status["records"], 2, "{status}");
    assert_eq!(status["spec"]["headers"]["Authorization"], "***");
    assert!(run(&["connector", "pause", "hook"]).contains("paused connector hook"));
    assert_eq!(connector(&s, "hook")["status"], "paused");
    assert!(run(&["connector", "resume", "hook"]).contains("resumed connector hook"));
    assert!(run(&["connector", "delete", "hook"]).contains("deleted connector hook"));
    assert!(!run(&["connector", "list"]).contains("hook"));
}
