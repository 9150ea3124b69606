//! `sluice plugin push|list|new`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;

use super::output::{Table, line, note};
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum PluginCmd {
    /// Upload a component as the next version of a plugin. Without FILE, builds the plugin
    /// project in the current directory (Rust: cargo for wasm32-wasip2; Python/JS: its
    /// build.sh) and uploads what it built. Bytes equal to a stored version are that
    /// version (nothing new).
    Push {
        /// Plugin name.
        name: String,
        /// The component (`.wasm`) [default: build the project here].
        file: Option<PathBuf>,
        /// Upload the example plugin NAME embedded in this binary (mask, filter, enrich,
        /// route, window-count, dedupe, sessionize, encrypt, decrypt).
        #[arg(long, conflicts_with = "file")]
        example: bool,
    },
    /// List plugins and their versions.
    List,
    /// Create a new plugin project (a one-function transform with a native test and a
    /// case table).
    New {
        /// Project and plugin name: letters, digits, '-' and '_'.
        name: String,
        /// Path of the Sluice SDK (the Rust crate, or `sdk-python`) [default: the one of the
        /// source tree this binary was built from].
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// The plugin's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
    },
}

/// Languages `sluice plugin new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    /// Built with componentize-py (PyPI) against the `sdk-python` package.
    Python,
    /// Bundled with esbuild and built with componentize-js (npm) against `sdk-js`.
    Js,
}

pub async fn run(c: &Client, cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Push {
            name,
            file,
            example,
        } => {
            let (bytes, what) = if example {
                let Some(bytes) = crate::plugins::example(&name) else {
                    let names: Vec<&str> =
                        crate::plugins::examples().iter().map(|(n, _)| *n).collect();
                    bail!(
                        "no example plugin {name:?}; the examples are {}",
                        names.join(", ")
                    );
                };
                (bytes.to_vec(), format!("the example {name}"))
            } else {
                let file = match file {
                    Some(f) => f,
                    None => build_here()?,
                };
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                (bytes, file.display().to_string())
            };
            note(format!(
                "uploading {what} ({} KiB); the server validates and compiles it…",
                bytes.len() / 1024
            ));
            let v = c.put_bytes(&format!("/v1/plugins/{name}"), bytes).await?;
            if v["created"] == false {
                line(format!(
                    "plugin {name} version {} has these bytes already ({}): nothing new",
                    v["version"],
                    v["digest"].as_str().unwrap_or("")
                ));
            } else {
                line(format!(
                    "plugin {name} version {} ({})",
                    v["version"],
                    v["digest"].as_str().unwrap_or("")
                ));
            }
            // Deployments that follow "latest" of this plugin moved (or will): say which.
            for d in v["deployments"].as_array().into_iter().flatten() {
                let t = d["transform"].as_str().unwrap_or("");
                match d["outcome"].as_str().unwrap_or("") {
                    "switched" => line(format!(
                        "  transform {t} (follows latest) now runs version {}",
                        v["version"]
                    )),
                    "switching" => line(format!(
                        "  transform {t} (follows latest) moves to version {} between transactions",
                        v["version"]
                    )),
                    _ => line(format!(
                        "  transform {t} (follows latest) keeps its version: {}",
                        d["error"]
                            .as_str()
                            .unwrap_or("the new version did not start")
                    )),
                }
            }
        }
        PluginCmd::List => {
            let v = c.get("/v1/plugins").await?;
            let mut t = Table::new(
                &["PLUGIN", "VERSIONS", "LATEST", "DIGEST"],
                &[false, true, true, false],
            );
            for p in v["plugins"].as_array().into_iter().flatten() {
                t.row(vec![
                    p["name"].as_str().unwrap_or("").to_string(),
                    p["versions"].to_string(),
                    p["latest"]["version"].to_string(),
                    p["latest"]["digest"].as_str().unwrap_or("").to_string(),
                ]);
            }
            t.print();
        }
        PluginCmd::New { name, sdk, lang } => scaffold(&name, sdk, lang)?,
    }
    Ok(())
}

/// Builds the crate in the current directory for wasm32-wasip2 (release) and returns the
/// component cargo reports — wherever `CARGO_TARGET_DIR` puts it.
fn build_here() -> anyhow::Result<PathBuf> {
    if (Path::new("app.py").exists() || Path::new("app.js").exists())
        && Path::new("build.sh").exists()
    {
        note("building the plugin here: ./build.sh");
        let status = std::process::Command::new("sh")
            .arg("build.sh")
            .status()
            .context("running build.sh")?;
        if !status.success() {
            bail!("build.sh failed; pass the .wasm file to push instead");
        }
        return Ok(PathBuf::from("plugin.wasm"));
    }
    note("building the plugin crate here: cargo build --release --target wasm32-wasip2");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo (is this a plugin crate? see `sluice plugin new`)")?;
    if !out.status.success() {
        bail!(
            "cargo build failed (missing target? `rustup target add wasm32-wasip2`); pass the \
             .wasm file to push instead"
        );
    }
    let built = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .rfind(|p| p.extension().is_some_and(|e| e == "wasm"));
    let Some(path) = built else {
        bail!("cargo built no .wasm component here (is the crate a cdylib?)");
    };
    note(format!("built {}", path.display()));
    Ok(path)
}

