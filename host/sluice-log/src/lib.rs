//! The durable, partitioned log: topics → partitions → segments of Kafka v2 batches.
//!
//! Nothing here knows HTTP, Kafka requests or plugins; callers hand in batches and get
//! offsets, or ask for offsets and get batches.

pub mod batch;
pub mod dead_letter;
pub mod partition;
pub mod segment;
pub mod space;
pub mod tier;
pub mod txn;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use partition::{Appended, Partition, PartitionStats, ReadBatches, TierProgress, TierStats};

/// Errors of the log. Display strings are fragments meant to be shown to users.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("topic {0} already exists")]
    TopicExists(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("topic {topic} has no partition {partition}")]
    UnknownPartition { topic: String, partition: i64 },
    #[error(
        "offset {offset} is out of range for {topic}/{partition} (valid offsets are {start}..={end})"
    )]
    OffsetOutOfRange {
        topic: String,
        partition: u32,
        offset: u64,
        start: u64,
        end: u64,
    },
    #[error("corrupt data at offset {offset} of {topic}/{partition}: {reason}")]
    Corrupt {
        topic: String,
        partition: u32,
        offset: u64,
        reason: String,
    },
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] batch::BatchError),
    #[error("invalid topic config: {0}")]
    InvalidConfig(String),
    #[error("topic {0} was deleted")]
    TopicDeleted(String),
    #[error("topic {topic} belongs to {owner}: only the server writes or deletes it")]
    Owned { topic: String, owner: String },
    #[error(
        "the disk holding {} is full: {free_bytes} bytes free, {needed_bytes} needed, and the server keeps {min_free_bytes} free; nothing of this write was stored — retry once space is freed",
        path.display()
    )]
    StorageFull {
        path: PathBuf,
        free_bytes: u64,
        needed_bytes: u64,
        min_free_bytes: u64,
    },
    #[error("i/o error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FlushPolicy {
    /// fsync before acknowledging; concurrent appends share one fsync (group commit).
    #[default]
    EveryBatch,
    /// Acknowledge after the write; a background task fsyncs every `flush_interval_ms`.
    Interval,
    /// Acknowledge after the write; the OS decides when it reaches the disk.
    Os,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Cleanup {
    #[default]
    Delete,
    Compact,
}

/// A topic's settings, persisted in `topic.json` beside its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct TopicConfig {
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1024))]
    pub partitions: u32,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub cleanup: Cleanup,
    pub flush: FlushPolicy,
    pub flush_interval_ms: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    /// Compacted topics: how long a tombstone (null value) is kept after compaction
    /// reaches it, so readers behind get to see the delete.
    pub tombstone_retention_ms: u64,
    /// Tiered storage: sealed segments go to the server's object store (see [`tier`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiered: Option<tier::TierSettings>,
    /// Data contracts: the schema registry subjects its records must carry. The log only
    /// keeps this; the produce paths (HTTP and Kafka) enforce it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<TopicSchema>,
}

/// What a schema-validated topic requires of its records' values and keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TopicSchema {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<SubjectRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SubjectRule>,
}

/// One part of a record (value or key) must be framed (Confluent's wire format) with the id
/// of a registered, undeleted version of `subject`; with `decode`, it must also decode
/// against that schema. Null values (tombstones) and null keys pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubjectRule {
    pub subject: String,
    #[serde(default)]
    pub validation: Validation,
}

/// How strictly a subject rule is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    /// The framing and a registered id of the subject (cheap: no decoding).
    #[default]
    Id,
    /// The id, and the payload decodes against its schema.
    Decode,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            cleanup: Cleanup::Delete,
            flush: FlushPolicy::EveryBatch,
            flush_interval_ms: 1000,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            tombstone_retention_ms: 24 * 3600 * 1000,
            tiered: None,
            schema: None,
        }
    }
}

pub const MAX_PARTITIONS: u32 = 1024;

