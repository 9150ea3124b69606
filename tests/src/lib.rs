//! End-to-end tests live in `tests/it/`; this library names the fixture plugins that
//! `build.rs` compiles for them.

/// Misbehaving plugins, built for wasm32-wasip2 (test fixtures, never shipped).
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

/// The DSN of the test PostgreSQL server: `SLUICE_TEST_PG_DSN` (scripts/test starts one), or
/// one started (or reused) by `scripts/test-postgres ensure`.
pub fn test_postgres_dsn() -> String {
    if let Ok(d) = std::env::var("SLUICE_TEST_PG_DSN") {
        return d;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-postgres");
    let out = std::process::Command::new(script)
        .arg("ensure")
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/test-postgres: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
