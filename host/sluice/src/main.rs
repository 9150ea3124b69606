//! The `sluice` binary: the command line of the `sluice` library.

fn main() -> std::process::ExitCode {
    sluice::main()
}
