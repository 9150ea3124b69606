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

/// The real `sluice` binary (`sluice-under-test`) serving HTTP on a free port in `dir`, with
/// Kafka and the schema registry off; killed when dropped.
pub struct Binary {
    pub base: String,
    child: std::process::Child,
}

impl Binary {
    /// Starts it and waits until it answers.
    pub fn start(dir: &std::path::Path) -> Binary {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice-under-test"))
            .args([
                "serve",
                "--kafka",
                "off",
                "--schema-registry",
                "off",
                "--http",
            ])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the sluice binary starts");
        let b = Binary {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        let c = reqwest::blocking::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while c.get(b.url("/healthz")).send().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        b
    }

    pub fn url(&self, p: &str) -> String {
        format!("{}{p}", self.base)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
