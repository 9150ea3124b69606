//! The registry state machine: ids, versions, deletes, references, modes, configs,
//! compatibility (durability is in `durability.rs`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use serde_json::json;
use sluice_schema::{
    CompatibilityLevel, ConfigUpdate, MemoryJournal, ModeUpdate, RegisterRequest, Registry,
    RegistryError, SchemaType, VersionId,
};

const V1: &str = r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"name","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"name","type":"string"},{"name":"age","type":"int","default":0}]}"#;
const V2_NO_DEFAULT: &str = r#"{"type":"record","name":"User","namespace":"com.acme","fields":[{"name":"name","type":"string"},{"name":"age","type":"int"}]}"#;
const OTHER: &str = r#"{"type":"record","name":"Other","fields":[{"name":"x","type":"long"}]}"#;

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
fn ids_are_global_stable_and_shared_across_subjects() {
    let (r, journal) = registry();
    assert_eq!(reg(&r, "a-value", V1), (1, 1));
    assert_eq!(
        reg(&r, "b-value", V1),
        (1, 1),
        "same schema, other subject: same id"
    );
    assert_eq!(reg(&r, "a-value", V2), (2, 2));
    let before = journal.records().len();
    // Re-registering returns the existing version and writes nothing; whitespace does not matter.
    let spaced = V1.replace(',', " , ");
    assert_eq!(reg(&r, "a-value", &spaced), (1, 1));
    assert_eq!(journal.records().len(), before);
    assert_eq!(reg(&r, "c-value", OTHER), (3, 1));
    // Python wraps a bare primitive: both forms are one schema.
    let s = r.register("p", &avro("\"string\""), false, false).unwrap();
    let w = r
        .register("p", &avro(r#"{"type":"string"}"#), false, false)
        .unwrap();
    assert_eq!((s.id, s.version), (w.id, w.version));
    assert_eq!(
        r.list_subjects(None, false, false, 0, -1),
        vec!["a-value", "b-value", "c-value", "p"]
    );
    assert_eq!(
        r.list_versions("a-value", false, false, false, 0, -1)
            .unwrap(),
        vec![1, 2]
    );
}

#[test]
fn register_response_echoes_the_submitted_schema() {
    let (r, _) = registry();
    let spaced = format!("  {V1}\n");
    let resp = r.register("s", &avro(&spaced), false, false).unwrap();
    assert_eq!(resp.schema, spaced);
    let body = serde_json::to_value(&resp).unwrap();
    assert_eq!(body["id"], 1);
    assert_eq!(body["version"], 1);
    assert_eq!(body["schemaType"], "AVRO");
    assert!(
        body.get("references").is_none(),
        "empty references are omitted"
    );
    assert_eq!(body["deleted"], false);
    let got = r.get_version("s", VersionId::Latest, false, None).unwrap();
    assert_eq!(got.schema, V1, "stored canonical");
    let by_id = serde_json::to_value(r.schema_by_id(1, None, None, false).unwrap()).unwrap();
    assert_eq!(by_id["schema"], V1);
    assert!(by_id.get("subject").is_none());
}

#[test]
fn lookup_finds_versions_and_reports_confluent_codes() {
    let (r, _) = registry();
    assert_eq!(
        code(r.lookup("s", &avro(V1), false, false).unwrap_err()),
        (404, 40401)
    );
    reg(&r, "s", V1);
    reg(&r, "s", V2);
    let found = r.lookup("s", &avro(V1), false, false).unwrap();
    assert_eq!(
        (found.subject.as_str(), found.version, found.id),
        ("s", 1, 1)
    );
    assert_eq!(
        code(r.lookup("s", &avro(OTHER), false, false).unwrap_err()),
        (404, 40403)
    );
    assert_eq!(
        code(r.lookup("s", &avro("{nope"), false, false).unwrap_err()),
        (422, 42201)
    );
    r.delete_version("s", VersionId::Number(1), false).unwrap();
    assert_eq!(
        code(r.lookup("s", &avro(V1), false, false).unwrap_err()),
        (404, 40403)
    );
    assert!(r.lookup("s", &avro(V1), false, true).unwrap().deleted);
    // normalize=true matches a reordered rendering of a stored schema.
    // An equivalent rendering matches through the normalized second chance, as Confluent's
    // `canLookup` walk does.
    let reordered = r#"{"namespace":"com.acme","name":"User","type":"record","fields":[{"type":"string","name":"name"},{"default":0,"type":"int","name":"age"}]}"#;
    assert_eq!(
        r.lookup("s", &avro(reordered), false, false)
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        r.lookup("s", &avro(reordered), true, false)
            .unwrap()
            .version,
        2
    );
}

#[test]
fn soft_and_hard_deletes_follow_confluent_rules() {
    let (r, _) = registry();
    reg(&r, "s", V1);
    reg(&r, "s", V2);
    assert_eq!(
        r.delete_version("s", VersionId::Number(1), false).unwrap(),
        1
    );
    assert_eq!(
        code(
            r.get_version("s", VersionId::Number(1), false, None)
                .unwrap_err()
        ),
        (404, 40402)
    );
    assert!(
        r.get_version("s", VersionId::Number(1), true, None)
            .unwrap()
            .deleted
    );
    assert_eq!(
        r.list_versions("s", false, false, false, 0, -1).unwrap(),
        vec![2]
    );
    assert_eq!(
        r.list_versions("s", true, false, false, 0, -1).unwrap(),
        vec![1, 2]
    );
    assert_eq!(
        r.list_versions("s", false, true, false, 0, -1).unwrap(),
        vec![1]
    );
    assert_eq!(
        r.list_versions("s", false, false, true, 0, -1).unwrap(),
        vec![-1, 2]
    );
    assert_eq!(
        code(
            r.delete_version("s", VersionId::Number(1), false)
                .unwrap_err()
        ),
        (404, 40406)
    );
    assert_eq!(
        code(
            r.delete_version("s", VersionId::Number(2), true)
                .unwrap_err()
        ),
        (404, 40407)
    );
    assert_eq!(
        code(
            r.delete_version("s", VersionId::Number(9), false)
                .unwrap_err()
        ),
        (404, 40402)
    );
    // The id of a soft-deleted version still resolves.
    assert_eq!(r.schema_by_id(1, None, None, false).unwrap().schema, V1);
    assert_eq!(
        r.subjects_for_id(1, false, 0, -1).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(r.subjects_for_id(1, true, 0, -1).unwrap(), vec!["s"]);
    // Version numbers are not reused after a soft delete.
    let other = r.register("s", &avro(OTHER), false, true).unwrap();
    assert_eq!((other.id, other.version), (3, 3));
    // Hard delete of v1, then of the top version: its number is reused.
    assert_eq!(
        r.delete_version("s", VersionId::Number(1), true).unwrap(),
        1
    );
    assert_eq!(
        code(r.schema_by_id(1, None, None, false).unwrap_err()),
        (404, 40403)
    );
    r.delete_version("s", VersionId::Latest, false).unwrap();
    r.delete_version("s", VersionId::Number(3), true).unwrap();
    let v = r
        .register(
            "s",
            &avro(r#"{"type":"record","name":"Third","fields":[]}"#),
            false,
            true,
        )
        .unwrap();
    assert_eq!(v.version, 3);
    // An id never comes back after its last holder is gone: V1 gets a new one.
    assert_eq!(reg(&r, "t", V1).0, 5);

    // Subject deletes.
    assert_eq!(
        code(r.delete_subject("nope", false).unwrap_err()),
        (404, 40401)
    );
    assert_eq!(code(r.delete_subject("s", true).unwrap_err()), (404, 40405));
    assert_eq!(r.delete_subject("s", false).unwrap(), vec![2, 3]);
    assert_eq!(
        code(r.delete_subject("s", false).unwrap_err()),
        (404, 40404)
    );
    assert!(
        !r.list_subjects(None, false, false, 0, -1)
            .contains(&"s".to_string())
    );
    assert!(
        r.list_subjects(None, true, false, 0, -1)
            .contains(&"s".to_string())
    );
    assert_eq!(r.list_subjects(None, false, true, 0, -1), vec!["s"]);
    assert_eq!(
        code(
            r.get_version("s", VersionId::Latest, false, None)
                .unwrap_err()
        ),
        (404, 40401)
    );
    assert_eq!(r.delete_subject("s", true).unwrap(), vec![2, 3]);
    assert_eq!(
        code(r.list_versions("s", true, false, false, 0, -1).unwrap_err()),
        (404, 40401)
    );
    assert_eq!(
        reg(&r, "s", OTHER).1,
        1,
        "a hard-deleted subject starts over at 1"
    );
}

#[test]
fn re_registering_a_soft_deleted_schema_gets_a_new_version_with_the_same_id() {
    let (r, _) = registry();
    reg(&r, "s", V1);
    reg(&r, "s", V2);
    r.delete_version("s", VersionId::Number(1), false).unwrap();
    let again = r.register("s", &avro(V1), false, true).unwrap();
    assert_eq!((again.id, again.version), (1, 3));
    // The soft-deleted v1 holding the same id was hard-deleted.
    assert_eq!(
        r.list_versions("s", true, false, false, 0, -1).unwrap(),
        vec![2, 3]
    );
}

#[test]
fn references_are_resolved_counted_and_protect_their_targets() {
    let (r, _) = registry();
    let address = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"zip","type":"string"}]}"#;
    let user = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"home","type":"Address"}]}"#;
    reg(&r, "address", address);
    let with_ref = avro(user).with_reference("com.acme.Address", "address", -1);
    let u = r.register("customer", &with_ref, false, false).unwrap();
    assert_eq!(
        u.references[0].version, 1,
        "-1 resolves to the latest version"
    );
    let missing = avro(user).with_reference("com.acme.Address", "address", 7);
    assert_eq!(
        code(r.register("customer2", &missing, false, false).unwrap_err()),
        (422, 42201)
    );
    assert_eq!(
        code(
            r.register("customer2", &avro(user), false, false)
                .unwrap_err()
        ),
        (422, 42201)
    );
    assert_eq!(
        r.referenced_by("address", VersionId::Number(1), false)
            .unwrap(),
        vec![u.id]
    );
    // References take part in identity: the same text referencing another version is another id.
    let address2 = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"zip","type":"string"},{"name":"city","type":"string","default":""}]}"#;
    reg(&r, "address", address2);
    let u2 = r
        .register(
            "customer",
            &avro(user).with_reference("com.acme.Address", "address", 2),
            false,
            false,
        )
        .unwrap();
    assert_ne!(u2.id, u.id);

    // The referencing schema parses with its reference resolved.
    let parsed = r.schema_by_id_parsed(u2.id).unwrap();
    assert_eq!(parsed.references().len(), 1);
    let e = r
        .delete_version("address", VersionId::Number(1), false)
        .unwrap_err();
    assert_eq!(code(e.clone()), (422, 42206));
    assert_eq!(
        e.message,
        "One or more references exist to the schema {magic=1,keytype=SCHEMA,subject=address,version=1}."
    );
    assert_eq!(
        code(r.delete_subject("address", false).unwrap_err()),
        (422, 42206)
    );
    r.delete_subject("customer", false).unwrap();
    // Soft-deleted referrers count only for permanent deletes.
    r.delete_version("address", VersionId::Number(1), false)
        .unwrap();
    assert_eq!(
        code(
            r.delete_version("address", VersionId::Number(1), true)
                .unwrap_err()
        ),
        (422, 42206)
    );
    assert_eq!(
        r.referenced_by("address", VersionId::Number(1), true)
            .unwrap(),
        vec![u.id]
    );
    assert!(
        r.referenced_by("address", VersionId::Number(1), false)
            .unwrap()
            .is_empty()
    );
    r.delete_subject("customer", true).unwrap();
    r.delete_version("address", VersionId::Number(1), true)
        .unwrap();
}