/// Writes a plugin project: a one-function transform, a native test and (Python) a case
/// table and build script; a Rust crate has its Cargo.toml.
pub fn scaffold(name: &str, sdk: Option<PathBuf>, lang: Lang) -> anyhow::Result<()> {
    if !sluice_pipeline::plugins::valid_name(name) || name.contains('.') {
        bail!("plugin name {name:?}: use letters, digits, '-' and '_'");
    }
    let dir = PathBuf::from(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    match lang {
        Lang::Python => return scaffold_python(&dir, name, sdk),
        Lang::Js => return scaffold_js(&dir, name, sdk),
        Lang::Rust => {}
    }
    let sdk = sdk.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk"));
    let sdk = std::fs::canonicalize(&sdk)
        .with_context(|| format!("SDK not found at {}; pass --sdk", sdk.display()))?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
             [dependencies]\nsluice-sdk = {{ path = {sdk:?} }}\nserde_json = \"1\"\n\n\
             # A crate of its own, not a member of an enclosing workspace.\n[workspace]\n",
            sdk = sdk.display().to_string()
        ),
    )?;
    std::fs::write(dir.join("src/lib.rs"), TEMPLATE)?;
    std::fs::create_dir_all(dir.join(".cargo"))?;
    std::fs::write(dir.join(".cargo/config.toml"), CARGO_CONFIG)?;
    line(format!("created plugin crate {name}/"));
    line(format!("  test:        cd {name} && cargo test"));
    line(format!(
        "  build+push:  sluice plugin push {name}      (builds for wasm32-wasip2 and uploads)"
    ));
    Ok(())
}

/// Writes an executable script (mode 0755).
fn write_script(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// The source tree this binary was built from (where the SDKs and `wit/` are).
fn source_tree() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The SDK directory to scaffold against: `sdk`, or this source tree's `default`.
fn sdk_dir(sdk: Option<PathBuf>, default: &str, what: &str) -> anyhow::Result<PathBuf> {
    let sdk = sdk.unwrap_or_else(|| source_tree().join(default));
    std::fs::canonicalize(&sdk)
        .with_context(|| format!("{what} not found at {}; pass --sdk", sdk.display()))
}

/// A Python plugin: `app.py`, `test_app.py` (unittest, also run by pytest), `cases.json`
/// and `build.sh` (componentize-py, with this source tree's `sdk-python` and `wit/`).
fn scaffold_python(dir: &Path, name: &str, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    let sdk = sdk_dir(sdk, "sdk-python", "Python SDK")?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("app.py"), PY_TEMPLATE)?;
    std::fs::write(
        dir.join("test_app.py"),
        PY_TEST.replace("@SDK@", &sdk.display().to_string()),
    )?;
    std::fs::write(dir.join("cases.json"), PY_CASES)?;
    let tree = std::fs::canonicalize(source_tree()).context("the source tree")?;
    write_script(
        &dir.join("build.sh"),
        &PY_BUILD
            .replace("@SDK@", &sdk.display().to_string())
            .replace(
                "@BUILD@",
                &tree
                    .join("scripts/build-python-plugin")
                    .display()
                    .to_string(),
            ),
    )?;
    line(format!("created Python plugin {name}/"));
    line(format!("  test:        cd {name} && python3 -m unittest"));
    line(format!(
        "  build+push:  sluice plugin push {name}      (runs build.sh: componentize-py, then uploads)"
    ));
    Ok(())
}

/// A JavaScript plugin: `transform.js` (the logic), `app.js` (the component's entry),
/// `transform.test.js` (node's test runner), `cases.json`, `package.json` (the SDK as a
/// local dependency) and `build.sh` (this source tree's `scripts/build-js-plugin`).
fn scaffold_js(dir: &Path, name: &str, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    let sdk = sdk_dir(sdk, "sdk-js", "JavaScript SDK")?;
    let tree = std::fs::canonicalize(source_tree()).context("the source tree")?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("transform.js"), JS_TEMPLATE)?;
    std::fs::write(dir.join("app.js"), JS_APP)?;
    std::fs::write(dir.join("transform.test.js"), JS_TEST)?;
    std::fs::write(dir.join("cases.json"), PY_CASES)?;
    std::fs::write(
        dir.join("package.json"),
        format!(
            "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"type\": \"module\",\n  \"dependencies\": {{ \"sluice-sdk\": {:?} }}\n}}\n",
            format!("file:{}", sdk.display())
        ),
    )?;
    write_script(
        &dir.join("build.sh"),
        &format!(
            "#!/bin/sh\n# Builds app.js into plugin.wasm (esbuild + componentize-js, installed on first use).\n# Keyed state and timers: bind sluice:transform/state in app.js and add --stateful.\nset -e\ncd \"$(dirname \"$0\")\"\n{:?} . plugin.wasm\n",
            tree.join("scripts/build-js-plugin").display().to_string()
        ),
    )?;
    line(format!("created JavaScript plugin {name}/"));
    line(format!(
        "  test:        cd {name} && npm install && node --test"
    ));
    line(format!(
        "  build+push:  sluice plugin push {name}      (runs build.sh: componentize-js, then uploads)"
    ));
    Ok(())
}

