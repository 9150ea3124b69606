//! Builds the misbehaving fixture plugins for wasm32-wasip2 and names them for the tests.
include!("../host/sluice/build_wasm.rs");

fn main() {
    build_wasm(
        &[
            "misbehave",
            "hostile",
            "identity",
            "net-probe",
            "other-world",
            "state-hostile",
            "state-ops",
        ],
        "fixtures.rs",
    );
}
