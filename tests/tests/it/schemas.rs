//! The Schema Registry and data contracts, end to end over real sockets: Confluent's REST
//! API v1 as clients use it (codes, soft and hard deletes, config, basic auth), real
//! clients (confluent-kafka's registry client and its Avro, JSON Schema and Protobuf
//! serializers through Sluice's Kafka listener), schema-validated topics refusing what
//! breaks their contract over HTTP and Kafka alike, produce and consume by schema, and the
//! registry's state surviving a SIGKILL.

use std::process::Command;

use serde_json::{Value, json};

use crate::common::{Server, http};

const ORDER_V1: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"amount","type":"double"}]}"#;
const ORDER_V2: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"amount","type":"double"},{"name":"note","type":["null","string"],"default":null}]}"#;

/// A call to the registry: (status, JSON body).
fn sr(s: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let base = s
        .registry
        .as_deref()
        .expect("the server has a schema registry");
    let url = format!("{base}{path}");
    let req = match method {
        "GET" => http().get(&url),
        "POST" => http().post(&url),
        "PUT" => http().put(&url),
        "DELETE" => http().delete(&url),
        m => panic!("method {m}"),
    };
    let req = match body {
        Some(b) => req
            .header("content-type", "application/vnd.schemaregistry.v1+json")
            .body(b.to_string()),
        None => req,
    };
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let text = r.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn register(s: &Server, subject: &str, schema: &str) -> i64 {
    let (st, b) = sr(
        s,
        "POST",
        &format!("/subjects/{subject}/versions"),
        Some(json!({ "schema": schema })),
    );
    assert_eq!(st, 200, "{b}");
    b["id"].as_i64().unwrap()
}

/// Avro's binary encoding of an `Order` (v1), framed with `id`.
fn framed_order(id: i64, order_id: &str, amount: f64) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(id as u32).to_be_bytes());
    let len = order_id.len() as i64;
    let mut z = ((len << 1) ^ (len >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(order_id.as_bytes());
    out.extend_from_slice(&amount.to_le_bytes());
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn the_registry_answers_as_confluents_rest_api_does() {
    let s = Server::start();
    let (st, b) = sr(&s, "GET", "/schemas/types", None);
    assert_eq!(st, 200);
    let mut types: Vec<&str> = b
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["AVRO", "JSON", "PROTOBUF"]);
    let id1 = register(&s, "orders-value", ORDER_V1);
    assert_eq!(
        register(&s, "orders-value", ORDER_V1),
        id1,
        "re-registering is the same id"
    );
    assert_eq!(register(&s, "copy-value", ORDER_V1), id1, "ids are global");
    let id2 = register(&s, "orders-value", ORDER_V2);
    assert!(id2 > id1);
    // Incompatible (BACKWARD by default): a new field without a default.
    let bad = ORDER_V1.replace(
        r#"{"name":"amount","type":"double"}"#,
        r#"{"name":"amount","type":"double"},{"name":"currency","type":"string"}"#,
    );
    let (st, b) = sr(
        &s,
        "POST",
        "/subjects/orders-value/versions",
        Some(json!({"schema": bad})),
    );
    assert_eq!(st, 409, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("incompatible"),
        "{b}"
    );
    let (st, b) = sr(
        &s,
        "POST",
        "/compatibility/subjects/orders-value/versions/latest?verbose=true",
        Some(json!({"schema": bad})),
    );
    assert_eq!(st, 200);
    assert_eq!(b["is_compatible"], false);
    assert!(!b["messages"].as_array().unwrap().is_empty(), "{b}");
    // Invalid schemas, unknown subjects and versions: Confluent's codes.
    let (st, b) = sr(
        &s,
        "POST",
        "/subjects/x-value/versions",
        Some(json!({"schema": "{"})),
    );
    assert_eq!((st, b["error_code"].as_i64()), (422, Some(42201)), "{b}");
    let (st, b) = sr(&s, "GET", "/subjects/nope/versions/1", None);
    assert_eq!((st, b["error_code"].as_i64()), (404, Some(40401)), "{b}");
    let (st, b) = sr(&s, "GET", "/subjects/orders-value/versions/9", None);
    assert_eq!((st, b["error_code"].as_i64()), (404, Some(40402)), "{b}");
    let (st, b) = sr(&s, "GET", "/schemas/ids/999", None);
    assert_eq!((st, b["error_code"].as_i64()), (404, Some(40403)), "{b}");
    let (st, b) = sr(&s, "GET", "/config/orders-value", None);
    assert_eq!((st, b["error_code"].as_i64()), (404, Some(40408)), "{b}");
    let (st, b) = sr(&s, "GET", "/subjects/orders-value/versions/latest", None);
    assert_eq!(
        (st, b["version"].as_i64(), b["id"].as_i64()),
        (200, Some(2), Some(id2))
    );
    // Config: global and per subject.
    let (st, _) = sr(
        &s,
        "PUT",
        "/config/orders-value",
        Some(json!({"compatibility": "FULL"})),
    );
    assert_eq!(st, 200);
    let (_, b) = sr(&s, "GET", "/config/orders-value", None);
    assert_eq!(b["compatibilityLevel"], "FULL");
    let (st, b) = sr(
        &s,
        "PUT",
        "/config",
        Some(json!({"compatibility": "SIDEWAYS"})),
    );
    assert_eq!((st, b["error_code"].as_i64()), (422, Some(42203)), "{b}");
    // Soft delete, then hard: the id still resolves after the soft one.
    let (st, b) = sr(&s, "DELETE", "/subjects/copy-value?permanent=true", None);
    assert_eq!((st, b["error_code"].as_i64()), (404, Some(40405)), "{b}");
    let (st, b) = sr(&s, "DELETE", "/subjects/copy-value", None);
    assert_eq!((st, b), (200, json!([1])));
    let (st, _) = sr(&s, "GET", "/subjects/copy-value/versions", None);
    assert_eq!(st, 404);
    let (_, b) = sr(
        &s,
        "GET",
        "/subjects/copy-value/versions?deleted=true",
        None,
    );
    assert_eq!(b, json!([1]));
    let (st, _) = sr(&s, "GET", &format!("/schemas/ids/{id1}"), None);
    assert_eq!(st, 200);
    let (st, _) = sr(&s, "DELETE", "/subjects/copy-value?permanent=true", None);
    assert_eq!(st, 200);
    let (_, b) = sr(&s, "GET", "/subjects?deleted=true", None);
    assert_eq!(b, json!(["orders-value"]));
    // The state lives in the compacted topic `_schemas`, owned by the server.
    let r = http().get(s.url("/v1/topics/_schemas")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .post(s.url("/v1/topics/_schemas/records"))
        .json(&json!({"records": [{"key": "k", "value": "v"}]}))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        409,
        "clients may not write the registry's topic"
    );
}

#[test]
fn confluent_kafka_serializers_round_trip_avro_json_and_protobuf_through_sluice() {
    let s = Server::process();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/schema_registry.py");
    let out = Command::new("python3")
        .args([
            script,
            s.kafka.as_deref().unwrap(),
            s.registry.as_deref().unwrap(),
            "t",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(text.trim()).unwrap();
    for check in [
        "id1_again",
        "same_id_other_subject",
        "compatible_v2",
        "incompatible_bad",
        "id2_new",
        "subjects_contain",
        "avro_equal",
        "json_equal",
        "proto_equal",
        "proto_import_subject",
    ] {
        assert_eq!(r[check], true, "{check}: {r}");
    }
    assert_eq!(r["bad_refused"]["status"], 409, "{r}");
    assert_eq!(r["lookup_version"], 1, "{r}");
    assert_eq!(r["versions"], json!([1, 2]), "{r}");
    assert_eq!(r["latest"]["version"], 2, "{r}");
    assert_eq!(r["by_id_type"], "AVRO", "{r}");
    assert_eq!(r["compat_level"], "FULL", "{r}");
    assert_eq!(r["missing_version"]["code"], 40402, "{r}");
    assert_eq!(
        r["proto_references"],
        json!(["common/address.proto"]),
        "{r}"
    );
}

#[test]
fn a_validated_topic_refuses_what_breaks_its_contract_over_http_and_kafka() {
    let s = Server::process();
    let id = register(&s, "orders-value", ORDER_V1);
    let other = register(&s, "other-value", r#"{"type":"string"}"#);
    s.create_topic(json!({"name": "orders", "partitions": 2,
        "schema": {"value": {"subject": "orders-value", "validation": "decode"}}}));
    let produce = |records: Vec<Value>| {
        http()
            .post(s.url("/v1/topics/orders/records"))
            .json(&json!({ "records": records }))
            .send()
            .unwrap()
    };
    let good = framed_order(id, "o-1", 9.5);
    let r = produce(vec![json!({"key": "a", "value_base64": b64(&good)})]);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    // A wrong id, an unframed record, one that does not decode: 400 naming each, and
    // nothing of the request written — not even its good record.
    let undecodable = {
        let mut b = good.clone();
        b.truncate(b.len() - 3);
        b
    };
    let r = produce(vec![
        json!({"value_base64": b64(&good)}),
        json!({"value_base64": b64(&framed_order(other, "o-2", 1.0))}),
        json!({"value": "plain text"}),
        json!({"value_base64": b64(&undecodable)}),
    ]);
    assert_eq!(r.status(), 400);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "schema_violation", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    for part in [
        "records[1].value",
        "records[2].value",
        "records[3].value",
        "not registered under subject",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert!(!msg.contains("records[0]"), "{msg}");
    // The same from a Kafka producer: INVALID_RECORD for each bad record, the good ones
    // acknowledged.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka/schema_validation.py");
    let out = Command::new("python3")
        .args([
            script,
            s.kafka.as_deref().unwrap(),
            "orders",
            &hex(&framed_order(id, "o-3", 2.0)),
            &hex(&framed_order(other, "o-4", 1.0)),
            &hex(b"plain text"),
            &hex(&undecodable),
            &hex(&framed_order(id, "o-5", 3.0)),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        verdicts,
        json!([
            null,
            "INVALID_RECORD",
            "INVALID_RECORD",
            "INVALID_RECORD",
            null
        ])
    );
    // Exactly the valid records are in the topic, decodable as JSON.
    let mut ids = Vec::new();
    for p in 0..2 {
        let r: Value = http()
            .get(s.url(&format!(
                "/v1/topics/orders/partitions/{p}/records?offset=0&decode=json"
            )))
            .send()
            .unwrap()
            .json()
            .unwrap();
        for rec in r["records"].as_array().unwrap() {
            assert_eq!(rec["value_schema_id"], id, "{rec}");
            ids.push(rec["value_json"]["id"].as_str().unwrap().to_string());
        }
    }
    ids.sort();
    assert_eq!(ids, ["o-1", "o-3", "o-5"]);
    // Refusals are counted.
    let metrics = http()
        .get(s.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("sluice_schema_refused_records_total{topic=\"orders\",protocol=\"kafka\",part=\"value\"} 3"),
        "{metrics}"
    );
    // `id` mode is cheaper: an undecodable payload with a good id passes; the setting is
    // changed on the live topic.
    let r = http()
        .put(s.url("/v1/topics/orders/schema"))
        .json(&json!({"value": {"subject": "orders-value", "validation": "id"}}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let r = produce(vec![json!({"value_base64": b64(&undecodable)})]);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

#[test]
fn records_are_produced_and_read_by_schema_as_json() {
    let s = Server::start();
    register(&s, "clicks-value", ORDER_V2);
    s.create_topic(json!({"name": "clicks"}));
    let r = http()
        .post(s.url("/v1/topics/clicks/records"))
        .json(
            &json!({"value_schema": {"subject": "clicks-value"}, "records": [
            {"key": "k1", "value": {"id": "a", "amount": 1.5, "note": "hi"}},
            {"value": {"id": "b", "amount": 2.0, "note": null}}]}),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let r = http()
        .post(s.url("/v1/topics/clicks/records"))
        .json(
            &json!({"value_schema": {"subject": "clicks-value"}, "records": [
            {"value": {"id": "c"}}]}),
        )
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "a value missing a field without default does not encode"
    );
    let e: Value = r.json().unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("records[0].value"),
        "{e}"
    );
    let r: Value = http()
        .get(s.url("/v1/topics/clicks/partitions/0/records?offset=0&decode=json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let values: Vec<&Value> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["value_json"])
        .collect();
    assert_eq!(
        values,
        [
            &json!({"id": "a", "amount": 1.5, "note": "hi"}),
            &json!({"id": "b", "amount": 2.0, "note": null})
        ]
    );
    // Without decode the bytes are Confluent's framing: magic byte 0, then the id.
    let r: Value = http()
        .get(s.url("/v1/topics/clicks/partitions/0/records?offset=0"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        r["records"][0]["value_base64"]
            .as_str()
            .unwrap()
            .starts_with("AAAAA"),
        "{r}"
    );
}

#[test]
fn the_registry_survives_a_sigkill_with_ids_and_versions_intact() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(dir.path(), &[]);
    // Every record type in one subject: no compatibility between them.
    sr(&s, "PUT", "/config", Some(json!({"compatibility": "NONE"})));
    let mut ids = Vec::new();
    for i in 0..20 {
        let schema =
            format!(r#"{{"type":"record","name":"R{i}","fields":[{{"name":"f","type":"int"}}]}}"#);
        ids.push(register(&s, &format!("s{}-value", i % 4), &schema));
    }
    sr(&s, "DELETE", "/subjects/s3-value", None);
    sr(
        &s,
        "PUT",
        "/config/s1-value",
        Some(json!({"compatibility": "NONE"})),
    );
    let before = |s: &Server| {
        let (_, subjects) = sr(s, "GET", "/subjects?deleted=true", None);
        let mut all = vec![subjects.clone()];
        for subj in subjects.as_array().unwrap() {
            let subj = subj.as_str().unwrap();
            all.push(
                sr(
                    s,
                    "GET",
                    &format!("/subjects/{subj}/versions?deleted=true"),
                    None,
                )
                .1,
            );
            all.push(
                sr(
                    s,
                    "GET",
                    &format!("/subjects/{subj}/versions/1?deleted=true"),
                    None,
                )
                .1,
            );
        }
        all.push(sr(s, "GET", "/config/s1-value", None).1);
        all.push(sr(s, "GET", "/config", None).1);
        all
    };
    let state = before(&s);
    s.kill9();
    let s = Server::start_in(dir.path(), &[]);
    assert_eq!(before(&s), state);
    // New ids continue after the old ones.
    let next = register(&s, "new-value", r#"{"type":"string"}"#);
    assert!(next > *ids.iter().max().unwrap());
}

/// @kafkajs/confluent-schema-registry (npm, installed by scripts/setup) registers Avro,
/// JSON Schema and Protobuf schemas with Sluice's registry, encodes, sends through Sluice's
/// Kafka listener with kafkajs, and decodes what it reads back.
#[test]
fn kafkajs_schema_registry_registers_encodes_and_decodes_against_sluice() {
    let s = Server::start();
    let node_dir =
        std::env::var("SLUICE_NODE_DIR").unwrap_or_else(|_| "/var/tmp/sluice-node".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kafka/kafkajs_schema_registry.js"
    );
    let out = Command::new("node")
        .args([
            script,
            s.kafka.as_deref().unwrap(),
            s.registry.as_deref().unwrap(),
        ])
        .env("NODE_PATH", format!("{node_dir}/node_modules"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(r["same_id"], true, "{r}");
    assert_eq!(r["latest_id"], true, "{r}");
    assert_eq!(
        r["decoded"],
        json!([{"user": "ann", "n": 3}, {"name": "Bo"}, {"sku": "A-1", "qty": 2}]),
        "{r}"
    );
}

#[test]
fn the_cli_registers_lists_checks_and_guards_a_topic() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("order.avsc");
    let v2 = dir.path().join("order-v2.avsc");
    let bad = dir.path().join("bad.avsc");
    std::fs::write(&v1, ORDER_V1).unwrap();
    std::fs::write(&v2, ORDER_V2).unwrap();
    std::fs::write(
        &bad,
        ORDER_V1.replace(r#""type":"double""#, r#""type":"string""#),
    )
    .unwrap();
    let sluice = |args: &[&str]| {
        let out = Command::new(crate::common::sluice_bin())
            .args(args)
            .env("SLUICE_SERVER", &s.base)
            .env("SLUICE_SCHEMA_REGISTRY", s.registry.as_deref().unwrap())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, out) = sluice(&["schema", "register", "orders-value", v1.to_str().unwrap()]);
    assert!(ok && out.contains("version 1"), "{out}");
    let (ok, out) = sluice(&["schema", "check", "orders-value", v2.to_str().unwrap()]);
    assert!(ok && out.contains("compatible with orders-value"), "{out}");
    let (ok, out) = sluice(&["schema", "check", "orders-value", bad.to_str().unwrap()]);
    assert!(
        !ok && out.contains("incompatible") && out.contains("TYPE_MISMATCH"),
        "{out}"
    );
    let (ok, out) = sluice(&["schema", "register", "orders-value", v2.to_str().unwrap()]);
    assert!(ok && out.contains("version 2"), "{out}");
    let (ok, out) = sluice(&["schema", "list"]);
    assert!(
        ok && out.contains("orders-value") && out.contains("AVRO"),
        "{out}"
    );
    let (ok, out) = sluice(&["schema", "get", "orders-value", "--version", "1"]);
    assert!(ok && out.contains("\"amount\""), "{out}");
    let (ok, out) = sluice(&[
        "topic",
        "create",
        "orders",
        "--value-subject",
        "orders-value",
        "--validation",
        "decode",
    ]);
    assert!(ok, "{out}");
    let d: Value = http()
        .get(s.url("/v1/topics/orders"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        d["schema"],
        json!({"value": {"subject": "orders-value", "validation": "decode"}})
    );
    let mut produce = Command::new(crate::common::sluice_bin());
    produce
        .args(["produce", "orders"])
        .env("SLUICE_SERVER", &s.base)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = produce.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"not framed\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("schema contract"),
        "{err}"
    );
    let (ok, out) = sluice(&["topic", "schema", "orders"]);
    assert!(ok && out.contains("requires no schema"), "{out}");
    let (ok, out) = sluice(&["schema", "delete", "orders-value"]);
    assert!(ok && out.contains("[1,2]"), "{out}");
}

const LOGIN: &str = r#"{"type":"record","name":"Login","namespace":"web","fields":[{"name":"user","type":"string"},{"name":"password","type":"string"},{"name":"email","type":"string"}]}"#;

/// `mask` over Avro records: framed in, framed out with the same schema id, fields masked
/// by name — the host decodes for the plugin and encodes what it emits. An output whose
/// declared subject the plugin's records do not fit dead-letters each input, with why.
#[test]
fn mask_works_on_avro_records_by_field_name_and_outputs_keep_their_contract() {
    let s = Server::start();
    let id = register(&s, "logins-value", LOGIN);
    register(
        &s,
        "counts-value",
        r#"{"type":"record","name":"Count","fields":[{"name":"n","type":"int"}]}"#,
    );
    s.create_topic(json!({"name": "logins", "partitions": 2,
        "schema": {"value": {"subject": "logins-value", "validation": "decode"}}}));
    s.create_topic(json!({"name": "masked", "partitions": 2}));
    s.create_topic(json!({"name": "wrong", "partitions": 2}));
    crate::pipeline::upload(&s, "mask", sluice::plugins::MASK);
    crate::pipeline::deploy_ok(
        &s,
        "mask-logins",
        json!({"plugin": "mask", "input": "logins", "outputs": ["masked"], "decode": "json"}),
    );
    crate::pipeline::deploy_ok(
        &s,
        "mask-wrong",
        json!({"plugin": "mask", "input": "logins", "outputs": ["wrong"], "decode": "json",
               "dead_letter": "logins.wrong.dlq", "output_schemas": {"wrong": "counts-value"}}),
    );
    let r = http()
        .post(s.url("/v1/topics/logins/records"))
        .json(&json!({"value_schema": {"subject": "logins-value"}, "records": [
            {"key": "ann", "value": {"user": "ann", "password": "hunter2", "email": "ann@example.com"}},
            {"key": "bo", "value": {"user": "bo", "password": "s3cret", "email": "bo@example.com"}}]}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let read = |topic: &str| -> Vec<Value> {
        let mut out = Vec::new();
        for p in 0..2 {
            let r: Value = http()
                .get(s.url(&format!(
                    "/v1/topics/{topic}/partitions/{p}/records?offset=0&decode=json"
                )))
                .send()
                .unwrap()
                .json()
                .unwrap();
            out.extend(r["records"].as_array().unwrap().iter().cloned());
        }
        out
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while read("masked").len() < 2 || read("logins.wrong.dlq").len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "outputs did not arrive"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut masked = read("masked");
    masked.sort_by_key(|r| r["value_json"]["user"].as_str().unwrap().to_string());
    for (r, user) in masked.iter().zip(["ann", "bo"]) {
        assert_eq!(r["value_schema_id"], id, "the same schema: {r}");
        assert_eq!(
            r["value_json"],
            json!({"user": user, "password": "********", "email": "********@example.com"}),
            "{r}"
        );
    }
    assert!(
        read("wrong").is_empty(),
        "nothing breaks the contract of counts-value"
    );
    for dl in read("logins.wrong.dlq") {
        let why = dl["headers"]["sluice-error"].as_str().unwrap();
        assert!(
            why.contains("does not encode") || why.contains("counts-value"),
            "{why}"
        );
        // The dead letter is the original record, framed as it came.
        assert_eq!(dl["value_schema_id"], id, "{dl}");
    }
    let st: Value = http()
        .get(s.url("/v1/transforms/mask-logins"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["decode"], "json");
}
