//! Lookup tables in worker mode: compacted topics of the cluster, each followed from its
//! beginning into memory (latest value per key; a tombstone removes the key), by one
//! consumer per worker. A deployment starts once the tables it names have caught up with
//! what their topics held when it asked for them.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::control::{ClusterError, client_config};

type Table = HashMap<Vec<u8>, Vec<u8>>;

/// Every table this worker follows.
pub struct ClusterTables {
    consumer: BaseConsumer,
    tables: RwLock<HashMap<String, Table>>,
    /// Per (topic, partition): the next offset applied.
    applied: Mutex<HashMap<(String, i32), i64>>,
    caught_up: Condvar,
    followed: Mutex<HashSet<String>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for ClusterTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTables").finish_non_exhaustive()
    }
}

impl ClusterTables {
    pub fn start(
        bootstrap: &str,
        group: &str,
        worker_id: &str,
    ) -> Result<(Arc<ClusterTables>, std::thread::JoinHandle<()>), ClusterError> {
        let consumer: BaseConsumer = client_config(bootstrap, worker_id)
            .set("group.id", format!("{group}.sluice.tables.{worker_id}"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            .create()?;
        let t = Arc::new(ClusterTables {
            consumer,
            tables: RwLock::default(),
            applied: Mutex::default(),
            caught_up: Condvar::new(),
            followed: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let t2 = t.clone();
        let h = std::thread::Builder::new()
            .name("sluice-tables".into())
            .spawn(move || t2.follow())
            .map_err(|e| ClusterError(format!("starting the table follower: {e}")))?;
        Ok((t, h))
    }

    fn follow(&self) {
        let mut failing = crate::control::Throttled::default();
        while !self.stop.load(Ordering::Acquire) {
            if self
                .followed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
            {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let Some(m) = self.consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    if let Some(failures) = failing.due() {
                        tracing::warn!(error = %e, failures, "tables: reads failing; retrying");
                    }
                    continue;
                }
            };
            if let Some(k) = m.key() {
                let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
                let t = tables.entry(m.topic().to_string()).or_default();
                match m.payload() {
                    Some(v) => {
                        t.insert(k.to_vec(), v.to_vec());
                    }
                    None => {
                        t.remove(k);
                    }
                }
            }
            self.applied
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert((m.topic().to_string(), m.partition()), m.offset() + 1);
            self.caught_up.notify_all();
        }
    }

    /// Follows `topic` (when not yet) and waits until every partition holds what the topic
    /// held at the call.
    pub fn ensure(&self, topic: &str, timeout: Duration) -> Result<(), ClusterError> {
        let md = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ClusterError(format!("table topic {topic} does not exist")));
        }
        let fresh = self
            .followed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string());
        if fresh {
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
            }
            self.consumer.incremental_assign(&tpl)?;
        }
        let deadline = Instant::now() + timeout;
        for p in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))?;
            if high <= low {
                continue;
            }
            let key = (topic.to_string(), p);
            let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
            while applied.get(&key).copied().unwrap_or(0) < high && self.position(&key) < high {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ClusterError(format!(
                        "table {topic} partition {p} did not load up to offset {high} in {timeout:?}"
                    )));
                }
                applied = self
                    .caught_up
                    .wait_timeout(applied, left.min(Duration::from_millis(200)))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        }
        Ok(())
    }

    /// The next offset the consumer fetches (past control records, which carry no data).
    fn position(&self, (topic, partition): &(String, i32)) -> i64 {
        let Ok(tpl) = self.consumer.position() else {
            return 0;
        };
        tpl.find_partition(topic, *partition)
            .and_then(|e| e.offset().to_raw())
            .unwrap_or(0)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl sluice_runtime::Tables for ClusterTables {
    fn lookup(&self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)?
            .get(key)
            .cloned()
    }
}
