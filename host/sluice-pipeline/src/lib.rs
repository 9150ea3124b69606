//! Transform pipelines: deployments of plugins between topics, their partition tasks,
//! hot swaps, pause/resume, status, and the plugin store and tables they use.
//!
//! The pipeline calls into the log and the runtime; neither calls back into it.

mod appender;
pub mod checkpoint;
pub mod plugins;
pub mod recover;
pub mod state;
pub mod tables;
mod task;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use recover::{SOURCE_HEADER, VERSION_HEADER};

use checkpoint::Checkpoint;
use plugins::{PluginError, PluginStore};
use sluice_common::fs::write_file;
use sluice_log::{Log, LogError, TopicConfig, validate_topic_name};
use sluice_runtime::state::{StateBudget, StateStore};
use sluice_runtime::{Compiled, Executor, InstanceConfig, Interrupt, Limits, LogLine, LogSink};
use tables::TableRegistry;
use task::{StateShared, Stateful, TaskCtx, TaskShared};

pub use task::RestoreInfo;

/// A version selector: a number, or `"latest"` (follows new uploads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionSel {
    #[default]
    Latest,
    Exact(u32),
}

impl Serialize for VersionSel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            VersionSel::Latest => s.serialize_str("latest"),
            VersionSel::Exact(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for VersionSel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "latest" => Ok(VersionSel::Latest),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(VersionSel::Exact)
                .ok_or_else(|| {
                    serde::de::Error::custom("version must be a positive integer or \"latest\"")
                }),
            _ => Err(serde::de::Error::custom(
                "version must be a positive integer or \"latest\"",
            )),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    #[default]
    Earliest,
    Latest,
}

/// What `PUT /v1/transforms/{name}` takes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    pub plugin: String,
    /// A version number or `"latest"` (follows new uploads).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub version: VersionSel,
    pub input: String,
    pub outputs: Vec<String>,
    #[serde(default)]
    pub dead_letter: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Config values the plugin reads like `config` but nobody else sees: GET shows them as
    /// `***`, the server never logs them, and a re-PUT that sends `***` keeps the value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub start: Start,
    /// Lookup tables the plugin may read (`lookup` of any other finds nothing).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Lets this deployment close a cycle of transforms (its outputs or dead letters reach
    /// its input again through other deployments). Refused without it: a loop amplifies
    /// forever.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cycles: bool,
    /// Stateful plugins: where a record's event time comes from (default: its timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTime>,
    /// Stateful plugins: how far behind the largest event time seen the watermark stays
    /// (default 5000); a record older than the watermark is late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness_ms: Option<u64>,
    /// Stateful plugins: after this long without input, a partition's watermark moves on
    /// with the clock so that its windows close (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Stateful plugins: a topic for late records (default: the dead-letter topic, with
    /// `sluice-error: late`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_output: Option<String>,
    /// `"reset"` on a re-PUT: the new version starts with empty state. Not kept.
    #[serde(default, skip_serializing)]
    pub state: Option<StateMode>,
}

/// Where a stateful deployment reads event times.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTime {
    /// A JSON field of the record value (a name, dotted path or JSON pointer) holding ms
    /// since the epoch or an RFC 3339 time; records without it are dead-lettered.
    pub field: String,
}

/// What a re-PUT does with the state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateMode {
    /// The new version inherits the state (the default).
    Keep,
    /// The new version starts with empty state (timers and watermarks too).
    Reset,
}

/// Default `allowed_lateness_ms`.
pub const DEFAULT_ALLOWED_LATENESS_MS: u64 = 5_000;
/// Default `idle_timeout_ms`.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Largest `allowed_lateness_ms` and `idle_timeout_ms`.
pub const MAX_TIME_SETTING_MS: u64 = 365 * 24 * 3600 * 1000;

/// The event-time settings a partition task works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTimeSettings {
    pub field: Option<String>,
    pub allowed_lateness_ms: i64,
    pub idle_timeout_ms: u64,
}

