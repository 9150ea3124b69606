//! Connectors: the two ends of a pipeline that Sluice runs itself — `http-pull` sources that
//! poll an API on a schedule into a topic, and sinks (`http-sink`, `postgres-sink`) that serve
//! a topic to a store. Each connector is a set of tokio tasks (I/O bound, nothing to block a
//! thread for); one failing endpoint never holds up another connector.
//!
//! Delivery: a source records what it is about to append before appending it, so a crash in
//! between is repaired on restart without duplicates (`pull.rs`). A sink advances its position
//! only after the store acknowledged (`sink.rs`); the PostgreSQL sink commits the position in
//! the same transaction as the rows (`postgres.rs`).

mod http_sink;
pub mod nexmark;
mod postgres;
mod pull;
mod sink;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use sluice_log::{Log, LogError, now_ms};

pub use http_sink::HttpSinkSpec;
pub use nexmark::NexmarkSpec;
pub use postgres::PostgresSinkSpec;
pub use pull::PullSpec;

/// What `PUT /v1/connectors/{name}` accepts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConnectorSpec {
    HttpPull(PullSpec),
    HttpSink(HttpSinkSpec),
    PostgresSink(PostgresSinkSpec),
    Nexmark(NexmarkSpec),
}

impl ConnectorSpec {
    pub fn topic(&self) -> &str {
        match self {
            ConnectorSpec::HttpPull(s) => &s.topic,
            ConnectorSpec::HttpSink(s) => &s.topic,
            ConnectorSpec::PostgresSink(s) => &s.topic,
            ConnectorSpec::Nexmark(s) => s.topics().first().copied().unwrap_or_default(),
        }
    }

    /// Every topic the connector reads or writes.
    pub fn topics(&self) -> Vec<&str> {
        match self {
            ConnectorSpec::Nexmark(s) => s.topics(),
            _ => vec![self.topic()],
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorSpec::HttpPull(_) => "http-pull",
            ConnectorSpec::HttpSink(_) => "http-sink",
            ConnectorSpec::PostgresSink(_) => "postgres-sink",
            ConnectorSpec::Nexmark(_) => "nexmark",
        }
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            ConnectorSpec::HttpPull(s) => s.validate(),
            ConnectorSpec::HttpSink(s) => s.validate(),
            ConnectorSpec::PostgresSink(s) => s.validate(),
            ConnectorSpec::Nexmark(s) => s.validate(),
        }
    }

    /// The spec as GET shows it: header values and passwords replaced.
    pub fn redacted(&self) -> ConnectorSpec {
        let mut s = self.clone();
        match &mut s {
            ConnectorSpec::HttpPull(p) => {
                redact_headers(&mut p.headers);
                p.url = redact_url(&p.url);
            }
            ConnectorSpec::HttpSink(h) => {
                redact_headers(&mut h.headers);
                h.url = redact_url(&h.url);
            }
            ConnectorSpec::PostgresSink(p) => p.dsn = redact_dsn(&p.dsn),
            ConnectorSpec::Nexmark(_) => {}
        }
        s
    }
}

pub(crate) const REDACTED: &str = "***";

fn redact_headers(h: &mut BTreeMap<String, String>) {
    for v in h.values_mut() {
        *v = REDACTED.to_string();
    }
}

/// Hides the password of `scheme://user:password@host/…`.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(REDACTED));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Hides the password of a DSN in URL form or `key=value` form.
pub(crate) fn redact_dsn(dsn: &str) -> String {
    if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        return redact_url(dsn);
    }
    dsn.split_whitespace()
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={REDACTED}"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a connector runs, is paused, or failed its last attempt (and is retrying).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConnectorState {
    Running,
    Paused,
    Failed,
}

/// The last error a connector met, and when.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastError {
    pub at_ms: i64,
    pub message: String,
}

/// Where a sink stands on one partition of its topic.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SinkPartition {
    pub partition: u32,
    pub position: u64,
    pub lag: u64,
}

