//! The plugin runtime: example plugins' case tables through the compiled components, and
//! misbehaving plugins contained.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_runtime::{
    BatchInput, Executor, InstanceConfig, Limits, LogLine, LogSink, RecordResult, Runtime, Tables,
};
use sluice_sdk::testing::{Emitted, Suite, TestOutcome, TestRecord, encode_batch, load_suites};
use sluice_tests::fixtures;

pub(crate) struct MapTables(pub HashMap<String, HashMap<Vec<u8>, Vec<u8>>>);

impl Tables for MapTables {
    fn lookup(&self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(table).and_then(|t| t.get(key)).cloned()
    }
}

#[derive(Default)]
pub(crate) struct Logs(Mutex<Vec<LogLine>>);

impl LogSink for Logs {
    fn log(&self, line: LogLine) {
        self.0.lock().unwrap().push(line);
    }
}

/// One runtime per test process, its compiled-code cache kept between runs.
pub(crate) fn runtime() -> ((), Arc<Runtime>) {
    static RT: std::sync::OnceLock<Arc<Runtime>> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        Runtime::new(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache"))
            .unwrap()
    });
    ((), rt.clone())
}

/// A runtime that meters fuel on every call: the reference the default (fuel only on the
/// calls that isolate suspect records) must agree with on every verdict.
fn runtime_always_metered() -> Arc<Runtime> {
    static RT: std::sync::OnceLock<Arc<Runtime>> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        Runtime::with_options(
            &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache-metered"),
            sluice_runtime::RuntimeOptions {
                metering: sluice_runtime::Metering::Always,
                ..Default::default()
            },
        )
        .unwrap()
    })
    .clone()
}

/// A result as text, to compare verdicts across runtimes.
fn verdict(r: &RecordResult) -> String {
    match r {
        RecordResult::Dropped => "dropped".into(),
        RecordResult::Emitted(v) => format!("emitted {}", v.len()),
        RecordResult::Rejected(e) => format!("rejected: {e}"),
        RecordResult::Failed(e) => format!("failed: {e}"),
    }
}

pub(crate) fn config(
    plugin: &str,
    config: &[(&str, &str)],
    outputs: &[&str],
    limits: Limits,
    logs: Arc<Logs>,
) -> Arc<InstanceConfig> {
    Arc::new(InstanceConfig {
        plugin: plugin.into(),
        version: 1,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        limits,
        tables: Arc::new(MapTables(HashMap::new())),
        tables_allowed: Vec::new(),
        logs,
        recycle_after: 1000,
    })
}

/// Runs records through the executor as a partition task does: when a run stops early
/// (its time budget spent isolating failures), the rest is the next run. Topic, partition
/// and offsets are the native harness's, so both see the same records.
fn run(ex: &mut Executor, records: &[TestRecord]) -> Vec<RecordResult> {
    let mut results = Vec::new();
    while results.len() < records.len() {
        let rest = &records[results.len()..];
        let (ctx, bytes) = encode_batch(rest);
        let out = ex.run(&BatchInput::records(
            &ctx.topic,
            ctx.partition,
            results.len() as i64,
            ctx.base_timestamp,
            bytes::Bytes::from(bytes.clone()),
            ctx.record_count,
        ));
        assert!(
            out.done > 0 || out.early == Some(sluice_runtime::Early::Failed),
            "a run made no progress"
        );
        assert_ne!(out.early, Some(sluice_runtime::Early::Interrupted));
        let mut r = out.per_record(rest.len());
        r.truncate(out.done as usize);
        results.extend(r);
    }
    results
}

