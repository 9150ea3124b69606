//! `sluice worker`: transform deployments run against an existing Kafka-compatible cluster
//! through librdkafka, with no local log — Kafka Connect's distributed mode for Sluice's
//! plugins.
//!
//! - [`control`]: plugins (in chunks), deployments and every worker's status live in
//!   compacted topics of the cluster; every worker follows them, any worker's API writes.
//! - [`engine`]: one deployment on one worker — a consumer in the deployment's group
//!   (cooperative-sticky) and a transactional producer; every read is one transaction with
//!   its outputs, dead letters and consumed offsets.
//! - [`tables`]: lookup tables from the cluster's compacted topics.
//! - [`Worker`]: runs what the deployments say (reconciling whenever the view changes),
//!   reports what it runs, and answers the API's questions.

pub mod control;
pub mod engine;
pub mod tables;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sluice_pipeline::plugins::{PluginError, PluginVersion, valid_name};
use sluice_pipeline::{HistoryEntry, LogRing, PipelineError, TransformSpec, VersionSel};
use sluice_runtime::{Compiled, Limits, Runtime};

pub use control::{ClusterError, Control, DeploymentRecord, WorkerReport};
pub use engine::{DEFAULT_COMMIT_INTERVAL, DEFAULT_MAX_BATCH, EngineSettings, Shared};
pub use tables::ClusterTables;

/// How often a worker publishes its report; a report older than [`LIVE_FOR`] is a dead
/// worker's.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(2);
pub const LIVE_FOR: Duration = Duration::from_secs(15);

/// Why an API call failed: what the request asked (as on a single server) or the cluster.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Request(#[from] PipelineError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl From<PluginError> for WorkerError {
    fn from(e: PluginError) -> Self {
        WorkerError::Request(e.into())
    }
}

struct Runner {
    spec: TransformSpec,
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<()>,
}

