//! The README's walk-through, as a newcomer runs it: every `sh` block from "Five-minute
//! walk-through" up to "Connectors", then those of "Schema Registry and data contracts"
//! and "Consumer groups", in
//! order and as written (but those marked
//! `<!-- not run: … -->`), by bash in a fresh directory with `sluice` on the PATH and a
//! fresh server on the default addresses (127.0.0.1:8080, :9092) — then what those
//! commands should have made is checked over the API: the Rust, Python and JavaScript
//! `shout` transforms upper-case a record each, encryption round-trips, and the stateful
//! `window-count` holds alice's count, found by the key she is known by.
//!
//! Commands that follow forever (`--follow`, `curl -N`) are stopped after 3 s, as a reader
//! presses Ctrl-C.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{http, sluice_bin};

/// The `sh` blocks of the README from the section `from` up to `to`, in order.
fn sh_blocks(readme: &str, from: &str, to: &str) -> Vec<String> {
    let start = readme.find(from).expect("README has the section");
    let end = readme[start..].find(to).map_or(readme.len(), |e| start + e);
    let mut blocks = Vec::new();
    let mut lines = readme[start..end].lines().peekable();
    let mut previous = "";
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let mut block = String::new();
            for l in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                block.push_str(l);
                block.push('\n');
            }
            if !previous.trim_start().starts_with("<!-- not run") {
                blocks.push(block);
            }
        }
        previous = line;
    }
    blocks
}

/// A command that never ends on its own is stopped after 3 s (as by Ctrl-C).
fn with_ctrl_c(block: &str) -> String {
    block
        .lines()
        .map(|l| {
            let code = l.split(" #").next().unwrap_or(l).trim_end();
            if code.contains("--follow") || code.starts_with("curl -N") {
                format!("timeout 3 {code} || [ $? -eq 124 ]")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn get(path: &str) -> Value {
    http()
        .get(format!("http://127.0.0.1:8080{path}"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Polls until `ok` holds (processing is asynchronous), else fails with `what`.
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn values(topic: &str) -> Vec<String> {
    let d = get(&format!("/v1/topics/{topic}"));
    let mut out = Vec::new();
    for p in 0..d["partitions"].as_array().map_or(0, Vec::len) {
        let r = get(&format!(
            "/v1/topics/{topic}/partitions/{p}/records?offset=0&max=1000"
        ));
        for rec in r["records"].as_array().into_iter().flatten() {
            out.push(rec["value"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

#[test]
fn the_readme_walk_through_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut blocks = sh_blocks(&readme, "## Five-minute walk-through", "\n## Connectors");
    assert!(blocks.len() >= 7, "found only {} blocks", blocks.len());
    // The Schema Registry's section runs on the same server, after the walk-through.
    let schema_blocks = sh_blocks(
        &readme,
        "## Schema Registry and data contracts",
        "\n## Workers over",
    );
    assert!(
        schema_blocks.len() >= 4,
        "found only {}",
        schema_blocks.len()
    );
    blocks.extend(schema_blocks);
    // So does the consumer-groups part of the Kafka section.
    let group_blocks = sh_blocks(&readme, "### Consumer groups", "\n## Schema Registry");
    assert_eq!(group_blocks.len(), 1);
    blocks.extend(group_blocks);

    let home = tempfile::tempdir().unwrap();
    // `sluice` on the PATH: the binary under test.
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(sluice_bin(), bin.join("sluice")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The server of the walk-through's first block, on its default addresses, with its
    // data in ./sluice-data of a fresh directory.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Stop(
        Command::new(sluice_bin())
            .arg("serve")
            .current_dir(home.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the server answers on 127.0.0.1:8080", || {
        http()
            .get("http://127.0.0.1:8080/healthz")
            .send()
            .is_ok_and(|r| r.status() == 200)
    });

    // Builds of the scaffolded Rust crate share a target dir across runs (a fresh one
    // would rebuild its dependencies every time).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("walkthrough-target");
    let script = format!(
        "set -euo pipefail\ncd {:?}\n{}\n",
        home.path().display().to_string(),
        blocks
            .iter()
            .map(|b| with_ctrl_c(b))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", &path)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the walk-through failed:\n{printed}");

    // What the commands made.
    for t in [
        "shouter",
        "shouter-py",
        "shouter-js",
        "seal",
        "open",
        "per-minute",
    ] {
        let st = get(&format!("/v1/transforms/{t}"));
        assert_eq!(st["status"], "running", "{t}: {st}");
    }
    for out in ["loud", "loud-py", "loud-js"] {
        eventually(&format!("{out} holds HELLO"), || {
            values(out).contains(&"HELLO".to_string())
        });
    }
    // The shadow's candidate config went live (still following `latest`), and the group
    // the README made and deleted is gone.
    let st = get("/v1/transforms/shouter");
    assert_eq!(st["config"]["style"], "loud", "{st}");
    assert_eq!(st["version_selector"], "latest", "{st}");
    eventually("loud holds AGAIN", || {
        values("loud").contains(&"AGAIN".to_string())
    });
    assert!(
        get("/v1/groups")["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["group"] != "replay")
    );
    eventually("the record comes back decrypted", || {
        values("opened")
            .iter()
            .any(|v| v.contains("123-45-6789") && v.contains("4111111111111111"))
    });
    assert!(
        values("sealed").iter().all(|v| !v.contains("123-45-6789")),
        "sealed holds the plaintext"
    );
    eventually("alice's window counts 3", || {
        let st = get("/v1/transforms/per-minute/state?key=alice");
        st["entries"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["value"] == 3 && e["parts"]["key"] == "alice")
        })
    });
    // The join over two inputs: new users of the generated auction site.
    eventually("q8 finds new users", || {
        values("new-users")
            .iter()
            .any(|v| v.contains("\"starttime\""))
    });
    let st = get("/v1/transforms/new-users");
    assert_eq!(
        st["inputs"],
        serde_json::json!(["persons", "auctions"]),
        "{st}"
    );
    // The registry section: a subject, a validated topic, a schema-aware mask.
    let sr: Value = http()
        .get("http://127.0.0.1:8081/subjects/orders-value/versions")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(sr, serde_json::json!([1]));
    eventually("the masked order arrives, framed with its schema", || {
        let mut found = false;
        for p in 0..3 {
            let r = get(&format!(
                "/v1/topics/masked/partitions/{p}/records?offset=0&decode=json"
            ));
            found |= r["records"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["value_json"]["id"] == "o-1"));
        }
        found
    });
    // Unchanged source pushed again is the stored version: nothing new.
    let again = Command::new("sluice")
        .args(["plugin", "push", "shout-py"])
        .current_dir(home.path().join("shout-py"))
        .env("PATH", &path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{said}");
    assert!(said.contains("nothing new"), "{said}");
}
