//! The server's resolved settings: command-line flags over the TOML file over defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use sluice_config::{FileConfig, KafkaSettings, Limits, LogSettings, TlsFiles};

/// The address a name resolves to first.
async fn resolve(flag: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("--{flag} {addr}: not an address (expected HOST:PORT)"))?
        .next()
        .with_context(|| format!("--{flag} {addr} resolves to no address"))
}

/// Everything `server::run` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub http: SocketAddr,
    pub insecure: bool,
    pub plugins_dir: Option<PathBuf>,
    pub limits: Limits,
    pub log: LogSettings,
    /// Kafka listener address, if any.
    pub kafka: Option<SocketAddr>,
    /// The Schema Registry's listener address, if any.
    pub schema_registry: Option<SocketAddr>,
    /// Host:port given to Kafka clients.
    pub advertise: Option<String>,
    pub kafka_settings: KafkaSettings,
    /// Identities; none = open (loopback only unless `insecure`).
    pub auth: Option<std::sync::Arc<sluice_auth::Auth>>,
    /// Certificate and key; both listeners speak TLS when set.
    pub tls: Option<TlsFiles>,
    /// The object store of tiered topics (`[tier]`).
    pub tier: Option<sluice_config::TierStore>,
    /// Rebuild tiered topics missing from the data directory from the object store first.
    pub restore_from_tier: bool,
    /// Built-in alerts and their receivers (`[alerts]`).
    pub alerts: sluice_config::AlertsConfig,
}

impl ServerConfig {
    /// Flags over the config file (when one is given) over the defaults.
    pub async fn from_flags(args: ServeArgs) -> anyhow::Result<ServerConfig> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let http = args
            .http
            .or(file.http)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let kafka = args
            .kafka
            .or(file.kafka)
            .unwrap_or_else(|| "127.0.0.1:9092".into());
        let schema_registry = args
            .schema_registry
            .or(file.schema_registry)
            .unwrap_or_else(|| "127.0.0.1:8081".into());
        let config = ServerConfig {
            data_dir: args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| "sluice-data".into()),
            http: resolve("http", &http).await?,
            insecure: args.insecure || file.insecure,
            plugins_dir: args.plugins_dir.or(file.plugins_dir),
            limits: file.limits,
            log: file.log,
            kafka: match kafka.as_str() {
                "off" => None,
                addr => Some(resolve("kafka", addr).await?),
            },
            schema_registry: match schema_registry.as_str() {
                "off" => None,
                addr => Some(resolve("schema-registry", addr).await?),
            },
            advertise: args.advertise.or(file.advertise),
            kafka_settings: file.kafka_settings,
            auth: sluice_auth::Auth::from_config(&file.auth)?,
            tls: file.tls,
            tier: file.tier,
            restore_from_tier: args.restore_from_tier,
            alerts: file.alerts,
        };
        sluice_api::alerts::check(&config.alerts).map_err(|e| anyhow::anyhow!(e))?;
        if config.restore_from_tier && config.tier.is_none() {
            anyhow::bail!(
                "--restore-from-tier needs [tier] in the config file (the object store to restore from)"
            );
        }
        config.check_exposure()?;
        Ok(config)
    }

    /// Refuses to expose an unauthenticated server beyond this machine.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        if self.auth.is_some() {
            return Ok(());
        }
        if !self.http.ip().is_loopback() && !self.insecure {
            anyhow::bail!(
                "refusing to bind {} (not loopback) without authentication; \
                 bind 127.0.0.1 or pass --insecure",
                self.http
            );
        }
        if let Some(k) = self.kafka
            && !k.ip().is_loopback()
            && !self.insecure
        {
            anyhow::bail!(
                "refusing to bind Kafka on {k} (not loopback) without authentication; pass --insecure"
            );
        }
        if let Some(r) = self.schema_registry
            && !r.ip().is_loopback()
            && !self.insecure
        {
            anyhow::bail!(
                "refusing to bind the schema registry on {r} (not loopback) without authentication; pass --insecure"
            );
        }
        Ok(())
    }
}

/// `sluice serve`'s flags.
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
    /// Schema Registry (Confluent REST API v1) listen address, or `off`
    /// [default: 127.0.0.1:8081].
    #[arg(long)]
    pub schema_registry: Option<String>,
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
