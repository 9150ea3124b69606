//! Builds the example plugins for wasm32-wasip2 so the binary can embed them (`sluice demo`).
include!("build_wasm.rs");

fn main() {
    build_wasm(
        &[
            "mask",
            "filter",
            "enrich",
            "route",
            "window-count",
            "dedupe",
            "sessionize",
            "encrypt",
            "decrypt",
            "nexmark-queries",
            "nexmark-stateless",
        ],
        "example_plugins.rs",
    );
}
