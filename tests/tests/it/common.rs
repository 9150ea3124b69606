//! Starts the real `sluice` binary on `127.0.0.1:0` in a temp dir and talks HTTP to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `sluice` binary next to this test's target directory (built by `cargo build`).
pub fn sluice_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("sluice");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p sluice --bin sluice` (scripts/test does)",
        bin.display()
    );
    bin
}

pub struct Server {
    pub child: Child,
    pub base: String,
    /// The Kafka listener's address.
    pub kafka: Option<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh server in its own temp dir.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(tmp.path(), &[]);
        s._tmp = Some(tmp);
        s
    }

    /// A server on an existing data dir (restarts), with extra `serve` arguments.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(sluice_bin())
            .args([
                "serve",
                "--http",
                "127.0.0.1:0",
                "--kafka",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut kafka = None;
        let addr = loop {
            assert!(Instant::now() < deadline, "server did not start");
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("sluice: listening kafka=") {
                kafka = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("sluice: listening http=") {
                break rest.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            base: format!("http://{addr}"),
            kafka,
            _tmp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}");
    }

    pub fn create_topic(&self, body: Value) {
        let r = http()
            .post(self.url("/v1/topics"))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    }

    pub fn produce(&self, topic: &str, records: Vec<Value>) -> Vec<(u64, u64)> {
        let r = http()
            .post(self.url(&format!("/v1/topics/{topic}/records")))
            .json(&json!({ "records": records }))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().unwrap();
        v["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["partition"].as_u64().unwrap(),
                    o["offset"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Every record of a partition from `offset` to the current end.
    pub fn read_all(&self, topic: &str, partition: u32, mut offset: u64) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v: Value = http()
                .get(self.url(&format!(
                    "/v1/topics/{topic}/partitions/{partition}/records?offset={offset}&max=10000"
                )))
                .send()
                .unwrap()
                .json()
                .unwrap();
            let recs = v["records"].as_array().unwrap();
            if recs.is_empty() {
                return out;
            }
            offset = v["next_offset"].as_u64().unwrap();
            out.extend(recs.iter().cloned());
        }
    }

    pub fn describe(&self, topic: &str) -> Value {
        http()
            .get(self.url(&format!("/v1/topics/{topic}")))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http() -> reqwest::blocking::Client {
    // reqwest is built without a bundled crypto provider; the server uses ring too.
    sluice_auth::tls::install_provider();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}