/// A worker: its control plane, its runners and its tables.
pub struct Worker {
    pub settings: EngineSettings,
    pub control: Arc<Control>,
    pub tables: Arc<ClusterTables>,
    runtime: Arc<Runtime>,
    compiled: Mutex<HashMap<String, Arc<Compiled>>>,
    runners: Mutex<HashMap<String, Runner>>,
    shared: Mutex<HashMap<String, Arc<Shared>>>,
    /// Why a deployment cannot run here (unknown version, a plugin that does not compile).
    errors: Mutex<HashMap<String, String>>,
    http: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Joins the group's control plane (creating its topics when it is the first worker).
    pub fn start(
        settings: EngineSettings,
        runtime: Arc<Runtime>,
    ) -> Result<Arc<Worker>, ClusterError> {
        let control = Control::start(&settings.bootstrap_servers, &settings.group, &settings.id)?;
        let (tables, _) =
            ClusterTables::start(&settings.bootstrap_servers, &settings.group, &settings.id)?;
        Ok(Arc::new(Worker {
            settings,
            control,
            tables,
            runtime,
            compiled: Mutex::default(),
            runners: Mutex::default(),
            shared: Mutex::default(),
            errors: Mutex::default(),
            http: Mutex::default(),
            stop: AtomicBool::new(false),
        }))
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The address of this worker's API, for the other workers' status.
    pub fn set_http(&self, addr: String) {
        *lock(&self.http) = Some(addr);
    }

    /// Runs what the deployments say until [`Worker::stop`]: reconciles on every change of
    /// the view (and every second), publishes a report every [`REPORT_INTERVAL`].
    pub fn run(self: &Arc<Self>) {
        let mut seen = u64::MAX;
        let mut reported = std::time::Instant::now() - REPORT_INTERVAL;
        while !self.stop.load(Ordering::Acquire) {
            let generation = self.control.wait_change(seen, Duration::from_millis(500));
            if generation != seen {
                seen = generation;
                self.reconcile();
            }
            if reported.elapsed() >= REPORT_INTERVAL {
                reported = std::time::Instant::now();
                // Deployments that could not start (a table not loaded yet) try again.
                self.reconcile();
                if let Err(e) = self.control.report(&self.report(false)) {
                    tracing::warn!(error = %e, "publishing the worker report failed");
                }
            }
        }
        let runners: Vec<Runner> = lock(&self.runners).drain().map(|(_, r)| r).collect();
        for r in &runners {
            r.stop.store(true, Ordering::Release);
        }
        for r in runners {
            let _ = r.handle.join();
        }
        if let Err(e) = self.control.report(&self.report(true)) {
            tracing::warn!(error = %e, "publishing the final worker report failed");
        }
        self.tables.stop();
        self.control.stop();
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    fn compile(&self, bytes: &[u8], digest: &str) -> Result<Arc<Compiled>, PluginError> {
        if let Some(c) = lock(&self.compiled).get(digest) {
            return Ok(c.clone());
        }
        let c = self.runtime.compile(bytes)?;
        lock(&self.compiled).insert(digest.to_string(), c.clone());
        Ok(c)
    }

    fn shared_of(&self, name: &str) -> Arc<Shared> {
        lock(&self.shared)
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// The version a deployment runs and its compiled plugin.
    fn target(&self, spec: &TransformSpec) -> Result<engine::Target, PipelineError> {
        let (version, bytes, digest) = {
            let view = self.control.view();
            let versions = view
                .versions(&spec.plugin)
                .ok_or_else(|| PluginError::Unknown(spec.plugin.clone()))?;
            let p = match spec.version {
                VersionSel::Latest => versions.last(),
                VersionSel::Exact(v) => versions.iter().find(|p| p.meta.version == v),
            }
            .ok_or_else(|| PluginError::UnknownVersion {
                name: spec.plugin.clone(),
                version: match spec.version {
                    VersionSel::Exact(v) => v,
                    VersionSel::Latest => 0,
                },
            })?;
            (p.meta.version, p.bytes.clone(), p.meta.digest.clone())
        };
        let compiled = self.compile(&bytes, &digest)?;
        if compiled.stateful() {
            return Err(PipelineError::Invalid(format!(
                "plugin {} version {version} keeps state: stateful plugins run in `sluice serve` only (a worker keeps no local state store)",
                spec.plugin
            )));
        }
        Ok(engine::Target { version, compiled })
    }

    /// Starts, swaps and stops runners so that they match the view.
    fn reconcile(self: &Arc<Self>) {
        let desired: BTreeMap<String, DeploymentRecord> = self.control.view().deployments.clone();
        let mut runners = lock(&self.runners);
        // Gone, paused or reshaped: stop.
        let stale: Vec<String> = runners
            .iter()
            .filter(|(name, r)| match desired.get(*name) {
                None => true,
                Some(d) => d.paused || !same_shape(&d.spec, &r.spec),
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            if let Some(r) = runners.remove(&name) {
                r.stop.store(true, Ordering::Release);
                let _ = r.handle.join();
                if !desired.contains_key(&name) {
                    // Deleted: its committed offsets go too.
                    self.control
                        .delete_group_when_empty(engine::group_of(&self.settings, &name));
                }
            }
        }
        lock(&self.shared).retain(|n, _| desired.contains_key(n));
        lock(&self.errors).retain(|n, _| desired.contains_key(n));
        for (name, d) in &desired {
            if d.paused {
                continue;
            }
            let shared = self.shared_of(name);
            let target = match self.target(&d.spec) {
                Ok(t) => t,
                Err(e) => {
                    let msg = e.to_string();
                    if lock(&self.errors).insert(name.clone(), msg.clone()) != Some(msg.clone()) {
                        tracing::warn!(deployment = %name, error = %msg, "deployment cannot run");
                        shared.set_error(msg);
                    }
                    continue;
                }
            };
            lock(&self.errors).remove(name);
            if runners.contains_key(name) {
                if shared.target_version() != Some(target.version) {
                    tracing::info!(deployment = %name, version = target.version, "plugin version staged for activation");
                    shared.set_target(target);
                }
                continue;
            }
            let mut tables_ready = true;
            for t in &d.spec.tables {
                if let Err(e) = self.tables.ensure(t, Duration::from_secs(1)) {
                    shared.set_error(format!("table {t}: {e}"));
                    tables_ready = false;
                }
            }
            if !tables_ready {
                continue;
            }
            shared.set_target(target);
            // A restarted worker continues the history it reported before.
            if let Some(h) = self
                .control
                .view()
                .workers
                .get(&self.settings.id)
                .and_then(|r| r.deployments.get(name))
                .map(|d| d.history.clone())
            {
                shared.seed_history(h);
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (w, n, spec, s, st) = (
                self.clone(),
                name.clone(),
                d.spec.clone(),
                shared.clone(),
                stop.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("sluice-run-{name}"))
                .spawn(move || {
                    let job = engine::Job {
                        name: &n,
                        spec: &spec,
                        runtime: &w.runtime,
                        tables: w.tables.clone(),
                        shared: &s,
                    };
                    engine::run(&w.settings, &job, &st);
                });
            match handle {
                Ok(handle) => {
                    tracing::info!(deployment = %name, "deployment started on this worker");
                    runners.insert(
                        name.clone(),
                        Runner {
                            spec: d.spec.clone(),
                            stop,
                            handle,
                        },
                    );
                }
                Err(e) => shared.set_error(format!("starting a runner: {e}")),
            }
        }
    }

    /// This worker's report for the status topic.
    pub fn report(&self, stopped: bool) -> WorkerReport {
        let shared = lock(&self.shared).clone();
        WorkerReport {
            id: self.settings.id.clone(),
            http: lock(&self.http).clone(),
            at_ms: control::now_ms(),
            stopped,
            deployments: shared
                .into_iter()
                .map(|(name, s)| {
                    let r = control::DeploymentReport {
                        version: s.active_version.load(Ordering::Acquire),
                        partitions: if stopped { Vec::new() } else { s.partitions() },
                        records_in: s.records_in.load(Ordering::Relaxed),
                        records_out: s.records_out.load(Ordering::Relaxed),
                        rejected: s.rejected.load(Ordering::Relaxed),
                        failed: s.failed.load(Ordering::Relaxed),
                        transactions: s.transactions.load(Ordering::Relaxed),
                        restarts: s.restarts.load(Ordering::Relaxed),
                        rebalances: s.rebalances.load(Ordering::Relaxed),
                        last_error: s.last_error(),
                        history: s.history(),
                    };
                    (name, r)
                })
                .collect(),
        }
    }

    /// The counters and logs of the deployments this worker runs.
    pub fn local(&self) -> Vec<(String, Arc<Shared>)> {
        let mut v: Vec<_> = lock(&self.shared)
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    // ---- what the API asks ----

    /// Validates a component and stores it as the plugin's next version.
    pub fn upload_plugin(&self, name: &str, bytes: &[u8]) -> Result<PluginVersion, WorkerError> {
        if !valid_name(name) {
            return Err(PluginError::BadName(name.to_string()).into());
        }
        let digest = control::digest(bytes);
        self.compile(bytes, &digest)?;
        Ok(self.control.upload(name, bytes)?)
    }

    pub fn plugins(&self) -> Vec<(String, Vec<PluginVersion>)> {
        self.control
            .view()
            .plugins
            .iter()
            .map(|(n, vs)| (n.clone(), vs.iter().map(|p| p.meta.clone()).collect()))
            .collect()
    }

    pub fn plugin(&self, name: &str) -> Result<(Vec<PluginVersion>, Vec<String>), WorkerError> {
        let view = self.control.view();
        let versions = view
            .versions(name)
            .ok_or_else(|| PluginError::Unknown(name.to_string()))?;
        Ok((
            versions.iter().map(|p| p.meta.clone()).collect(),
            view.users_of(name),
        ))
    }

    pub fn delete_plugin(&self, name: &str) -> Result<(), WorkerError> {
        self.control.sync()?;
        {
            let view = self.control.view();
            if view.versions(name).is_none() {
                return Err(PluginError::Unknown(name.to_string()).into());
            }
            let users = view.users_of(name);
            if !users.is_empty() {
                return Err(PipelineError::PluginInUse {
                    plugin: name.to_string(),
                    users: users.join(", "),
                }
                .into());
            }
        }
        Ok(self.control.delete_plugin(name)?)
    }

    /// Creates (true) or updates (false) a deployment; every worker follows.
    pub fn deploy(&self, name: &str, spec: TransformSpec) -> Result<bool, WorkerError> {
        if !valid_name(name) {
            return Err(PipelineError::BadName(name.to_string()).into());
        }
        self.control.sync()?;
        let topics = self.control.topics()?;
        let input_partitions = *topics
            .get(&spec.input)
            .ok_or_else(|| PipelineError::UnknownInput(spec.input.clone()))?;
        if spec.outputs.is_empty() {
            return Err(
                PipelineError::Invalid("at least one output topic is required".into()).into(),
            );
        }
        for o in &spec.outputs {
            if !topics.contains_key(o) {
                return Err(PipelineError::UnknownOutput(o.clone()).into());
            }
            if *o == spec.input {
                return Err(
                    PipelineError::Invalid(format!("output {o} is the input topic")).into(),
                );
            }
        }
        let dlq = spec.dead_letter_topic();
        if dlq == spec.input || spec.outputs.contains(&dlq) {
            return Err(PipelineError::Invalid(format!(
                "dead_letter {dlq} is the input or an output topic: rejected records would be processed again"
            ))
            .into());
        }
        for t in &spec.tables {
            if !topics.contains_key(t) {
                return Err(PipelineError::Invalid(format!("table {t} is not a topic")).into());
            }
        }
        if !spec.secrets.is_empty() {
            return Err(PipelineError::Invalid(
                "secrets are for `sluice serve` deployments: a worker deployment is stored in the cluster's control topic, which its clients can read; pass them in `config` only if that topic is protected".into(),
            )
            .into());
        }
        if spec.event_time.is_some() || spec.late_output.is_some() {
            return Err(PipelineError::Invalid(
                "event_time and late_output apply to stateful plugins, which run in `sluice serve` only".into(),
            )
            .into());
        }
        self.target(&spec)?;
        let existing = self.control.view().deployments.get(name).cloned();
        let created = existing.is_none();
        let now = control::now_ms();
        let record = match existing {
            None => DeploymentRecord {
                spec: TransformSpec {
                    state: None,
                    ..spec
                },
                paused: false,
                created_ms: now,
                updated_ms: now,
            },
            Some(old) => {
                if old.spec.input != spec.input
                    || old.spec.outputs != spec.outputs
                    || old.spec.dead_letter_topic() != dlq
                {
                    return Err(PipelineError::Invalid(
                        "input, outputs and dead_letter of a deployment cannot change; delete it and deploy anew".into(),
                    )
                    .into());
                }
                DeploymentRecord {
                    // `start` applies to the first deployment only: a re-PUT never rewinds.
                    spec: TransformSpec {
                        start: old.spec.start,
                        state: None,
                        ..spec
                    },
                    paused: old.paused,
                    created_ms: old.created_ms,
                    updated_ms: now,
                }
            }
        };
        if created {
            self.control
                .create_topic(&dlq, input_partitions)
                .map_err(WorkerError::Cluster)?;
        }
        self.control.put_deployment(name, &record)?;
        Ok(created)
    }

    pub fn delete(&self, name: &str) -> Result<(), WorkerError> {
        self.control.sync()?;
        if !self.control.view().deployments.contains_key(name) {
            return Err(PipelineError::Unknown(name.to_string()).into());
        }
        Ok(self.control.delete_deployment(name)?)
    }

    pub fn set_paused(&self, name: &str, paused: bool) -> Result<(), WorkerError> {
        self.control.sync()?;
        let Some(mut d) = self.control.view().deployments.get(name).cloned() else {
            return Err(PipelineError::Unknown(name.to_string()).into());
        };
        if d.paused == paused {
            return Ok(());
        }
        d.paused = paused;
        d.updated_ms = control::now_ms();
        Ok(self.control.put_deployment(name, &d)?)
    }

    /// This worker's plugin log lines of a deployment.
    pub fn logs(&self, name: &str) -> Result<Arc<LogRing>, WorkerError> {
        if !self.control.view().deployments.contains_key(name) {
            return Err(PipelineError::Unknown(name.to_string()).into());
        }
        Ok(self.shared_of(name).logs.clone())
    }

    pub fn list(&self) -> Vec<DeploymentStatus> {
        let names: Vec<String> = self.control.view().deployments.keys().cloned().collect();
        names.iter().filter_map(|n| self.status(n).ok()).collect()
    }

    /// A deployment's status across the group: what every live worker reported (this
    /// worker's own part as of now).
    pub fn status(&self, name: &str) -> Result<DeploymentStatus, WorkerError> {
        let view = self.control.view();
        let d = view
            .deployments
            .get(name)
            .ok_or_else(|| PipelineError::Unknown(name.to_string()))?;
        let now = control::now_ms();
        let mine = self.report(false);
        let mut reports: Vec<&WorkerReport> = view
            .workers
            .values()
            .filter(|r| r.id != self.settings.id)
            .collect();
        reports.push(&mine);
        let mut st = DeploymentStatus {
            name: name.to_string(),
            status: if d.paused {
                "paused"
            } else if lock(&self.errors).contains_key(name) {
                "failed"
            } else {
                "running"
            },
            plugin: d.spec.plugin.clone(),
            version: 0,
            version_selector: d.spec.version,
            input: d.spec.input.clone(),
            outputs: d.spec.outputs.clone(),
            dead_letter: d.spec.dead_letter_topic(),
            config: d.spec.config.clone(),
            limits: d.spec.limits.clone(),
            tables: d.spec.tables.clone(),
            consumer_group: engine::group_of(&self.settings, name),
            created_ms: d.created_ms,
            updated_ms: d.updated_ms,
            history: Vec::new(),
            partitions: Vec::new(),
            counters: WorkerCounters::default(),
            last_error: lock(&self.errors).get(name).cloned(),
            workers: Vec::new(),
        };
        st.version = match d.spec.version {
            VersionSel::Exact(v) => v,
            VersionSel::Latest => view
                .versions(&d.spec.plugin)
                .and_then(|v| v.last())
                .map_or(0, |p| p.meta.version),
        };
        let mut history = Vec::new();
        for r in reports {
            let Some(dr) = r.deployments.get(name) else {
                continue;
            };
            history.extend(dr.history.iter().cloned());
            let live = r.id == self.settings.id
                || (!r.stopped && now - r.at_ms <= LIVE_FOR.as_millis() as i64);
            if !live {
                continue;
            }
            for p in &dr.partitions {
                st.partitions.push(PartitionStatus {
                    partition: p.partition,
                    position: p.position,
                    lag: p.lag,
                    version: dr.version,
                    worker: r.id.clone(),
                });
            }
            let c = &mut st.counters;
            c.records_in += dr.records_in;
            c.records_out += dr.records_out;
            c.rejected += dr.rejected;
            c.failed += dr.failed;
            c.transactions += dr.transactions;
            c.restarts += dr.restarts;
            c.rebalances += dr.rebalances;
            if st.last_error.is_none() {
                st.last_error.clone_from(&dr.last_error);
            }
            st.workers.push(WorkerSummary {
                id: r.id.clone(),
                http: r.http.clone(),
                reported_ms: r.at_ms,
                version: dr.version,
                partitions: dr.partitions.iter().map(|p| p.partition).collect(),
            });
        }
        st.partitions.sort_by_key(|p| p.partition);
        st.history = merge_history(history);
        Ok(st)
    }
}

/// Runs the same way: everything but the version and the paused flag.
fn same_shape(a: &TransformSpec, b: &TransformSpec) -> bool {
    let strip = |s: &TransformSpec| TransformSpec {
        version: VersionSel::Latest,
        state: None,
        ..s.clone()
    };
    serde_json::to_value(strip(a)).ok() == serde_json::to_value(strip(b)).ok()
}

/// The workers' histories as one: per partition in offset order, a version that continues
/// itself (the partition moved to another worker) is not a new entry.
fn merge_history(mut all: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    all.sort_by_key(|h| (h.partition, h.from_offset, h.version));
    let mut out: Vec<HistoryEntry> = Vec::new();
    for h in all {
        if let Some(last) = out.last()
            && last.partition == h.partition
            && last.version == h.version
        {
            continue;
        }
        out.push(h);
    }
    out
}

/// `GET /v1/transforms/{name}` on a worker.
#[derive(Debug, Clone, Serialize)]
pub struct DeploymentStatus {
    pub name: String,
    /// `running`, `paused` or `failed` (cannot run: see `last_error`).
    pub status: &'static str,
    pub plugin: String,
    /// The version the deployment runs (workers switch to it between transactions; each
    /// worker's own is in `workers`).
    pub version: u32,
    pub version_selector: VersionSel,
    pub input: String,
    pub outputs: Vec<String>,
    pub dead_letter: String,
    pub config: BTreeMap<String, String>,
    pub limits: Limits,
    pub tables: Vec<String>,
    /// The consumer group whose committed offsets are the deployment's positions.
    pub consumer_group: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Which version took over at which offset of which partition.
    pub history: Vec<HistoryEntry>,
    pub partitions: Vec<PartitionStatus>,
    /// Summed over the live workers, since each started.
    pub counters: WorkerCounters,
    pub last_error: Option<String>,
    /// The live workers running it.
    pub workers: Vec<WorkerSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub partition: i32,
    /// The next input offset to process (-1: not fetched yet).
    pub position: i64,
    /// Committed input records not processed yet (-1: unknown yet).
    pub lag: i64,
    pub version: u32,
    /// The worker holding it.
    pub worker: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WorkerCounters {
    pub records_in: u64,
    pub records_out: u64,
    pub rejected: u64,
    pub failed: u64,
    pub transactions: u64,
    /// Sessions that ended on an error (their transaction aborted, the work resumed from
    /// the committed offsets).
    pub restarts: u64,
    pub rebalances: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerSummary {
    pub id: String,
    pub http: Option<String>,
    pub reported_ms: i64,
    pub version: u32,
    pub partitions: Vec<i32>,
}