/// What only sources or only sinks have.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ConnectorDetail {
    Source {
        /// When the next poll is due (ms since the epoch).
        next_run_ms: Option<i64>,
    },
    Generator {
        /// Events generated so far (all types; the next event's number).
        generated: u64,
    },
    Sink {
        partitions: Vec<SinkPartition>,
        /// Records not delivered yet, over all partitions.
        lag: u64,
    },
}

/// The status of one connector (`GET /v1/connectors/{name}`), secrets redacted.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectorStatus {
    pub name: String,
    pub kind: &'static str,
    pub topic: String,
    pub status: ConnectorState,
    /// The spec as deployed, secrets replaced by `***`.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub spec: Value,
    pub records: u64,
    pub dead_letters: u64,
    pub failures: u64,
    pub requests: u64,
    pub last_error: Option<LastError>,
    #[serde(flatten)]
    pub detail: ConnectorDetail,
}

/// Why a connector request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("invalid connector name {0:?}: use 1-100 of [a-zA-Z0-9._-]")]
    BadName(String),
    #[error("unknown connector {0}")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("connector state: {0}")]
    Io(#[from] std::io::Error),
}

/// Counters and health of one running connector, shared by its tasks.
#[derive(Debug, Default)]
pub struct Health {
    /// Records imported (sources) or delivered (sinks).
    pub records: AtomicU64,
    /// Records sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Failed attempts (each retried).
    pub failures: AtomicU64,
    /// Successful requests / transactions.
    pub requests: AtomicU64,
    /// Events generated (the `nexmark` source).
    pub generated: AtomicU64,
    /// Next scheduled poll (sources), ms since the epoch; 0 = none.
    pub next_run_ms: AtomicI64,
    /// Positions of a sink per partition (next offset to deliver).
    pub positions: Mutex<BTreeMap<u32, u64>>,
    /// The last failure and when; cleared by the next success.
    pub last_error: Mutex<Option<(i64, String)>>,
    /// A failure that is not cleared by success (kept for the status document).
    pub last_error_seen: Mutex<Option<(i64, String)>>,
}

impl Health {
    pub fn failed(&self, name: &str, err: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            connector = name,
            error = err,
            "connector attempt failed; retrying"
        );
        let e = Some((now_ms(), err.to_string()));
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.clone();
        *self
            .last_error_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = e;
    }

    /// A request or transaction succeeded.
    pub fn ok(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.recovered();
    }

    /// The last failure is over (without a request of its own to count).
    pub fn recovered(&self) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn set_position(&self, partition: u32, next: u64) {
        self.positions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition, next);
    }
}

/// One deployed connector.
pub struct Connector {
    pub name: String,
    pub spec: ConnectorSpec,
    pub dir: PathBuf,
    pub health: Arc<Health>,
    paused: watch::Sender<bool>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    created_ms: i64,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("name", &self.name)
            .finish()
    }
}

impl Connector {
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    fn persist(&self) -> Result<(), ConnectorError> {
        let doc = Persisted {
            spec: self.spec.clone(),
            paused: self.is_paused(),
            created_ms: self.created_ms,
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
        let path = self.dir.join("connector.json");
        sluice_common::fs::write_file(&path, &bytes)?;
        // The spec may hold secrets (tokens, DSN passwords): owner only.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    spec: ConnectorSpec,
    paused: bool,
    #[serde(default)]
    created_ms: i64,
}

/// What every connector task gets.
#[derive(Clone)]
pub(crate) struct TaskEnv {
    pub name: String,
    pub dir: PathBuf,
    pub health: Arc<Health>,
    pub paused: watch::Receiver<bool>,
    pub cancel: CancellationToken,
    pub http: reqwest::Client,
}

impl TaskEnv {
    /// Waits while paused; false when the connector is stopping.
    pub async fn wait_unpaused(&mut self) -> bool {
        loop {
            if self.cancel.is_cancelled() {
                return false;
            }
            if !*self.paused.borrow_and_update() {
                return true;
            }
            tokio::select! {
                r = self.paused.changed() => if r.is_err() { return false },
                _ = self.cancel.cancelled() => return false,
            }
        }
    }

    /// Sleeps unless the connector stops first; false when stopping.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.cancel.cancelled() => false,
        }
    }
}

