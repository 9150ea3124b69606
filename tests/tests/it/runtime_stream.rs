//! Stateful case tables (stream suites) through the runtime: the compiled component, run by
//! the same stateful operator as `sluice serve`'s tasks and `sluice worker` (through
//! `sluice_pipeline::detached::Detached`): keyed state, timers, late records, the
//! watermark — over two inputs the lower of theirs — and outputs and dead letters as the
//! host writes them. Each case is a read of one record; `advance_to` moves the watermark as
//! an idle advance does.

use std::sync::Arc;

use serde_json::json;
use sluice_log::batch::StoredRecord;
use sluice_pipeline::detached::{Detached, Emitted as Out, Read};
use sluice_pipeline::{Layout, LogRing, Transform, TransformSpec};
use sluice_runtime::{InstanceConfig, Limits, Runtime};
use sluice_sdk::testing::{DEFAULT_TOPIC, Emitted, Suite, TestOutcome, load_suites};

use crate::runtime::runtime;

/// What a read emitted, as the case tables see it: the record's own outcome (outputs of
/// the input at `offset`, or its dead letter) and what the timers emitted.
fn outcome(read: &Read, offset: u64, outputs: &[String]) -> (TestOutcome, Vec<Emitted>) {
    let mut own = Vec::new();
    let mut fired = Vec::new();
    let mut dead = None;
    for Out { slot, record, .. } in &read.records {
        let header = |k: &str| {
            record
                .headers
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.as_deref())
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let Some(output) = outputs.get(*slot) else {
            dead = Some(header("sluice-error").unwrap_or_default());
            continue;
        };
        let emitted = Emitted {
            output: output.clone(),
            key: record.key.as_ref().map(|k| k.to_vec()),
            value: record.value.as_ref().map(|v| v.to_vec()),
            headers: record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().map(|v| v.to_vec())))
                .collect(),
            timestamp: record.timestamp,
        };
        // `sluice-src`: `name:partition:offset:k` for a record's outputs,
        // `name:partition:~position:…` for a timer's.
        let src = header("sluice-src").unwrap_or_default();
        if src.split(':').nth(2) == Some(&offset.to_string()) {
            own.push(emitted);
        } else {
            fired.push(emitted);
        }
    }
    let outcome = match dead {
        Some(why) if why == "late" => TestOutcome::Late,
        Some(why) => TestOutcome::Rejected(why),
        None if own.is_empty() => TestOutcome::Dropped,
        None => TestOutcome::Emitted(own),
    };
    (outcome, fired)
}

/// Runs every stream suite of `table` through the runtime.
fn run_stream_table(rt: &Arc<Runtime>, name: &str, component: &[u8], table: &str) {
    let compiled = rt.compile(component).unwrap();
    assert!(compiled.stateful(), "{name} keeps state");
    for (n, suite) in load_suites(table).into_iter().enumerate() {
        let Some(stream) = suite.stream.clone() else {
            continue;
        };
        let tmp = tempfile::tempdir().unwrap();
        let outputs = if suite.outputs.is_empty() {
            vec!["output".to_string()]
        } else {
            suite.outputs.clone()
        };
        let mut spec: TransformSpec = serde_json::from_value(json!({
            "plugin": name, "input": DEFAULT_TOPIC, "outputs": outputs,
            "config": suite.config, "allowed_lateness_ms": stream.allowed_lateness_ms,
        }))
        .unwrap();
        if let Some(f) = &stream.event_time_field {
            spec.event_time = Some(serde_json::from_value(json!({"field": f})).unwrap());
        }
        spec.inputs = stream.inputs.clone();
        let logs = Arc::new(LogRing::default());
        let t = Transform::detached(name, spec, logs.clone(), tmp.path().to_path_buf());
        let env = suite.env();
        let ic = Arc::new(InstanceConfig {
            plugin: name.into(),
            version: 1,
            config: suite.config.clone(),
            outputs: outputs.clone(),
            limits: Limits::default(),
            tables_allowed: env.tables.keys().cloned().collect(),
            tables: Arc::new(crate::runtime::MapTables(env.tables)),
            logs,
            recycle_after: 1000,
        });
        let executor = rt.executor(compiled.clone(), ic, 0).unwrap();
        let layout = Layout {
            outputs: vec![1; outputs.len()],
            dead_letter: 1,
            late: None,
        };
        let mut d = Detached::new(t, DEFAULT_TOPIC, (0, 1), executor, 1, layout, None).unwrap();
        d.restored().unwrap();
        run_cases(&mut d, &suite, &stream.inputs, &outputs)
            .unwrap_or_else(|e| panic!("{name} suite {n} through the runtime: {e}"));
    }
}

fn run_cases(
    d: &mut Detached,
    suite: &Suite,
    inputs: &[String],
    outputs: &[String],
) -> Result<(), String> {
    for (i, (case, r)) in suite.cases.iter().zip(suite.records()).enumerate() {
        let offset = i as u64;
        let topic = r.topic.clone().unwrap_or_else(|| DEFAULT_TOPIC.into());
        if !inputs.is_empty() {
            d.from_input(inputs.iter().position(|t| *t == topic), &topic);
        }
        let record = StoredRecord {
            offset: offset as i64,
            timestamp: r.timestamp,
            key: r.key.map(Into::into),
            value: r.value.map(Into::into),
            headers: r
                .headers
                .into_iter()
                .map(|(k, v)| (k, v.map(Into::into)))
                .collect(),
        };
        let read = d
            .process(&[record], offset + 1)
            .map_err(|e| e.to_string())?;
        let (got, mut fired) = outcome(&read, offset, outputs);
        if let Some(to) = case.advance_to {
            let more = d.advance(offset + 1, to).map_err(|e| e.to_string())?;
            fired.extend(outcome(&more, offset, outputs).1);
        }
        suite.check_stream_case(case, &got, &fired)?;
    }
    Ok(())
}

#[test]
fn stateful_example_plugins_pass_their_stream_case_tables_as_components() {
    let ((), rt) = runtime();
    for (name, component, table) in [
        (
            "window-count",
            sluice::plugins::WINDOW_COUNT,
            include_str!("../../../plugins/window-count/cases.json"),
        ),
        (
            "nexmark",
            sluice::plugins::NEXMARK_QUERIES,
            include_str!("../../../plugins/nexmark/cases.json"),
        ),
    ] {
        run_stream_table(&rt, name, component, table);
    }
}
