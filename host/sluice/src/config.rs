//! The server's resolved settings: command-line flags over the TOML file over defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use sluice_config::{KafkaSettings, Limits, LogSettings, TlsFiles};

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
    /// Host:port given to Kafka clients.
    pub advertise: Option<String>,
    pub kafka_settings: KafkaSettings,
    /// Identities; none = open (loopback only unless `insecure`).
    pub auth: Option<std::sync::Arc<sluice_auth::Auth>>,
    /// Certificate and key; both listeners speak TLS when set.
    pub tls: Option<TlsFiles>,
}

impl ServerConfig {
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
        Ok(())
    }
}
