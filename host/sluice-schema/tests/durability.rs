//! Durability: the `_schemas` records the registry writes (Confluent's format), replay from the
//! journal (identical state, tolerant of foreign and malformed records), failed appends, and
//! concurrent writers.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sluice_schema::{
    CompatibilityLevel, ConfigUpdate, Journal, JournalRecord, MemoryJournal, ModeUpdate,
    RegisterRequest, Registry, RegistryError, SchemaType, VersionId,
};

const V1: &str = r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"name","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"name","type":"string"},{"name":"age","type":"int","default":0}]}"#;

fn registry() -> (Registry, Arc<MemoryJournal>) {
    let journal = Arc::new(MemoryJournal::default());
    (Registry::new(journal.clone()), journal)
}

fn avro(text: &str) -> RegisterRequest {
    RegisterRequest::new(SchemaType::Avro, text)
}

fn code(e: RegistryError) -> (u16, u32) {
    (e.status, e.error_code)
}

fn reg(r: &Registry, subject: &str, text: &str) -> (i32, i32) {
    let resp = r
        .register(subject, &avro(text), false, false)
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    (resp.id, resp.version)
}

#[test]
fn records_use_confluents_schemas_topic_format() {
    let (r, journal) = registry();
    reg(&r, "s", V1);
    r.put_global_config(&ConfigUpdate::compatibility(CompatibilityLevel::Full))
        .unwrap();
    r.put_subject_mode(
        "s",
        &ModeUpdate {
            mode: "READONLY".into(),
        },
        false,
    )
    .unwrap();
    r.delete_subject_mode("s").unwrap();
    r.delete_subject("s", false).unwrap();
    let records = journal.records();
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    assert_eq!(
        text(&records[0].0),
        r#"{"keytype":"SCHEMA","subject":"s","version":1,"magic":1}"#
    );
    let value: serde_json::Value = serde_json::from_slice(records[0].1.as_ref().unwrap()).unwrap();
    assert_eq!(value["subject"], "s");
    assert_eq!(value["id"], 1);
    assert_eq!(value["schemaType"], "AVRO");
    assert_eq!(value["schema"], V1);
    assert_eq!(value["deleted"], false);
    assert_eq!(text(&records[1].0), r#"{"keytype":"CONFIG","magic":0}"#);
    assert_eq!(
        text(records[1].1.as_ref().unwrap()),
        r#"{"compatibilityLevel":"FULL"}"#
    );
    assert_eq!(
        text(&records[2].0),
        r#"{"keytype":"MODE","subject":"s","magic":0}"#
    );
    assert_eq!(
        text(records[2].1.as_ref().unwrap()),
        r#"{"subject":"s","mode":"READONLY"}"#
    );
    assert_eq!(records[3].1, None, "deleting a mode is a tombstone");
    assert_eq!(
        text(&records[4].0),
        r#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#
    );
    assert_eq!(
        text(records[4].1.as_ref().unwrap()),
        r#"{"subject":"s","version":1}"#
    );
}

/// Runs a long mixed workload, returning the registry and its journal.
fn workload() -> (Registry, Arc<MemoryJournal>) {
    let (r, journal) = registry();
    for i in 0..30 {
        let subject = format!("subject-{}", i % 7);
        let text =
            format!(r#"{{"type":"record","name":"R{i}","fields":[{{"name":"f","type":"int"}}]}}"#);
        let _ = r.register(&subject, &avro(&text), false, true);
        if i % 5 == 4 {
            let _ = r.delete_version(&subject, VersionId::Latest, false);
        }
        if i % 9 == 8 {
            let _ = r.delete_subject(&subject, false);
            let _ = r.delete_subject(&subject, true);
        }
    }
    reg(&r, "shared-a", V1);
    reg(&r, "shared-b", V1);
    r.put_global_config(&ConfigUpdate::compatibility(CompatibilityLevel::Full))
        .unwrap();
    r.put_subject_config(
        "shared-a",
        &ConfigUpdate::compatibility(CompatibilityLevel::None),
    )
    .unwrap();
    r.put_subject_mode(
        "shared-b",
        &ModeUpdate {
            mode: "READONLY".into(),
        },
        false,
    )
    .unwrap();
    let address = r#"{"type":"record","name":"Address","fields":[{"name":"zip","type":"string"}]}"#;
    reg(&r, "address", address);
    r.register(
        "user",
        &avro(r#"{"type":"record","name":"U","fields":[{"name":"a","type":"Address"}]}"#)
            .with_reference("Address", "address", 1),
        false,
        false,
    )
    .unwrap();
    (r, journal)
}

#[test]
fn replay_reproduces_the_state_and_the_next_ids() {
    let (r, journal) = workload();
    let replayed = Registry::new(Arc::new(MemoryJournal::default()));
    let stats = replayed.replay(journal.records());
    assert_eq!(stats.skipped, 0);
    assert_eq!(stats.applied as usize, journal.records().len());
    assert_eq!(replayed.fingerprint(), r.fingerprint());
    // Replay is idempotent.
    replayed.replay(journal.records());
    assert_eq!(replayed.fingerprint(), r.fingerprint());
    // Both hand out the same next id and version.
    let next = r#"{"type":"record","name":"Next","fields":[]}"#;
    let a = r.register("brand-new", &avro(next), false, false).unwrap();
    let b = replayed
        .register("brand-new", &avro(next), false, false)
        .unwrap();
    assert_eq!((a.id, a.version), (b.id, b.version));
    assert_eq!(
        r.get_version("user", VersionId::Latest, false, None)
            .unwrap(),
        replayed
            .get_version("user", VersionId::Latest, false, None)
            .unwrap()
    );
    // Reads after replay see references and deletes as before.
    assert_eq!(
        code(
            replayed
                .delete_version("address", VersionId::Number(1), false)
                .unwrap_err()
        ),
        (422, 42206)
    );
}

#[test]
fn replay_skips_malformed_records_and_counts_them() {
    let (r, journal) = workload();
    let mut records = vec![
        (b"not json".to_vec(), Some(b"{}".to_vec())),
        (
            br#"{"keytype":"SCHEMA","subject":"x","version":1,"magic":1}"#.to_vec(),
            Some(b"garbage".to_vec()),
        ),
        (br#"{"keytype":"NOOP","magic":0}"#.to_vec(), None),
        (
            br#"{"keytype":"FUTURE_THING","magic":0}"#.to_vec(),
            Some(b"{}".to_vec()),
        ),
        (
            br#"{"keytype":"CONFIG","magic":0}"#.to_vec(),
            Some(b"[1,2]".to_vec()),
        ),
    ];
    records.extend(journal.records());
    let replayed = Registry::new(Arc::new(MemoryJournal::default()));
    let stats = replayed.replay(records);
    assert_eq!((stats.skipped, stats.ignored), (3, 2));
    assert_eq!(replayed.fingerprint(), r.fingerprint());
}

#[test]
fn a_record_written_by_confluent_replays() {
    let r = Registry::new(Arc::new(MemoryJournal::default()));
    // As Confluent 7.x writes them (no schemaType for AVRO, null subject on the global config).
    r.replay([
        (
            br#"{"keytype":"SCHEMA","subject":"t-value","version":1,"magic":1}"#.to_vec(),
            Some(br#"{"subject":"t-value","version":1,"id":41,"schema":"\"string\"","deleted":false}"#.to_vec()),
        ),
        (br#"{"keytype":"CONFIG","subject":null,"magic":0}"#.to_vec(), Some(br#"{"compatibilityLevel":"NONE"}"#.to_vec())),
        (br#"{"keytype":"NOOP","magic":0}"#.to_vec(), None),
    ]);
    assert_eq!(
        r.schema_by_id(41, None, None, false).unwrap().schema,
        "\"string\""
    );
    assert_eq!(
        r.get_global_config().compatibility_level,
        CompatibilityLevel::None
    );
    assert_eq!(reg(&r, "other", V1).0, 42);
}

struct FailingJournal {
    fail: AtomicBool,
    inner: MemoryJournal,
}

impl Journal for FailingJournal {
    fn append(&self, records: &[JournalRecord]) -> Result<(), String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("log unavailable".into());
        }
        self.inner.append(records)
    }
}

#[test]
fn a_failed_append_changes_nothing() {
    let journal = Arc::new(FailingJournal {
        fail: AtomicBool::new(false),
        inner: MemoryJournal::default(),
    });
    let r = Registry::new(journal.clone());
    reg(&r, "s", V1);
    let before = r.fingerprint();
    journal.fail.store(true, Ordering::SeqCst);
    let e = r.register("s", &avro(V2), false, false).unwrap_err();
    assert_eq!((e.status, e.error_code), (500, 50001));
    assert!(e.message.contains("log unavailable"));
    assert_eq!(
        code(r.delete_subject("s", false).unwrap_err()),
        (500, 50001)
    );
    assert_eq!(
        code(
            r.put_global_config(&ConfigUpdate::compatibility(CompatibilityLevel::None))
                .unwrap_err()
        ),
        (500, 50001)
    );
    assert_eq!(r.fingerprint(), before);
    // Reads answering from the state still work, and an idempotent re-register needs no append.
    assert_eq!(reg(&r, "s", V1), (1, 1));
    journal.fail.store(false, Ordering::SeqCst);
    assert_eq!(
        reg(&r, "s", V2),
        (2, 2),
        "the failed attempt did not consume an id or a version"
    );
}

#[test]
fn concurrent_readers_and_writers() {
    let (r, _) = registry();
    let r = Arc::new(r);
    let mut handles = Vec::new();
    for t in 0..4 {
        let r = r.clone();
        handles.push(std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in 0..20 {
                let text = format!(r#"{{"type":"record","name":"T{t}x{i}","fields":[]}}"#);
                ids.push(
                    r.register(&format!("t{t}"), &avro(&text), false, true)
                        .unwrap()
                        .id,
                );
                let _ = r.list_subjects(None, false, false, 0, -1);
            }
            ids
        }));
    }
    let mut all: Vec<i32> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=80).collect::<Vec<_>>(), "every id once");
}
