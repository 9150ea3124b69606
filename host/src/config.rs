//! The server's settings: command-line flags over the optional TOML file over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::Limits;
use crate::auth::AuthConfig;

/// The TOML file. Every key is optional; flags given on the command line win.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http: Option<String>,
    pub kafka: Option<String>,
    pub advertise: Option<String>,
    pub insecure: bool,
    pub plugins_dir: Option<PathBuf>,
    pub limits: Limits,
    pub log: LogSettings,
    pub auth: AuthConfig,
    pub kafka_settings: KafkaSettings,
    pub tls: Option<crate::tls::TlsFiles>,
}

/// `[kafka_settings]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Create unknown topics when a Kafka client produces to or asks metadata for them.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: u32,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            auto_create_topics: true,
            default_partitions: 1,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// How often retention limits are enforced.
    pub retention_check_ms: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            retention_check_ms: 30_000,
        }
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))
    }
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
    /// Host:port given to Kafka clients.
    pub advertise: Option<String>,
    pub kafka_settings: KafkaSettings,
    /// Identities; none = open (loopback only unless `insecure`).
    pub auth: Option<std::sync::Arc<crate::auth::Auth>>,
    /// Certificate and key; both listeners speak TLS when set.
    pub tls: Option<crate::tls::TlsFiles>,
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
