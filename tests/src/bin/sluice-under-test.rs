//! The `sluice` command line for the end-to-end tests (see `tests/Cargo.toml`).

fn main() -> anyhow::Result<()> {
    sluice::main()
}
