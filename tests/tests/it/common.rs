//! Starts servers on `127.0.0.1:0` in temp dirs and talks HTTP (and Kafka) to them: in this
//! process (`Server::start`, fast: no process to spawn) or as the real `sluice` binary
//! (`Server::process`, `Server::start_in`) where a process matters — SIGKILL, SIGTERM,
//! restarts on a data dir, flags and config files, CPU and metrics of one server.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The `sluice` command line, built by cargo together with these tests (never stale).
pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice-under-test"))
}

/// A server in this process: `server::run` on a thread of its own.
struct InProcess {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// Graceful shutdown, as SIGTERM does, and wait for it.
    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Running {
    Process(Child),
    InProcess(InProcess),
}

pub struct Server {
    running: Running,
    pub base: String,
    /// The Kafka listener's address.
    pub kafka: Option<String>,
    /// The schema registry's base URL (`http://HOST:PORT`), when it listens.
    pub registry: Option<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A fresh server in its own temp dir, in this process.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::in_process(tmp.path());
        s._tmp = Some(tmp);
        s
    }

    /// A fresh server in its own temp dir, as a process of the real binary.
    pub fn process() -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::start_in(tmp.path(), &[]);
        s._tmp = Some(tmp);
        s
    }

    fn in_process(data_dir: &Path) -> Server {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let dir = data_dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let kafka = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let registry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addrs = (
                    http.local_addr().unwrap(),
                    kafka.local_addr().unwrap(),
                    registry.local_addr().unwrap(),
                );
                let config = sluice::config::ServerConfig {
                    tier: None,
                    restore_from_tier: false,
                    alerts: Default::default(),
                    data_dir: dir,
                    http: addrs.0,
                    insecure: false,
                    plugins_dir: None,
                    limits: Default::default(),
                    log: Default::default(),
                    kafka: Some(addrs.1),
                    schema_registry: Some(addrs.2),
                    advertise: None,
                    kafka_settings: Default::default(),
                    auth: None,
                    tls: None,
                };
                let shutdown = async move {
                    let _ = stopped.await;
                };
                let listeners = sluice::server::Listeners {
                    http,
                    kafka: Some(kafka),
                    schema_registry: Some(registry),
                };
                let server = sluice::server::run(config, listeners, shutdown);
                let (run, _) = tokio::join!(server, async move {
                    let _ = ready_tx.send(addrs);
                });
                run.unwrap();
            });
        });
        let (http, kafka, registry) = ready.recv().expect("in-process server did not start");
        Server {
            running: Running::InProcess(InProcess {
                stop: Some(stop),
                thread: Some(thread),
            }),
            base: format!("http://{http}"),
            kafka: Some(kafka.to_string()),
            registry: Some(format!("http://{registry}")),
            _tmp: None,
        }
    }

    /// The server's process id (a process server only).
    pub fn pid(&self) -> u32 {
        match &self.running {
            Running::Process(c) => c.id(),
            Running::InProcess(_) => panic!("an in-process server has no pid: use Server::process"),
        }
    }

    /// A server on an existing data dir (restarts), with extra `serve` arguments.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Server {
        Self::start_in_env(data_dir, extra, &[])
    }

    /// [`Server::start_in`] with environment variables for the server process.
    pub fn start_in_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        // The schema registry on a port of its own unless the caller says where (its
        // default, 8081, would collide between servers running at once).
        let registry: &[&str] = if extra.contains(&"--schema-registry") {
            &[]
        } else {
            &["--schema-registry", "127.0.0.1:0"]
        };
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
            .args(registry)
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // A restart may first recover large state (a disk store's journal after a SIGKILL):
        // slow in a debug build on a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut kafka = None;
        let mut registry = None;
        let addr = loop {
            if Instant::now() >= deadline {
                // Not left running over a data directory the test is about to remove.
                let _ = child.kill();
                panic!("server did not start within 120 s");
            }
            let line = lines
                .next()
                .expect("server exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("sluice: listening kafka=") {
                kafka = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.strip_prefix("sluice: listening schema-registry=") {
                registry = Some(format!("http://{}", rest.trim()));
            }
            if let Some(rest) = line.strip_prefix("sluice: listening http=") {
                break rest.trim().to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            running: Running::Process(child),
            base: format!("http://{addr}"),
            kafka,
            registry,
            _tmp: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL (a process server only).
    pub fn kill9(&mut self) {
        let Running::Process(child) = &mut self.running else {
            panic!("an in-process server cannot be killed: use Server::process");
        };
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Waits for the process to end by itself (a process server only).
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let Running::Process(child) = &mut self.running else {
            panic!("an in-process server does not exit by itself");
        };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A graceful shutdown — SIGTERM for a process — and wait for a clean exit.
    pub fn stop(&mut self) {
        match &mut self.running {
            Running::Process(child) => {
                use nix::sys::signal::{Signal, kill};
                use nix::unistd::Pid;
                kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
                let status = child.wait().unwrap();
                assert!(status.success(), "server exited with {status}");
            }
            Running::InProcess(s) => s.stop(),
        }
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
        match &mut self.running {
            Running::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Running::InProcess(s) => s.stop(),
        }
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
