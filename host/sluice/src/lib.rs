//! Sluice: a durable partitioned log that runs sandboxed WebAssembly transforms over every
//! record, with an HTTP API and the Kafka wire protocol. This crate assembles the layers
//! (one crate each, see ARCHITECTURE.md) into the `sluice` binary.
//!
//! # Layout
//! - [`server`]: wires the layers together and runs them until shutdown.
//! - [`config`]: the resolved settings (flags over the TOML file over defaults).
//! - [`cli`]: the `sluice` command line, a client of the HTTP API ([`client`]).
//! - [`demo`]: `sluice demo`, the main job end to end.
//! - [`plugins`]: the example plugins, built to components and embedded.
//! - [`groups`]: the Kafka listener's consumer groups for the HTTP API.
//! - [`schemas`]: the schema registry's `_schemas` topic (its journal and replay).

pub mod cli;
pub mod client;
pub mod config;
pub mod demo;
pub mod groups;
pub mod plugins;
pub mod schemas;
pub mod server;
pub mod worker;

/// The `sluice` command: runs it; an error is one line on stderr with its causes, whatever
/// `RUST_BACKTRACE` says (a user's mistake is not a crash), and the exit status 1.
pub fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Parses the command line, sets up logging and runs the command.
fn run() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    sluice_auth::tls::install_provider();
    let cli = <cli::Cli as clap::Parser>::parse();
    // The demo prints its own story, and client commands their results; the server's info
    // lines are for `serve`.
    let default_filter = match cli.command {
        cli::Command::Serve(_) => "info,tower_http=warn",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match cli.command {
            cli::Command::Serve(args) => crate::server::serve(args).await,
            cli::Command::Demo => crate::demo::run().await,
            cli::Command::Worker(args) => crate::worker::run(args).await,
            command => cli::run(command, &cli.server, &cli.registry).await,
        }
    })
}

/// A line for whoever reads the server's stdout (the addresses it listens on). Never fails
/// or panics: stdout may be a file on a full disk or a closed pipe, and the server goes on.
pub(crate) fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}
