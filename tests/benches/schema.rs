//! Data contracts, measured: schema lookups by id (the registry's REST API, and the codec's
//! parsed-schema cache cold and warm), produce throughput to a schema-validated topic in
//! `id` and `decode` mode next to the same topic unvalidated, decode + encode of a 10-field
//! Avro record by the host's codec next to `apache-avro` natively, and `mask` over Avro
//! records (`"decode": "json"`) next to `mask` over JSON, end to end. In process, through
//! `server::run` and real HTTP, in one run. `cargo bench -p sluice-tests --bench schema`
//! (`SLUICE_BENCH_ONLY=lookup|produce|codec|mask`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// apache-avro's one-call datum functions are the baseline a user would reach for.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sluice::config::ServerConfig;

const ORDER: &str = r#"{"type":"record","name":"Order","namespace":"bench","fields":[
  {"name":"id","type":"string"},{"name":"customer","type":"string"},{"name":"email","type":"string"},
  {"name":"password","type":"string"},{"name":"amount","type":"double"},{"name":"quantity","type":"int"},
  {"name":"created","type":"long"},{"name":"paid","type":"boolean"},
  {"name":"status","type":{"type":"enum","name":"Status","symbols":["NEW","PAID","SHIPPED"]}},
  {"name":"note","type":["null","string"],"default":null}]}"#;

fn order(i: usize) -> Value {
    json!({"id": format!("o-{i}"), "customer": format!("c-{}", i % 1000),
        "email": format!("user{i}@example.com"), "password": format!("hunter{i}"),
        "amount": i as f64 * 0.5, "quantity": (i % 7) as i32, "created": 1_800_000_000_000i64 + i as i64,
        "paid": i.is_multiple_of(2), "status": "PAID", "note": if i.is_multiple_of(3) { Value::Null } else { json!("gift") }})
}

