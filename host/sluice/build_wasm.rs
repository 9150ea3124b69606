// Shared by `host/build.rs` and `tests/build.rs` (through `include!`): builds workspace
// crates for `wasm32-wasip2` with a nested cargo into a target directory of their own (so
// it never waits on the outer build's lock) and writes a Rust file of constants naming the
// components: `pub const NAME: &[u8]` (embedded bytes) and `pub const NAME_PATH: &str`.

use std::path::PathBuf;
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

fn ensure_wasm_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(WASM_TARGET))
        .unwrap_or(false);
    if !installed {
        let ok = Command::new("rustup")
            .args(["target", "add", WASM_TARGET])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "the {WASM_TARGET} target is missing and `rustup target add {WASM_TARGET}` failed"
        );
    }
}

fn build_wasm(crates: &[&str], out_file: &str) {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    // The workspace root: the nearest ancestor whose Cargo.toml declares the workspace.
    let root = manifest
        .ancestors()
        .skip(1)
        .find(|d| {
            std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]"))
        })
        .expect("workspace root")
        .to_path_buf();
    for dir in ["sdk", "wit", "plugins", "tests/fixtures"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("Cargo.lock").display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|p| p.join("wasm-plugins"))
        .unwrap_or_else(|| out_dir.join("wasm-plugins"));
    ensure_wasm_target();
    let built = |c: &str| {
        target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", c.replace('-', "_")))
    };
    // Cargo shows build-script output only on failure; a warning line is visible, so a
    // first build does not sit silent while the plugins compile. Later builds (a plugin
    // changed: seconds) say nothing.
    if crates.iter().any(|c| !built(c).exists()) {
        println!(
            "cargo:warning=building {} for {WASM_TARGET} (first build: a minute or two)",
            crates.join(", ")
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--release", "--locked", "--target", WASM_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // Small components: no debug info in plugins.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    for c in crates {
        cmd.args(["-p", c]);
    }
    let status = cmd.status().expect("running cargo for the wasm plugins");
    assert!(status.success(), "building {crates:?} for {WASM_TARGET} failed");
    let mut code = String::new();
    for c in crates {
        let file = c.replace('-', "_");
        let path = built(c);
        assert!(path.exists(), "{} was not built", path.display());
        let name = file.to_uppercase();
        code.push_str(&format!(
            "/// The `{c}` component.\npub const {name}: &[u8] = include_bytes!({p:?});\n\
             /// Where the `{c}` component was built.\npub const {name}_PATH: &str = {p:?};\n",
            p = path.display().to_string()
        ));
    }
    std::fs::write(out_dir.join(out_file), code).expect("writing the artifact list");
}

