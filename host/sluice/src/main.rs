//! The `sluice` binary: parses the command line and hands over to the library.

use clap::Parser;
use sluice::cli::{Cli, Command};
use sluice::config::ServerConfig;
use sluice_config::FileConfig;

fn main() -> anyhow::Result<()> {
    sluice_auth::tls::install_provider();
    let cli = Cli::parse();
    // The demo prints its own story; the server's info lines would drown it.
    let default_filter = match cli.command {
        Command::Demo => "warn",
        _ => "info,tower_http=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Demo => sluice::demo::run().await,
            Command::Topic(cmd) => sluice::cli::topic(cmd).await,
            Command::Produce(args) => sluice::cli::produce(args).await,
            Command::Consume(args) => sluice::cli::consume(args).await,
            Command::Plugin(cmd) => sluice::cli::plugin(cmd).await,
            Command::Transform(cmd) => sluice::cli::transform(cmd).await,
            Command::Connector(cmd) => sluice::cli::connector(cmd).await,
        }
    })
}

async fn serve(args: sluice::cli::ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let http = args
        .http
        .or(file.http)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let http: std::net::SocketAddr = tokio::net::lookup_host(&http)
        .await?
        .next()
        .ok_or_else(|| anyhow::anyhow!("--http {http} resolves to no address"))?;
    let config = ServerConfig {
        data_dir: args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| "sluice-data".into()),
        http,
        insecure: args.insecure || file.insecure,
        plugins_dir: args.plugins_dir.or(file.plugins_dir),
        limits: file.limits,
        log: file.log,
        kafka: None,
        advertise: args.advertise.or(file.advertise),
        kafka_settings: file.kafka_settings.clone(),
        auth: sluice_auth::Auth::from_config(&file.auth)?,
        tls: file.tls.clone(),
    };
    let kafka = args
        .kafka
        .or(file.kafka)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let mut config = config;
    if kafka != "off" {
        config.kafka = Some(
            tokio::net::lookup_host(&kafka)
                .await?
                .next()
                .ok_or_else(|| anyhow::anyhow!("--kafka {kafka} resolves to no address"))?,
        );
    }
    config.check_exposure()?;
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind {}: {e}", config.http))?;
    let kafka_listener = match config.kafka {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot bind Kafka listener {addr}: {e}"))?,
        ),
        None => None,
    };
    sluice::server::run(
        config,
        listener,
        kafka_listener,
        sluice::server::shutdown_signal(),
    )
    .await
}
