//! The README's plugin walk-through, command for command, against the real binary:
//! scaffold → native test → wasm build and push → deploy → produce → consume.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Server, sluice_bin};

/// Runs a command in `dir`; its stdout, or a panic with what it printed.
fn run(dir: &Path, cmd: &mut Command) -> String {
    let out = cmd.current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_plugin_walk_through_works_as_written() {
    let s = Server::process();
    let tmp = tempfile::tempdir().unwrap();
    // Builds of the scaffolded crate share a target dir across runs (a fresh one per run
    // would rebuild its dependencies every time).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("walkthrough-target");
    let sluice = |args: &[&str]| {
        let mut c = Command::new(sluice_bin());
        c.args(args)
            .env("SLUICE_SERVER", &s.base)
            .env("CARGO_TARGET_DIR", &target);
        c
    };
    let out = run(tmp.path(), &mut sluice(&["plugin", "new", "shout"]));
    assert!(out.contains("created plugin crate shout/"), "{out}");
    let crate_dir = tmp.path().join("shout");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(
        &crate_dir,
        Command::new(&cargo)
            .arg("test")
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS"),
    );
    let out = run(&crate_dir, &mut sluice(&["plugin", "push", "shout"]));
    assert!(out.contains("plugin shout version 1"), "{out}");
    run(&crate_dir, &mut sluice(&["topic", "create", "words"]));
    run(&crate_dir, &mut sluice(&["topic", "create", "loud"]));
    let out = run(
        &crate_dir,
        &mut sluice(&[
            "transform",
            "deploy",
            "shouter",
            "--plugin",
            "shout",
            "--input",
            "words",
            "--output",
            "loud",
        ]),
    );
    assert!(out.contains("transform shouter: running shout v1"), "{out}");
    let mut produce = sluice(&["produce", "words"]);
    produce
        .current_dir(&crate_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = produce.spawn().unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    assert!(child.wait().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(&crate_dir, &mut sluice(&["consume", "loud"]));
        if out == "HELLO\n" {
            break;
        }
        assert!(Instant::now() < deadline, "consume loud printed {out:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = run(&crate_dir, &mut sluice(&["transform", "status", "shouter"]));
    assert!(status.contains("\"records_out\": 1"), "{status}");
}