fn to_outcome(r: &RecordResult, outputs: &[String], timestamp: i64) -> TestOutcome {
    match r {
        RecordResult::Dropped => TestOutcome::Dropped,
        RecordResult::Rejected(reason) => TestOutcome::Rejected(reason.clone()),
        RecordResult::Failed(reason) => panic!("record failed: {reason}"),
        RecordResult::Emitted(v) => TestOutcome::Emitted(
            v.iter()
                .map(|e| {
                    let r = e.view().unwrap();
                    Emitted {
                        output: outputs[e.output as usize].clone(),
                        key: r.key.map(<[u8]>::to_vec),
                        value: r.value.map(<[u8]>::to_vec),
                        headers: r
                            .headers()
                            .map(|h| (h.key_str().to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect(),
                        timestamp: timestamp.max(e.timestamp()),
                    }
                })
                .collect(),
        ),
    }
}

fn run_table(rt: &Arc<Runtime>, name: &str, component: &[u8], table: &str) {
    let compiled = rt.compile(component).unwrap();
    for suite in load_suites(table) {
        let Suite {
            config: cfg,
            outputs,
            ..
        } = suite.clone();
        let env = suite.env();
        let outputs = if outputs.is_empty() {
            vec!["output".to_string()]
        } else {
            outputs
        };
        let ic = Arc::new(InstanceConfig {
            plugin: name.into(),
            version: 1,
            config: cfg.into_iter().collect::<BTreeMap<_, _>>(),
            outputs: outputs.clone(),
            limits: Limits::default(),
            tables_allowed: env.tables.keys().cloned().collect(),
            tables: Arc::new(MapTables(env.tables)),
            logs: Arc::new(Logs::default()),
            recycle_after: 1000,
        });
        let mut ex = rt.executor(compiled.clone(), ic, 0).unwrap();
        let records = suite.records();
        let got: Vec<TestOutcome> = run(&mut ex, &records)
            .iter()
            .map(|r| to_outcome(r, &outputs, records[0].timestamp))
            .collect();
        suite
            .check(&got)
            .unwrap_or_else(|e| panic!("{name} through the runtime: {e}"));
    }
}

/// The Python and JavaScript `filter` and `mask` (sdk-python/examples with componentize-py,
/// sdk-js/examples with componentize-js) pass the Rust plugins' case tables through the
/// real runtime, with the default limits.
#[test]
fn python_and_js_examples_pass_the_shared_case_tables_as_components() {
    let (_d, rt) = runtime();
    let filter = include_str!("../../../plugins/filter/cases.json");
    let mask = include_str!("../../../plugins/mask/cases.json");
    let py = |name: &str| sluice_tests::python_plugin(&format!("sdk-python/examples/{name}"));
    run_table(&rt, "filter-py", &py("filter"), filter);
    run_table(&rt, "mask-py", &py("mask"), mask);
    let js = |name: &str| sluice_tests::js_plugin(&format!("sdk-js/examples/{name}"));
    run_table(&rt, "filter-js", &js("filter"), filter);
    run_table(&rt, "mask-js", &js("mask"), mask);
}

#[test]
fn example_plugins_pass_their_case_tables_as_components() {
    let (_d, rt) = runtime();
    run_table(
        &rt,
        "mask",
        sluice::plugins::MASK,
        include_str!("../../../plugins/mask/cases.json"),
    );
    run_table(
        &rt,
        "filter",
        sluice::plugins::FILTER,
        include_str!("../../../plugins/filter/cases.json"),
    );
    run_table(
        &rt,
        "enrich",
        sluice::plugins::ENRICH,
        include_str!("../../../plugins/enrich/cases.json"),
    );
    run_table(
        &rt,
        "route",
        sluice::plugins::ROUTE,
        include_str!("../../../plugins/route/cases.json"),
    );
    // Exact ciphertexts: the wasm build seals byte for byte as the native one.
    run_table(
        &rt,
        "encrypt",
        sluice::plugins::ENCRYPT,
        include_str!("../../../plugins/encrypt/cases.json"),
    );
    run_table(
        &rt,
        "decrypt",
        sluice::plugins::DECRYPT,
        include_str!("../../../plugins/decrypt/cases.json"),
    );
    run_table(
        &rt,
        "nexmark-stateless",
        sluice::plugins::NEXMARK_STATELESS,
        include_str!("../../../plugins/nexmark-stateless/cases.json"),
    );
}

/// A component built against `sluice:transform@0.1.0` (before state and timers; kept
/// prebuilt in tests/prebuilt) still runs unchanged, and passes its case table.
#[test]
fn components_built_for_the_0_1_contract_keep_working() {
    let (_d, rt) = runtime();
    let old = include_bytes!("../../prebuilt/enrich-v0.1.wasm");
    let compiled = rt.compile(old).unwrap();
    assert_eq!(compiled.world(), sluice_runtime::World::V0_1);
    assert!(!compiled.stateful());
    run_table(
        &rt,
        "enrich",
        old,
        include_str!("../../../plugins/enrich/cases.json"),
    );
    let new = rt.compile(sluice::plugins::ENRICH).unwrap();
    assert_eq!(new.world(), sluice_runtime::World::V0_2);
    assert!(
        !new.stateful(),
        "state is imported only by plugins that use it"
    );
    assert!(
        rt.compile(sluice::plugins::WINDOW_COUNT)
            .unwrap()
            .stateful()
    );
    // Built against 0.2.0: its imports resolve semver-compatibly to the 0.2.2 host.
    let v020 = rt
        .compile(include_bytes!("../../prebuilt/window-count-v0.2.0.wasm"))
        .unwrap();
    assert_eq!(v020.world(), sluice_runtime::World::V0_2);
    assert!(v020.stateful());
}

fn poison_batch() -> Vec<TestRecord> {
    ["a", "b", "POISON-1", "c", "d", "e", "f", "g"]
        .iter()
        .map(|v| TestRecord::value(*v))
        .collect()
}

/// Runs `mode` over a batch with one poison record; everything else must flow, with the
/// same verdicts whether fuel is metered on every call or only when isolating.
fn contained(mode: &str, limits: Limits, expect: &str) {
    let (_d, rt) = runtime();
    let fast = contained_on(&rt, mode, limits.clone(), expect);
    let metered = contained_on(&runtime_always_metered(), mode, limits, expect);
    assert_eq!(fast, metered, "{mode}: verdicts differ");
}

fn contained_on(rt: &Arc<Runtime>, mode: &str, limits: Limits, expect: &str) -> Vec<String> {
    let compiled = rt.compile(fixtures::MISBEHAVE).unwrap();
    let logs = Arc::new(Logs::default());
    let mut ex = rt
        .executor(
            compiled,
            config("misbehave", &[("mode", mode)], &["out"], limits, logs),
            3,
        )
        .unwrap();
    let start = Instant::now();
    let results = run(&mut ex, &poison_batch());
    let took = start.elapsed();
    for (i, r) in results.iter().enumerate() {
        if i == 2 {
            match r {
                RecordResult::Failed(reason) => {
                    assert!(reason.contains(expect), "{mode}: {reason}")
                }
                other => panic!("{mode}: poison record gave {other:?}"),
            }
        } else {
            assert!(
                matches!(r, RecordResult::Emitted(v) if v.len() == 1),
                "{mode}: record {i}: {r:?}"
            );
        }
    }
    assert!(took < Duration::from_secs(30), "{mode} took {took:?}");
    // The executor keeps working on a fresh instance.
    let again = run(&mut ex, &[TestRecord::value("fine")]);
    assert!(
        matches!(&again[0], RecordResult::Emitted(_)),
        "{mode}: {again:?}"
    );
    results.iter().map(verdict).collect()
}

/// The values `find_in_json` runs on in [`find_in_json_answers_in_wasm_as_the_contract_says`],
/// with what it must report for each (digits, members named `password`).
fn json_find_cases() -> Vec<(String, String)> {
    let at = |v: &str, what: &str| {
        let s = v.find(what).unwrap();
        format!("{s}-{}", s + what.len())
    };
    let r0 = r#"{"user":"u1","password":"hunter2","note":"call 555-1234"}"#;
    let r3 = r#"{"password":{"pin":1234},"n":[5],"k9":"v"}"#;
    // The digit of "u1" (a string value; keys are not searched).
    let u1 = r0.find("u1").unwrap() + 1;
    vec![
        (
            r0.into(),
            format!(
                "T0:{u1}-{},MString:{},T0:{},T0:{}",
                u1 + 1,
                at(r0, "hunter2"),
                at(r0, "555"),
                at(r0, "1234")
            ),
        ),
        ("plain 42 text".into(), "T0:6-8".into()),
        (r#"{"a":"x\"y 7"}"#.into(), "E".into()),
        (r3.into(), format!("MObject:{}", at(r3, r#"{"pin":1234}"#))),
        ("no digits here".into(), String::new()),
    ]
}

#[test]
fn find_in_json_answers_in_wasm_as_the_contract_says() {
    let (_d, rt) = runtime();
    let compiled = rt.compile(fixtures::MISBEHAVE).unwrap();
    let logs = Arc::new(Logs::default());
    let mut ex = rt
        .executor(
            compiled,
            config(
                "misbehave",
                &[("mode", "json_find")],
                &["out"],
                Limits::default(),
                logs,
            ),
            0,
        )
        .unwrap();
    let cases = json_find_cases();
    // Twice, in two orders: each batch is one host call, read record by record.
    for order in [vec![0, 1, 2, 3, 4], vec![3, 4, 0, 2, 1, 0]] {
        let records: Vec<TestRecord> = order
            .iter()
            .map(|&i| TestRecord::value(cases[i].0.as_str()))
            .collect();
        let results = run(&mut ex, &records);
        for (r, &i) in results.iter().zip(&order) {
            let RecordResult::Emitted(v) = r else {
                panic!("case {i}: {r:?}");
            };
            let got = v[0].view().unwrap().value.unwrap_or_default();
            assert_eq!(
                String::from_utf8_lossy(got),
                cases[i].1,
                "case {i}: {}",
                cases[i].0
            );
        }
    }
}

#[test]
fn a_splice_that_does_not_fit_its_value_fails_that_record_alone() {
    contained(
        "bad_splice",
        Limits::default(),
        "splice span 3..10000 of a 8-byte value",
    );
}

#[test]
fn infinite_loop_is_stopped_by_fuel() {
    contained(
        "loop",
        Limits {
            fuel_per_record: 1_000_000,
            // Unmetered calls end at the deadline; the isolated record meets its fuel.
            timeout_ms: 500,
            ..Limits::default()
        },
        "fuel exhausted",
    );
}

#[test]
fn infinite_loop_is_stopped_by_the_wall_clock() {
    let limits = Limits {
        fuel_per_record: u64::MAX / 64,
        timeout_ms: 100,
        ..Limits::default()
    };
    contained("loop", limits, "timed out");
}

#[test]
fn memory_hog_hits_the_memory_limit() {
    let limits = Limits {
        memory_bytes: 16 << 20,
        fuel_per_record: u64::MAX / 64,
        ..Limits::default()
    };
    contained("memhog", limits, "memory limit of 16777216 bytes");
}

#[test]
fn unbounded_recursion_overflows_the_stack() {
    contained(
        "recurse",
        Limits {
            fuel_per_record: u64::MAX / 64,
            ..Limits::default()
        },
        "stack overflow",
    );
}

#[test]
fn panic_on_a_marker_record_is_isolated_with_its_message() {
    contained("panic", Limits::default(), "poison record POISON-1");
}

#[test]
fn output_flood_hits_the_per_record_limit() {
    contained("flood", Limits::default(), "emitted more than 100 records");
}

/// The host's `text` primitives are bounded like the plugin's own code: their work counts
/// against a budget per record (the poison record is isolated by it deterministically), an
/// instance holds a bounded number of pattern sets, and a pattern whose automaton would be
/// huge is refused at compile time — each an error the plugin sees, not a host failure.
#[test]
fn text_primitives_are_bounded() {
    contained(
        "text_flood",
        Limits {
            fuel_per_record: 5_000_000,
            ..Limits::default()
        },
        "host work limit of 5000000 units exceeded",
    );
    for (mode, expect) in [
        ("pattern_hoard", "at most 256 pattern sets"),
        ("pattern_bomb", "invalid pattern"),
    ] {
        let (_d, rt) = runtime();
        let compiled = rt.compile(fixtures::MISBEHAVE).unwrap();
        let cfg = config(
            "misbehave",
            &[("mode", mode)],
            &["out"],
            Limits::default(),
            Arc::new(Logs::default()),
        );
        let mut ex = rt.executor(compiled, cfg, 0).unwrap();
        let results = run(&mut ex, &poison_batch());
        for (i, r) in results.iter().enumerate() {
            match r {
                RecordResult::Rejected(reason) if i == 2 => {
                    assert!(reason.contains(expect), "{mode}: {reason}")
                }
                RecordResult::Emitted(v) if i != 2 && v.len() == 1 => {}
                other => panic!("{mode}: record {i} gave {other:?}"),
            }
        }
    }
}

#[test]
fn failing_init_is_reported() {
    let (_d, rt) = runtime();
    let compiled = rt.compile(fixtures::MISBEHAVE).unwrap();
    let cfg = config(
        "misbehave",
        &[("mode", "fail_init")],
        &["out"],
        Limits::default(),
        Arc::default(),
    );
    let e = rt.executor(compiled, cfg, 0).unwrap_err();
    assert!(e.to_string().contains("refusing to start"), "{e}");
}

#[test]
fn wasi_probe_sees_no_files_env_or_args() {
    let (_d, rt) = runtime();
    let compiled = rt.compile(fixtures::MISBEHAVE).unwrap();
    let cfg = config(
        "misbehave",
        &[("mode", "probe")],
        &["out"],
        Limits::default(),
        Arc::default(),
    );
    let mut ex = rt.executor(compiled, cfg, 0).unwrap();
    let r = run(&mut ex, &[TestRecord::value("x")]);
    let RecordResult::Emitted(v) = &r[0] else {
        panic!("{r:?}")
    };
    let report: serde_json::Value =
        serde_json::from_slice(v[0].view().unwrap().value.unwrap()).unwrap();
    assert!(
        report["file"].as_str().unwrap().starts_with("error"),
        "{report}"
    );
    assert!(
        report["dir"].as_str().unwrap().starts_with("error"),
        "{report}"
    );
    assert_eq!(report["env"], serde_json::json!([]), "{report}");
    assert_eq!(report["args"], serde_json::json!([]), "{report}");
    // Clocks are allowed: wall-clock time is real.
    assert!(
        report["clock_secs"].as_u64().unwrap() > 1_700_000_000,
        "{report}"
    );
}

#[test]
fn plugin_logs_and_stdout_become_tagged_log_lines() {
    let (_d, rt) = runtime();
    let compiled = rt.compile(fixtures::MISBEHAVE).unwrap();
    let logs = Arc::new(Logs::default());
    let cfg = config(
        "misbehave",
        &[("mode", "log")],
        &["out"],
        Limits::default(),
        logs.clone(),
    );
    let mut ex = rt.executor(compiled, cfg, 7).unwrap();
    run(&mut ex, &[TestRecord::value("hello")]);
    let lines = logs.0.lock().unwrap().clone();
    let info = lines
        .iter()
        .find(|l| l.level == "info")
        .expect("log import line");
    assert_eq!(
        (info.message.as_str(), info.partition, info.offset),
        ("saw hello", 7, Some(0))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.level == "stdout" && l.message == "stdout hello"),
        "{lines:?}"
    );
}

#[test]
fn uploads_that_are_not_transform_components_are_refused_with_reasons() {
    let (_d, rt) = runtime();
    let e = rt.compile(b"definitely not wasm").unwrap_err().to_string();
    assert!(e.contains("not a WebAssembly component"), "{e}");
    let e = rt.compile(b"\0asm\x01\0\0\0").unwrap_err().to_string();
    assert!(e.contains("core WebAssembly module"), "{e}");
    let e = rt.compile(fixtures::OTHER_WORLD).unwrap_err().to_string();
    assert!(
        e.contains("does not implement the sluice:transform/transform world"),
        "{e}"
    );
}

/// A component that imports `wasi:sockets` links (every Python component does), but the
/// network stays out of reach: its first socket call traps, and the record that made it
/// goes to the dead letters with a reason that says so.
#[test]
fn the_network_is_out_of_reach_even_for_components_that_import_sockets() {
    let (_d, rt) = runtime();
    let compiled = rt.compile(fixtures::NET_PROBE).unwrap();
    let cfg = config(
        "net-probe",
        &[],
        &["out"],
        Limits::default(),
        Arc::new(Logs::default()),
    );
    let mut ex = rt.executor(compiled, cfg, 0).unwrap();
    let results = run(&mut ex, &[TestRecord::value("x")]);
    match &results[0] {
        RecordResult::Failed(reason) => assert!(
            reason.contains("the plugin used the network (wasi:sockets/"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn compiled_components_are_cached_across_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let a = Runtime::new(dir.path())
        .unwrap()
        .compile(sluice::plugins::MASK)
        .unwrap();
    let cold = t.elapsed();
    // The fast engine's artifact at once; the fuel-metered one's is built in the
    // background after the upload.
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let cached = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            })
            .count();
        if cached == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two artifacts in the cache: the fast engine's and the fuel-metered one's ({cached})"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let t = Instant::now();
    let b = Runtime::new(dir.path())
        .unwrap()
        .compile(sluice::plugins::MASK)
        .unwrap();
    let warm = t.elapsed();
    assert_eq!(a.digest, b.digest);
    assert!(a.digest.starts_with("sha256:"));
    eprintln!("mask compile: cold {cold:?}, cached {warm:?}");
}

/// Runs the hostile plugin's `mode` over `[a, POISON, b]` and returns the poison record's
/// failure (the others must pass).
fn hostile_failure(mode: &str, limits: Limits) -> String {
    let r = hostile_results(mode, limits);
    assert!(matches!(&r[0], RecordResult::Emitted(_)), "{mode}: {r:?}");
    assert!(matches!(&r[2], RecordResult::Emitted(_)), "{mode}: {r:?}");
    match &r[1] {
        RecordResult::Failed(reason) => reason.clone(),
        other => panic!("{mode}: {other:?}"),
    }
}

/// The hostile plugin's `mode` over `[a, POISON, b]`, the same with fuel on every call
/// and only when isolating.
fn hostile_results(mode: &str, limits: Limits) -> Vec<RecordResult> {
    let (_d, rt) = runtime();
    let fast = hostile_results_on(&rt, mode, limits.clone());
    let metered = hostile_results_on(&runtime_always_metered(), mode, limits);
    assert_eq!(
        fast.iter().map(verdict).collect::<Vec<_>>(),
        metered.iter().map(verdict).collect::<Vec<_>>(),
        "{mode}: verdicts differ"
    );
    fast
}

fn hostile_results_on(rt: &Arc<Runtime>, mode: &str, limits: Limits) -> Vec<RecordResult> {
    let compiled = rt.compile(fixtures::HOSTILE).unwrap();
    let cfg = config(
        "hostile",
        &[("mode", mode)],
        &["out"],
        limits,
        Arc::default(),
    );
    let mut ex = rt.executor(compiled, cfg, 0).unwrap();
    run(
        &mut ex,
        &[
            TestRecord::value("a"),
            TestRecord::value("POISON"),
            TestRecord::value("b"),
        ],
    )
}

#[test]
fn trap_reasons_name_the_real_cause() {
    let unlimited = Limits {
        fuel_per_record: u64::MAX / 64,
        ..Limits::default()
    };
    // Memory errors that are not the memory limit are not reported as it.
    let e = hostile_failure("oob_read", unlimited.clone());
    assert_eq!(e, "trap: out-of-bounds memory access");
    let e = hostile_failure("huge_log", unlimited.clone());
    assert!(
        e.starts_with("plugin broke the call's contract:") && !e.contains("memory limit"),
        "{e}"
    );
    let e = hostile_failure("bad_output_ptr", unlimited.clone());
    assert!(
        e.starts_with("plugin broke the call's contract:") && !e.contains("memory limit"),
        "{e}"
    );
    let e = hostile_failure(
        "memhog",
        Limits {
            memory_bytes: 16 << 20,
            ..unlimited.clone()
        },
    );
    assert!(
        e.starts_with("memory limit of 16777216 bytes exceeded (the plugin asked for "),
        "{e}"
    );
    // Every record burns: the batch's first call had 3 × the budget; alone, each record
    // has its own, and its own message.
    let burn = |limits| {
        hostile_results("burn", limits)
            .into_iter()
            .map(|r| match r {
                RecordResult::Failed(e) => e,
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };
    let e = burn(Limits {
        fuel_per_record: 2_000_000,
        timeout_ms: 500,
        ..Limits::default()
    });
    assert_eq!(
        e,
        vec!["fuel exhausted: limit 2000000 per record (2000000 for this call of 1 record(s))"; 3]
    );
    let e = burn(Limits {
        timeout_ms: 50,
        ..unlimited.clone()
    });
    assert_eq!(e, vec!["timed out: limit 50 ms per call"; 3]);
}

#[test]
fn init_limits_report_their_own_numbers() {
    // Instances for normal calls run init without fuel: its deadline bounds it.
    let (_d, rt) = runtime();
    let compiled = rt.compile(fixtures::HOSTILE).unwrap();
    let burn_init = |limits| {
        config(
            "hostile",
            &[("mode", "burn_init")],
            &["out"],
            limits,
            Arc::default(),
        )
    };
    let e = rt
        .executor(
            compiled.clone(),
            burn_init(Limits {
                init_timeout_ms: 300,
                ..Limits::default()
            }),
            0,
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "plugin init failed: timed out during init: limit 300 ms (init_timeout_ms)"
    );
    // Metered instances (every instance with fuel on every call) have INIT_FUEL.
    let metered = runtime_always_metered();
    let e = metered
        .executor(
            metered.compile(fixtures::HOSTILE).unwrap(),
            burn_init(Limits::default()),
            0,
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "plugin init failed: fuel exhausted during init: limit {}",
            sluice_runtime::INIT_FUEL
        )
    );
    let cfg = config(
        "hostile",
        &[("mode", "sleep_init")],
        &["out"],
        Limits {
            init_timeout_ms: 200,
            ..Limits::default()
        },
        Arc::default(),
    );
    let e = rt.executor(compiled, cfg, 0).unwrap_err().to_string();
    assert_eq!(
        e,
        "plugin init failed: timed out during init: limit 200 ms (init_timeout_ms) (blocked in a WASI call)"
    );
}

#[test]
fn strings_from_plugins_are_cut_to_the_documented_size() {
    let (_d, rt) = runtime();
    let compiled = rt.compile(fixtures::HOSTILE).unwrap();
    let limit = sluice_runtime::MAX_HOST_STRING;
    let marker = sluice_runtime::CUT_MARKER;
    // Reject reasons.
    let cfg = config(
        "hostile",
        &[("mode", "huge_reason")],
        &["out"],
        Limits::default(),
        Arc::default(),
    );
    let mut ex = rt.executor(compiled.clone(), cfg, 0).unwrap();
    let r = run(&mut ex, &[TestRecord::value("POISON")]);
    let RecordResult::Rejected(reason) = &r[0] else {
        panic!("{r:?}")
    };
    assert!(
        reason.len() <= limit && reason.ends_with(marker),
        "{}",
        reason.len()
    );
    // Init errors.
    let cfg = config(
        "hostile",
        &[("mode", "huge_init_error")],
        &["out"],
        Limits::default(),
        Arc::default(),
    );
    let e = rt
        .executor(compiled.clone(), cfg, 0)
        .unwrap_err()
        .to_string();
    assert!(e.len() <= limit + 40 && e.ends_with(marker), "{}", e.len());
    // Log lines.
    let logs = Arc::new(Logs::default());
    let cfg = config(
        "hostile",
        &[("mode", "huge_log_line")],
        &["out"],
        Limits::default(),
        logs.clone(),
    );
    let mut ex = rt.executor(compiled, cfg, 0).unwrap();
    run(&mut ex, &[TestRecord::value("x")]);
    let lines = logs.0.lock().unwrap();
    let line = lines.iter().find(|l| l.level == "info").unwrap();
    assert!(
        line.message.len() <= limit && line.message.ends_with(marker),
        "{}",
        line.message.len()
    );
}

/// Records of every format `mask` meets, generated: valid JSON, text with secrets, lines
/// that look like JSON and are not, binary values, non-ASCII text.
fn generated_records(n: usize) -> Vec<TestRecord> {
    const PIECES: [&str; 30] = [
        "Password: ",
        "hunter2",
        "token=",
        "abc",
        " ",
        ", ",
        "user@example.com",
        "4111 1111 1111 1111",
        "5500-0000-0000-0004",
        "{",
        "}",
        "\"",
        ":",
        "api_key",
        "=",
        "caf\u{e9}",
        "\u{1f600}",
        "x",
        "1234567890123",
        "secret",
        "\"password\":",
        "\"pw\"",
        "[",
        "]",
        ",",
        "null",
        "12",
        "\\",
        "API-Key: ",
        "\t",
    ];
    const KEYS: [&str; 6] = ["password", "apiKey", "user", "note", "email", "n"];
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..n)
        .map(|i| {
            let len = (next() % 12) as usize;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            match i % 5 {
                0 => {
                    let mut doc = serde_json::Map::new();
                    for _ in 0..(next() % 5) {
                        let k = KEYS[(next() % KEYS.len() as u64) as usize];
                        doc.insert(k.into(), serde_json::Value::String(text.clone()));
                    }
                    TestRecord::value(serde_json::Value::Object(doc).to_string())
                }
                1 | 4 => TestRecord::value(text),
                2 => TestRecord::value(format!("{{\"a\":{text}")),
                _ => TestRecord::value((0..len * 9).map(|_| next() as u8).collect::<Vec<u8>>()),
            }
        })
        .collect()
}

/// `mask` as a component and the same code natively give the same output, record for
/// record, on every format (the scanners' fast paths included).
#[test]
fn mask_in_wasm_agrees_with_mask_natively() {
    let (_d, rt) = runtime();
    let compiled = rt.compile(sluice::plugins::MASK).unwrap();
    let cfg = config("mask", &[], &["out"], Limits::default(), Arc::default());
    let mut ex = rt.executor(compiled, cfg, 0).unwrap();
    let native = sluice_sdk::testing::Harness::with_init(mask::setup, mask::mask).outputs(&["out"]);
    let records = generated_records(5000);
    let mut masked = 0;
    for chunk in records.chunks(500) {
        let want = native.run(chunk);
        for ((r, rec), w) in run(&mut ex, chunk).iter().zip(chunk).zip(&want) {
            let got = to_outcome(r, &["out".into()], rec.timestamp);
            assert_eq!(
                &got,
                w,
                "{:?}",
                rec.value.as_deref().map(String::from_utf8_lossy)
            );
            masked += usize::from(w.values().first().is_some_and(|v| v.contains("****")));
        }
    }
    assert!(masked > 500, "only {masked} records had anything masked");
}
