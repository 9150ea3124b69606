//! The plugin runtime against hostile output streams: whatever entries a plugin writes,
//! every input gets exactly one verdict, and the verdict its own entries spell.

use std::sync::Arc;

use sluice_runtime::{BatchInput, Limits, RecordResult};
use sluice_sdk::testing::{TestRecord, encode_batch};
use sluice_tests::fixtures;

use crate::runtime::{config, runtime};

/// What a `script` value (see the hostile fixture) must come to for its input, when it
/// is the input's own doing; `None` when it holds raw bytes, which may spell anything.
fn scripted_verdict(key: &str, script: &str) -> Option<String> {
    if script.contains('g') {
        return None;
    }
    if script.contains(['s', 'S', 'l']) {
        return Some("failed".into());
    }
    let mut outs = Vec::new();
    for op in script.chars() {
        match op {
            'e' => outs.push(key.to_string()),
            'p' => outs.push(script.to_string()),
            'r' => return Some("rejected: r".into()),
            'x' | 'k' => return Some("failed".into()),
            _ => {}
        }
    }
    Some(if outs.is_empty() {
        "dropped".into()
    } else {
        format!("emitted {outs:?}")
    })
}

fn scripted_result(r: &RecordResult) -> String {
    match r {
        RecordResult::Dropped => "dropped".into(),
        RecordResult::Rejected(why) => format!("rejected: {why}"),
        RecordResult::Failed(_) => "failed".into(),
        RecordResult::Emitted(v) => {
            let values: Vec<String> = v
                .iter()
                .map(|e| {
                    let view = e.view().expect("emitted records decode");
                    String::from_utf8_lossy(view.value.unwrap_or_default()).into_owned()
                })
                .collect();
            format!("emitted {values:?}")
        }
    }
}

/// Thousands of generated output streams — clean emits, passes and rejects mixed with
/// records whose length prefix is short or long, undeclared outputs, bad header keys
/// and raw bytes: every input gets exactly one verdict, and every input whose entries are
/// its own (no raw bytes before it in the batch) gets the verdict they spell, whatever
/// its neighbours wrote.
#[test]
fn every_input_gets_exactly_one_verdict_whatever_the_entry_stream() {
    let (_d, rt) = runtime();
    let compiled = rt.compile(fixtures::HOSTILE).unwrap();
    let cfg = config(
        "hostile",
        &[("mode", "script")],
        &["out"],
        Limits::default(),
        Arc::default(),
    );
    let mut ex = rt.executor(compiled, cfg, 0).unwrap();
    let mut rng = fastrand::Rng::with_seed(27);
    let (mut checked, mut dirty_inputs) = (0usize, 0usize);
    for round in 0..2000 {
        let n = rng.usize(1..=20);
        let mut records = Vec::with_capacity(n);
        for j in 0..n {
            let dirty = rng.u8(0..4) == 0;
            let mut script = String::new();
            for _ in 0..rng.usize(0..=3) {
                if dirty && rng.bool() {
                    match rng.u8(0..6) {
                        0 => script.push('s'),
                        1 => script.push('S'),
                        2 => script.push('l'),
                        3 => script.push('x'),
                        4 => script.push('k'),
                        _ => script.push_str(&format!("g{:02x}", rng.u8(..))),
                    }
                } else {
                    script.push(['e', 'p', 'r'][rng.usize(0..3)]);
                }
            }
            dirty_inputs += usize::from(dirty);
            let mut r = TestRecord::value(script);
            r.key = Some(format!("k{round}-{j}").into_bytes());
            records.push(r);
        }
        // As a partition task runs them, checking every run's output on its own.
        let mut results: Vec<RecordResult> = Vec::new();
        while results.len() < n {
            let rest = &records[results.len()..];
            let (ctx, bytes) = encode_batch(rest);
            let out = ex.run(&BatchInput::records(
                &ctx.topic,
                ctx.partition,
                results.len() as i64,
                ctx.base_timestamp,
                bytes::Bytes::from(bytes),
                ctx.record_count,
            ));
            let done = out.done;
            let mut classes = vec![0u8; rest.len()];
            let mut emitted_to = std::collections::BTreeSet::new();
            for e in &out.emitted {
                assert!(
                    e.input < done,
                    "round {round}: an emit for an input not done"
                );
                emitted_to.insert(e.input);
            }
            for i in emitted_to {
                classes[i as usize] += 1;
            }
            for (i, _) in out.rejected.iter().chain(&out.failed) {
                assert!(*i < done, "round {round}: a verdict for an input not done");
                classes[*i as usize] += 1;
            }
            assert!(
                classes.iter().all(|&c| c <= 1),
                "round {round}: an input with two verdicts: {classes:?}"
            );
            let mut r = out.per_record(rest.len());
            r.truncate(done as usize);
            results.extend(r);
        }
        let first_raw = records
            .iter()
            .position(|r| r.value.as_ref().is_some_and(|v| v.contains(&b'g')))
            .unwrap_or(n);
        for (j, (rec, got)) in records.iter().zip(&results).enumerate().take(first_raw) {
            let key = String::from_utf8(rec.key.clone().unwrap()).unwrap();
            let script = String::from_utf8(rec.value.clone().unwrap()).unwrap();
            let want = scripted_verdict(&key, &script).unwrap();
            assert_eq!(
                scripted_result(got),
                want,
                "round {round}, input {j} ({script:?}) of {:?}",
                records
                    .iter()
                    .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()))
                    .collect::<Vec<_>>()
            );
            checked += 1;
        }
    }
    assert!(
        checked > 10_000 && dirty_inputs > 3_000,
        "{checked} {dirty_inputs}"
    );
}