#[test]
fn avro_references_are_compared_structurally() {
    let (r, _) = registry();
    let address = r#"{"type":"record","name":"Address","fields":[{"name":"zip","type":"string"}]}"#;
    let address_int =
        r#"{"type":"record","name":"Address","fields":[{"name":"zip","type":"int"}]}"#;
    let user = r#"{"type":"record","name":"U","fields":[{"name":"a","type":"Address"}]}"#;
    reg(&r, "address-a", address);
    reg(&r, "address-b", address_int);
    r.register(
        "u",
        &avro(user).with_reference("Address", "address-a", 1),
        false,
        false,
    )
    .unwrap();
    // Same text, the referenced type changed underneath: string -> int is incompatible.
    let e = r
        .register(
            "u",
            &avro(user).with_reference("Address", "address-b", 1),
            false,
            false,
        )
        .unwrap_err();
    assert_eq!(e.status, 409);
    assert!(
        e.message.contains("/fields/0/type/fields/0/type"),
        "{}",
        e.message
    );
}

#[test]
fn compatibility_levels_and_the_check_endpoint() {
    let (r, _) = registry();
    reg(&r, "s", V1);
    let e = r
        .register("s", &avro(V2_NO_DEFAULT), false, false)
        .unwrap_err();
    assert_eq!(code(e.clone()), (409, 409));
    assert_eq!(
        e.message,
        format!(
            "Schema being registered is incompatible with an earlier schema for subject \"s\", details: [{{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'age' at path '/fields/1' in the new schema has no default value and is missing in the old schema', additionalInfo:'age'}}, {{oldSchemaVersion: 1}}, {{oldSchema: '{V1}'}}, {{validateFields: 'false', compatibility: 'BACKWARD'}}]"
        )
    );
    let verbose = r
        .check_compatibility(
            "s",
            Some(VersionId::Latest),
            &avro(V2_NO_DEFAULT),
            false,
            true,
        )
        .unwrap();
    assert!(!verbose.is_compatible);
    assert_eq!(verbose.messages.as_ref().map(Vec::len), Some(4));
    let quiet = serde_json::to_value(
        r.check_compatibility("s", None, &avro(V2), false, false)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(quiet, json!({"is_compatible": true}));
    let ok_verbose = serde_json::to_value(
        r.check_compatibility("s", None, &avro(V2), false, true)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ok_verbose, json!({"is_compatible": true, "messages": []}));
    assert!(
        r.check_compatibility("empty", Some(VersionId::Latest), &avro(V2), false, false)
            .unwrap()
            .is_compatible
    );
    assert!(
        r.check_compatibility("empty", None, &avro(V2), false, false)
            .unwrap()
            .is_compatible
    );
    assert_eq!(
        code(
            r.check_compatibility("s", Some(VersionId::Number(5)), &avro(V2), false, false)
                .unwrap_err()
        ),
        (404, 40402)
    );
    assert_eq!(
        code(
            r.check_compatibility("s", None, &avro("{"), false, false)
                .unwrap_err()
        ),
        (422, 42201)
    );
    let invalid = r
        .check_compatibility("s", None, &avro("{"), false, true)
        .unwrap();
    assert!(!invalid.is_compatible && invalid.messages.unwrap()[0].starts_with("Invalid schema"));
    // force skips the check; NONE accepts anything.
    assert!(r.register("forced", &avro(V1), false, false).is_ok());
    assert!(r.register("forced", &avro(OTHER), false, true).is_ok());
    r.put_subject_config(
        "none",
        &ConfigUpdate::compatibility(CompatibilityLevel::None),
    )
    .unwrap();
    reg(&r, "none", V1);
    reg(&r, "none", OTHER);
    // A different schema type is incompatible.
    let json_schema = RegisterRequest::new(SchemaType::Json, r#"{"type":"object"}"#);
    let e = r.register("s", &json_schema, false, false).unwrap_err();
    assert!(
        e.message
            .contains("Incompatible because of different schema type"),
        "{}",
        e.message
    );
}

#[test]
fn transitive_levels_check_every_version_newest_first() {
    // Confluent's AvroCompatibilityTest: schema3 passes BACKWARD against [schema1, schema2] (only
    // schema2 is checked) and fails BACKWARD_TRANSITIVE (schema1 has no `f2`).
    let s1 = r#"{"type":"record","name":"r","fields":[{"name":"f1","type":"string"}]}"#;
    let s2 = r#"{"type":"record","name":"r","fields":[{"name":"f1","type":"string"},{"name":"f2","type":"string","default":"x"}]}"#;
    let s3 = r#"{"type":"record","name":"r","fields":[{"name":"f1","type":"string"},{"name":"f2","type":"string"}]}"#;
    for (level, ok) in [
        (CompatibilityLevel::Backward, true),
        (CompatibilityLevel::BackwardTransitive, false),
        (CompatibilityLevel::Full, true),
        (CompatibilityLevel::FullTransitive, false),
        (CompatibilityLevel::Forward, true),
        (CompatibilityLevel::ForwardTransitive, true),
        (CompatibilityLevel::None, true),
    ] {
        let (r, _) = registry();
        r.put_subject_config("s", &ConfigUpdate::compatibility(CompatibilityLevel::None))
            .unwrap();
        reg(&r, "s", s1);
        reg(&r, "s", s2);
        r.put_subject_config("s", &ConfigUpdate::compatibility(level))
            .unwrap();
        let result = r.register("s", &avro(s3), false, false);
        assert_eq!(result.is_ok(), ok, "{level}: {result:?}");
        if let Err(e) = result {
            // The first failing version, newest first, and only that one.
            let oldest = e.message.contains("{oldSchemaVersion: 1}");
            let newest = e.message.contains("{oldSchemaVersion: 2}");
            assert!(oldest ^ newest, "{level}: {}", e.message);
            assert!(e.message.ends_with(&format!(
                "{{validateFields: 'false', compatibility: '{level}'}}]"
            )));
        }
    }
    // Soft-deleted versions are not checked.
    let (r, _) = registry();
    r.put_global_config(&ConfigUpdate::compatibility(
        CompatibilityLevel::BackwardTransitive,
    ))
    .unwrap();
    reg(&r, "s", s1);
    r.register("s", &avro(s2), false, false).unwrap();
    assert!(r.register("s", &avro(s3), false, false).is_err());
    r.delete_version("s", VersionId::Number(1), false).unwrap();
    assert!(r.register("s", &avro(s3), false, false).is_ok());
}

#[test]
fn configs_global_and_per_subject() {
    let (r, _) = registry();
    assert_eq!(
        serde_json::to_value(r.get_global_config()).unwrap(),
        json!({"compatibilityLevel": "BACKWARD"})
    );
    let e = r.get_subject_config("s", false).unwrap_err();
    assert_eq!(code(e.clone()), (404, 40408));
    assert_eq!(
        e.message,
        "Subject 's' does not have subject-level compatibility configured"
    );
    assert_eq!(
        r.get_subject_config("s", true).unwrap().compatibility_level,
        CompatibilityLevel::Backward
    );
    let put = r
        .put_subject_config(
            "s",
            &ConfigUpdate(
                serde_json::from_value(json!({"compatibility": "full", "bogus": 1})).unwrap(),
            ),
        )
        .unwrap();
    assert_eq!(
        serde_json::to_value(put).unwrap(),
        json!({"compatibility": "FULL"})
    );
    assert_eq!(
        serde_json::to_value(r.get_subject_config("s", false).unwrap()).unwrap(),
        json!({"compatibilityLevel": "FULL"})
    );
    // A merge: normalize added, level kept.
    r.put_subject_config(
        "s",
        &ConfigUpdate(serde_json::from_value(json!({"normalize": true})).unwrap()),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(r.get_subject_config("s", false).unwrap()).unwrap(),
        json!({"compatibilityLevel": "FULL", "normalize": true})
    );
    let bad = r.put_subject_config(
        "s",
        &ConfigUpdate(serde_json::from_value(json!({"compatibility": "sideways"})).unwrap()),
    );
    assert_eq!(code(bad.unwrap_err()), (422, 42203));
    assert_eq!(
        code(
            r.put_subject_config(
                "__GLOBAL",
                &ConfigUpdate::compatibility(CompatibilityLevel::Full)
            )
            .unwrap_err()
        ),
        (422, 42208)
    );
    assert_eq!(
        r.delete_subject_config("s").unwrap().compatibility_level,
        CompatibilityLevel::Full
    );
    assert_eq!(
        code(r.delete_subject_config("s").unwrap_err()),
        (404, 40401)
    );
    r.put_global_config(&ConfigUpdate::compatibility(
        CompatibilityLevel::ForwardTransitive,
    ))
    .unwrap();
    assert_eq!(
        r.get_subject_config("s", true).unwrap().compatibility_level,
        CompatibilityLevel::ForwardTransitive
    );
    assert_eq!(
        r.delete_global_config().unwrap().compatibility_level,
        CompatibilityLevel::ForwardTransitive
    );
    assert_eq!(
        r.get_global_config().compatibility_level,
        CompatibilityLevel::Backward
    );
    // A hard-deleted subject loses its config and mode.
    r.put_subject_config(
        "gone",
        &ConfigUpdate::compatibility(CompatibilityLevel::None),
    )
    .unwrap();
    r.put_subject_mode(
        "gone",
        &ModeUpdate {
            mode: "READWRITE".into(),
        },
        false,
    )
    .unwrap();
    reg(&r, "gone", V1);
    r.delete_subject("gone", false).unwrap();
    r.delete_subject("gone", true).unwrap();
    assert_eq!(
        code(r.get_subject_config("gone", false).unwrap_err()),
        (404, 40408)
    );
    assert_eq!(
        code(r.get_subject_mode("gone", false).unwrap_err()),
        (404, 40409)
    );
}

#[test]
fn modes_readonly_and_import() {
    let (r, _) = registry();
    reg(&r, "s", V1);
    assert_eq!(
        serde_json::to_value(r.get_global_mode()).unwrap(),
        json!({"mode": "READWRITE"})
    );
    assert_eq!(
        code(r.get_subject_mode("s", false).unwrap_err()),
        (404, 40409)
    );
    assert_eq!(
        code(
            r.put_subject_mode(
                "s",
                &ModeUpdate {
                    mode: "sideways".into()
                },
                false
            )
            .unwrap_err()
        ),
        (422, 42204)
    );
    assert_eq!(
        code(
            r.put_subject_mode(
                "s",
                &ModeUpdate {
                    mode: "FORWARD".into()
                },
                false
            )
            .unwrap_err()
        ),
        (422, 42204)
    );
    r.put_subject_mode(
        "s",
        &ModeUpdate {
            mode: "readonly".into(),
        },
        false,
    )
    .unwrap();
    let e = r.register("s", &avro(V2), false, false).unwrap_err();
    assert_eq!(code(e.clone()), (422, 42205));
    assert_eq!(e.message, "Subject s in context  is in read-only mode");
    assert_eq!(reg(&r, "s", V1), (1, 1), "re-registering still answers");
    assert_eq!(
        code(
            r.delete_version("s", VersionId::Number(1), false)
                .unwrap_err()
        ),
        (422, 42205)
    );
    assert_eq!(
        code(r.delete_subject("s", false).unwrap_err()),
        (422, 42205)
    );
    assert_eq!(
        code(
            r.put_subject_config("s", &ConfigUpdate::compatibility(CompatibilityLevel::None))
                .unwrap_err()
        ),
        (422, 42205)
    );
    assert_eq!(
        r.delete_subject_mode("s").unwrap().mode,
        sluice_schema::Mode::Readonly
    );
    assert_eq!(code(r.delete_subject_mode("s").unwrap_err()), (404, 40401));

    // IMPORT: refused while live schemas exist, unless forced.
    let e = r
        .put_global_mode(
            &ModeUpdate {
                mode: "IMPORT".into(),
            },
            false,
        )
        .unwrap_err();
    assert_eq!(
        (code(e.clone()), e.message.as_str()),
        ((422, 42205), "Cannot import since found existing subjects")
    );
    let mut with_id = avro(V1);
    with_id.id = Some(7);
    assert_eq!(
        code(r.register("x", &with_id, false, false).unwrap_err()),
        (422, 42205),
        "id outside IMPORT"
    );
    r.put_global_mode(
        &ModeUpdate {
            mode: "IMPORT".into(),
        },
        true,
    )
    .unwrap();
    assert_eq!(
        code(r.register("imp", &avro(OTHER), false, false).unwrap_err()),
        (422, 42205),
        "IMPORT needs an id"
    );
    let mut imported = avro(OTHER);
    imported.id = Some(100);
    imported.version = Some(5);
    let i = r.register("imp", &imported, false, false).unwrap();
    assert_eq!((i.id, i.version), (100, 5));
    let mut clash = avro(V2);
    clash.id = Some(100);
    let e = r.register("imp2", &clash, false, false).unwrap_err();
    assert_eq!(
        e.message,
        "Overwrite new schema with id 100 in context  is not permitted."
    );
    // Imported ids raise the counter.
    r.put_global_mode(
        &ModeUpdate {
            mode: "READWRITE".into(),
        },
        false,
    )
    .unwrap();
    assert_eq!(reg(&r, "after", V2).0, 101);
}

#[test]
fn switching_to_import_clears_soft_deleted_leftovers() {
    let (r, journal) = registry();
    reg(&r, "s", V1);
    r.delete_subject("s", false).unwrap();
    r.put_global_mode(
        &ModeUpdate {
            mode: "IMPORT".into(),
        },
        false,
    )
    .unwrap();
    assert!(r.list_subjects(None, true, false, 0, -1).is_empty());
    let keys: Vec<String> = journal
        .records()
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert!(keys.iter().any(|k| k.contains("CLEAR_SUBJECT")), "{keys:?}");
}

#[test]
fn invalid_input_gets_confluent_codes() {
    let (r, _) = registry();
    assert_eq!(
        code(r.register("bad\u{1}", &avro(V1), false, false).unwrap_err()),
        (422, 42208)
    );
    assert_eq!(
        code(r.register("s", &avro(""), false, false).unwrap_err()),
        (422, 42201)
    );
    let mut bad_type = avro(V1);
    bad_type.schema_type = Some("avro".into());
    let e = r.register("s", &bad_type, false, false).unwrap_err();
    assert_eq!(
        (code(e.clone()), e.message.as_str()),
        ((422, 42201), "Invalid schema type avro")
    );
    let e = r
        .register("s", &avro(r#"{"type":"record"}"#), false, false)
        .unwrap_err();
    assert_eq!(code(e.clone()), (422, 42201));
    assert!(
        e.message
            .starts_with("Invalid schema of type AVRO, details: "),
        "{}",
        e.message
    );
    let huge = format!(
        r#"{{"type":"record","name":"r","doc":"{}","fields":[]}}"#,
        "x".repeat(2 << 20)
    );
    assert_eq!(
        code(r.register("s", &avro(&huge), false, false).unwrap_err()),
        (422, 42209)
    );
    let mut explicit = avro(V1);
    explicit.version = Some(3);
    let e = r.register("s", &explicit, false, false).unwrap_err();
    assert_eq!(e.message, "Version is not one more than previous version");
    assert_eq!(
        code(r.schema_by_id(9, None, None, false).unwrap_err()),
        (404, 40403)
    );
    assert_eq!(
        r.schema_by_id(9, None, None, false).unwrap_err().message,
        "Schema 9 not found"
    );
    assert_eq!(
        r.subjects_for_id(9, false, 0, -1).unwrap_err().message,
        "Schema not found"
    );
    assert_eq!(
        code(r.schema_text_by_id(9, None).unwrap_err()),
        (404, 40403)
    );
}

#[test]
fn schema_by_id_takes_the_subject_as_a_hint() {
    let (r, _) = registry();
    reg(&r, "a", V1);
    reg(&r, "b", OTHER);
    r.register("b", &avro(V1), false, true).unwrap();
    let hinted = r.schema_by_id(1, Some("b"), None, true).unwrap();
    assert_eq!(
        (hinted.subject.as_deref(), hinted.version, hinted.max_id),
        (Some("b"), Some(2), Some(2))
    );
    let elsewhere = r.schema_by_id(1, Some("zzz"), None, false).unwrap();
    assert_eq!(
        elsewhere.subject.as_deref(),
        Some("a"),
        "another subject holding the id"
    );
    assert_eq!(
        serde_json::to_value(r.versions_for_id(1, false, 0, -1).unwrap()).unwrap(),
        json!([{"subject": "a", "version": 1}, {"subject": "b", "version": 2}])
    );
    let guid = r
        .get_version("a", VersionId::Number(1), false, None)
        .unwrap()
        .guid;
    assert_eq!(r.schema_by_guid(&guid, None).unwrap().schema, V1);
    assert_eq!(r.list_schemas(None, false, true, 0, -1).len(), 2);
    assert_eq!(r.list_schemas(Some("b"), false, false, 0, -1).len(), 2);
    assert_eq!(r.list_subjects(None, false, false, 1, 1), vec!["b"]);
    assert_eq!(r.schema_types(), vec!["JSON", "PROTOBUF", "AVRO"]);
    assert!(r.associations("-", "orders").is_empty());
    assert_eq!(r.contexts(), vec!["."]);
}
