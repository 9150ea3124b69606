//! The `sluice` binary: parses the command line and hands over to the library.

use std::io::IsTerminal;

use clap::Parser;
use sluice::cli::{Cli, Command};

fn main() -> anyhow::Result<()> {
    sluice_auth::tls::install_provider();
    let cli = Cli::parse();
    // The demo prints its own story; the server's info lines would drown it.
    let default_filter = match cli.command {
        Command::Demo => "warn",
        Command::Serve(_) => "info,tower_http=warn",
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
            Command::Serve(args) => sluice::server::serve(args).await,
            Command::Demo => sluice::demo::run().await,
            command => sluice::cli::run(command, &cli.server).await,
        }
    })
}
