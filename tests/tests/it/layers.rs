//! The crate graph is the architecture: each layer may use only the layers below it
//! (ARCHITECTURE.md). A new arrow — above all one that points up — fails here first.

use std::collections::{BTreeMap, BTreeSet};

/// Every workspace crate of the host and the Sluice crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("sluice-common", &[]),
    ("sluice-config", &[]),
    ("sluice-log", &["sluice-common", "sluice-sdk"]),
    // The object store behind tiered topics (implements the log's `RemoteStore`).
    (
        "sluice-tier",
        &["sluice-common", "sluice-config", "sluice-log"],
    ),
    ("sluice-runtime", &["sluice-common", "sluice-sdk"]),
    (
        "sluice-pipeline",
        &[
            "sluice-common",
            "sluice-log",
            "sluice-runtime",
            "sluice-sdk",
        ],
    ),
    ("sluice-auth", &["sluice-config"]),
    (
        "sluice-kafka",
        &["sluice-auth", "sluice-common", "sluice-log"],
    ),
    (
        "sluice-connect",
        &["sluice-auth", "sluice-common", "sluice-log"],
    ),
    (
        "sluice-worker",
        &[
            "sluice-log",
            "sluice-pipeline",
            "sluice-runtime",
            "sluice-sdk",
        ],
    ),
    (
        "sluice-api",
        &[
            "sluice-auth",
            "sluice-common",
            "sluice-config",
            "sluice-connect",
            "sluice-log",
            "sluice-pipeline",
            "sluice-runtime",
            "sluice-worker",
        ],
    ),
    (
        "sluice",
        &[
            "sluice-api",
            "sluice-auth",
            "sluice-common",
            "sluice-config",
            "sluice-connect",
            "sluice-kafka",
            "sluice-log",
            "sluice-pipeline",
            "sluice-runtime",
            "sluice-sdk",
            "sluice-tier",
            "sluice-worker",
        ],
    ),
];

/// The Sluice crates a crate's Cargo.toml names under `[dependencies]`.
fn sluice_deps(dir: &std::path::Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let manifest: toml::Table = toml::from_str(&text).unwrap();
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| {
            d.keys()
                .filter(|k| k.starts_with("sluice"))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_crate_graph_follows_the_layers() {
    let host = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../host");
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(c, deps)| (*c, deps.iter().copied().collect()))
        .collect();
    let mut crates = BTreeSet::new();
    for entry in std::fs::read_dir(&host).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.join("Cargo.toml").exists() {
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let ok = allowed.get(name.as_str()).unwrap_or_else(|| {
            panic!("host/{name} is a new crate: give it a place in ALLOWED and ARCHITECTURE.md")
        });
        for dep in sluice_deps(&dir) {
            assert!(
                ok.contains(dep.as_str()),
                "{name} depends on {dep}, which its layer may not use (ARCHITECTURE.md)"
            );
        }
        crates.insert(name);
    }
    assert_eq!(
        crates.len(),
        ALLOWED.len(),
        "crates listed but missing: {crates:?}"
    );
}