const JS_TEMPLATE: &str = r#"// A Sluice transform. Test natively with `node --test`; build and upload with
// `sluice plugin push NAME` from this directory (it runs build.sh).
import { Outcome, SluiceError } from 'sluice-sdk';

/** Upper-cases text values; drops empty ones; rejects binary ones. */
export function transform(record) {
  const text = record.valueStr();
  if (text === null) throw new SluiceError('value is not UTF-8 text');
  if (text === '') return Outcome.drop();
  return Outcome.keepWithValue(text.toUpperCase());
}
"#;

const JS_APP: &str = r#"// The component's entry: binds the host imports and exports the transform.
import * as host from 'sluice:transform/host@0.2.2';
import { bindHost, transform as exportTransform } from 'sluice-sdk';
import { transform } from './transform.js';

bindHost(host);
export const { init, process, onTimers } = exportTransform(transform);
"#;

const JS_TEST: &str = r#"import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Harness } from 'sluice-sdk/testing';
import { transform } from './transform.js';

test('the case table', () => {
  new Harness(transform).runSuites(readFileSync(new URL('cases.json', import.meta.url), 'utf8'));
});
"#;

const PY_TEMPLATE: &str = r#""""A Sluice transform. Test natively with `python3 -m unittest`; build and upload with
`sluice plugin push NAME` from this directory (it runs build.sh)."""

import sluice_sdk
from sluice_sdk import Error, Outcome


def transform(record):
    """Upper-cases text values; drops empty ones; rejects binary ones."""
    text = record.value_str()
    if text is None:
        raise Error("value is not UTF-8 text")
    if text == "":
        return Outcome.drop()
    return Outcome.keep_with_value(text.upper())


WitWorld = sluice_sdk.transform(transform)
"#;

const PY_TEST: &str = r#"import pathlib
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), "@SDK@"]

import app  # noqa: E402
from sluice_sdk.testing import Harness  # noqa: E402


class TransformTest(unittest.TestCase):
    def test_case_table(self):
        Harness(app.transform).run_suites((HERE / "cases.json").read_text())


if __name__ == "__main__":
    unittest.main()
"#;

const PY_CASES: &str = r#"[
  {
    "cases": [
      {"name": "upper-cased", "input": {"value": "hello"}, "expect": {"emit": [{"value": "HELLO"}]}},
      {"name": "empty dropped", "input": {"value": ""}, "expect": "drop"}
    ]
  }
]
"#;

const PY_BUILD: &str = r#"#!/bin/sh
# Builds app.py into plugin.wasm with componentize-py (installed from PyPI into a venv of
# its own on first use), against the Sluice SDK and plugin contract. For keyed state and
# timers (sluice_sdk.state), add --stateful before the directory.
set -e
cd "$(dirname "$0")"
SLUICE_PY_SDK="@SDK@" exec "@BUILD@" . plugin.wasm
"#;

/// Wasm builds of a new plugin use SIMD (as the example plugins do).
const CARGO_CONFIG: &str =
    "[target.wasm32-wasip2]\nrustflags = [\"-C\", \"target-feature=+simd128\"]\n";

const TEMPLATE: &str = r#"//! A Sluice transform. Test natively with `cargo test`; build and upload with
//! `sluice plugin push NAME` from this directory.

use sluice_sdk::{Error, Outcome, Record};

/// Upper-cases text values; drops empty ones; rejects binary ones.
pub fn transform(record: &Record) -> Result<Outcome, Error> {
    match record.value_str() {
        Some("") => Ok(Outcome::drop()),
        Some(text) => Ok(Outcome::keep_with_value(text.to_uppercase())),
        None => Err(Error::new("value is not UTF-8 text")),
    }
}

sluice_sdk::export_transform!(transform);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, TestOutcome, TestRecord};

    #[test]
    fn upper_cases_and_drops_empty_values() {
        let out = Harness::new(transform).run(&[TestRecord::value("hello"), TestRecord::value("")]);
        assert_eq!(out[0].values(), ["HELLO"]);
        assert_eq!(out[1], TestOutcome::Dropped);
    }
}
"#;
