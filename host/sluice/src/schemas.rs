//! The Schema Registry's durable state: the compacted internal topic `_schemas` (one
//! partition, owned by the server: clients read it, only the registry writes), in
//! Confluent's own record format. The registry appends its records through `SchemasTopic`
//! (durable before the registry applies them) and is rebuilt from the topic at start, so
//! it survives a crash and travels with the log (tiering, backups).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sluice_log::batch::{self, NewRecord};
use sluice_log::{Cleanup, Log, LogError, Partition, TopicConfig};
use sluice_schema::{Journal, JournalRecord, Registry, RegistryOptions};

/// The registry's topic (Confluent's default `kafkastore.topic`).
pub const TOPIC: &str = "_schemas";
const OWNER: &str = "the schema registry";

/// The journal of the registry: appends to `_schemas`.
#[derive(Debug)]
pub struct SchemasTopic {
    log: Arc<Log>,
    partition: Mutex<Option<Arc<Partition>>>,
}

impl SchemasTopic {
    /// The topic's partition, created (compacted, one partition) on first use.
    fn partition(&self) -> Result<Arc<Partition>, LogError> {
        let mut p = self.partition.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = p.as_ref() {
            return Ok(p.clone());
        }
        let topic = match self.log.create_topic(
            TOPIC,
            TopicConfig {
                partitions: 1,
                cleanup: Cleanup::Compact,
                ..TopicConfig::default()
            },
        ) {
            Err(LogError::TopicExists(_)) => self.log.topic(TOPIC)?,
            other => other?,
        };
        self.log.set_owner(TOPIC, Some(OWNER));
        let first = topic
            .partitions
            .first()
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(TOPIC.into()))?;
        *p = Some(first.clone());
        Ok(first)
    }
}

impl Journal for SchemasTopic {
    fn append(&self, records: &[JournalRecord]) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let recs: Vec<NewRecord> = records
            .iter()
            .map(|(k, v)| NewRecord {
                key: Some(Bytes::copy_from_slice(k)),
                value: v.as_deref().map(Bytes::copy_from_slice),
                headers: Vec::new(),
                timestamp: None,
            })
            .collect();
        // One batch: the records of one registry change are durable together or not at all.
        self.partition()
            .and_then(|p| p.append(batch::build(&recs, sluice_log::now_ms())))
            .map(|_| ())
            .map_err(|e| format!("appending to {TOPIC}: {e}"))
    }
}

/// Opens the registry: replays `_schemas` (if it exists) into a new registry that appends
/// to it. Blocking.
pub fn open(log: Arc<Log>) -> Result<Arc<Registry>, LogError> {
    let journal = Arc::new(SchemasTopic {
        log: log.clone(),
        partition: Mutex::new(None),
    });
    let registry = Registry::with_options(journal.clone(), RegistryOptions::default());
    if let Ok(topic) = log.topic(TOPIC) {
        log.set_owner(TOPIC, Some(OWNER));
        if let Some(p) = topic.partitions.first() {
            let mut off = p.start_offset();
            let mut applied = 0u64;
            loop {
                let (recs, next, _) = p.read_records(off, 10_000)?;
                if recs.is_empty() {
                    break;
                }
                for r in recs {
                    if let Some(k) = r.key {
                        registry.apply(&k, r.value.as_deref());
                        applied += 1;
                    }
                }
                off = next;
            }
            tracing::info!(records = applied, "schema registry restored from {TOPIC}");
            *journal.partition.lock().unwrap_or_else(|e| e.into_inner()) = Some(p.clone());
        }
    }
    Ok(Arc::new(registry))
}
