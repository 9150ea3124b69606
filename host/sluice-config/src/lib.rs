//! The server's settings as the TOML file states them, and every limit the layers obey.
//! Pure data: each layer takes its part (`Limits` for HTTP, `KafkaSettings`, …) from here;
//! the `sluice` binary merges command-line flags over the file over these defaults.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The TOML file. Every key is optional; flags given on the command line win.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http: Option<String>,
    pub kafka: Option<String>,
    /// The Schema Registry's listen address, or `off`.
    pub schema_registry: Option<String>,
    pub advertise: Option<String>,
    pub insecure: bool,
    pub plugins_dir: Option<PathBuf>,
    pub limits: Limits,
    pub log: LogSettings,
    pub auth: AuthConfig,
    pub kafka_settings: KafkaSettings,
    pub tls: Option<TlsFiles>,
    /// The object store of tiered topics.
    pub tier: Option<TierStore>,
    /// Built-in alerts and where they are sent.
    pub alerts: AlertsConfig,
}

/// `[alerts]`: the built-in rules (each under `[alerts.rules.NAME]`, on unless `enabled =
/// false`) and the webhook receivers (`[[alerts.receivers]]`) their notifications go to.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// How often the rules are checked.
    pub evaluation_interval_ms: u64,
    /// The address put in notifications' links (`externalURL`, `generatorURL`); default
    /// the HTTP listener's.
    pub external_url: Option<String>,
    pub rules: AlertRules,
    pub receivers: Vec<AlertReceiver>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            evaluation_interval_ms: 5_000,
            external_url: None,
            rules: AlertRules::default(),
            receivers: Vec::new(),
        }
    }
}

/// The built-in rules' settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertRules {
    /// `SluiceTransformFailing`: a deployment that cannot run, or whose plugin trapped at
    /// least `traps` times within `window_ms`.
    pub transform_failing: TransformFailingRule,
    /// `SluiceLagGrowing`: a transform's or sink's lag above zero and higher than it was
    /// `for_ms` ago, at every check in between.
    pub lag_growing: LagGrowingRule,
    /// `SluiceDeadLetters`: a transform dead-lettering more than `per_second` over
    /// `window_ms`.
    pub dead_letters: DeadLettersRule,
    /// `SluiceTierUploadsFailing`: tiered storage failed within the last `window_ms`.
    pub tier_failing: TierFailingRule,
    /// `SluiceDiskLow` / `SluiceDiskFull`: the data disk below `[log] alert_free_bytes`, or
    /// refusing writes.
    pub disk: DiskRule,
    /// `SluiceConsumerGroupLag`: a Kafka consumer group's lag above `threshold` for `for_ms`.
    pub group_lag: GroupLagRule,
}

fn yes() -> bool {
    true
}

macro_rules! rule {
    ($name:ident { $($field:ident: $ty:ty = $default:expr),* $(,)? }) => {
        #[derive(Debug, Clone, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            #[serde(default = "yes")]
            pub enabled: bool,
            $(pub $field: $ty,)*
        }
        impl Default for $name {
            fn default() -> Self {
                $name { enabled: true, $($field: $default,)* }
            }
        }
    };
}

rule!(TransformFailingRule {
    traps: u64 = 3,
    window_ms: u64 = 60_000
});
rule!(LagGrowingRule {
    for_ms: u64 = 300_000
});
rule!(DeadLettersRule {
    per_second: f64 = 1.0,
    window_ms: u64 = 60_000
});
rule!(TierFailingRule {
    window_ms: u64 = 300_000
});
rule!(DiskRule {});
rule!(GroupLagRule {
    threshold: u64 = 10_000,
    for_ms: u64 = 60_000
});

/// `[[alerts.receivers]]`: a webhook that gets notifications.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertReceiver {
    pub name: String,
    pub url: String,
    /// `webhook` (Alertmanager's webhook payload, once when an alert fires and once when
    /// it resolves: Slack and PagerDuty bridges take it) or `alertmanager` (its
    /// `POST /api/v2/alerts`, firing alerts sent again every `resend_ms` as Prometheus does).
    #[serde(default)]
    pub format: ReceiverFormat,
    /// Sent as `Authorization: Bearer TOKEN`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// Send a notification when an alert resolves (default true).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    #[serde(default = "default_receiver_timeout_ms")]
    pub timeout_ms: u64,
    /// `alertmanager`: how often firing alerts are sent again.
    #[serde(default = "default_resend_ms")]
    pub resend_ms: u64,
}

