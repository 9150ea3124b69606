//! The `sluice` command line: `serve`, `demo`, and client commands over the HTTP API.
//!
//! `crate::client` talks to the server, `output` prints (closed pipes end quietly, progress only at
//! a terminal, aligned tables), and one module per command family: `topics`, `records`
//! (produce/consume), `plugins`, `groups`, `deployments` (transforms and connectors share their
//! verbs).

mod deployments;
mod groups;
mod output;
mod plugins;
mod records;
mod schemas;
mod topics;

use clap::{Parser, Subcommand};

use crate::client::{Client, server_url};
pub use crate::config::ServeArgs;
pub use deployments::{ConnectorCmd, TransformCmd};
pub use groups::GroupCmd;
pub use plugins::PluginCmd;
pub use records::{ConsumeArgs, ProduceArgs};
pub use schemas::SchemaCmd;
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
    /// The schema registry's address, for `sluice schema` (`http://` is assumed without a
    /// scheme).
    #[arg(
        long,
        global = true,
        env = "SLUICE_SCHEMA_REGISTRY",
        default_value = "http://127.0.0.1:8081"
    )]
    pub registry: String,
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
    /// Register, look at, check and delete schemas in the schema registry.
    #[command(subcommand)]
    Schema(SchemaCmd),
    /// Deploy and manage connectors (http-pull sources, http/postgres sinks).
    #[command(subcommand)]
    Connector(ConnectorCmd),
    /// Consumer groups: members, lag, delete, reset offsets.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Run the transform deployments of a worker group over an existing Kafka cluster, exactly once (transactions), with the plugins/transforms API.
    Worker(crate::worker::WorkerArgs),
}

/// Runs a client command against the server named by `--server` (the registry named by
/// `--registry` for `schema`).
pub async fn run(command: Command, server: &str, registry: &str) -> anyhow::Result<()> {
    let c = || server_url(server).map(|u| Client::new(&u));
    match command {
        Command::Topic(cmd) => topics::run(&c()?, cmd).await,
        Command::Produce(args) => records::produce(&c()?, args).await,
        Command::Consume(args) => records::consume(&c()?, args).await,
        Command::Plugin(PluginCmd::New { name, sdk, lang }) => plugins::scaffold(&name, sdk, lang),
        Command::Plugin(cmd) => plugins::run(&c()?, cmd).await,
        Command::Transform(cmd) => deployments::transform(&c()?, cmd).await,
        Command::Connector(cmd) => deployments::connector(&c()?, cmd).await,
        Command::Group(cmd) => groups::run(&c()?, cmd).await,
        Command::Schema(cmd) => schemas::run(&Client::new(&server_url(registry)?), cmd).await,
        Command::Serve(_) | Command::Demo | Command::Worker(_) => Ok(()),
    }
}
