//! The admin console (`GET /ui`) in headless Chromium against the real binary: topics,
//! records, plugins, deployments, lag, rollback and dead letters through the page, then
//! over TLS with auth, where a viewer cannot deploy. `scripts/console-test` runs
//! `tests/browser/console.py` (Playwright, Debian's chromium); screenshots of each page go
//! to `$CARGO_TARGET_DIR/console-screenshots`.

use crate::common::Server;
use crate::security::{TOKENS, secure_setup};

#[test]
fn the_console_works_in_a_browser_and_honours_roles_over_tls() {
    let s = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let (config, _) = secure_setup(tmp.path());
    let secure = Server::start_in(
        &tmp.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let token = |who: &str| TOKENS.iter().find(|t| t.0 == who).unwrap().3;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let filter = tmp.path().join("filter.wasm");
    std::fs::write(&filter, sluice::plugins::FILTER).unwrap();
    let filter2 = tmp.path().join("filter2.wasm");
    std::fs::write(
        &filter2,
        sluice_tests::new_build(sluice::plugins::FILTER, "v2"),
    )
    .unwrap();
    let window = tmp.path().join("window-count.wasm");
    std::fs::write(&window, sluice::plugins::WINDOW_COUNT).unwrap();
    let chatty = tmp.path().join("chatty.wasm");
    std::fs::write(&chatty, sluice_tests::fixtures::MISBEHAVE).unwrap();
    let out = std::process::Command::new(root.join("scripts/console-test"))
        .env("CHATTY_WASM", &chatty)
        .env("WINDOW_WASM", &window)
        .env("FILTER2_WASM", &filter2)
        .arg(s.url(""))
        .arg(&filter)
        .arg(target.join("console-screenshots"))
        .arg(secure.url("").replace("http://", "https://"))
        .arg(token("watch"))
        .arg(token("ops"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("console: all steps passed"), "{text}");
}
