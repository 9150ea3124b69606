//! The worker group's control plane, kept in the cluster itself as Kafka Connect keeps its
//! config and status topics:
//!
//! - `<group>.sluice.config` (compacted, one partition): plugins — uploaded in chunks, then
//!   a manifest — and deployments. One partition gives every worker the same total order,
//!   so every worker derives the same plugin versions and the same deployment specs from it
//!   without a leader: a plugin's versions are numbered by the order of their manifests.
//! - `<group>.sluice.status` (compacted, one partition): each worker's report of what it
//!   runs, keyed by worker id, refreshed every few seconds.
//!
//! Every worker follows both topics from the beginning into a [`View`]. A write (upload,
//! deploy, pause, delete) is produced by whichever worker's API received it and returns
//! once that worker's own view has applied it, so a client reads its own writes.
//!
//! Record keys of the config topic: `chunk:<upload>:<i>` (≤ [`CHUNK_BYTES`] of a component),
//! `plugin:<upload>` (the manifest: name, digest, size, chunk count), `plugin-delete:<name>`
//! (every version of the name uploaded before it is gone), `deployment:<name>` (the spec
//! and the paused flag; a tombstone deletes it). Deleting a plugin also tombstones its
//! chunks and manifests, so compaction reclaims the space.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use sluice_pipeline::plugins::PluginVersion;
use sluice_pipeline::{HistoryEntry, TransformSpec};

/// Largest piece of a component in one record (under every broker's default message size).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// How long a write may take before it fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// The cluster is unreachable or refused a control-plane write.
#[derive(Debug, thiserror::Error)]
#[error("cluster: {0}")]
pub struct ClusterError(pub String);

impl From<KafkaError> for ClusterError {
    fn from(e: KafkaError) -> Self {
        ClusterError(e.to_string())
    }
}

/// One stored version of a plugin.
#[derive(Debug, Clone)]
pub struct StoredPlugin {
    pub meta: PluginVersion,
    /// The upload it came from (its records' key part).
    pub upload: String,
    pub chunks: u32,
    pub bytes: Arc<Vec<u8>>,
}

/// A deployment as the config topic holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentRecord {
    pub spec: TransformSpec,
    #[serde(default)]
    pub paused: bool,
    /// When it was first deployed and last changed (ms since the epoch).
    #[serde(default)]
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
}

/// A plugin upload's manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    name: String,
    digest: String,
    size_bytes: usize,
    chunks: u32,
    uploaded_ms: i64,
}

/// What one worker runs, as it last reported (the status topic).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerReport {
    pub id: String,
    /// Its HTTP API, if it serves one.
    pub http: Option<String>,
    /// When it reported (ms since the epoch).
    pub at_ms: i64,
    /// It stopped cleanly (its partitions went to the others).
    #[serde(default)]
    pub stopped: bool,
    pub deployments: BTreeMap<String, DeploymentReport>,
}

/// One deployment on one worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeploymentReport {
    /// The plugin version this worker runs (0: none yet).
    pub version: u32,
    pub partitions: Vec<PartitionReport>,
    pub records_in: u64,
    pub records_out: u64,
    pub rejected: u64,
    pub failed: u64,
    #[serde(default)]
    pub traps: u64,
    #[serde(default)]
    pub fuel: u64,
    /// Records later than the watermark (stateful deployments).
    #[serde(default)]
    pub late: u64,
    /// Whether the plugin keeps state.
    #[serde(default)]
    pub stateful: bool,
    pub transactions: u64,
    pub restarts: u64,
    pub rebalances: u64,
    pub last_error: Option<String>,
    /// Versions that took over on this worker, and where.
    pub history: Vec<HistoryEntry>,
    /// Partitions whose state this worker follows as a standby replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<StandbyReport>,
}

/// A standby copy of one partition's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandbyReport {
    pub partition: i32,
    /// The next changelog offset it applies.
    pub changelog_offset: i64,
    pub keys: u64,
    /// Changelog records applied since it started following.
    pub replayed: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartitionReport {
    pub partition: i32,
    /// The next input offset to process.
    pub position: i64,
    pub lag: i64,
    /// Stateful deployments: event time and state of the partition, once restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<sluice_pipeline::PartitionState>,
}

