//! The `sluice` binary: the command line of the `sluice` library.

fn main() -> anyhow::Result<()> {
    sluice::main()
}
