//! Plugin runtime benchmarks: `mask` as a component vs the same code natively, the identity
//! plugin's rate and per-record boundary cost, fuel metering on vs off, instantiation, and
//! cold compile vs cached load. Run: `cargo bench -p sluice-tests --bench runtime`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_runtime::{
    BatchInput, Executor, InstanceConfig, Limits, NoTables, RecordResult, Runtime, TracingLogs,
};
use sluice_sdk::testing::{TestRecord, encode_batch};

const BATCH: usize = 1000;

/// ~150-byte values of one format, each with something to mask: `json` (valid JSON with
/// a password and an e-mail), `text` (`User: …, Password: …`, the README's log line),
/// `unicode` (the same with accents and a symbol),
/// `invalid` (a line that looks like JSON but is not), `binary` (not UTF-8).
fn records_of(format: &str) -> Vec<TestRecord> {
    (0..BATCH)
        .map(|i| {
            let mut v = match format {
                "json" => format!(
                    "{{\"user_id\":\"u-{}\",\"action\":\"login\",\"password\":\"hunter{i}\",\"email\":\"user{i}@example.com\",\"n\":{i}",
                    i % 97
                ),
                "text" => format!(
                    "2026-11-30T10:00:{:02} INFO login ok User: u-{}, Password: hunter{i}, from 10.0.{}.{}",
                    i % 60,
                    i % 97,
                    i % 7,
                    i % 250
                ),
                "unicode" => format!(
                    "2026-11-30T10:00:{:02} INFO connexion r\u{e9}ussie pour Zo\u{eb} u-{}, Password: hunter{i} \u{2615} caf\u{e9}",
                    i % 60,
                    i % 97
                ),
                "invalid" => format!(
                    "{{\"user\":\"u-{}\",\"Password: hunter{i}\", \"mail\": user{i}@example.com",
                    i % 97
                ),
                _ => {
                    let mut b: Vec<u8> = (0..150u32)
                        .map(|k| (k.wrapping_mul(2_654_435_761).wrapping_add(i as u32) >> 13) as u8 | 0x80)
                        .collect();
                    b[0] = 0xff;
                    return TestRecord::value(b);
                }
            };
            let close = if format == "json" { "}" } else { "" };
            while v.len() + close.len() < 150 {
                v.push(' ');
            }
            v.push_str(close);
            TestRecord::value(v)
        })
        .collect()
}

fn cfg(plugin: &str, config: &[(&str, &str)]) -> Arc<InstanceConfig> {
    Arc::new(InstanceConfig {
        plugin: plugin.into(),
        version: 1,
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        outputs: vec!["out".into()],
        limits: Limits::default(),
        tables: Arc::new(NoTables),
        tables_allowed: Vec::new(),
        logs: Arc::new(TracingLogs),
        recycle_after: u64::MAX,
    })
}

