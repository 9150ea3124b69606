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

/// A copy of a component with a custom section appended: same code, new digest (a new
/// version of the plugin when uploaded).
pub fn new_build(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"sluice-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    let mut n = payload.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { byte } else { byte | 0x80 });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&payload);
    out
}
