//! End-to-end tests live in `tests/it/`; this library names the fixture plugins that
//! `build.rs` compiles for them.

/// Misbehaving plugins, built for wasm32-wasip2 (test fixtures, never shipped).
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}