/// Everything the control topics say, as applied so far.
#[derive(Debug, Default)]
pub struct View {
    pub plugins: BTreeMap<String, Vec<StoredPlugin>>,
    pub deployments: BTreeMap<String, DeploymentRecord>,
    pub workers: BTreeMap<String, WorkerReport>,
    pending: HashMap<String, BTreeMap<u32, Vec<u8>>>,
    /// Manifests whose chunks were missing or did not match the digest.
    pub corrupt_uploads: u64,
}

impl View {
    pub fn versions(&self, plugin: &str) -> Option<&[StoredPlugin]> {
        self.plugins.get(plugin).map(Vec::as_slice)
    }

    /// Transforms using a plugin.
    pub fn users_of(&self, plugin: &str) -> Vec<String> {
        self.deployments
            .iter()
            .filter(|(_, d)| d.spec.plugin == plugin)
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let (kind, rest) = key.split_once(':').unwrap_or((key, ""));
        match (kind, value) {
            ("chunk", Some(v)) => {
                if let Some((upload, i)) = rest.rsplit_once(':')
                    && let Ok(i) = i.parse::<u32>()
                {
                    self.pending
                        .entry(upload.to_string())
                        .or_default()
                        .insert(i, v.to_vec());
                }
            }
            ("plugin", Some(v)) => {
                let chunks = self.pending.remove(rest).unwrap_or_default();
                let Ok(m) = serde_json::from_slice::<Manifest>(v) else {
                    self.corrupt_uploads += 1;
                    return;
                };
                // The manifest is input: its size only hints (the chunks decide).
                let mut bytes = Vec::with_capacity(m.size_bytes.min(64 << 20));
                for i in 0..m.chunks {
                    match chunks.get(&i) {
                        Some(c) => bytes.extend_from_slice(c),
                        None => {
                            self.corrupt_uploads += 1;
                            tracing::warn!(plugin = %m.name, upload = rest, chunk = i, "plugin upload misses a chunk; ignored");
                            return;
                        }
                    }
                }
                if digest(&bytes) != m.digest {
                    self.corrupt_uploads += 1;
                    tracing::warn!(plugin = %m.name, upload = rest, "plugin upload does not match its digest; ignored");
                    return;
                }
                let versions = self.plugins.entry(m.name.clone()).or_default();
                let version = versions.last().map_or(1, |p| p.meta.version + 1);
                versions.push(StoredPlugin {
                    meta: PluginVersion {
                        version,
                        digest: m.digest,
                        size_bytes: m.size_bytes,
                        uploaded_ms: m.uploaded_ms,
                    },
                    upload: rest.to_string(),
                    chunks: m.chunks,
                    bytes: Arc::new(bytes),
                });
            }
            ("plugin-delete", Some(_)) => {
                self.plugins.remove(rest);
            }
            ("deployment", Some(v)) => match serde_json::from_slice::<DeploymentRecord>(v) {
                Ok(d) => {
                    self.deployments.insert(rest.to_string(), d);
                }
                Err(e) => {
                    tracing::warn!(deployment = rest, error = %e, "unreadable deployment record; ignored")
                }
            },
            ("deployment", None) => {
                self.deployments.remove(rest);
            }
            _ => {}
        }
    }
}

/// A warning about something that repeats (every poll fails while the cluster is away):
/// the first, then one per 30 s with how many happened since.
#[derive(Debug, Default)]
pub(crate) struct Throttled {
    last: Option<Instant>,
    since: u64,
}

impl Throttled {
    /// Counts one occurrence; `Some(count since the last warning)` when one is due.
    pub(crate) fn due(&mut self) -> Option<u64> {
        self.since += 1;
        if self
            .last
            .is_some_and(|w| w.elapsed() < Duration::from_secs(30))
        {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

/// `sha256:<hex>` of a component.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Delivery reports go back to the writer waiting for them.
struct Deliveries;

impl ClientContext for Deliveries {}

type DeliverySender = std::sync::mpsc::SyncSender<Result<i64, String>>;

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<DeliverySender>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Box<DeliverySender>) {
        let r = match result {
            Ok(m) => Ok(m.offset()),
            Err((e, _)) => Err(e.to_string()),
        };
        let _ = tx.send(r);
    }
}

/// Where the follower stands: the next config offset to apply, bumped on every change.
#[derive(Debug, Default)]
struct Applied {
    next_offset: i64,
    generation: u64,
}

/// The control plane of one worker: follows the control topics and writes to them.
pub struct Control {
    pub config_topic: String,
    pub status_topic: String,
    producer: ThreadedProducer<Deliveries>,
    view: RwLock<View>,
    applied: Mutex<Applied>,
    changed: Condvar,
    stop: AtomicBool,
    uploads: AtomicU64,
    worker_id: String,
    bootstrap: String,
    follower: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("config_topic", &self.config_topic)
            .finish_non_exhaustive()
    }
}

