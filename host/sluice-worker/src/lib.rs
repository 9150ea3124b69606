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

mod chunk;
pub mod control;
pub mod engine;
mod secrets;
pub use secrets::SecretsKey;
mod runner;
mod standby;
pub mod stateful;
pub mod tables;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_deploy::{
    Capabilities, Catalog, CounterValues, DeployError, HistoryEntry, PartitionStatus, RunState,
    TransformSpec, TransformStatus, VersionSel, WorkerSummary, check_plugin, prepare,
};
use sluice_pipeline::plugins::{PluginError, PluginVersion, valid_name};
use sluice_pipeline::{LogRing, PipelineError};
use sluice_runtime::{Compiled, Runtime};

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

impl From<DeployError> for WorkerError {
    fn from(e: DeployError) -> Self {
        WorkerError::Request(e.into())
    }
}

/// What a worker can run: stateless and stateful plugins, without secrets (its deployments
/// live in the cluster's control topic).
pub const CAPABILITIES: Capabilities = Capabilities {
    stateful: true,
    secrets: false,
    schemas: false,
    two_inputs: false,
    runner: "sluice worker",
};

/// What the cluster and the group's control topics hold, as of one moment.
struct ClusterCatalog {
    topics: HashMap<String, usize>,
    plugins: HashMap<String, Vec<u32>>,
    deployments: Vec<(String, TransformSpec)>,
}

impl ClusterCatalog {
    fn of(view: &control::View, topics: HashMap<String, usize>) -> ClusterCatalog {
        ClusterCatalog {
            topics,
            plugins: view
                .plugins
                .iter()
                .map(|(n, v)| (n.clone(), v.iter().map(|p| p.meta.version).collect()))
                .collect(),
            deployments: view
                .deployments
                .iter()
                .map(|(n, d)| (n.clone(), d.spec.clone()))
                .collect(),
        }
    }
}

impl Catalog for ClusterCatalog {
    fn partitions(&self, topic: &str) -> Option<u32> {
        self.topics.get(topic).map(|&n| n as u32)
    }

    fn plugin_versions(&self, plugin: &str) -> Option<Vec<u32>> {
        self.plugins.get(plugin).cloned()
    }

    fn deployments(&self, except: &str) -> Vec<(String, TransformSpec)> {
        self.deployments
            .iter()
            .filter(|(n, _)| n != except)
            .cloned()
            .collect()
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
            self.update_peers();
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

    /// Tells each deployment who holds which partition (its standby replicas follow
    /// from that), from the live workers' reports and this worker's own partitions.
    fn update_peers(&self) {
        let now = control::now_ms();
        let me = &self.settings.id;
        let local = self.local();
        let view = self.control.view();
        let live: Vec<&WorkerReport> = view
            .workers
            .values()
            .filter(|r| &r.id != me && !r.stopped && now - r.at_ms <= LIVE_FOR.as_millis() as i64)
            .collect();
        let mut ids: Vec<String> = live.iter().map(|r| r.id.clone()).collect();
        ids.push(me.clone());
        ids.sort();
        for (name, shared) in local {
            let mut owners = BTreeMap::new();
            for r in &live {
                if let Some(d) = r.deployments.get(&name) {
                    for p in &d.partitions {
                        owners.insert(p.partition, r.id.clone());
                    }
                }
            }
            for p in shared.partitions() {
                owners.insert(p.partition, me.clone());
            }
            shared.set_peers(engine::Peers {
                owners,
                live: ids.clone(),
            });
        }
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
    /// What this worker runs: secrets only with a secrets key.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            secrets: self.settings.secrets_key.is_some(),
            ..CAPABILITIES
        }
    }

    /// Whether the plugin version `spec` runs keeps state, if this worker compiled it
    /// already (status never compiles).
    fn stateful_compiled(&self, spec: &TransformSpec) -> bool {
        let view = self.control.view();
        let catalog = ClusterCatalog::of(&view, HashMap::new());
        let Ok(version) = sluice_deploy::validate::resolve_version(spec, &catalog) else {
            return false;
        };
        let digest = view
            .versions(&spec.plugin)
            .and_then(|vs| vs.iter().find(|p| p.meta.version == version))
            .map(|p| p.meta.digest.clone());
        drop(view);
        digest.is_some_and(|d| lock(&self.compiled).get(&d).is_some_and(|c| c.stateful()))
    }