/// Runs batches for about `secs`; returns records/s.
fn rate(ex: &mut Executor, bytes: &[u8], base_ts: i64, secs: f64) -> (f64, u64) {
    let input = BatchInput::records(
        "bench",
        0,
        0,
        base_ts,
        bytes::Bytes::copy_from_slice(bytes),
        BATCH as u32,
    );
    let check = ex.run(&input);
    assert!(
        check
            .per_record(BATCH)
            .iter()
            .all(|r| matches!(r, RecordResult::Emitted(_)))
    );
    let start = Instant::now();
    let (mut n, mut fuel) = (0u64, 0u64);
    let mut reported = false;
    while start.elapsed().as_secs_f64() < secs {
        let out = ex.run(&input);
        if out.traps > 0 && !reported && std::env::var_os("SLUICE_BENCH_DEBUG").is_some() {
            println!("  (run {n}: {} traps: {:?})", out.traps, out.trap_reasons);
            reported = true;
        }
        fuel += out.fuel_used;
        n += BATCH as u64;
    }
    (n as f64 / start.elapsed().as_secs_f64(), fuel / n.max(1))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // `SLUICE_BENCH_FORMAT` picks the records of the headline numbers (and of profiles).
    let recs = records_of(&std::env::var("SLUICE_BENCH_FORMAT").unwrap_or_else(|_| "json".into()));
    let (ctx, bytes) = encode_batch(&recs);
    println!(
        "batches of {BATCH} records, {} bytes per record on average",
        bytes.len() / BATCH
    );

    // Native: the same mask code and the same SDK batch plumbing, compiled for the host.
    let masker = mask::Masker::from_config(|_| None).unwrap();
    let native_mask = |ctx: &sluice_sdk::BatchContext, bytes: &[u8], dur: Duration| {
        let mut out = Vec::new();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < dur {
            out.clear();
            sluice_sdk::run_batch(ctx, bytes, &mut out, &Vec::new, |r| mask::mask(&masker, r))
                .unwrap();
            n += BATCH as u64;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let native_rate = || native_mask(&ctx, &bytes, Duration::from_secs(1));

    let rt = Runtime::new(dir.path()).unwrap();
    let t = Instant::now();
    let mask_c = rt.compile(sluice::plugins::MASK).unwrap();
    let cold = t.elapsed();
    let rt2 = Runtime::new(dir.path()).unwrap();
    let t = Instant::now();
    rt2.compile(sluice::plugins::MASK).unwrap();
    let cached = t.elapsed();

    if std::env::var("SLUICE_BENCH_ONLY").as_deref() == Ok("encrypt") {
        bench_encrypt(&rt);
        return;
    }
    if std::env::var("SLUICE_BENCH_ONLY").as_deref() == Ok("identity") {
        let id_c = rt.compile(sluice_tests::fixtures::IDENTITY).unwrap();
        let mut ex = rt.executor(id_c, cfg("identity", &[]), 0).unwrap();
        let (r, _) = rate(&mut ex, &bytes, ctx.base_timestamp, 8.0);
        println!("identity wasm component {r:.0} records/s");
        return;
    }
    let mut ex = rt.executor(mask_c.clone(), cfg("mask", &[]), 0).unwrap();
    if std::env::var("SLUICE_BENCH_ONLY").as_deref() == Ok("mask") {
        // For profiling the component alone: `SLUICE_WASM_PROFILE=perfmap perf record ...`.
        let (r, _) = rate(&mut ex, &bytes, ctx.base_timestamp, 8.0);
        println!("mask wasm component {r:.0} records/s");
        return;
    }
    // Native and wasm alternate, best of three each, so machine noise hits both alike.
    let (mut native, mut wasm) = (0f64, 0f64);
    for _ in 0..3 {
        native = native.max(native_rate());
        let (w, _) = rate(&mut ex, &bytes, ctx.base_timestamp, 1.0);
        wasm = wasm.max(w);
    }
    println!("mask native (same SDK batch path)     {native:>12.0} records/s");
    println!(
        "mask wasm component (fuel on retry)   {wasm:>12.0} records/s  = {:.0}% of native",
        wasm / native * 100.0
    );
    // Every input format: the same comparison.
    for format in ["json", "text", "unicode", "invalid", "binary"] {
        let recs = records_of(format);
        let (fctx, fbytes) = encode_batch(&recs);
        let native_f = || native_mask(&fctx, &fbytes, Duration::from_millis(700));
        let (mut nat, mut w) = (0f64, 0f64);
        for _ in 0..3 {
            nat = nat.max(native_f());
            w = w.max(rate(&mut ex, &fbytes, fctx.base_timestamp, 0.7).0);
        }
        println!(
            "mask {format:<8} native {nat:>10.0}/s  wasm {w:>10.0}/s  = {:.0}% of native",
            w / nat * 100.0
        );
    }

    let id_c = rt.compile(sluice_tests::fixtures::IDENTITY).unwrap();
    let mut ex = rt.executor(id_c.clone(), cfg("identity", &[]), 0).unwrap();
    let (id, _) = rate(&mut ex, &bytes, ctx.base_timestamp, 3.0);
    println!(
        "identity wasm component               {id:>12.0} records/s  = {:.1} ns/record",
        1e9 / id
    );

    // Fuel on every call, as before fuel moved to isolation calls only.
    let rt_always = Runtime::with_options(
        &dir.path().join("always"),
        sluice_runtime::RuntimeOptions {
            metering: sluice_runtime::Metering::Always,
            ..Default::default()
        },
    )
    .unwrap();
    let mask_a = rt_always.compile(sluice::plugins::MASK).unwrap();
    let mut ex = rt_always.executor(mask_a, cfg("mask", &[]), 0).unwrap();
    let (wasm_always, mask_fuel) = rate(&mut ex, &bytes, ctx.base_timestamp, 3.0);
    let id_a = rt_always.compile(sluice_tests::fixtures::IDENTITY).unwrap();
    let mut ex = rt_always.executor(id_a, cfg("identity", &[]), 0).unwrap();
    let (id_always, id_fuel) = rate(&mut ex, &bytes, ctx.base_timestamp, 3.0);
    println!(
        "fuel on every call (Metering::Always): mask {wasm_always:.0} records/s ({mask_fuel} fuel/record; fuel-free normal calls are {:.1}% faster), identity {id_always:.0} records/s ({id_fuel} fuel/record; {:.1}%)",
        (wasm / wasm_always - 1.0) * 100.0,
        (id / id_always - 1.0) * 100.0
    );

    let n = 200;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(rt.executor(id_c.clone(), cfg("identity", &[]), 0).unwrap());
    }
    println!(
        "instantiate from InstancePre + init:  {:.1} µs (identity), {:.1} µs (mask, compiles its patterns in init)",
        t.elapsed().as_secs_f64() * 1e6 / n as f64,
        {
            let t = Instant::now();
            for _ in 0..20 {
                std::hint::black_box(rt.executor(mask_c.clone(), cfg("mask", &[]), 0).unwrap());
            }
            t.elapsed().as_secs_f64() * 1e6 / 20.0
        }
    );
    // The same mask built from an earlier version of the source (contract 0.2.1: it
    // rewrites values in the guest rather than splicing), for an A/B in one run:
    // `SLUICE_BENCH_OLD_MASK=path/to/mask.wasm`.
    if let Some(old) = std::env::var_os("SLUICE_BENCH_OLD_MASK") {
        let old_c = rt.compile(&std::fs::read(old).unwrap()).unwrap();
        for format in ["json", "text", "invalid"] {
            let (fctx, fbytes) = encode_batch(&records_of(format));
            let mut new_ex = rt.executor(mask_c.clone(), cfg("mask", &[]), 0).unwrap();
            let mut old_ex = rt.executor(old_c.clone(), cfg("mask", &[]), 0).unwrap();
            let (mut a, mut b) = (0f64, 0f64);
            for _ in 0..3 {
                a = a.max(rate(&mut old_ex, &fbytes, fctx.base_timestamp, 0.7).0);
                b = b.max(rate(&mut new_ex, &fbytes, fctx.base_timestamp, 0.7).0);
            }
            println!(
                "mask {format:<8} rewriting (older build) {a:>10.0}/s  splicing {b:>10.0}/s  ({:.2}x)",
                b / a
            );
        }
    }
    println!(
        "mask ({} KiB): cold compile {:.0} ms, cached load {:.1} ms",
        sluice::plugins::MASK.len() / 1024,
        cold.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e3
    );

    bench_encrypt(&rt);

    // The same transform written in Python and JavaScript (sdk-python/examples/mask with
    // componentize-py, sdk-js/examples/mask with componentize-js), through the same
    // runtime: rate per format next to the Rust component, size, compile, instantiate +
    // init, linear memory per instance. `SLUICE_BENCH_PYTHON=0` skips them.
    if std::env::var("SLUICE_BENCH_PYTHON").as_deref() != Ok("0") {
        let mut rust_ex = rt.executor(mask_c.clone(), cfg("mask", &[]), 0).unwrap();
        let t = Instant::now();
        std::hint::black_box(rt.executor(mask_c.clone(), cfg("mask", &[]), 0).unwrap());
        println!(
            "mask Rust component: {} KiB, instantiate + init {:.1} ms, linear memory {} MiB",
            sluice::plugins::MASK.len() / 1024,
            t.elapsed().as_secs_f64() * 1e3,
            rust_ex.memory_bytes() >> 20
        );
        let others = [
            (
                "Python",
                sluice_tests::python_plugin("sdk-python/examples/mask"),
            ),
            ("JS", sluice_tests::js_plugin("sdk-js/examples/mask")),
        ];
        let mut execs = Vec::new();
        for (lang, bytes) in &others {
            let t = Instant::now();
            let compiled = rt.compile(bytes).unwrap();
            let compile = t.elapsed();
            let t = Instant::now();
            let ex = rt
                .executor(compiled.clone(), cfg("mask-other", &[]), 0)
                .unwrap();
            println!(
                "mask {lang} component: {} KiB, compile {:.1} s (both engines), instantiate + init {:.1} ms, linear memory {} MiB",
                bytes.len() / 1024,
                compile.as_secs_f64(),
                t.elapsed().as_secs_f64() * 1e3,
                ex.memory_bytes() >> 20
            );
            // What each further instance costs the server: resident memory over eight
            // more, each having run a batch (the snapshot's pages are shared copy-on-write
            // until written).
            let (rctx, rbytes) = encode_batch(&records_of("json"));
            let before = rss_bytes();
            let more: Vec<Executor> = (0..8)
                .map(|_| {
                    let mut e = rt
                        .executor(compiled.clone(), cfg("mask-other", &[]), 0)
                        .unwrap();
                    rate(&mut e, &rbytes, rctx.base_timestamp, 0.0);
                    e
                })
                .collect();
            println!(
                "mask {lang}: {:.1} MiB resident per further instance (8 instances, a batch each)",
                (rss_bytes().saturating_sub(before)) as f64 / 8.0 / (1 << 20) as f64
            );
            drop(more);
            execs.push((*lang, ex));
        }
        // Another plugin of the same toolchain (the `filter` example): what an upload of a
        // new plugin or version costs once the interpreter's functions are cached.
        for (lang, bytes) in [
            (
                "Python",
                sluice_tests::python_plugin("sdk-python/examples/filter"),
            ),
            ("JS", sluice_tests::js_plugin("sdk-js/examples/filter")),
        ] {
            let t = Instant::now();
            let compiled = rt.compile(&bytes).unwrap();
            let compile = t.elapsed();
            let t2 = Instant::now();
            rt.executor(
                compiled,
                cfg("filter-other", &[("field", "id"), ("op", "exists")]),
                0,
            )
            .unwrap();
            println!(
                "filter {lang} component after mask's: compile {:.1} s, instantiate + init {:.0} ms",
                compile.as_secs_f64(),
                t2.elapsed().as_secs_f64() * 1e3
            );
        }
        for format in ["json", "text", "invalid"] {
            let (fctx, fbytes) = encode_batch(&records_of(format));
            let (r, _) = rate(&mut rust_ex, &fbytes, fctx.base_timestamp, 0.7);
            let mut line = format!("mask {format:<8} Rust {r:>10.0}/s");
            for (lang, ex) in &mut execs {
                let t1 = Instant::now();
                let one = ex.run(&BatchInput::records(
                    "bench",
                    0,
                    0,
                    fctx.base_timestamp,
                    bytes::Bytes::copy_from_slice(&fbytes),
                    BATCH as u32,
                ));
                if one.calls > 1
                    || one.traps > 0
                    || std::env::var_os("SLUICE_BENCH_DEBUG").is_some()
                {
                    println!(
                        "  ({lang} {format}: {:?}, {} calls, done {} {:?}, {} traps: {:?})",
                        t1.elapsed(),
                        one.calls,
                        one.done,
                        one.early,
                        one.traps,
                        one.trap_reasons
                    );
                }
                let (p, _) = rate(ex, &fbytes, fctx.base_timestamp, 2.0);
                line += &format!("  {lang} {p:>8.0}/s ({:.1}% of Rust)", p / r * 100.0);
            }
            println!("{line}");
        }
    }
}

/// The process's resident memory (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `encrypt` (AES-256-GCM, one field) on ~150-byte JSON records, natively and as the
/// component, best of three alternating.
fn bench_encrypt(rt: &Arc<Runtime>) {
    const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let recs: Vec<TestRecord> = (0..BATCH)
        .map(|i| {
            TestRecord::value(format!(
                r#"{{"user":"u{i:06}","email":"user{i:06}@example.com","ssn":"{:03}-{:02}-{:04}","plan":"premium","country":"DE","city":"Berlin","tier":"gold","ts":1764460800000}}"#,
                i % 1000,
                i % 100,
                i % 10_000
            ))
        })
        .collect();
    let (ctx, bytes) = encode_batch(&recs);
    let config = [("fields", "ssn"), ("keys", KEYS)];
    let e = encrypt::Encrypt::from_config(|k| {
        config
            .iter()
            .find(|(c, _)| *c == k)
            .map(|(_, v)| v.to_string())
    })
    .unwrap();
    let native = || {
        let mut out = Vec::new();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(700) {
            out.clear();
            sluice_sdk::run_batch(&ctx, &bytes, &mut out, &Vec::new, |r| {
                encrypt::encrypt(&e, r)
            })
            .unwrap();
            n += BATCH as u64;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let compiled = rt.compile(sluice::plugins::ENCRYPT).unwrap();
    let mut ex = rt.executor(compiled, cfg("encrypt", &config), 0).unwrap();
    let (mut nat, mut w) = (0f64, 0f64);
    for _ in 0..3 {
        nat = nat.max(native());
        w = w.max(rate(&mut ex, &bytes, ctx.base_timestamp, 0.7).0);
    }
    println!(
        "encrypt ({} bytes/record, one field)  native {nat:>10.0}/s  wasm {w:>10.0}/s  = {:.0}% of native",
        bytes.len() / BATCH,
        w / nat * 100.0
    );
}