/// A librdkafka client's settings for this worker.
pub fn client_config(bootstrap: &str, worker_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c.set("client.id", format!("sluice-worker-{worker_id}"));
    if let Ok(debug) = std::env::var("SLUICE_KAFKA_DEBUG") {
        c.set("debug", debug);
    }
    c
}

impl Control {
    /// Creates the control topics when missing, starts following them and returns once the
    /// view has caught up with what they held at the start.
    pub fn start(
        bootstrap: &str,
        group: &str,
        worker_id: &str,
    ) -> Result<Arc<Control>, ClusterError> {
        let (config_topic, status_topic) = sluice_deploy::names::control_topics(group);
        ensure_topics(
            bootstrap,
            worker_id,
            &[(&config_topic, 1, true), (&status_topic, 1, true)],
        )?;
        let producer: ThreadedProducer<Deliveries> = client_config(bootstrap, worker_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Metadata lookups (is the input a topic?) must not create what they ask about.
            .set("allow.auto.create.topics", "false")
            .set("linger.ms", "0")
            .set("message.max.bytes", "1000000")
            .create_with_context(Deliveries)?;
        let consumer: BaseConsumer = client_config(bootstrap, worker_id)
            .set("group.id", format!("{group}.sluice.follow.{worker_id}"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .set("fetch.message.max.bytes", "2000000")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&config_topic, 0, Offset::Beginning)?;
        tpl.add_partition_offset(&status_topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let control = Arc::new(Control {
            config_topic,
            status_topic,
            producer,
            view: RwLock::new(View::default()),
            applied: Mutex::new(Applied::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            uploads: AtomicU64::new(0),
            worker_id: worker_id.to_string(),
            bootstrap: bootstrap.to_string(),
            follower: Mutex::new(None),
        });
        let c = control.clone();
        let handle = std::thread::Builder::new()
            .name("sluice-control".into())
            .spawn(move || c.follow(consumer))
            .map_err(|e| ClusterError(format!("starting the control follower: {e}")))?;
        *control.follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        control.sync()?;
        Ok(control)
    }

    fn follow(&self, consumer: BaseConsumer) {
        let mut failing = Throttled::default();
        while !self.stop.load(Ordering::Acquire) {
            let Some(m) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    if let Some(failures) = failing.due() {
                        tracing::warn!(error = %e, failures, "control topics: reads failing; retrying");
                    }
                    continue;
                }
            };
            let key = m
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .unwrap_or("");
            if m.topic() == self.status_topic {
                let mut v = self.view.write().unwrap_or_else(|p| p.into_inner());
                match m.payload().map(serde_json::from_slice::<WorkerReport>) {
                    Some(Ok(r)) => {
                        v.workers.insert(key.to_string(), r);
                    }
                    None => {
                        v.workers.remove(key);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(worker = key, error = %e, "unreadable worker report")
                    }
                }
                continue;
            }
            self.view
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .apply(key, m.payload());
            let mut a = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            a.next_offset = m.offset() + 1;
            a.generation += 1;
            self.changed.notify_all();
        }
    }

    pub fn view(&self) -> std::sync::RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes to the config view so far; see [`Control::wait_change`].
    pub fn generation(&self) -> u64 {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .generation
    }

    /// Waits until the config view changes past `seen`, or `timeout`.
    pub fn wait_change(&self, seen: u64, timeout: Duration) -> u64 {
        let a = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let (a, _) = self
            .changed
            .wait_timeout_while(a, timeout, |a| a.generation == seen)
            .unwrap_or_else(|p| p.into_inner());
        a.generation
    }

    /// Waits until the view has applied config records up to `offset` (exclusive).
    fn wait_applied(&self, offset: i64, timeout: Duration) -> Result<(), ClusterError> {
        let a = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let (a, _) = self
            .changed
            .wait_timeout_while(a, timeout, |a| a.next_offset < offset)
            .unwrap_or_else(|p| p.into_inner());
        if a.next_offset < offset {
            return Err(ClusterError(format!(
                "the control topic {} did not catch up to offset {offset} in {timeout:?}",
                self.config_topic
            )));
        }
        Ok(())
    }

    /// Waits until the view holds everything the config topic holds now: reads after it
    /// see every write acknowledged before it, from any worker.
    pub fn sync(&self) -> Result<(), ClusterError> {
        let (_, high) =
            self.producer
                .client()
                .fetch_watermarks(&self.config_topic, 0, WRITE_TIMEOUT)?;
        self.wait_applied(high, WRITE_TIMEOUT)
    }

    /// Produces one record to a control topic and waits for its offset.
    fn send(&self, topic: &str, key: &str, value: Option<&[u8]>) -> Result<i64, ClusterError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut rec = BaseRecord::with_opaque_to(topic, Box::new(tx))
            .key(key)
            .partition(0);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        let deadline = Instant::now() + WRITE_TIMEOUT;
        loop {
            match self.producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                    rec = r;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        match rx.recv_timeout(WRITE_TIMEOUT + Duration::from_secs(5)) {
            Ok(Ok(offset)) => Ok(offset),
            Ok(Err(e)) => Err(ClusterError(format!("writing {key} to {topic}: {e}"))),
            Err(_) => Err(ClusterError(format!("writing {key} to {topic}: no answer"))),
        }
    }

    /// Writes config records in order and returns once this worker's view applied them.
    fn write_config(&self, records: &[(String, Option<Vec<u8>>)]) -> Result<(), ClusterError> {
        let mut last = -1;
        for (k, v) in records {
            last = self.send(&self.config_topic, k, v.as_deref())?;
        }
        self.wait_applied(last + 1, WRITE_TIMEOUT)
    }

    /// Stores a new version of a plugin (already validated by the caller) and returns it.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<PluginVersion, ClusterError> {
        let n = self.uploads.fetch_add(1, Ordering::Relaxed);
        let upload = format!(
            "{}-{}-{n}",
            self.worker_id,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let d = digest(bytes);
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
        let mut records: Vec<(String, Option<Vec<u8>>)> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("chunk:{upload}:{i}"), Some(c.to_vec())))
            .collect();
        let manifest = Manifest {
            name: name.to_string(),
            digest: d,
            size_bytes: bytes.len(),
            chunks: chunks.len() as u32,
            uploaded_ms: now_ms(),
        };
        records.push((
            format!("plugin:{upload}"),
            Some(serde_json::to_vec(&manifest).map_err(|e| ClusterError(e.to_string()))?),
        ));
        self.write_config(&records)?;
        let view = self.view();
        view.versions(name)
            .and_then(|vs| vs.iter().find(|p| p.upload == upload))
            .map(|p| p.meta.clone())
            .ok_or_else(|| {
                ClusterError(format!(
                    "upload {upload} of {name} was written but is not in the view (deleted meanwhile?)"
                ))
            })
    }