    fn target(&self, spec: &TransformSpec) -> Result<engine::Target, PipelineError> {
        let (version, bytes, digest) = {
            let view = self.control.view();
            let catalog = ClusterCatalog::of(&view, HashMap::new());
            let version = sluice_deploy::validate::resolve_version(spec, &catalog)?;
            let p = view
                .versions(&spec.plugin)
                .and_then(|vs| vs.iter().find(|p| p.meta.version == version))
                .ok_or_else(|| PluginError::UnknownVersion {
                    name: spec.plugin.clone(),
                    version,
                })?;
            (version, p.bytes.clone(), p.meta.digest.clone())
        };
        let compiled = self.compile(&bytes, &digest)?;
        Ok(engine::Target { version, compiled })
    }

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
                    let stateful = lock(&self.shared).get(&name).is_some_and(|s| s.stateful());
                    let changelog =
                        stateful.then(|| stateful::changelog_topic(&self.settings.group, &name));
                    self.control.delete_group_when_empty(
                        engine::group_of(&self.settings, &name),
                        changelog,
                    );
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
            let spec = match secrets::open_spec(
                self.settings.secrets_key.as_ref(),
                name,
                d.spec.clone(),
            ) {
                Ok(spec) => spec,
                Err(msg) => {
                    if lock(&self.errors).insert(name.clone(), msg.clone()) != Some(msg.clone()) {
                        tracing::warn!(deployment = %name, error = %msg, "deployment cannot run");
                        shared.set_error(msg);
                    }
                    continue;
                }
            };
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
            let (w, n, s, st) = (self.clone(), name.clone(), shared.clone(), stop.clone());
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
                    runner::run(&w.settings, &job, &st);
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
                        traps: s.traps.load(Ordering::Relaxed),
                        fuel: s.fuel.load(Ordering::Relaxed),
                        late: s.late.load(Ordering::Relaxed),
                        stateful: s.stateful(),
                        transactions: s.transactions.load(Ordering::Relaxed),
                        restarts: s.restarts.load(Ordering::Relaxed),
                        rebalances: s.rebalances.load(Ordering::Relaxed),
                        last_error: s.last_error(),
                        history: s.history(),
                        standbys: if stopped { Vec::new() } else { s.standbys() },
                    };
                    (name, r)
                })
                .collect(),
        }
    }

    /// The counters and logs of the deployments this worker runs.
    /// How many partitions `topic` has on the cluster (0: unknown).
    pub fn partitions_of(&self, topic: &str) -> u32 {
        self.control
            .topics()
            .ok()
            .and_then(|t| t.get(topic).copied())
            .map_or(0, |n| n as u32)
    }

    /// The state store of `partition` of deployment `name`, if this worker holds it.
    pub fn state_of(
        &self,
        name: &str,
        partition: u32,
    ) -> Option<Arc<Mutex<sluice_runtime::state::StateStore>>> {
        let shared = lock(&self.shared).get(name).cloned()?;
        let states = shared.states();
        states
            .get(&i32::try_from(partition).ok()?)
            .map(|s| s.store.clone())
    }

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
    /// Stores `bytes` as the next version of `name` in the group's control topic; bytes
    /// equal to a stored version's are that version (`false`: nothing new).
    pub fn upload_plugin(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<(PluginVersion, bool), WorkerError> {
        if !valid_name(name) {
            return Err(PluginError::BadName(name.to_string()).into());
        }
        let digest = control::digest(bytes);
        self.control.sync()?;
        let same = self
            .control
            .view()
            .versions(name)
            .and_then(|vs| vs.iter().find(|p| p.meta.digest == digest))
            .map(|p| p.meta.clone());
        if let Some(same) = same {
            return Ok((same, false));
        }
        self.compile(bytes, &digest)?;
        Ok((self.control.upload(name, bytes)?, true))
    }

    /// The deployments that follow `latest` of `plugin` (they move to a new version between
    /// transactions).
    pub fn followers_of_latest(&self, plugin: &str) -> Vec<String> {
        self.control
            .view()
            .deployments
            .iter()
            .filter(|(_, d)| d.spec.plugin == plugin && d.spec.version == VersionSel::Latest)
            .map(|(n, _)| n.clone())
            .collect()
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
            return Err(DeployError::BadName(name.to_string()).into());
        }
        self.control.sync()?;
        let topics = self.control.topics()?;
        let (existing, catalog) = {
            let view = self.control.view();
            (
                view.deployments.get(name).cloned(),
                ClusterCatalog::of(&view, topics),
            )
        };
        // The stored spec with its secrets opened: a re-PUT's `***` keeps their values.
        let old = match &existing {
            Some(d) => Some(
                secrets::open_spec(self.settings.secrets_key.as_ref(), name, d.spec.clone())
                    .map_err(DeployError::Invalid)?,
            ),
            None => None,
        };
        let prepared = prepare(name, spec, old.as_ref(), &catalog, self.capabilities())?;
        let target = self.target(&prepared.spec)?;
        check_plugin(&prepared, target.compiled.stateful(), self.capabilities())?;
        let mut prepared = prepared;
        if let Some(key) = &self.settings.secrets_key {
            prepared.spec = secrets::seal_spec(key, name, prepared.spec);
        }
        let now = control::now_ms();
        let dlq = prepared.spec.dead_letter_topic();
        let record = match &existing {
            None => DeploymentRecord {
                spec: prepared.spec,
                paused: false,
                created_ms: now,
                updated_ms: now,
            },
            Some(old) => DeploymentRecord {
                spec: prepared.spec,
                paused: old.paused,
                created_ms: old.created_ms,
                updated_ms: now,
            },
        };
        if existing.is_none() {
            self.control
                .create_topic(&dlq, prepared.input_partitions as usize)
                .map_err(WorkerError::Cluster)?;
        }
        if target.compiled.stateful() {
            // The state's changelog: compacted, one partition per input partition.
            self.control
                .create_compacted_topic(
                    &stateful::changelog_topic(&self.settings.group, name),
                    prepared.input_partitions as usize,
                )
                .map_err(WorkerError::Cluster)?;
        }
        self.control.put_deployment(name, &record)?;
        Ok(existing.is_none())
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

    pub fn list(&self) -> Vec<TransformStatus> {
        let names: Vec<String> = self.control.view().deployments.keys().cloned().collect();
        names.iter().filter_map(|n| self.status(n).ok()).collect()
    }

    /// A deployment's status across the group: what every live worker reported (this
    /// worker's own part as of now).
    pub fn status(&self, name: &str) -> Result<TransformStatus, WorkerError> {
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
        let error = lock(&self.errors).get(name).cloned();
        let mut st = TransformStatus {
            status: if d.paused {
                RunState::Paused
            } else if error.is_some() {
                RunState::Failed
            } else {
                RunState::Running
            },
            version: match d.spec.version {
                VersionSel::Exact(v) => v,
                VersionSel::Latest => view
                    .versions(&d.spec.plugin)
                    .and_then(|v| v.last())
                    .map_or(0, |p| p.meta.version),
            },
            last_error: error,
            counters: CounterValues {
                transactions: Some(0),
                restarts: Some(0),
                rebalances: Some(0),
                ..CounterValues::default()
            },
            ..TransformStatus::of_spec(name, &d.spec, false)
        };
        let mut workers = Vec::new();
        let mut history = Vec::new();
        let mut stateful = false;
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
                    partition: p.partition.max(0) as u32,
                    position: u64::try_from(p.position).ok(),
                    lag: u64::try_from(p.lag).ok(),
                    version: dr.version,
                    state: p.state.clone(),
                    worker: Some(r.id.clone()),
                });
            }
            let c = &mut st.counters;
            c.records_in += dr.records_in;
            c.records_out += dr.records_out;
            c.rejected += dr.rejected;
            c.failed += dr.failed;
            c.traps += dr.traps;
            c.fuel += dr.fuel;
            c.late += dr.late;
            stateful |= dr.stateful;
            let add = |a: &mut Option<u64>, b: u64| *a = Some(a.unwrap_or(0) + b);
            add(&mut c.transactions, dr.transactions);
            add(&mut c.restarts, dr.restarts);
            add(&mut c.rebalances, dr.rebalances);
            if st.last_error.is_none() {
                st.last_error.clone_from(&dr.last_error);
            }
            workers.push(WorkerSummary {
                id: r.id.clone(),
                http: r.http.clone(),
                reported_ms: r.at_ms,
                version: dr.version,
                partitions: dr
                    .partitions
                    .iter()
                    .map(|p| p.partition.max(0) as u32)
                    .collect(),
            });
        }
        // Before any worker reports it: what the plugin to run says.
        stateful = stateful || self.stateful_compiled(&d.spec);
        if stateful {
            let of = TransformStatus::of_spec(name, &d.spec, true);
            st.stateful = true;
            st.state_topic = Some(stateful::changelog_topic(&self.settings.group, name));
            st.allowed_lateness_ms = of.allowed_lateness_ms;
            st.idle_timeout_ms = of.idle_timeout_ms;
            st.state_store = of.state_store;
            st.standby_replicas = of.standby_replicas;
        }
        st.partitions.sort_by_key(|p| p.partition);
        st.history = merge_history(history);
        st.consumer_group = Some(engine::group_of(&self.settings, name));
        st.created_ms = Some(d.created_ms);
        st.updated_ms = Some(d.updated_ms);
        st.workers = Some(workers);
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
