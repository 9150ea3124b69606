//! The crate graph is the architecture: each layer may use only the layers below it
//! (ARCHITECTURE.md). A new arrow — above all one that points up — fails here first.

use std::collections::{BTreeMap, BTreeSet};

/// Every workspace crate of the host and the Sluice crates it may depend on.
const ALLOWED: &[(&str, &[&str])] = &[
    ("sluice-common", &[]),
    ("sluice-config", &[]),
    // The deployment contract: pure data and rules, used by every layer that names,
    // limits or runs a deployment.
    ("sluice-deploy", &[]),
    // The Schema Registry's model: schemas, compatibility, the registry's state machine
    // and the Confluent wire format. Pure; the server gives it a journal (the log).
    ("sluice-schema", &[]),
    (
        "sluice-log",
        &["sluice-common", "sluice-deploy", "sluice-sdk"],
    ),
    // The object store behind tiered topics (implements the log's `RemoteStore`).
    (
        "sluice-tier",
        &["sluice-common", "sluice-config", "sluice-log"],
    ),
    (
        "sluice-runtime",
        &["sluice-common", "sluice-deploy", "sluice-sdk"],
    ),
    (
        "sluice-pipeline",
        &[
            "sluice-common",
            "sluice-deploy",
            "sluice-log",
            "sluice-runtime",
            "sluice-schema",
            "sluice-sdk",
        ],
    ),
    ("sluice-auth", &["sluice-config"]),
    (
        "sluice-kafka",
        &[
            "sluice-auth",
            "sluice-common",
            "sluice-log",
            "sluice-schema",
        ],
    ),
    (
        "sluice-connect",
        &[
            "sluice-auth",
            "sluice-common",
            "sluice-deploy",
            "sluice-log",
        ],
    ),
    (
        "sluice-worker",
        &[
            "sluice-deploy",
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
            "sluice-deploy",
            "sluice-log",
            "sluice-pipeline",
            "sluice-runtime",
            "sluice-schema",
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
            "sluice-deploy",
            "sluice-kafka",
            "sluice-log",
            "sluice-pipeline",
            "sluice-runtime",
            "sluice-schema",
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

/// The Rust sources of a crate (`src/`), by path.
fn sources(src: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every crate of ours with Rust sources: host crates, the SDK, example plugins.
fn crate_dirs() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs = vec![root.join("sdk")];
    for group in ["host", "plugins"] {
        for e in std::fs::read_dir(root.join(group)).unwrap() {
            let d = e.unwrap().path();
            if d.join("Cargo.toml").exists() {
                dirs.push(d);
            }
        }
    }
    dirs.sort();
    dirs
}

/// The top-level module a source file belongs to (`None`: the crate root).
fn top_module(src: &std::path::Path, file: &std::path::Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// The top-level modules a file names through `crate::m` (or `super::m` from a
/// top-level module file), its own left out.
fn named_modules(text: &str, own: &str, top_level_file: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut prefixes = vec!["crate::"];
    if top_level_file {
        prefixes.push("super::");
    }
    for prefix in prefixes {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            let mut names = vec![];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                names.extend(group[..end].split(',').map(|n| n.trim().to_string()));
            } else {
                names.push(rest.to_string());
            }
            for n in names {
                let ident: String = n
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() && ident != own && ident != "self" {
                    found.insert(ident);
                }
            }
        }
    }
    found
}

/// No module of a crate uses a module that uses it back, through any chain (ARCHITECTURE.md:
/// shared types live in the parent or in a leaf module).
#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut circles = Vec::new();
    for dir in crate_dirs() {
        let src = dir.join("src");
        if !src.exists() {
            continue;
        }
        let files = sources(&src);
        let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(&src, f)).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let Some(m) = top_module(&src, f) else {
                continue;
            };
            let top_level_file = f.parent() == Some(src.as_path())
                || f.file_name().is_some_and(|n| n == "mod.rs")
                    && f.parent().and_then(|p| p.parent()) == Some(src.as_path());
            let text = std::fs::read_to_string(f).unwrap();
            for n in named_modules(&text, &m, top_level_file) {
                if modules.contains(&n) {
                    edges.entry(m.clone()).or_default().insert(n);
                }
            }
        }
        // A module that reaches itself again is in a circle.
        for start in edges.keys() {
            let mut stack: Vec<Vec<String>> = vec![vec![start.clone()]];
            let mut seen = BTreeSet::new();
            while let Some(path) = stack.pop() {
                let last = path.last().unwrap();
                for next in edges.get(last).into_iter().flatten() {
                    if next == start {
                        let mut c = path.clone();
                        c.push(next.clone());
                        circles.push(format!("{}: {}", dir.display(), c.join(" -> ")));
                    } else if seen.insert(next.clone()) {
                        let mut p = path.clone();
                        p.push(next.clone());
                        stack.push(p);
                    }
                }
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

/// No source file outside tests grows past ~1,000 lines (its tests, after
/// `#[cfg(test)]`, do not count): a file that long holds more than one idea.
#[test]
fn no_source_file_is_over_a_thousand_lines() {
    let mut long = Vec::new();
    for dir in crate_dirs() {
        let src = dir.join("src");
        if !src.exists() {
            continue;
        }
        for f in sources(&src) {
            if f.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let lines = text
                .lines()
                .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
                .count();
            if lines > 1_050 {
                long.push(format!("{}: {lines} lines", f.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over ~1,000 lines:\n{}",
        long.join("\n")
    );
}
