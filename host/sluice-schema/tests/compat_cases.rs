//! Every evolution case of `compat-cases.json` (252 cases whose verdicts and messages were
//! computed by running Confluent's own code) at every non-transitive level it implies: BACKWARD,
//! FORWARD, FULL (both) and NONE, with Confluent's exact messages (compared as multisets: Java's
//! hash-set iteration order is not reproducible).

#![allow(clippy::unwrap_used)]

use serde_json::Value;
use sluice_schema::{
    CompatibilityLevel, ParsedSchema, Policy, PreviousSchema, SchemaType, can_read, check,
    check_with_policy, no_references, parse_schema,
};

const CASES: &str = include_str!("compat-cases.json");

fn parse(t: SchemaType, text: &str, name: &str) -> ParsedSchema {
    parse_schema(t, text, &[], &no_references).unwrap_or_else(|e| panic!("{name}: {e}\n{text}"))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn strings(case: &Value, key: &str) -> Option<Vec<String>> {
    case.get(key)?.as_array().map(|a| {
        a.iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect()
    })
}

#[test]
fn every_case_matches_confluent() {
    let cases: Vec<Value> = serde_json::from_str(CASES).unwrap();
    assert_eq!(cases.len(), 252);
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let t = SchemaType::parse(case["type"].as_str().unwrap()).unwrap();
        let old = parse(t, case["old"].as_str().unwrap(), name);
        let new = parse(t, case["new"].as_str().unwrap(), name);
        let backward = case["backward"].as_bool().unwrap();
        let forward = case["forward"].as_bool().unwrap();

        let b = can_read(&new, &old, Policy::Strict, "new", "old");
        let f = can_read(&old, &new, Policy::Strict, "old", "new");
        if b.is_empty() != backward {
            failures.push(format!(
                "[{t}] {name}: backward verdict {} != {backward}: {b:?}",
                b.is_empty()
            ));
        }
        if f.is_empty() != forward {
            failures.push(format!(
                "[{t}] {name}: forward verdict {} != {forward}: {f:?}",
                f.is_empty()
            ));
        }
        if let Some(expected) = strings(case, "backward_messages")
            && sorted(expected.clone()) != sorted(b.clone())
        {
            failures.push(format!(
                "[{t}] {name}: backward messages\n  want {expected:?}\n  got  {b:?}"
            ));
        }
        if let Some(expected) = strings(case, "forward_messages")
            && sorted(expected.clone()) != sorted(f.clone())
        {
            failures.push(format!(
                "[{t}] {name}: forward messages\n  want {expected:?}\n  got  {f:?}"
            ));
        }
        for (key, reader, writer, rl, wl) in [
            ("backward_lenient", &new, &old, "new", "old"),
            ("forward_lenient", &old, &new, "old", "new"),
        ] {
            if let Some(want) = case.get(key).and_then(Value::as_bool) {
                let got = can_read(reader, writer, Policy::Lenient, rl, wl).is_empty();
                if got != want {
                    failures.push(format!("[{t}] {name}: {key} {got} != {want}"));
                }
            }
        }

        // The levels, through the public entry point Confluent's registry uses.
        let prev = [PreviousSchema {
            schema: &old,
            version: Some(1),
        }];
        let at = |level| check(level, &new, &prev);
        let mut expect = |ok: bool, what: &str| {
            if !ok {
                failures.push(format!("[{t}] {name}: {what}"));
            }
        };
        expect(at(CompatibilityLevel::None).is_empty(), "NONE");
        let trailer =
            |level: &str| format!("{{validateFields: 'false', compatibility: '{level}'}}");
        let old_info = [
            "{oldSchemaVersion: 1}".to_string(),
            format!("{{oldSchema: '{}'}}", old.canonical()),
        ];
        let mut want_b = b.clone();
        if !b.is_empty() {
            want_b.extend(old_info.iter().cloned());
            want_b.push(trailer("BACKWARD"));
        }
        expect(
            at(CompatibilityLevel::Backward) == want_b,
            "BACKWARD messages",
        );
        let mut want_f = f.clone();
        if !f.is_empty() {
            want_f.extend(old_info.iter().cloned());
            want_f.push(trailer("FORWARD"));
        }
        expect(
            at(CompatibilityLevel::Forward) == want_f,
            "FORWARD messages",
        );
        // FULL: forward half first (no old-schema entries), then the backward half with them.
        let mut want_full = f.clone();
        want_full.extend(b.iter().cloned());
        if !b.is_empty() {
            want_full.extend(old_info.iter().cloned());
        }
        if !want_full.is_empty() {
            want_full.push(trailer("FULL"));
        }
        expect(at(CompatibilityLevel::Full) == want_full, "FULL messages");
        expect(
            at(CompatibilityLevel::Full).is_empty() == (backward && forward),
            "FULL verdict",
        );
        // One previous version: transitive levels agree with their plain forms.
        expect(
            check(CompatibilityLevel::BackwardTransitive, &new, &prev).is_empty() == backward,
            "BACKWARD_TRANSITIVE",
        );
        expect(
            check(CompatibilityLevel::ForwardTransitive, &new, &prev).is_empty() == forward,
            "FORWARD_TRANSITIVE",
        );
        expect(
            check_with_policy(
                CompatibilityLevel::FullTransitive,
                Policy::Strict,
                &new,
                &prev,
            )
            .is_empty()
                == (backward && forward),
            "FULL_TRANSITIVE",
        );
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 252);
}