impl TopicConfig {
    pub fn validate(&self) -> Result<(), LogError> {
        let bad = |m: String| Err(LogError::InvalidConfig(m));
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return bad(format!("partitions must be 1..={MAX_PARTITIONS}"));
        }
        if self.retention_ms.is_some_and(|v| v <= 0) {
            return bad("retention_ms must be positive".into());
        }
        if self.retention_bytes == Some(0) {
            return bad("retention_bytes must be positive".into());
        }
        if self.segment_bytes < 1024 || self.segment_bytes > (1 << 31) {
            return bad("segment_bytes must be 1024..=2147483648".into());
        }
        if self.segment_ms == 0 {
            return bad("segment_ms must be positive".into());
        }
        if self.flush_interval_ms == 0 {
            return bad("flush_interval_ms must be positive".into());
        }
        if let Some(s) = &self.schema {
            for (part, rule) in [("value", &s.value), ("key", &s.key)] {
                if let Some(r) = rule
                    && (r.subject.trim().is_empty() || r.subject.chars().any(char::is_control))
                {
                    return bad(format!(
                        "schema.{part}.subject must name a subject (non-empty, no control characters)"
                    ));
                }
            }
        }
        if let Some(t) = &self.tiered {
            t.validate().map_err(LogError::InvalidConfig)?;
            if self.cleanup == Cleanup::Compact {
                return bad("a compacted topic cannot be tiered (compaction rewrites segments; remote ones are immutable)".into());
            }
        }
        Ok(())
    }
}

/// Kafka's rules: 1–249 characters of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), LogError> {
    match sluice_deploy::names::topic_name_error(name) {
        None => Ok(()),
        Some(reason) => Err(LogError::InvalidTopicName {
            name: name.chars().take(300).collect(),
            reason,
        }),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= u32::from(tail[2]) << 16;
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= u32::from(tail[1]) << 8;
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= u32::from(tail[0]);
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a key.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (murmur2(key) as u32 & 0x7fff_ffff) % partitions.max(1)
}

/// A topic: its settings and partitions.
#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub config: TopicConfig,
    pub partitions: Vec<Arc<Partition>>,
    dir: PathBuf,
    round_robin: std::sync::atomic::AtomicU32,
}

impl Topic {
    /// The partition for a record: by key (Kafka's murmur2 partitioner), else round-robin.
    pub fn pick_partition(&self, key: Option<&[u8]>) -> u32 {
        let n = self.partitions.len() as u32;
        match key {
            Some(k) => partition_for_key(k, n),
            None => {
                self.round_robin
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    % n
            }
        }
    }

    pub fn partition(&self, p: i64) -> Result<&Arc<Partition>, LogError> {
        usize::try_from(p)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .ok_or_else(|| LogError::UnknownPartition {
                topic: self.name.clone(),
                partition: p,
            })
    }
}

/// All topics under one data directory.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    /// The object store of tiered topics, if the server has one.
    tier: Option<tier::TierBackend>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Free space on the data directory's filesystem (appends reserve from it).
    space: Arc<space::Space>,
    /// Topics the server keeps for a purpose (e.g. a transform's state changelog), with
    /// who owns them: clients may read them but not produce to or delete them.
    owners: RwLock<HashMap<String, String>>,
}

const TOPIC_META: &str = "topic.json";

impl Log {
    /// Opens the data directory, recovering every topic found in it.
    pub fn open(dir: impl AsRef<Path>) -> Result<Arc<Log>, LogError> {
        Self::open_with(dir, None)
    }

    /// Opens the data directory with an object store for tiered topics.
    pub fn open_with(
        dir: impl AsRef<Path>,
        tier: Option<tier::TierBackend>,
    ) -> Result<Arc<Log>, LogError> {
        let dir = dir.as_ref().to_path_buf();
        let topics_dir = dir.join("topics");
        let io = |e| LogError::Io {
            path: topics_dir.clone(),
            source: e,
        };
        std::fs::create_dir_all(&topics_dir).map_err(io)?;
        let space = Arc::new(space::Space::new(&dir));
        let mut topics = HashMap::new();
        for entry in std::fs::read_dir(&topics_dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if validate_topic_name(&name).is_err() {
                continue;
            }
            let meta = entry.path().join(TOPIC_META);
            let Ok(text) = std::fs::read(&meta) else {
                // Created but never finished (crash mid-create): not a topic.
                tracing::warn!(topic = %name, "topic directory without metadata ignored");
                continue;
            };
            let config: TopicConfig = serde_json::from_slice(&text)
                .map_err(|e| LogError::InvalidConfig(format!("{}: {e}", meta.display())))?;
            let topic = Self::open_topic(&entry.path(), &name, config, &space)?;
            topics.insert(name, Arc::new(topic));
        }
        tracing::info!(dir = %dir.display(), topics = topics.len(), "log opened");
        let log = Log {
            dir,
            tier,
            space,
            topics: RwLock::new(topics),
            owners: RwLock::default(),
        };
        for t in log.topics() {
            if t.config.tiered.is_some() && log.tier.is_none() {
                tracing::warn!(topic = %t.name, "tiered topic, but the server has no object store ([tier]): nothing is uploaded, remote segments cannot be read");
            }
            log.attach_tier(&t);
        }
        Ok(Arc::new(log))
    }

