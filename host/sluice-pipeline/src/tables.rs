//! Lookup tables: compacted topics materialised in memory (latest value per key) for the
//! plugins' `lookup` import and `GET /v1/topics/{t}/keys/{key}`.
//!
//! A follower thread per table partition applies new records as the log notifies them, so
//! updates are visible to lookups within milliseconds of being appended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use sluice_log::{Cleanup, Log, LogError, batch};
use sluice_runtime::Tables;

#[derive(Debug, Default)]
struct Table {
    map: RwLock<HashMap<Bytes, Bytes>>,
    /// Partitions that have caught up with the end seen when the table was opened.
    ready: AtomicUsize,
    partitions: usize,
}

/// Every materialised table of the server.
#[derive(Debug)]
pub struct TableRegistry {
    log: Arc<Log>,
    tables: RwLock<HashMap<String, Arc<Table>>>,
    stop: Arc<AtomicBool>,
}

impl TableRegistry {
    pub fn new(log: Arc<Log>, stop: Arc<AtomicBool>) -> Arc<TableRegistry> {
        Arc::new(TableRegistry {
            log,
            tables: RwLock::default(),
            stop,
        })
    }

    /// The table for a compacted topic, loading it on first use (waits up to 10 s for the
    /// initial load so the first lookups see what is already in the topic).
    fn table(&self, name: &str) -> Result<Arc<Table>, LogError> {
        let known = self
            .tables
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        // Every caller waits for the initial load, not only the one that started it: a
        // lookup from another partition task must not see a half-loaded table.
        let table = match known {
            Some(t) => t,
            None => self.open(name)?,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while table.ready.load(Ordering::Acquire) < table.partitions && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(table)
    }

    /// Registers a table and starts its followers (or returns the one registered meanwhile).
    fn open(&self, name: &str) -> Result<Arc<Table>, LogError> {
        let topic = self.log.topic(name)?;
        if topic.config.cleanup != Cleanup::Compact {
            return Err(LogError::InvalidConfig(format!(
                "topic {name} is not a table (create it with \"cleanup\": \"compact\")"
            )));
        }
        let table = {
            let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = tables.get(name) {
                return Ok(t.clone());
            }
            let t = Arc::new(Table {
                partitions: topic.partitions.len(),
                ..Default::default()
            });
            tables.insert(name.to_string(), t.clone());
            for p in &topic.partitions {
                let (p, t, stop) = (p.clone(), t.clone(), self.stop.clone());
                let _ = std::thread::Builder::new()
                    .name(format!("sluice-table-{name}-{}", p.id))
                    .spawn(move || follow(p, t, stop));
            }
            t
        };
        Ok(table)
    }

    /// The latest value for `key` in table `name`.
    pub fn get(&self, name: &str, key: &[u8]) -> Result<Option<Bytes>, LogError> {
        let t = self.table(name)?;
        let map = t.map.read().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(key).cloned())
    }
}

impl Tables for TableRegistry {
    fn lookup(&self, table: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.get(table, key).ok().flatten().map(|b| b.to_vec())
    }
}

fn follow(p: Arc<sluice_log::Partition>, t: Arc<Table>, stop: Arc<AtomicBool>) {
    let initial_end = p.high_watermark();
    let mut pos = p.start_offset();
    let mut ready = false;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build();
    let Ok(rt) = rt else { return };
    while !stop.load(Ordering::Acquire) && !p.is_deleted() {
        if !ready && pos >= initial_end {
            ready = true;
            t.ready.fetch_add(1, Ordering::AcqRel);
        }
        let read = match p.read(pos, 1 << 20) {
            Ok(r) => r,
            Err(LogError::OffsetOutOfRange { start, .. }) if pos < start => {
                pos = start;
                continue;
            }
            Err(e) => {
                tracing::error!(topic = %p.topic, partition = p.id, error = %e, "table follower stopped");
                return;
            }
        };
        if read.data.is_empty() {
            let _ = rt.block_on(p.wait_for(pos, Duration::from_millis(200)));
            continue;
        }
        let mut map = t.map.write().unwrap_or_else(|e| e.into_inner());
        if let Ok(batches) = batch::split(read.data) {
            for (_, b) in batches {
                for r in batch::decode(&b).unwrap_or_default() {
                    if (r.offset as u64) < pos {
                        continue;
                    }
                    if let Some(k) = r.key {
                        match r.value {
                            Some(v) => map.insert(k, v),
                            None => map.remove(&k),
                        };
                    }
                }
            }
        }
        drop(map);
        pos = read.next_offset;
    }
}