impl TransformSpec {
    pub fn event_time_settings(&self) -> EventTimeSettings {
        EventTimeSettings {
            field: self.event_time.as_ref().map(|e| e.field.clone()),
            allowed_lateness_ms: self
                .allowed_lateness_ms
                .unwrap_or(DEFAULT_ALLOWED_LATENESS_MS)
                .min(i64::MAX as u64) as i64,
            idle_timeout_ms: self.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
        }
    }

    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| sluice_log::dead_letter::transform_topic(&self.input))
    }

    /// What the plugin's `config` answers: the config and the secrets.
    pub fn plugin_config(&self) -> BTreeMap<String, String> {
        let mut c = self.config.clone();
        c.extend(self.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        c
    }

    /// The secrets as GET shows them: every value `***`.
    pub fn redacted_secrets(&self) -> BTreeMap<String, String> {
        self.secrets
            .keys()
            .map(|k| (k.clone(), REDACTED.to_string()))
            .collect()
    }

    /// Checks the secrets (no key also in `config`; no `***` left), taking the value of
    /// each secret sent as `***` from `old` (a re-PUT of what GET showed keeps it).
    pub fn settle_secrets(&mut self, old: Option<&TransformSpec>) -> Result<(), String> {
        for (k, v) in &mut self.secrets {
            if self.config.contains_key(k) {
                return Err(format!("{k:?} is both a config key and a secret"));
            }
            if v == REDACTED {
                match old.and_then(|o| o.secrets.get(k)) {
                    Some(kept) => v.clone_from(kept),
                    None => {
                        return Err(format!(
                            "secret {k:?} is {REDACTED} (what GET shows), but there is no earlier value to keep"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What GET shows instead of a secret value.
pub const REDACTED: &str = "***";

/// Whether a deployment's tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Paused,
}

/// Where one partition task stands.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionStatus {
    pub partition: u32,
    /// The next input offset to process.
    pub position: u64,
    /// Input records not processed yet.
    pub lag: u64,
    /// The plugin version this partition runs.
    pub version: u32,
    /// Stateful deployments: event time and state of the partition.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub state: Option<PartitionState>,
}

/// Event time and keyed state of one partition of a stateful deployment.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionState {
    /// Event times before it are late (null until the partition has seen an event).
    pub watermark: Option<i64>,
    /// The largest event time seen.
    pub max_event_time: Option<i64>,
    /// Late records since the server started.
    pub late: u64,
    pub state_keys: u64,
    /// State held, with a per-entry overhead (what counts against `limits.state_bytes`).
    pub state_bytes: u64,
    /// Pending timers, and the earliest one's time.
    pub timers: u64,
    pub next_timer: Option<i64>,
    pub checkpoint: StateCheckpoint,
    /// How the state was restored when the partition started.
    pub restore: Option<RestoreInfo>,
}

/// The last durable commit of a partition's state.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateCheckpoint {
    /// The input position the committed state covers.
    pub position: u64,
    /// When it was committed (ms since the epoch; null before the first commit).
    pub at: Option<i64>,
    /// The changelog's end after it.
    pub changelog_offset: u64,
    /// Changelog offset of the last snapshot, if any.
    pub snapshot_offset: Option<u64>,
}

/// Counters of a transform since the server started.
#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CounterValues {
    pub records_in: u64,
    pub records_out: u64,
    pub rejected: u64,
    pub failed: u64,
    pub traps: u64,
    pub fuel: u64,
    /// Records later than the watermark (stateful deployments).
    pub late: u64,
}

/// The status of one transform (`GET /v1/transforms/{name}`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransformStatus {
    pub name: String,
    pub status: RunState,
    pub plugin: String,
    /// The active version (0 while none is).
    pub version: u32,
    /// A version number or `"latest"`.
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub version_selector: VersionSel,
    pub input: String,
    pub outputs: Vec<String>,
    pub dead_letter: String,
    pub config: BTreeMap<String, String>,
    /// Secret config keys, each value shown as `***`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    pub limits: Limits,
    pub tables: Vec<String>,
    pub allow_cycles: bool,
    /// The plugin keeps keyed state (it imports `sluice:transform/state`).
    pub stateful: bool,
    /// Stateful: the changelog topic of the state.
    pub state_topic: Option<String>,
    /// Stateful: the event-time settings in force.
    pub event_time: Option<EventTime>,
    pub allowed_lateness_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub late_output: Option<String>,
    /// Which version took over at which offset of which partition.
    pub history: Vec<HistoryEntry>,
    pub partitions: Vec<PartitionStatus>,
    pub counters: CounterValues,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    pub version: u32,
    pub partition: u32,
    pub from_offset: u64,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub traps: AtomicU64,
    pub fuel: AtomicU64,
    pub late: AtomicU64,
}

/// What is persisted per transform.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Persisted {
    spec: TransformSpec,
    paused: bool,
    history: Vec<HistoryEntry>,
}

/// Bounded plugin log lines of one transform, rate-limited so a chatty plugin can neither
/// flood the server log nor push every useful line out of the ring.
#[derive(Debug, Default)]
pub struct LogRing {
    lines: Mutex<Ring>,
    next: AtomicU64,
    /// Lines refused by the rate limit, ever.
    pub dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<(u64, LogLine)>,
    /// Token bucket: lines that may be kept right now, refilled at `LOG_RATE` per second.
    tokens: f64,
    refilled: Option<std::time::Instant>,
    /// Refused since the last kept line (reported in the next kept one's place).
    dropped_run: u64,
}

const LOG_RING: usize = 1000;
/// Lines per second a transform may log, and the burst above that.
const LOG_RATE: f64 = 100.0;
const LOG_BURST: f64 = 500.0;

impl Ring {
    fn admit(&mut self) -> bool {
        let now = std::time::Instant::now();
        let elapsed = self.refilled.map_or(LOG_BURST / LOG_RATE, |t| {
            now.duration_since(t).as_secs_f64()
        });
        self.tokens = (self.tokens + elapsed * LOG_RATE).min(LOG_BURST);
        self.refilled = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn push(&mut self, seq: u64, line: LogLine) {
        if self.lines.len() == LOG_RING {
            self.lines.pop_front();
        }
        self.lines.push_back((seq, line));
    }
}

impl LogSink for LogRing {
    fn log(&self, line: LogLine) {
        let mut ring = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if !ring.admit() {
            ring.dropped_run += 1;
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if ring.dropped_run > 0 {
            let note = LogLine {
                level: "warn".into(),
                message: format!(
                    "{} log lines dropped: over {LOG_RATE} lines/s (burst {LOG_BURST})",
                    ring.dropped_run
                ),
                ..line.clone()
            };
            ring.dropped_run = 0;
            let seq = self.next.fetch_add(1, Ordering::Relaxed);
            ring.push(seq, note);
        }
        tracing::debug!(target: "sluice::plugin", plugin = %line.plugin, version = line.version,
            partition = line.partition, offset = ?line.offset, "{}", line.message);
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        ring.push(seq, line);
    }
}

impl LogRing {
    /// Lines with sequence numbers at or after `from`.
    pub fn since(&self, from: u64) -> Vec<(u64, LogLine)> {
        let l = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        l.lines
            .iter()
            .filter(|(s, _)| *s >= from)
            .cloned()
            .collect()
    }
}

/// A partition task's shared state and its thread.
type TaskHandle = (Arc<TaskShared>, Option<std::thread::JoinHandle<()>>);

/// One deployed transform.
pub struct Transform {
    pub name: String,
    dir: PathBuf,
    spec: RwLock<TransformSpec>,
    pub paused: AtomicBool,
    pub counters: Counters,
    history: Mutex<Vec<HistoryEntry>>,
    last_error: Mutex<Option<String>>,
    pub logs: Arc<LogRing>,
    tasks: Mutex<Vec<TaskHandle>>,
    /// Partition tasks record history concurrently; one writer at a time for the file.
    persist_lock: Mutex<()>,
    /// The state memory of all partitions (stateful plugins).
    budget: Arc<StateBudget>,
    /// Whether the running plugin version keeps state.
    stateful: AtomicBool,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("name", &self.name)
            .finish()
    }
}

impl Transform {
    pub fn spec(&self) -> TransformSpec {
        self.spec.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The event-time settings of the deployment as they are now (a re-PUT may change
    /// them).
    pub fn event_time_settings(&self) -> EventTimeSettings {
        self.spec
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .event_time_settings()
    }

    pub fn is_stateful(&self) -> bool {
        self.stateful.load(Ordering::Acquire)
    }

    /// The live state of one partition, for the state API.
    pub fn state_of(&self, partition: u32) -> Option<Arc<Mutex<StateStore>>> {
        self.task_states()
            .into_iter()
            .find(|s| s.partition == partition)
            .and_then(|s| s.state.as_ref().map(|st| st.store.clone()))
    }

    /// The partitions of the deployment.
    pub fn partitions(&self) -> Vec<u32> {
        self.task_states().iter().map(|s| s.partition).collect()
    }

    fn set_last_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    fn fail(&self, e: String) {
        tracing::warn!(transform = %self.name, error = %e, "transform error");
        self.set_last_error(e);
    }

    fn record_history(&self, h: HistoryEntry) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(h);
        self.persist();
    }

    fn persist(&self) {
        let _g = self.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        let p = Persisted {
            spec: self.spec(),
            paused: self.paused.load(Ordering::Acquire),
            history: self
                .history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        };
        let path = self.dir.join("transform.json");
        let ok = serde_json::to_vec_pretty(&p)
            .map_err(std::io::Error::other)
            .and_then(|b| write_file(&path, &b))
            .and_then(|()| {
                // The spec may hold secrets: owner only.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            });
        if let Err(e) = ok {
            tracing::error!(transform = %self.name, error = %e, "could not persist transform");
        }
    }

    fn active_version(&self) -> u32 {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks
            .first()
            .map_or(0, |(t, _)| t.version.load(Ordering::Acquire))
    }

    /// Shared states of the partition tasks.
    fn task_states(&self) -> Vec<Arc<TaskShared>> {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(s, _)| s.clone())
            .collect()
    }
}

/// Why a deployment request was refused.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("invalid transform name {0:?}: use 1-100 of [a-zA-Z0-9._-]")]
    BadName(String),
    #[error("unknown transform {0}")]
    Unknown(String),
    #[error("{0}")]
    Invalid(String),
    #[error("input topic {0} does not exist")]
    UnknownInput(String),
    #[error("output topic {0} does not exist")]
    UnknownOutput(String),
    #[error("plugin {plugin} is used by transform(s) {users}")]
    PluginInUse { plugin: String, users: String },
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("{0}")]
    Runtime(String),
}

/// All transforms of the server.
///
/// Locking: each deployment name has its own lock, held for the whole of a deploy, swap or
/// delete of that name (these wait on plugin `init` and on partition tasks); `control` is
/// held only for checks across deployments (cycles, plugin use) and never while waiting on
/// a plugin or a task, so one transform's slow operation never delays another's.
pub struct Pipelines {
    log: Arc<Log>,
    pub plugins: Arc<PluginStore>,
    pub tables: Arc<TableRegistry>,
    dir: PathBuf,
    transforms: RwLock<HashMap<String, Arc<Transform>>>,
    /// Deployments being created: they count in cycle checks and plugin use.
    reserved: Mutex<HashMap<String, TransformSpec>>,
    control: Mutex<()>,
    names: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Interrupts instances being built (instantiate + `init`) at shutdown.
    building: Arc<Interrupt>,
}

impl std::fmt::Debug for Pipelines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipelines").field("dir", &self.dir).finish()
    }
}

