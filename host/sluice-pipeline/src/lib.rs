//! Transform pipelines: deployments of plugins between topics, their partition tasks,
//! hot swaps, pause/resume, status, and the plugin store and tables they use.
//!
//! The pipeline calls into the log and the runtime; neither calls back into it.

mod appender;
pub mod checkpoint;
pub mod detached;
mod emit;
mod grow;
mod inputs;
mod isolate;
mod logs;
mod merge;
mod operator;
pub mod plugins;
pub mod recover;
mod schemas;
pub mod shadow;
mod shared;
pub mod state;
mod status;
mod store;
pub mod tables;
mod task;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

pub use logs::LogRing;
pub use recover::{SOURCE_HEADER, VERSION_HEADER};

use checkpoint::Checkpoint;
pub use emit::Layout;
use emit::Sinks;
use operator::{Operator, Stateful, Stateless};
use plugins::{PluginError, PluginStore};
use schemas::SchemaCodec;
pub use shared::StateShared;
use shared::TaskShared;
use sluice_common::fs::write_file;
use sluice_deploy::names::valid_name;
use sluice_deploy::{Capabilities, prepare};
use sluice_log::{Log, LogError, TopicConfig};
use sluice_runtime::state::{StateBudget, StateStore};
use sluice_runtime::{Compiled, Executor, InstanceConfig, Interrupt};
pub use status::partition_state;
use tables::TableRegistry;
use task::TaskCtx;

pub use sluice_deploy::{
    CounterValues, DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_IDLE_TIMEOUT_MS, DeployError, EventTime,
    EventTimeSettings, HistoryEntry, MAX_TIME_SETTING_MS, PartitionState, PartitionStatus,
    REDACTED, RestoreInfo, RunState, Start, StateCheckpoint, StateMode, TransformSpec,
    TransformStatus, VersionSel,
};

impl Counters {
    pub fn values(&self) -> CounterValues {
        CounterValues {
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            fuel: self.fuel.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            ..CounterValues::default()
        }
    }
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
    /// Why the deployment waits instead of running (the data disk is full), while it does.
    blocked: Mutex<Option<String>>,
    pub logs: Arc<LogRing>,
    tasks: Mutex<Vec<TaskHandle>>,
    /// Partition tasks record history concurrently; one writer at a time for the file.
    persist_lock: Mutex<()>,
    /// The state memory of all partitions (stateful plugins).
    budget: Arc<StateBudget>,
    /// `"state_store": "disk"`: the deployment's disk store, opened at first use.
    disk: Mutex<Option<store::DiskState>>,
    /// Whether the running plugin version keeps state.
    stateful: AtomicBool,
    /// A candidate version compared with the live one (`shadow`).
    shadow: Mutex<Option<Arc<shadow::Shadow>>>,
    /// Over two inputs: the threads merging them into the topic the tasks read.
    merger: Mutex<Option<merge::Merger>>,
}

impl std::fmt::Debug for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transform")
            .field("name", &self.name)
            .finish()
    }
}

impl Transform {
    /// A deployment run outside this server's pipelines (by `sluice worker`): its spec,
    /// counters, errors and state budget; no tasks, no files.
    /// `dir` holds a disk state store (`"state_store": "disk"`).
    pub fn detached(
        name: &str,
        spec: TransformSpec,
        logs: Arc<LogRing>,
        dir: PathBuf,
    ) -> Arc<Transform> {
        Arc::new(Transform {
            name: name.to_string(),
            dir,
            disk: Mutex::new(None),
            budget: Arc::new(StateBudget::new(spec.limits.state_bytes)),
            spec: RwLock::new(spec),
            paused: AtomicBool::new(false),
            counters: Counters::default(),
            history: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
            blocked: Mutex::new(None),
            logs,
            tasks: Mutex::new(Vec::new()),
            persist_lock: Mutex::new(()),
            stateful: AtomicBool::new(true),
            shadow: Mutex::new(None),
            merger: Mutex::new(None),
        })
    }

    /// The last error a partition met, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

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