struct Running {
    base: String,
    registry: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }
    fn sr(&self, p: &str) -> String {
        format!("{}{p}", self.registry)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(dir: &std::path::Path) -> Running {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let dir = dir.to_path_buf();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx
                .send((http.local_addr().unwrap(), registry.local_addr().unwrap()))
                .unwrap();
            let config = ServerConfig {
                tier: None,
                restore_from_tier: false,
                alerts: Default::default(),
                data_dir: dir,
                http: http.local_addr().unwrap(),
                insecure: false,
                plugins_dir: None,
                limits: Default::default(),
                log: Default::default(),
                kafka: None,
                schema_registry: Some(registry.local_addr().unwrap()),
                advertise: None,
                kafka_settings: Default::default(),
                auth: None,
                tls: None,
            };
            let listeners = sluice::server::Listeners {
                http,
                kafka: None,
                schema_registry: Some(registry),
            };
            sluice::server::run(config, listeners, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    let (http, registry) = addr_rx.recv().unwrap();
    let r = Running {
        base: format!("http://{http}"),
        registry: format!("http://{registry}"),
        stop: Some(tx),
        thread: Some(thread),
    };
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.get(r.url("/healthz")).send().is_err() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    r
}

fn client() -> reqwest::blocking::Client {
    sluice_auth::tls::install_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

fn ok(r: reqwest::blocking::Response) -> Value {
    let status = r.status();
    let body: Value = r.json().unwrap_or(Value::Null);
    assert!(status.is_success(), "{status}: {body}");
    body
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn register(s: &Running, c: &reqwest::blocking::Client, subject: &str, schema: &str) -> i64 {
    ok(c.post(s.sr(&format!("/subjects/{subject}/versions")))
        .json(&json!({ "schema": schema }))
        .send()
        .unwrap())["id"]
        .as_i64()
        .unwrap()
}

/// Framed records of `ORDER`, encoded by the server (the same bytes a serializer writes).
fn framed_orders(s: &Running, c: &reqwest::blocking::Client, n: usize) -> Vec<String> {
    // Encoded once through a scratch topic, then read back as bytes.
    let _ = c
        .post(s.url("/v1/topics"))
        .json(&json!({"name": "scratch"}))
        .send();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let recs: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({ "value": order(i) }))
            .collect();
        ok(c.post(s.url("/v1/topics/scratch/records"))
            .json(&json!({"value_schema": {"subject": "orders-value"}, "records": recs}))
            .send()
            .unwrap());
    }
    let mut out = Vec::with_capacity(n);
    let mut offset = 0;
    while out.len() < n {
        let r = ok(c
            .get(s.url(&format!(
                "/v1/topics/scratch/partitions/0/records?offset={offset}&max=5000"
            )))
            .send()
            .unwrap());
        for rec in r["records"].as_array().unwrap() {
            out.push(rec["value_base64"].as_str().unwrap().to_string());
        }
        offset = r["next_offset"].as_u64().unwrap();
    }
    out
}

fn only(what: &str) -> bool {
    std::env::var("SLUICE_BENCH_ONLY").map_or(true, |o| o == what)
}

fn lookups(s: &Running, c: &reqwest::blocking::Client) {
    let mut ids = Vec::new();
    for i in 0..100 {
        let schema = ORDER.replace("\"Order\"", &format!("\"Order{i}\""));
        ids.push(register(s, c, &format!("lookup-{i}-value"), &schema));
    }
    let mut times = Vec::new();
    for k in 0..3000 {
        let id = ids[k % ids.len()];
        let t = Instant::now();
        ok(c.get(s.sr(&format!("/schemas/ids/{id}?subject=x-value")))
            .send()
            .unwrap());
        times.push(t.elapsed());
    }
    let p50 = percentile(&mut times, 0.5);
    let p99 = percentile(&mut times, 0.99);
    println!(
        "lookup by id over REST (GET /schemas/ids/{{id}}, 100 schemas, keep-alive): p50 {:.0} µs, p99 {:.0} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    // The codec's parsed schema: cold (first use: parse) and cached, in process.
    let journal = Arc::new(sluice_schema::MemoryJournal::default());
    let reg = sluice_schema::Registry::new(journal);
    let mut fresh = Vec::new();
    for i in 0..100 {
        let schema = ORDER.replace("\"Order\"", &format!("\"Order{i}\""));
        let req = sluice_schema::RegisterRequest::new(sluice_schema::SchemaType::Avro, schema);
        fresh.push(
            reg.register(&format!("s{i}"), &req, false, false)
                .unwrap()
                .id,
        );
    }
    let mut cold = Vec::new();
    for &id in &fresh {
        let t = Instant::now();
        reg.schema_by_id_parsed(id).unwrap();
        cold.push(t.elapsed());
    }
    let mut warm = Vec::new();
    for k in 0..100_000 {
        let t = Instant::now();
        reg.schema_by_id_parsed(fresh[k % fresh.len()]).unwrap();
        warm.push(t.elapsed());
    }
    println!(
        "parsed schema by id (the codec's cache, in process): cold p50 {:.1} µs p99 {:.1} µs; cached p50 {:.2} µs p99 {:.2} µs",
        percentile(&mut cold, 0.5).as_secs_f64() * 1e6,
        percentile(&mut cold, 0.99).as_secs_f64() * 1e6,
        percentile(&mut warm, 0.5).as_secs_f64() * 1e6,
        percentile(&mut warm, 0.99).as_secs_f64() * 1e6
    );
}

fn produce(s: &Running, c: &reqwest::blocking::Client, framed: &[String]) {
    let n = framed.len();
    for (topic, schema) in [
        ("plain", Value::Null),
        (
            "by-id",
            json!({"value": {"subject": "orders-value", "validation": "id"}}),
        ),
        (
            "by-decode",
            json!({"value": {"subject": "orders-value", "validation": "decode"}}),
        ),
    ] {
        let mut body = json!({"name": topic, "partitions": 2});
        if !schema.is_null() {
            body["schema"] = schema;
        }
        ok(c.post(s.url("/v1/topics")).json(&body).send().unwrap());
    }
    let bodies: Vec<String> = framed
        .chunks(1000)
        .map(|chunk| {
            let recs: Vec<Value> = chunk.iter().map(|b| json!({ "value_base64": b })).collect();
            json!({ "records": recs }).to_string()
        })
        .collect();
    let mut rates = Vec::new();
    for round in 0..3 {
        for topic in ["plain", "by-id", "by-decode"] {
            let t = Instant::now();
            for b in &bodies {
                ok(c.post(s.url(&format!("/v1/topics/{topic}/records")))
                    .header("content-type", "application/json")
                    .body(b.clone())
                    .send()
                    .unwrap());
            }
            let rate = n as f64 / t.elapsed().as_secs_f64();
            rates.push((round, topic, rate));
        }
    }
    let best = |topic: &str| {
        rates
            .iter()
            .filter(|r| r.1 == topic)
            .map(|r| r.2)
            .fold(0.0f64, f64::max)
    };
    let plain = best("plain");
    println!(
        "HTTP produce, {n} framed 10-field Avro records in requests of 1,000 (best of 3): unvalidated {:.0}/s; `id` {:.0}/s ({:.0}%); `decode` {:.0}/s ({:.0}%)",
        plain,
        best("by-id"),
        100.0 * best("by-id") / plain,
        best("by-decode"),
        100.0 * best("by-decode") / plain
    );
}

fn codec(framed: &[String]) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let bytes: Vec<Vec<u8>> = framed.iter().map(|f| b64.decode(f).unwrap()).collect();
    let journal = Arc::new(sluice_schema::MemoryJournal::default());
    let reg = sluice_schema::Registry::new(journal);
    let req = sluice_schema::RegisterRequest::new(sluice_schema::SchemaType::Avro, ORDER);
    let id = reg.register("orders-value", &req, false, false).unwrap().id;
    // The ids in `framed` are the server's: reframe with this registry's.
    let payloads: Vec<&[u8]> = bytes.iter().map(|b| &b[5..]).collect();
    let local: Vec<Vec<u8>> = payloads
        .iter()
        .map(|p| sluice_schema::frame(id, p))
        .collect();
    let n = local.len();
    let target = sluice_schema::EncodeTarget::Id(id);
    let t = Instant::now();
    for f in &local {
        let d = reg.decode_to_json(f).unwrap();
        std::hint::black_box(reg.encode_from_json(&target, &d.value, None).unwrap());
    }
    let host = t.elapsed().as_nanos() as f64 / n as f64;
    let schema = apache_avro::Schema::parse_str(ORDER).unwrap();
    let t = Instant::now();
    for p in &payloads {
        let mut r: &[u8] = p;
        let v = apache_avro::from_avro_datum(&schema, &mut r, None).unwrap();
        std::hint::black_box(apache_avro::to_avro_datum(&schema, v).unwrap());
    }
    let native = t.elapsed().as_nanos() as f64 / n as f64;
    println!(
        "decode to JSON + encode from JSON, 10-field Avro, per record: host codec {host:.0} ns; apache-avro natively (decode to its Value + encode, no JSON) {native:.0} ns ({:.2}×)",
        host / native
    );
}

fn mask(s: &Running, c: &reqwest::blocking::Client, n: usize) {
    ok(c.put(s.url("/v1/plugins/mask"))
        .body(sluice::plugins::MASK.to_vec())
        .send()
        .unwrap());
    for t in ["avro-in", "avro-out", "json-in", "json-out"] {
        ok(c.post(s.url("/v1/topics"))
            .json(&json!({"name": t, "partitions": 2}))
            .send()
            .unwrap());
    }
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let avro: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({ "value": order(i) }))
            .collect();
        let plain: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({ "value": order(i).to_string() }))
            .collect();
        ok(c.post(s.url("/v1/topics/avro-in/records"))
            .json(&json!({"value_schema": {"subject": "orders-value"}, "records": avro}))
            .send()
            .unwrap());
        ok(c.post(s.url("/v1/topics/json-in/records"))
            .json(&json!({ "records": plain }))
            .send()
            .unwrap());
    }
    let count = |topic: &str| -> u64 {
        let d = ok(c.get(s.url(&format!("/v1/topics/{topic}"))).send().unwrap());
        d["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["end_offset"].as_u64().unwrap())
            .sum()
    };
    let run = |name: &str, input: &str, output: &str, decode: bool| -> f64 {
        let mut spec = json!({"plugin": "mask", "input": input, "outputs": [output]});
        if decode {
            spec["decode"] = json!("json");
        }
        let t = Instant::now();
        ok(c.put(s.url(&format!("/v1/transforms/{name}")))
            .json(&spec)
            .send()
            .unwrap());
        while count(output) < n as u64 {
            std::thread::sleep(Duration::from_millis(5));
        }
        n as f64 / t.elapsed().as_secs_f64()
    };
    let json_rate = run("mask-json", "json-in", "json-out", false);
    let avro_rate = run("mask-avro", "avro-in", "avro-out", true);
    println!(
        "mask end to end (2 partitions, every_batch fsync, {n} 10-field orders): over JSON {json_rate:.0}/s; over Avro with \"decode\": \"json\" {avro_rate:.0}/s ({:.0}%)",
        100.0 * avro_rate / json_rate
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path());
    let c = client();
    register(&s, &c, "orders-value", ORDER);
    if only("lookup") {
        lookups(&s, &c);
    }
    let n = 100_000;
    let framed = if only("produce") || only("codec") {
        framed_orders(&s, &c, n)
    } else {
        Vec::new()
    };
    if only("produce") {
        produce(&s, &c, &framed);
    }
    if only("codec") {
        codec(&framed);
    }
    if only("mask") {
        mask(&s, &c, 200_000);
    }
}