fn default_receiver_timeout_ms() -> u64 {
    10_000
}

fn default_resend_ms() -> u64 {
    60_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverFormat {
    #[default]
    Webhook,
    Alertmanager,
}

/// `[tier]` in the config file: where tiered topics put their sealed segments.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierStore {
    /// `s3` (any S3-compatible store: AWS, MinIO, moto, …), `local` (a directory;
    /// buckets are directories under `root`) or `memory` (this process's memory, gone at
    /// exit: benchmarks and trials only).
    pub kind: TierKind,
    /// S3: the endpoint URL (default AWS's for `region`).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    /// S3 credentials (default: the AWS_* environment variables).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// S3: allow `http://` endpoints (test stores on loopback).
    #[serde(default)]
    pub allow_http: bool,
    /// `local`: the directory holding the buckets.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Bytes of remote data kept in memory for reads (default 256 MiB).
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: u64,
    /// How often sealed segments are looked for and uploaded (default 1000 ms).
    #[serde(default = "default_upload_interval_ms")]
    pub upload_interval_ms: u64,
    /// Segments are read for upload at most this fast (default 200 MiB/s; 0 = no limit),
    /// in 256 KiB steps with pauses between them: reading whole segments at full speed
    /// next to fsynced appends doubles their p99 on a small machine.
    #[serde(default = "default_max_upload_bytes_per_sec")]
    pub max_upload_bytes_per_sec: u64,
    /// Where `sluice serve --restore-from-tier` looks for topics: this bucket, under
    /// `restore_prefix` (default `sluice`).
    #[serde(default)]
    pub restore_bucket: Option<String>,
    #[serde(default = "default_restore_prefix")]
    pub restore_prefix: String,
}

impl std::fmt::Debug for TierStore {
    /// Without the secret key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TierStore")
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TierKind {
    S3,
    Local,
    Memory,
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_cache_bytes() -> u64 {
    256 << 20
}

fn default_upload_interval_ms() -> u64 {
    1000
}

fn default_max_upload_bytes_per_sec() -> u64 {
    200 << 20
}

fn default_restore_prefix() -> String {
    "sluice".into()
}

/// `[kafka_settings]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Create unknown topics when a Kafka client produces to or asks metadata for them.
    pub auto_create_topics: bool,
    /// Partitions of auto-created topics.
    pub default_partitions: u32,
    /// How long the first member to join an empty consumer group waits for others, so
    /// members starting together land in one generation (Kafka's
    /// `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay_ms: u64,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            auto_create_topics: true,
            default_partitions: 1,
            group_initial_rebalance_delay_ms: 3000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// How often retention limits are enforced.
    pub retention_check_ms: u64,
    /// Produce is refused (`storage_full`) when an append would leave less than this free
    /// on the data directory's filesystem (0: 1% of it, at least 4 MiB, at most 1 GiB).
    pub min_free_bytes: u64,
    /// Below this much free space the disk is reported `low` (0: 5% of the filesystem,
    /// at least twice `min_free_bytes`).
    pub alert_free_bytes: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            retention_check_ms: 30_000,
            min_free_bytes: 0,
            alert_free_bytes: 0,
        }
    }
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Invalid { path: String, message: String },
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })
    }
}

/// `[auth]` in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub identities: Vec<Identity>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    /// Glob patterns of topic names (producer/consumer only).
    #[serde(default)]
    pub topics: Vec<String>,
    /// Hex SHA-256 of the bearer token.
    pub token_sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Producer,
    Consumer,
    Viewer,
    Operator,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        })
    }
}

/// `[tls]` in the config file: PEM files; both listeners then speak TLS only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Bounds on what one request may ask of the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Produce bytes being appended at once across all requests (429 above).
    pub max_inflight_produce_bytes: usize,
    /// Records in one produce request.
    pub max_records_per_request: usize,
    /// Longest long-poll wait a consumer may ask for.
    pub max_wait_ms: u64,
    /// Most records one consume request returns.
    pub max_records_per_fetch: usize,
    /// Largest plugin component accepted by `PUT /v1/plugins/{name}` (413 above).
    pub max_plugin_bytes: usize,
    /// Open HTTP connections; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Open Kafka connections; one more is closed at once.
    pub max_kafka_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_inflight_produce_bytes: 256 << 20,
            max_records_per_request: 100_000,
            max_wait_ms: 30_000,
            max_records_per_fetch: 10_000,
            max_plugin_bytes: 32 << 20,
            max_connections: 1024,
            max_kafka_connections: 1024,
        }
    }
}