    /// Marks the deployment waiting for `why` (`None`: it runs again).
    fn set_blocked(&self, why: Option<String>) {
        let mut b = self.blocked.lock().unwrap_or_else(|p| p.into_inner());
        if b.is_some() != why.is_some() {
            match &why {
                Some(w) => tracing::warn!(transform = %self.name, reason = %w, "transform waits"),
                None => tracing::info!(transform = %self.name, "transform runs again"),
            }
        }
        *b = why;
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
    #[error(transparent)]
    Deploy(#[from] DeployError),
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
    /// Not possible in the deployment's present state.
    #[error("{0}")]
    Conflict(String),
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
    /// The schema registry, for schema-aware deployments (none: they are refused).
    schemas: Option<Arc<sluice_schema::Registry>>,
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
        schemas: Option<Arc<sluice_schema::Registry>>,
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
            schemas,
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
        Self::watch_partitions(&p);
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
        Ok(sluice_deploy::validate::resolve_version(spec, self)?)
    }

    /// Creates or updates a deployment. Returns whether it was created. Blocking; waits
    /// only for operations on the same name.
    pub fn deploy(&self, name: &str, spec: TransformSpec) -> Result<bool, PipelineError> {
        let lock = self.name_lock(name);
        let _n = lock.lock().unwrap_or_else(|p| p.into_inner());
        let existing = if valid_name(name) {
            self.get(name).ok()
        } else {
            None
        };
        let old = existing.as_ref().map(|t| t.spec());
        // The cycle check looks across deployments: one at a time, with the reservation
        // of a new name taken under the same lock.
        let prepared = {
            let _c = self.control.lock().unwrap_or_else(|p| p.into_inner());
            let caps = Capabilities {
                schemas: self.schemas.is_some(),
                ..Capabilities::SERVE
            };
            let prepared = prepare(name, spec, old.as_ref(), self, caps)?;
            if !prepared.update {
                self.reserved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_string(), prepared.spec.clone());
            }
            prepared
        };
        match existing {
            None => {
                let started = self.start(name, prepared.spec, false, Vec::new(), true);
                if started.is_err() {
                    self.forget_merged(name);
                }
                self.reserved
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(name);
                started.map(|()| true)
            }
            Some(t) => {
                let (spec, version) = (prepared.spec, prepared.version);
                let compiled = self.plugins.compiled(&spec.plugin, version)?;
                t.budget.set_limit(spec.limits.state_bytes);
                if let Some(d) = &*t.disk.lock().unwrap_or_else(|p| p.into_inner()) {
                    // Cached values follow a new cache limit at once; the store's own
                    // block cache at the next start.
                    d.memory.set_limit(spec.limits.state_cache_bytes / 2);
                }
                let old = t.spec();
                // A change of how records cross the schema registry takes new tasks.
                let recoded =
                    old.decode != spec.decode || old.output_schemas != spec.output_schemas;
                if prepared.reset_state || recoded || compiled.stateful() != t.is_stateful() {
                    self.restart(&t, &spec, version, &compiled, prepared.reset_state)?;
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
        let input = self.task_input(name, &spec, fresh)?;
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
            blocked: Mutex::new(None),
            logs: Arc::default(),
            tasks: Mutex::new(Vec::new()),
            persist_lock: Mutex::new(()),
            budget: Arc::new(StateBudget::new(spec.limits.state_bytes)),
            disk: Mutex::new(None),
            stateful: AtomicBool::new(compiled.stateful()),
            shadow: Mutex::new(None),
            merger: Mutex::new(None),
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
        self.start_merge(&t, &spec, &input)?;
        if let Err(e) = self.spawn_tasks(&t, &spec, version, executors) {
            Self::stop_merge(&t);
            return Err(e);
        }
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
            // The input grew (while the server was down): the changelog grows with it.
            Ok(t) if (t.partitions.len() as u32) < partitions => {
                Ok(self.log.add_partitions(&topic, partitions)?)
            }
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

    /// Starts a partition task per executor (each for its input partition).
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
        // Each output's subject: the deployment's `output_schemas`, else the topic's own
        // schema setting.
        let subjects = outputs
            .iter()
            .map(|o| {
                spec.output_schemas.get(&o.name).cloned().or_else(|| {
                    o.config
                        .schema
                        .as_ref()
                        .and_then(|s| s.value.as_ref())
                        .map(|r| r.subject.clone())
                })
            })
            .collect();
        let codec =
            SchemaCodec::new(self.schemas.clone(), spec.decode.is_some(), subjects).map(Arc::new);
        let sinks = Sinks { outputs, dlq, late };
        let mut ctxs = Vec::new();
        for executor in executors {
            let Some(p) = input.partitions.get(executor.partition() as usize) else {
                continue;
            };
            let checkpoint: Option<Checkpoint> = checkpoint::read(&t.dir, p.id);
            let state = match changelog.as_ref() {
                Some(c) => match c.partitions.get(p.id as usize) {
                    Some(part) => {
                        let store = t
                            .new_store(p.id, input.partitions.len() as u32)
                            .map_err(|e| PipelineError::Runtime(format!("state store: {e}")))?;
                        let store = Arc::new(Mutex::new(store));
                        Some((part.clone(), Arc::new(StateShared::new(store))))
                    }
                    None => None,
                },
                None => None,
            };
            let shared = Arc::new(TaskShared::new(
                p.id,
                checkpoint.as_ref().map_or(0, |c| c.position),
                version,
                state.as_ref().map(|(_, s)| s.clone()),
            ));
            let op: Box<dyn Operator> = match state {
                Some((changelog, st)) => Box::new(Stateful::new(Some(changelog), st, t)),
                None => Box::new(Stateless),
            };
            ctxs.push(TaskCtx {
                t: t.clone(),
                input: p.clone(),
                layout: Layout::of(&sinks),
                sinks: sinks.clone(),
                shared,
                executor,
                checkpoint,
                start_latest: spec.start == Start::Latest,
                op,
                codec: codec.clone(),
                inputs: spec.inputs.clone(),
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
        t.remove_state_db()
            .map_err(|e| PipelineError::Runtime(format!("removing the state store: {e}")))?;
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
        if let Some(s) = t.shadow.lock().unwrap_or_else(|p| p.into_inner()).take() {
            s.stop();
        }
        Self::stop_merge(&t);
        Self::stop_tasks(&t);
        self.remove_merged(&t)?;
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
            if let Some(s) = t.shadow.lock().unwrap_or_else(|p| p.into_inner()).take() {
                s.stop();
            }
            Self::stop_merge(&t);
            Self::stop_tasks(&t);
        }
    }

    /// A new version of `plugin` was uploaded: swap every deployment that follows `latest`.
    /// Moves the deployments that follow `latest` of `plugin` to `version`; returns each
    /// one's name and whether it switched (the reason if not: it keeps its version).
    pub fn plugin_uploaded(&self, plugin: &str, version: u32) -> Vec<(String, Result<(), String>)> {
        let mut moved = Vec::new();
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
            if let Err(e) = &result {
                tracing::warn!(transform = %t.name, version, error = %e, "new version not activated");
            }
            moved.push((t.name.clone(), result.map_err(|e| e.to_string())));
        }
        moved
    }

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
}