/// An HTTP client error with its causes ("error sending request: connection refused"),
/// without the URL (it may carry credentials; callers name the redacted URL themselves).
pub(crate) fn http_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The value at a dotted path (`a.b.c`) of a JSON document.
pub(crate) fn json_path<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, part| match v {
        Value::Object(m) => m.get(part),
        Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Exponential backoff from 200 ms, doubling to `cap`, with jitter.
pub(crate) fn backoff(attempt: u32, cap: Duration) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1u32 << attempt.min(16));
    let d = base.min(cap);
    d.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// Every connector of the server.
pub struct Connectors {
    log: Arc<Log>,
    dir: PathBuf,
    rt: tokio::runtime::Handle,
    http: reqwest::Client,
    connectors: RwLock<HashMap<String, Arc<Connector>>>,
    /// Serialises deploy/delete of one name against another.
    control: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors")
            .field("dir", &self.dir)
            .finish()
    }
}

use sluice_deploy::names::valid_name;

impl Connectors {
    /// Opens the connector state and starts every persisted connector. Blocking (file
    /// reads, topic creation); call it from a blocking thread of the tokio runtime.
    pub fn open(log: Arc<Log>, dir: PathBuf) -> Result<Arc<Connectors>, ConnectorError> {
        std::fs::create_dir_all(&dir)?;
        // reqwest uses the process-wide rustls provider (https sources and sinks).
        sluice_auth::tls::install_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::Invalid(e.to_string()))?;
        let c = Arc::new(Connectors {
            log,
            dir: dir.clone(),
            rt: tokio::runtime::Handle::current(),
            http,
            connectors: RwLock::default(),
            control: tokio::sync::Mutex::new(()),
        });
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(text) = std::fs::read(entry.path().join("connector.json")) else {
                continue;
            };
            match serde_json::from_slice::<Persisted>(&text) {
                Ok(p) => {
                    if let Err(e) = c.start(&name, p.spec, p.paused, p.created_ms) {
                        tracing::error!(connector = %name, error = %e, "connector could not restart");
                    }
                }
                Err(e) => {
                    tracing::error!(connector = %name, error = %e, "unreadable connector state; not started")
                }
            }
        }
        Ok(c)
    }

    fn validate(&self, name: &str, spec: &ConnectorSpec) -> Result<(), ConnectorError> {
        if !valid_name(name) {
            return Err(ConnectorError::BadName(name.to_string()));
        }
        spec.validate().map_err(ConnectorError::Invalid)?;
        for t in spec.topics() {
            self.log
                .topic(t)
                .map_err(|_| ConnectorError::UnknownTopic(t.to_string()))?;
        }
        Ok(())
    }

    /// Creates or replaces a connector. Returns whether it was created. A replaced connector
    /// keeps its cursor/positions when its kind and topic stay the same.
    pub async fn deploy(
        self: &Arc<Self>,
        name: &str,
        spec: ConnectorSpec,
    ) -> Result<bool, ConnectorError> {
        let _g = self.control.lock().await;
        self.validate(name, &spec)?;
        let (created, paused, created_ms) = match self.get(name) {
            Ok(old) => {
                let keep = old.spec.kind() == spec.kind() && old.spec.topic() == spec.topic();
                let paused = old.is_paused();
                let created_ms = old.created_ms;
                self.stop(&old).await;
                self.connectors
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(name);
                if !keep {
                    let dir = old.dir.clone();
                    tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir))
                        .await
                        .map_err(std::io::Error::other)??;
                }
                (false, paused, created_ms)
            }
            Err(_) => (true, false, now_ms()),
        };
        // Creating the dead-letter topic and writing the spec fsync: off the reactor.
        let (this, n) = (self.clone(), name.to_string());
        tokio::task::spawn_blocking(move || this.start(&n, spec, paused, created_ms))
            .await
            .map_err(std::io::Error::other)??;
        tracing::info!(connector = name, created, "connector deployed");
        Ok(created)
    }

    fn start(
        &self,
        name: &str,
        spec: ConnectorSpec,
        paused: bool,
        created_ms: i64,
    ) -> Result<(), ConnectorError> {
        let topic = self
            .log
            .topic(spec.topic())
            .map_err(|_| ConnectorError::UnknownTopic(spec.topic().to_string()))?;
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let (paused_tx, paused_rx) = watch::channel(paused);
        let c = Arc::new(Connector {
            name: name.to_string(),
            spec: spec.clone(),
            dir: dir.clone(),
            health: Arc::new(Health::default()),
            paused: paused_tx,
            cancel: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            created_ms,
        });
        c.persist()?;
        let env = TaskEnv {
            name: name.to_string(),
            dir,
            health: c.health.clone(),
            paused: paused_rx,
            cancel: c.cancel.clone(),
            http: self.http.clone(),
        };
        let mut tasks = Vec::new();
        match spec {
            ConnectorSpec::HttpPull(s) => {
                tasks.push(self.rt.spawn(pull::run(env, s, topic)));
            }
            ConnectorSpec::Nexmark(s) => {
                nexmark::own(&self.log, &s, name, true);
                tasks.push(self.rt.spawn(nexmark::run(env, s, self.log.clone())));
            }
            ConnectorSpec::HttpSink(s) => {
                let dlq = self.dead_letter_topic(&s.dead_letter_topic(), &topic)?;
                for p in &topic.partitions {
                    let sink = http_sink::HttpSink::new(&env, &s, p.id);
                    tasks.push(self.spawn_sink(&env, sink, p, &dlq, &s.batch, s.start));
                }
            }
            ConnectorSpec::PostgresSink(s) => {
                let dlq = self.dead_letter_topic(&s.dead_letter_topic(), &topic)?;
                for p in &topic.partitions {
                    let sink = postgres::PgSink::new(&env, &s, p.id);
                    tasks.push(self.spawn_sink(&env, sink, p, &dlq, &s.batch, s.start));
                }
            }
        }
        *c.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        self.connectors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), c);
        Ok(())
    }

    /// One partition's sink loop.
    fn spawn_sink<S: sink::Sink>(
        &self,
        env: &TaskEnv,
        sink: S,
        part: &Arc<sluice_log::Partition>,
        dlq: &Arc<sluice_log::Topic>,
        batch: &BatchSpec,
        start: SinkStart,
    ) -> JoinHandle<()> {
        self.rt.spawn(sink::run(
            env.clone(),
            sink,
            part.clone(),
            dlq.clone(),
            batch.clone(),
            start,
        ))
    }

    fn dead_letter_topic(
        &self,
        name: &str,
        source: &sluice_log::Topic,
    ) -> Result<Arc<sluice_log::Topic>, ConnectorError> {
        Ok(sluice_log::dead_letter::topic(&self.log, name, source)?)
    }

    async fn stop(&self, c: &Connector) {
        c.cancel.cancel();
        let tasks = std::mem::take(&mut *c.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        if let ConnectorSpec::Nexmark(s) = &c.spec {
            nexmark::own(&self.log, s, &c.name, false);
        }
    }

    pub fn get(&self, name: &str) -> Result<Arc<Connector>, ConnectorError> {
        self.connectors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| ConnectorError::Unknown(name.to_string()))
    }

    pub fn list(&self) -> Vec<Arc<Connector>> {
        let mut v: Vec<_> = self
            .connectors
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub async fn set_paused(&self, name: &str, paused: bool) -> Result<(), ConnectorError> {
        let c = self.get(name)?;
        c.paused.send_replace(paused);
        tokio::task::spawn_blocking(move || c.persist())
            .await
            .map_err(std::io::Error::other)?
    }

    /// Stops a connector and forgets it with its cursor and positions.
    pub async fn delete(&self, name: &str) -> Result<(), ConnectorError> {
        let _g = self.control.lock().await;
        let c = self.get(name)?;
        self.stop(&c).await;
        self.connectors
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let dir = c.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir))
            .await
            .map_err(std::io::Error::other)??;
        tracing::info!(connector = name, "connector deleted");
        Ok(())
    }

    /// Stops every connector (graceful shutdown): each finishes its current step.
    pub async fn shutdown(&self) {
        for c in self.list() {
            self.stop(&c).await;
        }
    }

    /// The status of one connector (secrets redacted).
    pub fn status(&self, c: &Connector) -> ConnectorStatus {
        let h = &c.health;
        let failing = h
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let last = h
            .last_error_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let status = if c.is_paused() {
            ConnectorState::Paused
        } else if failing.is_some() {
            ConnectorState::Failed
        } else {
            ConnectorState::Running
        };
        let detail = match &c.spec {
            ConnectorSpec::HttpPull(_) => {
                let next = h.next_run_ms.load(Ordering::Relaxed);
                ConnectorDetail::Source {
                    next_run_ms: (next > 0).then_some(next),
                }
            }
            ConnectorSpec::Nexmark(_) => ConnectorDetail::Generator {
                generated: h.generated.load(Ordering::Relaxed),
            },
            ConnectorSpec::HttpSink(_) | ConnectorSpec::PostgresSink(_) => {
                let topic = self.log.topic(c.spec.topic()).ok();
                let positions = h
                    .positions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let partitions: Vec<SinkPartition> = positions
                    .iter()
                    .map(|(p, pos)| {
                        let hw = topic
                            .as_ref()
                            .and_then(|t| t.partitions.get(*p as usize))
                            .map_or(*pos, |x| x.high_watermark());
                        SinkPartition {
                            partition: *p,
                            position: *pos,
                            lag: hw.saturating_sub(*pos),
                        }
                    })
                    .collect();
                let lag = partitions.iter().map(|p| p.lag).sum();
                ConnectorDetail::Sink { partitions, lag }
            }
        };
        ConnectorStatus {
            name: c.name.clone(),
            kind: c.spec.kind(),
            topic: c.spec.topic().to_string(),
            status,
            spec: serde_json::to_value(c.spec.redacted()).unwrap_or(Value::Null),
            records: h.records.load(Ordering::Relaxed),
            dead_letters: h.dead_letters.load(Ordering::Relaxed),
            failures: h.failures.load(Ordering::Relaxed),
            requests: h.requests.load(Ordering::Relaxed),
            last_error: last.map(|(at_ms, message)| LastError { at_ms, message }),
            detail,
        }
    }
}