    /// Deletes every version of a plugin (the caller checked that nothing uses it).
    pub fn delete_plugin(&self, name: &str) -> Result<(), ClusterError> {
        let stored: Vec<StoredPlugin> = self.view().versions(name).unwrap_or_default().to_vec();
        let mut records = vec![(
            format!("plugin-delete:{name}"),
            Some(format!("{{\"at_ms\":{}}}", now_ms()).into_bytes()),
        )];
        for p in stored {
            records.push((format!("plugin:{}", p.upload), None));
            for i in 0..p.chunks {
                records.push((format!("chunk:{}:{i}", p.upload), None));
            }
        }
        self.write_config(&records)
    }

    pub fn put_deployment(&self, name: &str, d: &DeploymentRecord) -> Result<(), ClusterError> {
        let value = serde_json::to_vec(d).map_err(|e| ClusterError(e.to_string()))?;
        self.write_config(&[(format!("deployment:{name}"), Some(value))])
    }

    pub fn delete_deployment(&self, name: &str) -> Result<(), ClusterError> {
        self.write_config(&[(format!("deployment:{name}"), None)])
    }

    /// Publishes this worker's report.
    pub fn report(&self, r: &WorkerReport) -> Result<(), ClusterError> {
        let value = serde_json::to_vec(r).map_err(|e| ClusterError(e.to_string()))?;
        self.send(&self.status_topic, &r.id, Some(&value))
            .map(|_| ())
    }