    /// Points a topic's partitions at the object store (or at nothing).
    fn attach_tier(&self, t: &Topic) {
        for p in &t.partitions {
            p.set_tier(match (&self.tier, &t.config.tiered) {
                (Some(backend), Some(settings)) => Some(tier::PartitionTier {
                    backend: backend.clone(),
                    bucket: settings.bucket.clone(),
                    key: format!("{}/{}", settings.topic_key(&t.name), p.id),
                    settings: settings.clone(),
                }),
                _ => None,
            });
        }
    }

    fn check_tier(&self, config: &TopicConfig) -> Result<(), LogError> {
        if config.tiered.is_some() && self.tier.is_none() {
            return Err(LogError::InvalidConfig(
                "tiered topics need an object store: configure [tier] in the server's config file"
                    .into(),
            ));
        }
        Ok(())
    }

    fn open_topic(
        dir: &Path,
        name: &str,
        config: TopicConfig,
        space: &Arc<space::Space>,
    ) -> Result<Topic, LogError> {
        let partitions = (0..config.partitions)
            .map(|p| {
                Partition::open(
                    name,
                    p,
                    dir.join(p.to_string()),
                    config.clone(),
                    space.clone(),
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Topic {
            name: name.to_string(),
            config,
            partitions,
            dir: dir.to_path_buf(),
            round_robin: Default::default(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Free space on the data directory's filesystem.
    pub fn space(&self) -> &space::Space {
        &self.space
    }

    /// The error of a write refused for space on the data directory.
    pub fn full_error(&self, full: space::Full) -> LogError {
        LogError::StorageFull {
            path: self.dir.clone(),
            free_bytes: full.free_bytes,
            needed_bytes: full.needed_bytes,
            min_free_bytes: full.min_free_bytes,
        }
    }

    fn topics_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a topic; its metadata file is written last, so a crash leaves no half topic.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>, LogError> {
        validate_topic_name(name)?;
        config.validate()?;
        self.check_tier(&config)?;
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if topics.contains_key(name) {
            return Err(LogError::TopicExists(name.to_string()));
        }
        let dir = self.dir.join("topics").join(name);
        let io = |e| LogError::Io {
            path: dir.clone(),
            source: e,
        };
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
        std::fs::create_dir_all(&dir).map_err(io)?;
        let topic = Arc::new(Self::open_topic(&dir, name, config.clone(), &self.space)?);
        let json = serde_json::to_vec_pretty(&config)
            .map_err(|e| LogError::InvalidConfig(e.to_string()))?;
        sluice_common::fs::write_file(&dir.join(TOPIC_META), &json).map_err(io)?;
        sluice_common::fs::sync_dir(&dir).map_err(io)?;
        sluice_common::fs::sync_dir(&self.dir.join("topics")).map_err(io)?;
        self.attach_tier(&topic);
        topics.insert(name.to_string(), topic.clone());
        tracing::info!(
            topic = name,
            partitions = config.partitions,
            "topic created"
        );
        Ok(topic)
    }

    pub fn topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        self.topics_read()
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))
    }

    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<_> = self.topics_read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Marks a topic as kept by `owner` (`None` releases it): [`Log::check_writable`]
    /// and [`Log::delete_topic`] refuse it until released.
    pub fn set_owner(&self, topic: &str, owner: Option<&str>) {
        let mut owners = self.owners.write().unwrap_or_else(|p| p.into_inner());
        match owner {
            Some(o) => owners.insert(topic.to_string(), o.to_string()),
            None => owners.remove(topic),
        };
    }

    pub fn owner(&self, topic: &str) -> Option<String> {
        self.owners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned()
    }

    /// Whether the server keeps `topic` for itself: an owned topic (a state changelog, the
    /// transaction log, `_schemas`) or a worker group's control topic (deployment specs).
    /// Their records are state: reading them needs the state permission.
    pub fn kept_by_server(&self, topic: &str) -> bool {
        self.owner(topic).is_some() || sluice_deploy::names::is_control_topic(topic)
    }

    /// Whether clients may produce to `topic` (owned topics are written by the server only).
    pub fn check_writable(&self, topic: &str) -> Result<(), LogError> {
        match self.owner(topic) {
            None => Ok(()),
            Some(owner) => Err(LogError::Owned {
                topic: topic.to_string(),
                owner,
            }),
        }
    }

    /// Grows a topic to `total` partitions (CreatePartitions); existing partitions keep
    /// their data and keys may now map elsewhere. Holders of the old `Topic` see the old
    /// count until they look it up again.
    pub fn add_partitions(&self, name: &str, total: u32) -> Result<Arc<Topic>, LogError> {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let old = topics
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        let have = old.partitions.len() as u32;
        if total <= have {
            return Err(LogError::InvalidConfig(format!(
                "topic {name} has {have} partitions; it can only grow"
            )));
        }
        let mut config = old.config.clone();
        config.partitions = total;
        config.validate()?;
        let mut partitions = old.partitions.clone();
        for p in have..total {
            partitions.push(Arc::new(Partition::open(
                name,
                p,
                old.dir.join(p.to_string()),
                config.clone(),
                self.space.clone(),
            )?));
        }
        self.write_meta(&old.dir, &config)?;
        let topic = Arc::new(Topic {
            name: name.to_string(),
            config,
            partitions,
            dir: old.dir.clone(),
            round_robin: Default::default(),
        });
        self.attach_tier(&topic);
        topics.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, from = have, to = total, "partitions added");
        Ok(topic)
    }

    /// Changes a topic's settings (not its partition count) for every partition, durably.
    pub fn alter_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<Topic>, LogError> {
        config.validate()?;
        self.check_tier(&config)?;
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        let old = topics
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        if config.partitions != old.config.partitions {
            return Err(LogError::InvalidConfig(
                "the partition count changes with add_partitions".into(),
            ));
        }
        let moved = |a: &Option<tier::TierSettings>, b: &Option<tier::TierSettings>| match (a, b) {
            (Some(a), Some(b)) => a.bucket != b.bucket || a.prefix != b.prefix,
            (Some(_), None) => true,
            _ => false,
        };
        if moved(&old.config.tiered, &config.tiered)
            && old.partitions.iter().any(|p| p.remote_segment_count() > 0)
        {
            return Err(LogError::InvalidConfig(
                "segments of this topic are in the object store: its tiered bucket and prefix cannot change, nor can tiering be switched off".into(),
            ));
        }
        self.write_meta(&old.dir, &config)?;
        for p in &old.partitions {
            p.set_config(config.clone());
        }
        let topic = Arc::new(Topic {
            name: name.to_string(),
            config,
            partitions: old.partitions.clone(),
            dir: old.dir.clone(),
            round_robin: Default::default(),
        });
        self.attach_tier(&topic);
        topics.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    fn write_meta(&self, dir: &Path, config: &TopicConfig) -> Result<(), LogError> {
        let io = |e| LogError::Io {
            path: dir.to_path_buf(),
            source: e,
        };
        let json = serde_json::to_vec_pretty(config)
            .map_err(|e| LogError::InvalidConfig(e.to_string()))?;
        sluice_common::fs::write_file(&dir.join(TOPIC_META), &json).map_err(io)?;
        sluice_common::fs::sync_dir(dir).map_err(io)
    }

    /// Deletes a topic and its files. Readers waiting on it are woken with an error.
    pub fn delete_topic(&self, name: &str) -> Result<(), LogError> {
        self.check_writable(name)?;
        let topic = self
            .topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .ok_or_else(|| LogError::UnknownTopic(name.to_string()))?;
        for p in &topic.partitions {
            p.mark_deleted();
        }
        // A tiered topic's objects go too (best effort: what cannot be deleted now is
        // reported; nothing refers to it any more).
        if let (Some(backend), Some(settings)) = (&self.tier, &topic.config.tiered) {
            let prefix = format!("{}/", settings.topic_key(name));
            match backend.store.list(&settings.bucket, &prefix) {
                Ok(keys) => {
                    // Markers first, so that a restore never finds half a segment.
                    let mut keys: Vec<String> = keys.into_iter().map(|(k, _)| k).collect();
                    keys.sort_by_key(|k| !k.ends_with(".json"));
                    for k in keys {
                        if let Err(e) = backend.store.delete(&settings.bucket, &k) {
                            tracing::warn!(topic = name, key = %k, error = %e, "could not delete an object of a deleted topic");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(topic = name, error = %e, "could not list the deleted topic's objects; they stay in the bucket")
                }
            }
        }
        // Remove the metadata first: a crash halfway leaves a directory that open() ignores.
        let _ = std::fs::remove_file(topic.dir.join(TOPIC_META));
        std::fs::remove_dir_all(&topic.dir).map_err(|e| LogError::Io {
            path: topic.dir.clone(),
            source: e,
        })?;
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Flushes every partition and writes index files (graceful shutdown).
    pub fn close(&self) {
        for t in self.topics() {
            for p in &t.partitions {
                if let Err(e) = p.close() {
                    tracing::error!(topic = %t.name, partition = p.id, error = %e, "flush on close failed");
                }
            }
        }
    }

    /// One pass of background upkeep: interval flushes and retention. Blocking.
    pub fn maintain(
        &self,
        now: i64,
        last_flush: &mut HashMap<(String, u32), i64>,
        retention: bool,
    ) {
        for t in self.topics() {
            for p in &t.partitions {
                if t.config.flush == FlushPolicy::Interval {
                    let key = (t.name.clone(), p.id);
                    let last = last_flush.entry(key).or_insert(now);
                    if now - *last >= t.config.flush_interval_ms as i64 {
                        *last = now;
                        if let Err(e) = p.flush() {
                            tracing::error!(topic = %t.name, partition = p.id, error = %e, "interval flush failed");
                        }
                    }
                }
                if retention {
                    p.apply_retention(now);
                    if t.config.cleanup == Cleanup::Compact {
                        match p.compact(now) {
                            Ok(0) => {}
                            Ok(n) => {
                                tracing::info!(topic = %t.name, partition = p.id, segments = n, "compacted")
                            }
                            Err(e) => {
                                tracing::error!(topic = %t.name, partition = p.id, error = %e, "compaction failed")
                            }
                        }
                    }
                }
            }
        }
    }

    /// One pass of tiering over every tiered topic: the topic's settings to the store
    /// (for restores), then each partition's uploads and local evictions; and the
    /// disk-full check. Blocking (network calls).
    pub fn tier_pass(&self, now: i64, published: &mut HashMap<String, TopicConfig>) {
        let Some(backend) = &self.tier else {
            return;
        };
        let mut pending = 0u64;
        for t in self.topics() {
            let Some(settings) = &t.config.tiered else {
                continue;
            };
            if published.get(&t.name) != Some(&t.config) {
                let key = format!("{}/topic.json", settings.topic_key(&t.name));
                let body = serde_json::to_vec_pretty(&t.config).unwrap_or_default();
                match backend.store.put(&settings.bucket, &key, body.into()) {
                    Ok(()) => {
                        published.insert(t.name.clone(), t.config.clone());
                    }
                    Err(e) => {
                        tier::METRICS
                            .errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(topic = %t.name, error = %e, "could not store the topic's settings in the object store");
                    }
                }
            }
            for p in &t.partitions {
                if let Err(e) = p.tier_step(now, 4) {
                    tracing::debug!(topic = %t.name, partition = p.id, error = %e, "tier step failed");
                }
                pending += p.stats().tier.map_or(0, |s| s.pending_bytes);
            }
        }
        tier::check_disk(&self.dir, pending);
    }

    /// Runs [`Log::tier_pass`] every `interval` on a dedicated thread until `stop` is set
    /// (nothing when the server has no object store).
    pub fn spawn_tiering(
        self: &Arc<Self>,
        interval: Duration,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> Option<std::thread::JoinHandle<()>> {
        self.tier.as_ref()?;
        let log = self.clone();
        std::thread::Builder::new()
            .name("sluice-tier".into())
            .spawn(move || {
                // Uploads must not add latency to appends and requests.
                sluice_common::sched::background_priority();
                let mut published = HashMap::new();
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    log.tier_pass(now_ms(), &mut published);
                    let until = std::time::Instant::now() + interval;
                    while std::time::Instant::now() < until
                        && !stop.load(std::sync::atomic::Ordering::Acquire)
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
            .ok()
    }

    /// Rebuilds the tiered topics found in `bucket` under `prefix` into the data directory
    /// `dir` (which must not hold them): each partition's manifest from the segments'
    /// completion markers, and an empty local segment where the remote data ends. What
    /// was not uploaded before the local disk was lost is gone; the report says where
    /// each partition now ends. Topics that exist locally are left alone.
    pub fn restore_from_tier(
        dir: &Path,
        backend: &tier::TierBackend,
        bucket: &str,
        prefix: &str,
    ) -> Result<Vec<String>, LogError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| LogError::Io {
                path: path.clone(),
                source: e,
            }
        };
        let store_err = |e: std::io::Error| LogError::Io {
            path: PathBuf::from(format!("{bucket}/{prefix}")),
            source: e,
        };
        let prefix = prefix.trim_end_matches('/');
        let keys = backend.store.list(bucket, prefix).map_err(store_err)?;
        let mut report = Vec::new();
        let topics_dir = dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(io(&topics_dir))?;
        for (key, _) in keys.iter().filter(|(k, _)| k.ends_with("/topic.json")) {
            let Some(topic_key) = key.strip_suffix("/topic.json") else {
                continue;
            };
            let name = topic_key
                .rsplit('/')
                .next()
                .unwrap_or(topic_key)
                .to_string();
            if validate_topic_name(&name).is_err() {
                continue;
            }
            let tdir = topics_dir.join(&name);
            if tdir.join(TOPIC_META).exists() {
                report.push(format!(
                    "topic {name}: present on local disk, left as it is"
                ));
                continue;
            }
            let Some(body) = backend.store.get(bucket, key).map_err(store_err)? else {
                continue;
            };
            let config: TopicConfig = serde_json::from_slice(&body)
                .map_err(|e| LogError::InvalidConfig(format!("{key}: {e}")))?;
            if tdir.exists() {
                std::fs::remove_dir_all(&tdir).map_err(io(&tdir))?;
            }
            for p in 0..config.partitions {
                let pdir = tdir.join(p.to_string());
                std::fs::create_dir_all(&pdir).map_err(io(&pdir))?;
                let marker_prefix = format!("{topic_key}/{p}/");
                let mut metas = Vec::new();
                for (k, _) in keys
                    .iter()
                    .filter(|(k, _)| k.starts_with(&marker_prefix) && k.ends_with(".json"))
                {
                    if let Some(b) = backend.store.get(bucket, k).map_err(store_err)?
                        && let Ok(m) = serde_json::from_slice::<tier::RemoteMeta>(&b)
                    {
                        metas.push(m);
                    }
                }
                metas.sort_by_key(|m| m.base);
                let gaps = metas
                    .windows(2)
                    .filter(|w| w[0].next_offset != w[1].base)
                    .count();
                let line = match (metas.first(), metas.last()) {
                    (Some(first), Some(last)) => format!(
                        "topic {name} partition {p}: offsets {}..{} restored from {} segment(s){}; records the server wrote after offset {} had not been uploaded and are lost",
                        first.base,
                        last.next_offset,
                        metas.len(),
                        if gaps > 0 {
                            format!(" ({gaps} gap(s) where segments are missing)")
                        } else {
                            String::new()
                        },
                        last.next_offset.saturating_sub(1),
                    ),
                    _ => format!(
                        "topic {name} partition {p}: nothing had been uploaded; it starts empty"
                    ),
                };
                tier::store_manifest(&pdir, metas).map_err(io(&pdir))?;
                report.push(line);
            }
            let json = serde_json::to_vec_pretty(&config)
                .map_err(|e| LogError::InvalidConfig(e.to_string()))?;
            sluice_common::fs::write_file(&tdir.join(TOPIC_META), &json).map_err(io(&tdir))?;
            sluice_common::fs::sync_dir(&topics_dir).map_err(io(&topics_dir))?;
        }
        Ok(report)
    }

    /// Runs `maintain` on a dedicated thread until `stop` is set.
    pub fn spawn_maintenance(
        self: &Arc<Self>,
        retention_check: Duration,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        let log = self.clone();
        std::thread::Builder::new()
            .name("sluice-log-maint".into())
            .spawn(move || {
                let mut last_flush = HashMap::new();
                let mut last_retention = now_ms();
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(10));
                    let now = now_ms();
                    let retention = now - last_retention >= retention_check.as_millis() as i64;
                    if retention {
                        last_retention = now;
                    }
                    log.maintain(now, &mut last_flush, retention);
                }
            })
            .expect("spawning the log maintenance thread")
    }
}

#[cfg(test)]
mod tests;
