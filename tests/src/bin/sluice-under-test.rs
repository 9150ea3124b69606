//! The `sluice` command line for the end-to-end tests (see `tests/Cargo.toml`).

fn main() -> std::process::ExitCode {
    sluice::main()
}