    /// The cluster's topics and their partition counts, in one metadata request.
    pub fn topics(&self) -> Result<HashMap<String, usize>, ClusterError> {
        let md = self
            .producer
            .client()
            .fetch_metadata(None, Duration::from_secs(10))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| (t.name().to_string(), t.partitions().len()))
            .collect())
    }

    /// Deletes a consumer group once it is empty (the last worker to leave it succeeds),
    /// retrying for up to a minute; a later deployment of the same name starts afresh.
    pub fn delete_group_when_empty(&self, group: String, changelog: Option<String>) {
        let (bootstrap, id) = (self.bootstrap.clone(), self.worker_id.clone());
        let spawned = std::thread::Builder::new()
            .name("sluice-delete-group".into())
            .spawn(move || {
                let admin: AdminClient<DefaultClientContext> =
                    match client_config(&bootstrap, &id).create() {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(%group, error = %e, "cannot delete the consumer group");
                            return;
                        }
                    };
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
                let deadline = Instant::now() + Duration::from_secs(60);
                // Once no member is left: the state's changelog goes with the offsets (a
                // deployment of the same name later starts from nothing, as on serve).
                let drop_changelog = || {
                    let Some(topic) = &changelog else { return };
                    match futures::executor::block_on(admin.delete_topics(&[topic], &opts)) {
                        Ok(_) => tracing::info!(%topic, "deleted the changelog of a deleted deployment"),
                        Err(e) => tracing::warn!(%topic, error = %e, "cannot delete the changelog of a deleted deployment"),
                    }
                };
                while Instant::now() < deadline {
                    match futures::executor::block_on(admin.delete_groups(&[&group], &opts)) {
                        Ok(results) => match results.first() {
                            Some(Ok(_)) => {
                                tracing::info!(%group, "deleted the consumer group of a deleted deployment");
                                drop_changelog();
                                return;
                            }
                            Some(Err((_, RDKafkaErrorCode::GroupIdNotFound))) => {
                                drop_changelog();
                                return;
                            }
                            _ => {}
                        },
                        Err(e) => tracing::debug!(%group, error = %e, "deleting the group failed"),
                    }
                    std::thread::sleep(Duration::from_secs(2));
                }
                tracing::warn!(%group, "the consumer group of a deleted deployment was not deleted (not empty for a minute)");
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start deleting a consumer group");
        }
    }

    /// Creates a topic (not compacted) unless it exists.
    pub fn create_topic(&self, topic: &str, partitions: usize) -> Result<(), ClusterError> {
        ensure_topics(
            &self.bootstrap,
            &self.worker_id,
            &[(topic, partitions.max(1) as i32, false)],
        )
    }

    /// Creates a compacted topic (a changelog) unless it exists.
    pub fn create_compacted_topic(
        &self,
        topic: &str,
        partitions: usize,
    ) -> Result<(), ClusterError> {
        ensure_topics(
            &self.bootstrap,
            &self.worker_id,
            &[(topic, partitions.max(1) as i32, true)],
        )
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = h.join();
        }
        self.producer.flush(Duration::from_secs(5)).ok();
    }
}

