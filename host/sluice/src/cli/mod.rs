//! The `sluice` command line: `serve`, `demo`, and client commands over the HTTP API.
//!
//! `client` talks to the server, `output` prints (closed pipes end quietly, progress only at
//! a terminal, aligned tables), and one module per command family: `topics`, `records`
//! (produce/consume), `plugins`, `deployments` (transforms and connectors share their
//! verbs).

mod client;
mod deployments;
mod output;
mod plugins;
mod records;
mod topics;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use client::{Client, server_url};
pub use deployments::{ConnectorCmd, TransformCmd};
pub use plugins::PluginCmd;
pub use records::{ConsumeArgs, ProduceArgs};
pub use topics::TopicCmd;

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A streaming log that runs WebAssembly transforms",
    after_help = "Client commands talk to a running server (`sluice serve`) over HTTP."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// The server's HTTP address, for client commands (`http://` is assumed without a
    /// scheme).
    #[arg(
        long,
        global = true,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Start a throwaway server, push sample events through it and print them.
    Demo,
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Append one record per stdin line to a topic.
    Produce(ProduceArgs),
    /// Print a topic's records.
    Consume(ConsumeArgs),
    /// Upload, list and scaffold plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Deploy and manage transforms.
    #[command(subcommand)]
    Transform(TransformCmd),
    /// Deploy and manage connectors (http-pull sources, http/postgres sinks).
    #[command(subcommand)]
    Connector(ConnectorCmd),
    /// Run the transform deployments of a worker group over an existing Kafka cluster, exactly once (transactions), with the plugins/transforms API.
    Worker(crate::worker::WorkerArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where topics, plugins and deployments are stored [default: ./sluice-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    pub http: Option<String>,
    /// Kafka protocol listen address, or `off` [default: 127.0.0.1:9092].
    #[arg(long)]
    pub kafka: Option<String>,
    /// Host:port given to Kafka clients [default: the Kafka listen address].
    #[arg(long)]
    pub advertise: Option<String>,
    /// TOML config file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Allow binding a non-loopback address without authentication.
    #[arg(long)]
    pub insecure: bool,
    /// Watch this directory: writing `NAME.wasm` there uploads a new version of plugin NAME.
    #[arg(long)]
    pub plugins_dir: Option<PathBuf>,
    /// Before starting, rebuild the tiered topics missing from the data directory (a lost
    /// disk) from the object store ([tier] in the config: `restore_bucket`,
    /// `restore_prefix`), and report what was not uploaded and is lost.
    #[arg(long)]
    pub restore_from_tier: bool,
}

/// Runs a client command against the server named by `--server`.
pub async fn run(command: Command, server: &str) -> anyhow::Result<()> {
    let c = || server_url(server).map(|u| Client::new(&u));
    match command {
        Command::Topic(cmd) => topics::run(&c()?, cmd).await,
        Command::Produce(args) => records::produce(&c()?, args).await,
        Command::Consume(args) => records::consume(&c()?, args).await,
        Command::Plugin(PluginCmd::New { name, sdk, lang }) => plugins::scaffold(&name, sdk, lang),
        Command::Plugin(cmd) => plugins::run(&c()?, cmd).await,
        Command::Transform(cmd) => deployments::transform(&c()?, cmd).await,
        Command::Connector(cmd) => deployments::connector(&c()?, cmd).await,
        Command::Serve(_) | Command::Demo | Command::Worker(_) => Ok(()),
    }
}

/// The `sluice` command: parses the command line, sets up logging and runs the command.
pub fn main() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    sluice_auth::tls::install_provider();
    let cli = Cli::parse();
    // The demo prints its own story, and client commands their results; the server's info
    // lines are for `serve`.
    let default_filter = match cli.command {
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
            Command::Serve(args) => crate::server::serve(args).await,
            Command::Demo => crate::demo::run().await,
            Command::Worker(args) => crate::worker::run(args).await,
            command => run(command, &cli.server).await,
        }
    })
}
