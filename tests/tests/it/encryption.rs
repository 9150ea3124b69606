//! Field-level encryption end to end on the real server: `encrypt` seals named fields with
//! AES-256-GCM under a key from the deployment's secrets, `decrypt` opens them again, a
//! wrong key dead-letters with the reason, and the key is never shown.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::common::{Server, http};
use crate::pipeline::{deploy, deploy_ok, status, upload, wait_for_count};

const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn values(recs: &[Value]) -> Vec<Value> {
    recs.iter()
        .map(|r| serde_json::from_str(r["value"].as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn encrypt_then_decrypt_round_trips_and_a_wrong_key_is_dead_lettered() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start_in(&data, &[]);
    for t in ["pii", "sealed", "opened", "opened-wrong"] {
        s.create_topic(json!({"name": t}));
    }
    upload(&s, "encrypt", sluice::plugins::ENCRYPT);
    upload(&s, "decrypt", sluice::plugins::DECRYPT);
    let keyring = format!("k1:{K1},k2:{K2}");
    deploy_ok(
        &s,
        "seal",
        json!({"plugin": "encrypt", "input": "pii", "outputs": ["sealed"],
            "config": {"fields": "ssn,card.number", "key_id": "k2"},
            "secrets": {"keys": keyring}}),
    );
    deploy_ok(
        &s,
        "open",
        json!({"plugin": "decrypt", "input": "sealed", "outputs": ["opened"],
            "dead_letter": "open.dlq", "secrets": {"keys": keyring}}),
    );
    // The same id with another key: nothing decrypts.
    deploy_ok(
        &s,
        "open-wrong",
        json!({"plugin": "decrypt", "input": "sealed", "outputs": ["opened-wrong"],
            "dead_letter": "wrong.dlq", "secrets": {"keys": format!("k2:{K1}")}}),
    );
    // Every tenth record repeats the same SSN: its ciphertexts still differ.
    let originals: Vec<Value> = (0..200)
        .map(|i| {
            let ssn = if i % 10 == 0 { "000-00-0000".to_string() } else { format!("{:03}-{:02}-{:04}", i, i % 97, i * 7) };
            json!({"user": format!("u{i}"), "ssn": ssn, "card": {"number": 4_111_111_111_111_111u64 + i, "exp": "12/29"}})
        })
        .collect();
    s.produce(
        "pii",
        originals
            .iter()
            .map(|v| json!({"key": v["user"], "value": v.to_string()}))
            .collect(),
    );

    let sealed = values(&wait_for_count(&s, "sealed", 200));
    let mut cts = BTreeSet::new();
    for (v, o) in sealed.iter().zip(&originals) {
        assert_eq!(v["user"], o["user"], "other fields untouched");
        assert_eq!(v["card"]["exp"], "12/29");
        for f in [&v["ssn"], &v["card"]["number"]] {
            assert_eq!(f["enc"], "v1", "{v}");
            assert_eq!(f["kid"], "k2", "{v}");
            assert!(
                cts.insert(f["ct"].as_str().unwrap().to_string()),
                "a nonce per record and field"
            );
        }
        let text = v.to_string();
        assert!(!text.contains(o["ssn"].as_str().unwrap()), "{text}");
    }
    assert_eq!(
        values(&wait_for_count(&s, "opened", 200)),
        originals,
        "decrypt restores every record, in order"
    );
    let wrong = wait_for_count(&s, "wrong.dlq", 200);
    let reason = wrong[0]["headers"]["sluice-error"].as_str().unwrap();
    assert!(
        reason.contains("field /ssn") && reason.contains("wrong key"),
        "{reason}"
    );
    assert!(crate::pipeline::all(&s, "opened-wrong").is_empty());
    assert!(crate::pipeline::all(&s, "open.dlq").is_empty());

    // The key is never shown: GET redacts it, and it is not in any answer.
    let st = status(&s, "open");
    assert_eq!(st["secrets"], json!({"keys": "***"}), "{st}");
    let listing = http()
        .get(s.url("/v1/transforms"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for text in [st.to_string(), listing, status(&s, "seal").to_string()] {
        assert!(!text.contains(K1) && !text.contains(K2), "{text}");
    }
    // On disk only for the owner.
    use std::os::unix::fs::PermissionsExt;
    let spec_file = std::fs::read_dir(data.join("transforms"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("transform.json"))
        .find(|p| {
            std::fs::read_to_string(p)
                .is_ok_and(|t| t.contains("\"open\"") || t.contains("decrypt"))
        })
        .expect("a persisted transform");
    assert_eq!(
        std::fs::metadata(&spec_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // A re-PUT of what GET shows keeps the secret: the deployment still decrypts.
    let mut again = json!({"plugin": "decrypt", "input": "sealed", "outputs": ["opened"],
        "dead_letter": "open.dlq"});
    again["secrets"] = st["secrets"].clone();
    deploy_ok(&s, "open", again);
    s.produce(
        "pii",
        vec![json!({"value": json!({"user": "late", "ssn": "111-22-3333"}).to_string()})],
    );
    let opened = values(&wait_for_count(&s, "opened", 201));
    assert_eq!(opened[200]["ssn"], "111-22-3333");

    // `***` with nothing to keep, and a key both config and secret, are refused.
    for (name, spec) in [
        (
            "fresh",
            json!({"plugin": "decrypt", "input": "sealed", "outputs": ["opened-wrong"],
            "secrets": {"keys": "***"}}),
        ),
        (
            "both",
            json!({"plugin": "decrypt", "input": "sealed", "outputs": ["opened-wrong"],
            "config": {"keys": "x"}, "secrets": {"keys": keyring}}),
        ),
    ] {
        let r = deploy(&s, name, spec);
        assert_eq!(r.status(), 400, "{name}");
        let body: Value = r.json().unwrap();
        assert!(!body.to_string().contains(K1), "{body}");
    }
}