impl Pipelines {
    /// Opens the transform state and restarts every deployed transform. Blocking.
    pub fn open(
        log: Arc<Log>,
        plugins: Arc<PluginStore>,
        tables: Arc<TableRegistry>,
        dir: PathBuf,
    ) -> Result<Arc<Pipelines>, PipelineError> {
        std::fs::create_dir_all(&dir).map_err(|e| PipelineError::Runtime(e.to_string()))?;
        let p = Arc::new(Pipelines {
            log,
            plugins,
            tables,
            dir: dir.clone(),
            transforms: RwLock::default(),
            reserved: Mutex::default(),
            control: Mutex::new(()),
            names: Mutex::default(),
            building: Arc::default(),
        });
        for entry in std::fs::read_dir(&dir)
            .map_err(|e| PipelineError::Runtime(e.to_string()))?
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(text) = std::fs::read(entry.path().join("transform.json")) else {
                continue;
            };
            let Ok(saved) = serde_json::from_slice::<Persisted>(&text) else {
                tracing::error!(transform = %name, "unreadable transform state; not started");
                continue;
            };
            if let Err(e) = p.start(
                &name,
                saved.spec.clone(),
                saved.paused,
                saved.history,
                false,
            ) {
                tracing::error!(transform = %name, error = %e, "transform could not restart");
            }
        }
        Ok(p)
    }

    /// The lock of one deployment name.
    fn name_lock(&self, name: &str) -> Arc<Mutex<()>> {
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Ready executors of `compiled` for `partitions`, instantiated and `init`-ed in
    /// parallel (each `init` is bounded by `init_timeout_ms`), or the first error.
    fn build_executors(
        &self,
        compiled: &Arc<Compiled>,
        cfg: &Arc<InstanceConfig>,
        partitions: &[u32],
    ) -> Result<Vec<Executor>, sluice_runtime::RuntimeError> {
        let rt = self.plugins.runtime();
        let mut ready = Vec::with_capacity(partitions.len());
        // A few at a time: `init` may be CPU-heavy, and there are two cores.
        for group in partitions.chunks(4) {
            let built: Vec<_> = std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .iter()
                    .map(|&p| {
                        s.spawn(move || {
                            rt.executor_with_interrupt(
                                compiled.clone(),
                                cfg.clone(),
                                p,
                                self.building.clone(),
                            )
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(sluice_runtime::RuntimeError::Instantiate(
                                "instance setup panicked".into(),
                            ))
                        })
                    })
                    .collect()
            });
            for b in built {
                ready.push(b?);
            }
        }
        Ok(ready)
    }

    fn instance_config(
        &self,
        t: &Transform,
        spec: &TransformSpec,
        version: u32,
    ) -> Arc<InstanceConfig> {
        Arc::new(InstanceConfig {
            plugin: spec.plugin.clone(),
            version,
            config: spec.plugin_config(),
            outputs: spec.outputs.clone(),
            limits: spec.limits.clone(),
            tables: self.tables.clone(),
            tables_allowed: spec.tables.clone(),
            logs: t.logs.clone(),
            recycle_after: 100_000,
        })
    }

    fn resolve_version(&self, spec: &TransformSpec) -> Result<u32, PipelineError> {
        match spec.version {
            VersionSel::Latest => Ok(self.plugins.latest(&spec.plugin)?),
            VersionSel::Exact(v) => {
                if !self
                    .plugins
                    .versions(&spec.plugin)?
                    .iter()
                    .any(|x| x.version == v)
                {
                    return Err(PluginError::UnknownVersion {
                        name: spec.plugin.clone(),
                        version: v,
                    }
                    .into());
                }
                Ok(v)
            }
        }
    }

    fn validate(&self, name: &str, spec: &TransformSpec) -> Result<(), PipelineError> {
        if !plugins::valid_name(name) {
            return Err(PipelineError::BadName(name.to_string()));
        }
        self.log
            .topic(&spec.input)
            .map_err(|_| PipelineError::UnknownInput(spec.input.clone()))?;
        if spec.outputs.is_empty() {
            return Err(PipelineError::Invalid(
                "at least one output topic is required".into(),
            ));
        }
        for o in &spec.outputs {
            self.log
                .topic(o)
                .map_err(|_| PipelineError::UnknownOutput(o.clone()))?;
            if *o == spec.input {
                return Err(PipelineError::Invalid(format!(
                    "output {o} is the input topic"
                )));
            }
        }
        let dlq = spec.dead_letter_topic();
        if dlq == spec.input {
            return Err(PipelineError::Invalid(format!(
                "dead_letter {dlq} is the input topic: rejected records would be processed again"
            )));
        }
        if spec.outputs.contains(&dlq) {
            return Err(PipelineError::Invalid(format!(
                "dead_letter {dlq} is also an output: dead letters and outputs must be apart"
            )));
        }
        if validate_topic_name(&dlq).is_err() {
            return Err(PipelineError::Invalid(format!(
                "dead_letter {dlq:?} is not a valid topic name"
            )));
        }
        for table in &spec.tables {
            if validate_topic_name(table).is_err() {
                return Err(PipelineError::Invalid(format!(
                    "tables: {table:?} is not a valid topic name"
                )));
            }
        }
        spec.limits.validate().map_err(PipelineError::Invalid)?;
        if let Some(e) = &spec.event_time
            && e.field.trim().is_empty()
        {
            return Err(PipelineError::Invalid(
                "event_time.field must name a JSON field".into(),
            ));
        }
        if spec
            .allowed_lateness_ms
            .is_some_and(|l| l > MAX_TIME_SETTING_MS)
        {
            return Err(PipelineError::Invalid(format!(
                "allowed_lateness_ms must be at most {MAX_TIME_SETTING_MS} (a year)"
            )));
        }
        if spec
            .idle_timeout_ms
            .is_some_and(|l| l == 0 || l > MAX_TIME_SETTING_MS)
        {
            return Err(PipelineError::Invalid(format!(
                "idle_timeout_ms must be 1..={MAX_TIME_SETTING_MS}"
            )));
        }
        if let Some(late) = &spec.late_output {
            self.log
                .topic(late)
                .map_err(|_| PipelineError::UnknownOutput(late.clone()))?;
            if *late == spec.input || spec.outputs.contains(late) || *late == dlq {
                return Err(PipelineError::Invalid(format!(
                    "late_output {late} must be a topic apart from the input, the outputs and the dead-letter topic"
                )));
            }
        }
        self.plugins.versions(&spec.plugin)?;
        Ok(())
    }

    /// Refuses a new deployment whose outputs or dead letters would reach its input again
    /// through the deployments that exist (or are being created), unless it opts in.
    fn check_cycles(&self, name: &str, spec: &TransformSpec) -> Result<(), PipelineError> {
        if spec.allow_cycles {
            return Ok(());
        }
        // Topic -> (transform, topics it writes).
        let mut edges: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
        let mut add = |n: &str, s: &TransformSpec| {
            let mut to = s.outputs.clone();
            to.push(s.dead_letter_topic());
            to.extend(s.late_output.clone());
            edges
                .entry(s.input.clone())
                .or_default()
                .push((n.to_string(), to));
        };
        for t in self.list() {
            if t.name != name {
                add(&t.name, &t.spec());
            }
        }
        for (n, s) in self
            .reserved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if n != name {
                add(n, s);
            }
        }
        add(name, spec);
        // Depth-first from the input: a path back to it is a cycle; name it.
        let mut stack: Vec<(String, Vec<String>)> = vec![(spec.input.clone(), vec![])];
        let mut visited = HashSet::new();
        while let Some((topic, path)) = stack.pop() {
            for (via, to) in edges.get(&topic).into_iter().flatten() {
                for next in to {
                    let mut p = path.clone();
                    p.push(format!("{topic} -[{via}]-> {next}"));
                    if *next == spec.input {
                        return Err(PipelineError::Invalid(format!(
                            "deploying {name} would make a cycle: {}; set \"allow_cycles\": true if it is meant",
                            p.join(", ")
                        )));
                    }
                    if visited.insert(next.clone()) {
                        stack.push((next.clone(), p));
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates or updates a deployment. Returns whether it was created. Blocking; waits
    /// only for operations on the same name.
    pub fn deploy(&self, name: &str, mut spec: TransformSpec) -> Result<bool, PipelineError> {
        let lock = self.name_lock(name);
        let _n = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.validate(name, &spec)?;
        let existing = self.get(name).ok();
        spec.settle_secrets(existing.as_ref().map(|t| t.spec()).as_ref())
            .map_err(PipelineError::Invalid)?;
        match existing {
            None => {
                {
                    let _c = self.control.lock().unwrap_or_else(|p| p.into_inner());
                    self.check_cycles(name, &spec)?;
                    self.reserved
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.to_string(), spec.clone());
                }
                let started = self.start(name, spec, false, Vec::new(), true);
                self.reserved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(name);
                started.map(|()| true)
            }
            Some(t) => {
                let old = t.spec();
                if old.input != spec.input
                    || old.outputs != spec.outputs
                    || old.dead_letter_topic() != spec.dead_letter_topic()
                    || old.late_output != spec.late_output
                {
                    return Err(PipelineError::Invalid(
                        "input, outputs, dead_letter and late_output of a deployment cannot change; delete it and deploy anew".into(),
                    ));
                }
                // `start` applies to the first deployment only: a re-PUT never rewinds.
                let reset = spec.state == Some(StateMode::Reset);
                let spec = TransformSpec {
                    start: old.start,
                    state: None,
                    ..spec
                };
                let version = self.resolve_version(&spec)?;
                let compiled = self.plugins.compiled(&spec.plugin, version)?;
                t.budget.set_limit(spec.limits.state_bytes);
                if reset || compiled.stateful() != t.is_stateful() {
                    self.restart(&t, &spec, version, &compiled, reset)?;
                } else {
                    self.swap(&t, &spec, version)?;
                }
                *t.spec.write().unwrap_or_else(|p| p.into_inner()) = spec;
                t.persist();
                Ok(false)
            }
        }
    }

    /// Builds ready executors of `version` for every partition, then hands them to the
    /// tasks, which switch at once: a call in progress is interrupted and its batch runs
    /// again on the new version. Nothing changes if any fails.
    fn swap(
        &self,
        t: &Arc<Transform>,
        spec: &TransformSpec,
        version: u32,
    ) -> Result<(), PipelineError> {
        let compiled = self.plugins.compiled(&spec.plugin, version)?;
        let cfg = self.instance_config(t, spec, version);
        let tasks = t.task_states();
        let partitions: Vec<u32> = tasks.iter().map(|s| s.partition).collect();
        let ready = self
            .build_executors(&compiled, &cfg, &partitions)
            .map_err(|e| {
                let msg = format!("version {version} not activated: {e}");
                t.set_last_error(msg.clone());
                PipelineError::Runtime(msg)
            })?;
        for (s, ex) in tasks.iter().zip(ready) {
            *s.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some((version, ex));
            s.interrupt.raise();
        }
        tracing::info!(transform = %t.name, version, "plugin version staged for activation");
        Ok(())
    }

    fn start(
        &self,
        name: &str,
        spec: TransformSpec,
        paused: bool,
        history: Vec<HistoryEntry>,
        fresh: bool,
    ) -> Result<(), PipelineError> {
        let input = self
            .log
            .topic(&spec.input)
            .map_err(|_| PipelineError::UnknownInput(spec.input.clone()))?;
        let version = self.resolve_version(&spec)?;
        let compiled = self.plugins.compiled(&spec.plugin, version)?;
        let dir = self.dir.join(name);
        let t = Arc::new(Transform {
            name: name.to_string(),
            dir: dir.clone(),
            spec: RwLock::new(spec.clone()),
            paused: AtomicBool::new(paused),
            counters: Counters::default(),
            history: Mutex::new(history),
            last_error: Mutex::new(None),
            logs: Arc::default(),
            tasks: Mutex::new(Vec::new()),
            persist_lock: Mutex::new(()),
            budget: Arc::new(StateBudget::new(spec.limits.state_bytes)),
            stateful: AtomicBool::new(compiled.stateful()),
        });
        let cfg = self.instance_config(&t, &spec, version);
        // Instantiate (and init) every partition's executor before starting any task, so a
        // plugin that cannot start is refused as a whole.
        let partitions: Vec<u32> = input.partitions.iter().map(|p| p.id).collect();
        let executors = self
            .build_executors(&compiled, &cfg, &partitions)
            .map_err(|e| PipelineError::Runtime(e.to_string()))?;
        if compiled.stateful() {
            self.state_topic(name, input.partitions.len() as u32, fresh)?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| PipelineError::Runtime(e.to_string()))?;
        self.spawn_tasks(&t, &spec, version, executors)?;
        self.transforms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), t);
        tracing::info!(transform = name, plugin = %spec.plugin, version, input = %spec.input, stateful = compiled.stateful(), "transform started");
        Ok(())
    }

    /// The changelog topic of a stateful deployment, created if missing. A new deployment
    /// (`fresh`) refuses a topic of that name that is already there: it is not its state.
    fn state_topic(
        &self,
        name: &str,
        partitions: u32,
        fresh: bool,
    ) -> Result<Arc<sluice_log::Topic>, PipelineError> {
        let topic = state::topic_name(name);
        let found = match self.log.topic(&topic) {
            Ok(_) if fresh => Err(PipelineError::Invalid(format!(
                "topic {topic} exists, but a stateful deployment named {name} keeps its state there; delete the topic or choose another name"
            ))),
            Ok(t) if t.partitions.len() as u32 != partitions => {
                Err(PipelineError::Invalid(format!(
                    "state topic {topic} has {} partitions, the input {partitions}",
                    t.partitions.len()
                )))
            }
            Ok(t) => Ok(t),
            Err(_) => Ok(self
                .log
                .create_topic(&topic, state::topic_config(partitions))?),
        }?;
        self.log
            .set_owner(&topic, Some(&format!("stateful transform {name}")));
        Ok(found)
    }

    /// Starts a partition task per executor (one per input partition, in order).
    fn spawn_tasks(
        &self,
        t: &Arc<Transform>,
        spec: &TransformSpec,
        version: u32,
        executors: Vec<Executor>,
    ) -> Result<(), PipelineError> {
        let input = self
            .log
            .topic(&spec.input)
            .map_err(|_| PipelineError::UnknownInput(spec.input.clone()))?;
        let outputs = spec
            .outputs
            .iter()
            .map(|o| {
                self.log
                    .topic(o)
                    .map_err(|_| PipelineError::UnknownOutput(o.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dlq_name = spec.dead_letter_topic();
        let dlq = match self.log.topic(&dlq_name) {
            Ok(t) => t,
            Err(_) => self.log.create_topic(
                &dlq_name,
                TopicConfig {
                    partitions: input.partitions.len() as u32,
                    ..TopicConfig::default()
                },
            )?,
        };
        let stateful = t.is_stateful();
        let (late, changelog) = if stateful {
            let late = match &spec.late_output {
                Some(l) => Some(
                    self.log
                        .topic(l)
                        .map_err(|_| PipelineError::UnknownOutput(l.clone()))?,
                ),
                None => None,
            };
            (
                late,
                Some(self.state_topic(&t.name, input.partitions.len() as u32, false)?),
            )
        } else {
            (None, None)
        };
        let mut ctxs = Vec::new();
        for (p, executor) in input.partitions.iter().zip(executors) {
            let checkpoint: Option<Checkpoint> = checkpoint::read(&t.dir, p.id);
            let task_state = changelog.as_ref().and_then(|c| {
                let part = c.partitions.get(p.id as usize)?.clone();
                let store = Arc::new(Mutex::new(StateStore::new(t.budget.clone())));
                Some(Stateful {
                    changelog: part,
                    late_output: late.clone(),
                    shared: Arc::new(StateShared::new(store)),
                })
            });
            let shared = Arc::new(TaskShared::new(
                p.id,
                checkpoint.as_ref().map_or(0, |c| c.position),
                version,
                task_state.as_ref().map(|s| s.shared.clone()),
            ));
            ctxs.push(TaskCtx {
                t: t.clone(),
                input: p.clone(),
                outputs: outputs.clone(),
                dlq: dlq.clone(),
                shared,
                executor,
                checkpoint,
                start_latest: spec.start == Start::Latest,
                stateful: task_state,
            });
        }
        {
            let mut h = t.history.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = h.is_empty();
            for c in &ctxs {
                let from = c.checkpoint.as_ref().map_or_else(
                    || {
                        if c.start_latest {
                            c.input.high_watermark()
                        } else {
                            c.input.start_offset()
                        }
                    },
                    |cp| cp.position,
                );
                let same = h
                    .iter()
                    .rev()
                    .find(|e| e.partition == c.shared.partition)
                    .is_some_and(|e| e.version == version);
                if fresh || !same {
                    h.push(HistoryEntry {
                        version,
                        partition: c.shared.partition,
                        from_offset: from,
                    });
                }
            }
        }
        t.persist();
        let mut tasks = t.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for c in ctxs {
            let shared = c.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("sluice-{}-{}", t.name, shared.partition))
                .spawn(move || c.run())
                .map_err(|e| PipelineError::Runtime(e.to_string()))?;
            tasks.push((shared, Some(handle)));
        }
        Ok(())
    }

    /// Restarts a deployment's tasks on `version`: for a reset of its state, or when the
    /// new version keeps state and the old did not (or the other way round). The new
    /// executors are ready before the old tasks stop (which commit what they ran); a
    /// reset or a version without state removes the state (changelog and snapshots).
    fn restart(
        &self,
        t: &Arc<Transform>,
        spec: &TransformSpec,
        version: u32,
        compiled: &Arc<Compiled>,
        reset: bool,
    ) -> Result<(), PipelineError> {
        let cfg = self.instance_config(t, spec, version);
        let partitions = t.partitions();
        let executors = self
            .build_executors(compiled, &cfg, &partitions)
            .map_err(|e| {
                let msg = format!("version {version} not activated: {e}");
                t.set_last_error(msg.clone());
                PipelineError::Runtime(msg)
            })?;
        let was_stateful = t.is_stateful();
        if compiled.stateful() && !was_stateful {
            // Refuse a foreign topic of the name before stopping anything.
            self.state_topic(&t.name, partitions.len() as u32, true)?;
        }
        Self::stop_tasks(t);
        t.tasks.lock().unwrap_or_else(|p| p.into_inner()).clear();
        if was_stateful && (reset || !compiled.stateful()) {
            self.remove_state(t, &partitions)?;
        }
        t.stateful.store(compiled.stateful(), Ordering::Release);
        self.spawn_tasks(t, spec, version, executors)?;
        tracing::info!(transform = %t.name, version, reset, stateful = compiled.stateful(), "transform restarted");
        Ok(())
    }

    /// Deletes a deployment's state: its changelog topic and snapshots.
    fn remove_state(&self, t: &Transform, partitions: &[u32]) -> Result<(), PipelineError> {
        for p in partitions {
            state::remove_snapshot(&t.dir, *p);
        }
        let topic = state::topic_name(&t.name);
        self.log.set_owner(&topic, None);
        match self.log.delete_topic(&topic) {
            Ok(()) | Err(LogError::UnknownTopic(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub fn get(&self, name: &str) -> Result<Arc<Transform>, PipelineError> {
        self.transforms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| PipelineError::Unknown(name.to_string()))
    }

    pub fn list(&self) -> Vec<Arc<Transform>> {
        let mut v: Vec<_> = self
            .transforms
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn set_paused(&self, name: &str, paused: bool) -> Result<(), PipelineError> {
        let t = self.get(name)?;
        t.paused.store(paused, Ordering::SeqCst);
        if paused {
            // A call in progress ends now; its batch runs again on resume.
            for s in t.task_states() {
                s.interrupt.raise();
            }
        }
        t.persist();
        Ok(())
    }

    /// Stops a transform's tasks and forgets it. Its output topics stay. Blocking; waits
    /// only for this transform's tasks (a call in progress is interrupted).
    pub fn delete(&self, name: &str) -> Result<(), PipelineError> {
        let lock = self.name_lock(name);
        let _n = lock.lock().unwrap_or_else(|p| p.into_inner());
        let t = self
            .transforms
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| PipelineError::Unknown(name.to_string()))?;
        Self::stop_tasks(&t);
        // The state first: a crash half way leaves a deployment without state (which a
        // second DELETE removes), never state without a deployment.
        if t.is_stateful() {
            self.remove_state(&t, &t.partitions())?;
        }
        std::fs::remove_dir_all(&t.dir).map_err(|e| PipelineError::Runtime(e.to_string()))?;
        Ok(())
    }

    fn stop_tasks(t: &Transform) {
        let mut tasks = t.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for (s, _) in tasks.iter() {
            s.stop();
        }
        for (_, h) in tasks.iter_mut() {
            if let Some(h) = h.take() {
                let _ = h.join();
            }
        }
    }

    /// Tells every task to stop and interrupts calls and instance setups in progress,
    /// without waiting (the first step of a graceful shutdown).
    pub fn begin_shutdown(&self) {
        self.building.raise();
        for t in self.list() {
            for s in t.task_states() {
                s.stop();
            }
        }
    }

    /// Stops every task (graceful shutdown): calls in progress are interrupted (their
    /// batches run again after the restart), what was already run is appended.
    pub fn shutdown(&self) {
        self.begin_shutdown();
        for t in self.list() {
            Self::stop_tasks(&t);
        }
    }

    /// A new version of `plugin` was uploaded: swap every deployment that follows `latest`.
    pub fn plugin_uploaded(&self, plugin: &str, version: u32) {
        for t in self.list() {
            let lock = self.name_lock(&t.name);
            let _n = lock.lock().unwrap_or_else(|p| p.into_inner());
            let spec = t.spec();
            if spec.plugin != plugin || spec.version != VersionSel::Latest {
                continue;
            }
            let result = self
                .plugins
                .compiled(plugin, version)
                .map_err(PipelineError::from)
                .and_then(|c| {
                    if c.stateful() != t.is_stateful() {
                        self.restart(&t, &spec, version, &c, false)
                    } else {
                        self.swap(&t, &spec, version)
                    }
                });
            if let Err(e) = result {
                tracing::warn!(transform = %t.name, version, error = %e, "new version not activated");
            }
        }
    }

    /// Transforms that use a plugin (deleting it is refused while there are any).
    pub fn users_of(&self, plugin: &str) -> Vec<String> {
        let mut users: Vec<String> = self
            .list()
            .into_iter()
            .filter(|t| t.spec().plugin == plugin)
            .map(|t| t.name.clone())
            .collect();
        let reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        users.extend(
            reserved
                .iter()
                .filter(|(_, s)| s.plugin == plugin)
                .map(|(n, _)| n.clone()),
        );
        users
    }

    pub fn delete_plugin(&self, plugin: &str) -> Result<(), PipelineError> {
        let _g = self.control.lock().unwrap_or_else(|p| p.into_inner());
        let users = self.users_of(plugin);
        if !users.is_empty() {
            return Err(PipelineError::PluginInUse {
                plugin: plugin.to_string(),
                users: users.join(", "),
            });
        }
        Ok(self.plugins.delete(plugin)?)
    }

    /// The status of one transform.
    pub fn status(&self, t: &Transform) -> TransformStatus {
        let spec = t.spec();
        let input = self.log.topic(&spec.input).ok();
        let partitions = t
            .task_states()
            .iter()
            .map(|s| {
                let position = s.position.load(Ordering::Acquire);
                let hw = input
                    .as_ref()
                    .and_then(|i| i.partitions.get(s.partition as usize))
                    .map_or(position, |p| p.high_watermark());
                PartitionStatus {
                    partition: s.partition,
                    position,
                    lag: hw.saturating_sub(position),
                    version: s.version.load(Ordering::Acquire),
                    state: s.state.as_ref().map(|st| partition_state(st)),
                }
            })
            .collect();
        let secrets = spec.redacted_secrets();
        TransformStatus {
            secrets,
            name: t.name.clone(),
            status: if t.paused.load(Ordering::Acquire) {
                RunState::Paused
            } else {
                RunState::Running
            },
            version: t.active_version(),
            dead_letter: spec.dead_letter_topic(),
            history: t.history.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            partitions,
            counters: t.counters.values(),
            last_error: t
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            plugin: spec.plugin,
            version_selector: spec.version,
            input: spec.input,
            outputs: spec.outputs,
            config: spec.config,
            limits: spec.limits,
            tables: spec.tables,
            allow_cycles: spec.allow_cycles,
            stateful: t.is_stateful(),
            state_topic: t.is_stateful().then(|| state::topic_name(&t.name)),
            allowed_lateness_ms: t.is_stateful().then_some(
                spec.allowed_lateness_ms
                    .unwrap_or(DEFAULT_ALLOWED_LATENESS_MS),
            ),
            idle_timeout_ms: t
                .is_stateful()
                .then_some(spec.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS)),
            event_time: spec.event_time,
            late_output: spec.late_output,
        }
    }
}

/// The status of one stateful partition.
fn partition_state(st: &StateShared) -> PartitionState {
    let some = |t: i64| (t != sluice_sdk::NO_WATERMARK).then_some(t);
    let (keys, bytes, timers, next_timer) = {
        let store = st.lock();
        (
            store.keys() as u64,
            store.bytes(),
            store.timer_count() as u64,
            store.next_timer(),
        )
    };
    let at = st.committed_at.load(Ordering::Relaxed);
    let snap = st.snapshot_offset.load(Ordering::Relaxed);
    PartitionState {
        watermark: some(st.watermark.load(Ordering::Relaxed)),
        max_event_time: some(st.max_event_time.load(Ordering::Relaxed)),
        late: st.late.load(Ordering::Relaxed),
        state_keys: keys,
        state_bytes: bytes,
        timers,
        next_timer,
        checkpoint: StateCheckpoint {
            position: st.committed_position.load(Ordering::Relaxed),
            at: (at > 0).then_some(at),
            changelog_offset: st.changelog_end.load(Ordering::Relaxed),
            snapshot_offset: (snap != u64::MAX).then_some(snap),
        },
        restore: st.restore.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    }
}
