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

/// The allocator of every program that links the server (the `sluice` binary, the tests'
/// and benches' servers): jemalloc, returning freed memory to the system after a second
/// ([`JEMALLOC_CONF`]). Measured with a disk state store's churn (cache entries, memtable
/// nodes) at 5 M keys and a 256 MiB cache (`scripts/bench-state-disk 5000000`): peak RSS
/// 0.45 GiB for ~0.30 GiB in use, where glibc's malloc held 0.60–0.76 GiB and mimalloc
/// 0.63 GiB (and records/s 10% fewer with glibc).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its start (its `const char *malloc_conf`): dirty pages go
/// back after 1 s (default 10 s), without the lazy "muzzy" stage, by jemalloc's
/// background threads.
#[allow(unsafe_code)]
// SAFETY: a pointer to a NUL-terminated static string, as jemalloc's C declaration says;
// jemalloc reads it once at start and nothing writes it.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: Option<&u8> =
    Some(&b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0]);

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
