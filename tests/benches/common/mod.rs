//! What the benchmark binaries share: a log, plugin store and pipelines in a temp dir
//! (`SLUICE_BENCH_DIR` chooses where: a tmpfs or a real disk).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use sluice_log::{Log, TopicConfig};
use sluice_pipeline::Pipelines;
use sluice_pipeline::plugins::PluginStore;
use sluice_pipeline::tables::TableRegistry;
use sluice_runtime::Runtime;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub log: Arc<Log>,
    pub plugins: Arc<PluginStore>,
    pub pipelines: Arc<Pipelines>,
}

/// A fresh server core with `uploads` uploaded in order (a name twice: two versions).
pub fn env(uploads: &[(&str, &[u8])]) -> Env {
    let base = std::env::var_os("SLUICE_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = tempfile::tempdir_in(base).unwrap();
    let log = Log::open(dir.path().join("data")).unwrap();
    let rt = Runtime::new(&dir.path().join("cache")).unwrap();
    let plugins = Arc::new(PluginStore::open(&dir.path().join("plugins"), rt).unwrap());
    for (name, bytes) in uploads {
        plugins.upload(name, bytes).unwrap();
    }
    let tables = TableRegistry::new(log.clone(), Arc::new(AtomicBool::new(false)));
    let pipelines = Pipelines::open(
        log.clone(),
        plugins.clone(),
        tables,
        dir.path().join("transforms"),
        None,
    )
    .unwrap();
    Env {
        dir,
        log,
        plugins,
        pipelines,
    }
}

pub fn create(log: &Log, topic: &str, partitions: u32) {
    log.create_topic(
        topic,
        TopicConfig {
            partitions,
            ..TopicConfig::default()
        },
    )
    .unwrap();
}

/// Records in a topic, all partitions.
pub fn total_end(log: &Log, topic: &str) -> u64 {
    log.topic(topic)
        .unwrap()
        .partitions
        .iter()
        .map(|p| p.high_watermark())
        .sum()
}