/// Grows `topic` to at least `partitions` partitions (CreatePartitions); one that has as
/// many or more is left alone.
pub fn grow_topic(
    bootstrap: &str,
    worker_id: &str,
    topic: &str,
    partitions: usize,
) -> Result<(), ClusterError> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, worker_id).create()?;
    let have = |admin: &AdminClient<DefaultClientContext>| -> Result<usize, ClusterError> {
        let md = admin
            .inner()
            .fetch_metadata(Some(topic), Duration::from_secs(10))?;
        Ok(md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len()))
    };
    let now = have(&admin)?;
    if now >= partitions {
        return Ok(());
    }
    if now == 0 {
        // Gone (a deployment of the same name was deleted meanwhile): created again.
        return ensure_topics(bootstrap, worker_id, &[(topic, partitions as i32, true)]);
    }
    let results = futures::executor::block_on(admin.create_partitions(
        &[NewPartitions::new(topic, partitions)],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    for r in results {
        match r {
            Ok(t) => tracing::info!(topic = %t, partitions, "grew topic"),
            // Another worker grew it first.
            Err((_, RDKafkaErrorCode::InvalidPartitions)) => {}
            Err((t, e)) => return Err(ClusterError(format!("growing {t}: {e}"))),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while have(&admin)? < partitions {
        if Instant::now() > deadline {
            return Err(ClusterError(format!(
                "topic {topic} did not reach {partitions} partitions"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Creates the topics `(name, partitions, compacted)` that do not exist yet.
fn ensure_topics(
    bootstrap: &str,
    worker_id: &str,
    topics: &[(&str, i32, bool)],
) -> Result<(), ClusterError> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap, worker_id).create()?;
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(30))?;
    let brokers = md.brokers().len().max(1) as i32;
    let missing: Vec<(&str, i32, bool)> = topics
        .iter()
        .copied()
        .filter(|(t, _, _)| {
            !md.topics()
                .iter()
                .any(|m| m.name() == *t && m.error().is_none() && !m.partitions().is_empty())
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(t, partitions, compact)| {
            NewTopic::new(t, *partitions, TopicReplication::Fixed(brokers.min(3))).set(
                "cleanup.policy",
                if *compact { "compact" } else { "delete" },
            )
        })
        .collect();
    let results = futures::executor::block_on(admin.create_topics(
        &new,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))?;
    for r in results {
        match r {
            Ok(t) => tracing::info!(topic = %t, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(ClusterError(format!("creating {t}: {e}"))),
        }
    }
    // Metadata settles on every broker before the follower assigns the partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (t, _, _) in missing {
        loop {
            let md = admin
                .inner()
                .fetch_metadata(Some(t), Duration::from_secs(10))?;
            if md
                .topics()
                .iter()
                .any(|m| m.error().is_none() && !m.partitions().is_empty())
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(ClusterError(format!("topic {t} did not appear")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// A record timestamp in ms, or 0.
pub fn timestamp_ms(t: Timestamp) -> i64 {
    t.to_millis().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(name: &str, bytes: &[u8], chunks: u32) -> Vec<u8> {
        serde_json::to_vec(&Manifest {
            name: name.into(),
            digest: digest(bytes),
            size_bytes: bytes.len(),
            chunks,
            uploaded_ms: 1,
        })
        .unwrap()
    }

    #[test]
    fn versions_follow_manifest_order_and_deletes_restart_them() {
        let mut v = View::default();
        let a = vec![1u8; 10];
        v.apply("chunk:u1:0", Some(&a[..6]));
        v.apply("chunk:u1:1", Some(&a[6..]));
        v.apply("plugin:u1", Some(&manifest("p", &a, 2)));
        let b = vec![2u8; 3];
        v.apply("chunk:u2:0", Some(&b));
        v.apply("plugin:u2", Some(&manifest("p", &b, 1)));
        let vs = v.versions("p").unwrap();
        assert_eq!(
            vs.iter().map(|p| p.meta.version).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(*vs[0].bytes, a);
        assert_eq!(*vs[1].bytes, b);
        // A manifest whose chunks do not add up is ignored, not half-applied.
        v.apply("chunk:u3:0", Some(b"xx"));
        v.apply("plugin:u3", Some(&manifest("p", b"xxyy", 2)));
        assert_eq!(v.versions("p").unwrap().len(), 2);
        assert_eq!(v.corrupt_uploads, 1);
        v.apply("plugin-delete:p", Some(b"{}"));
        assert!(v.versions("p").is_none());
        v.apply("chunk:u4:0", Some(&b));
        v.apply("plugin:u4", Some(&manifest("p", &b, 1)));
        assert_eq!(v.versions("p").unwrap()[0].meta.version, 1);
    }
}