/// Where a sink starts when it has no stored position.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkStart {
    #[default]
    Earliest,
    Latest,
}

/// How a sink groups records into one request / transaction.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSpec {
    pub max_records: usize,
    pub max_bytes: usize,
    pub linger_ms: u64,
}

impl Default for BatchSpec {
    fn default() -> Self {
        BatchSpec {
            max_records: 500,
            max_bytes: 1 << 20,
            linger_ms: 100,
        }
    }
}

impl BatchSpec {
    fn validate(&self) -> Result<(), String> {
        if self.max_records == 0 || self.max_records > 100_000 {
            return Err("batch.max_records must be 1..=100000".into());
        }
        if self.max_bytes == 0 || self.max_bytes > 64 << 20 {
            return Err("batch.max_bytes must be 1..=67108864".into());
        }
        if self.linger_ms > 60_000 {
            return Err("batch.linger_ms must be at most 60000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_dsn("postgres://app:s3cret@127.0.0.1:5432/db"),
            "postgres://app:***@127.0.0.1:5432/db"
        );
        assert_eq!(
            redact_dsn("host=/tmp user=app password=s3cret dbname=x"),
            "host=/tmp user=app password=*** dbname=x"
        );
        assert_eq!(redact_url("http://u:p@h/x?y=1"), "http://u:***@h/x?y=1");
        assert_eq!(redact_url("http://h/x"), "http://h/x");
    }

    #[test]
    fn backoff_grows_to_the_cap() {
        let cap = Duration::from_secs(5);
        assert!(backoff(0, cap) <= Duration::from_millis(250));
        assert!(backoff(20, cap) <= Duration::from_millis(6250));
        assert!(backoff(20, cap) >= Duration::from_millis(3750));
    }
}
