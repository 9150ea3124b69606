//! End-to-end tests live in `tests/it/`; this library names the fixture plugins that
//! `build.rs` compiles for them.

/// Misbehaving plugins, built for wasm32-wasip2 (test fixtures, never shipped).
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

/// A Python plugin (the directory `dir` of the repository, holding `app.py`) built into a
/// component by `scripts/build-python-plugin` (componentize-py from PyPI, installed on
/// first use), and rebuilt when its sources or the SDK's are newer than the last build.
pub fn python_plugin(dir: &str) -> Vec<u8> {
    built_plugin("build-python-plugin", dir, "sdk-python/sluice_sdk", false)
}

/// A stateful Python plugin: built against the `transform` world (keyed state and timers).
pub fn stateful_python_plugin(dir: &str) -> Vec<u8> {
    built_plugin("build-python-plugin", dir, "sdk-python/sluice_sdk", true)
}

/// A JavaScript plugin (`dir` holds `app.js`) built by `scripts/build-js-plugin` (esbuild
/// and componentize-js from npm, installed on first use), rebuilt likewise.
pub fn js_plugin(dir: &str) -> Vec<u8> {
    built_plugin("build-js-plugin", dir, "sdk-js/src", false)
}

/// A stateful JavaScript plugin: built against the `transform` world (keyed state and
/// timers; its `app.js` binds `sluice:transform/state`).
pub fn stateful_js_plugin(dir: &str) -> Vec<u8> {
    built_plugin("build-js-plugin", dir, "sdk-js/src", true)
}

fn built_plugin(script: &str, dir: &str, sdk: &str, stateful: bool) -> Vec<u8> {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from);
    let name = dir.replace('/', "-");
    let out = target.join("lang-plugins").join(format!("{name}.wasm"));
    let src = root.join(dir);
    let newest = [src.clone(), root.join(sdk), root.join("wit")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter_map(|e| e.metadata().ok()?.modified().ok())
        .max();
    let built = std::fs::metadata(&out).and_then(|m| m.modified()).ok();
    if built.is_none() || newest > built {
        let script = root.join("scripts").join(script);
        let mut cmd = std::process::Command::new(&script);
        if stateful {
            cmd.arg("--stateful");
        }
        let status = cmd
            .arg(&src)
            .arg(&out)
            .status()
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        assert!(status.success(), "building the plugin in {dir} failed");
    }
    std::fs::read(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()))
}

/// The DSN of the test PostgreSQL server: `SLUICE_TEST_PG_DSN` (scripts/test starts one), or
/// one started (or reused) by `scripts/test-postgres ensure`.
pub fn test_postgres_dsn() -> String {
    if let Ok(d) = std::env::var("SLUICE_TEST_PG_DSN") {
        return d;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-postgres");
    let out = std::process::Command::new(script)
        .arg("ensure")
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/test-postgres: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A copy of a component with a custom section appended: same code, new digest (a new
/// version of the plugin when uploaded).
pub fn new_build(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"sluice-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    let mut n = payload.len();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if n == 0 { byte } else { byte | 0x80 });
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&payload);
    out
}

/// moto's S3-compatible server on a loopback port (`scripts/test-moto` installs it from
/// PyPI on first use), with one bucket; killed on drop.
pub struct Moto {
    child: std::process::Child,
    pub port: u16,
}

impl Moto {
    pub fn start(bucket: &str) -> Moto {
        sluice_auth::tls::install_provider();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/test-moto");
        let out = std::process::Command::new(script)
            .output()
            .unwrap_or_else(|e| panic!("{script}: {e}"));
        assert!(out.status.success(), "{script} failed");
        let cmd = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let child = std::process::Command::new(&cmd)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        let moto = Moto { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            // CreateBucket: a plain PUT (moto does not check signatures).
            let created = reqwest::blocking::Client::new()
                .put(format!("http://127.0.0.1:{port}/{bucket}"))
                .send();
            if created.is_ok_and(|r| r.status().is_success()) {
                return moto;
            }
            assert!(std::time::Instant::now() < deadline, "moto did not start");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Keys in `bucket` (ListObjectsV2, all pages).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("http://127.0.0.1:{}/{bucket}?list-type=2", self.port);
            if let Some(t) = &token {
                url += &format!(
                    "&continuation-token={}",
                    t.replace('+', "%2B")
                        .replace('/', "%2F")
                        .replace('=', "%3D")
                );
            }
            let body = reqwest::blocking::get(&url)
                .and_then(|r| r.text())
                .expect("listing the bucket");
            for part in body.split("<Key>").skip(1) {
                if let Some((k, _)) = part.split_once("</Key>") {
                    keys.push(k.to_string());
                }
            }
            token = body
                .split_once("<NextContinuationToken>")
                .and_then(|(_, r)| r.split_once("</NextContinuationToken>"))
                .map(|(t, _)| t.to_string());
            if token.is_none() {
                return keys;
            }
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the in-process benchmarks share: a server through `sluice::server::run` on a port
/// of its own, a client, percentiles.
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub mod bench {
    use std::time::{Duration, Instant};

    use serde_json::Value;
    use sluice::config::ServerConfig;

    /// A server running in this process.
    pub struct Running {
        base: String,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        done: std::sync::mpsc::Receiver<()>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Running {
        pub fn url(&self, p: &str) -> String {
            format!("{}{p}", self.base)
        }

        /// Signals shutdown (as SIGTERM does) and returns how long `run` took to return.
        pub fn shutdown(mut self) -> Duration {
            let started = Instant::now();
            let _ = self.stop.take().unwrap().send(());
            self.done.recv().unwrap();
            let took = started.elapsed();
            self.thread.take().unwrap().join().unwrap();
            took
        }
    }

    /// Starts a server on `dir` (HTTP on a free port, no Kafka).
    pub fn start(dir: &std::path::Path) -> Running {
        start_with(dir, false)
    }

    /// Starts a server on `dir` with HTTP and, if `kafka`, a Kafka listener (consumer
    /// groups live there) on free ports.
    pub fn start_with(dir: &std::path::Path, kafka: bool) -> Running {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel();
        let dir = dir.to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let kafka = match kafka {
                    true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
                    false => None,
                };
                addr_tx.send(http.local_addr().unwrap()).unwrap();
                let config = ServerConfig {
                    tier: None,
                    restore_from_tier: false,
                    alerts: Default::default(),
                    data_dir: dir,
                    http: http.local_addr().unwrap(),
                    insecure: false,
                    plugins_dir: None,
                    limits: Default::default(),
                    log: Default::default(),
                    kafka: kafka.as_ref().map(|k| k.local_addr().unwrap()),
                    schema_registry: None,
                    advertise: None,
                    kafka_settings: Default::default(),
                    auth: None,
                    tls: None,
                };
                let listeners = sluice::server::Listeners {
                    http,
                    kafka,
                    schema_registry: None,
                };
                sluice::server::run(config, listeners, async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
                done_tx.send(()).unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Running {
            base: format!("http://{addr}"),
            stop: Some(tx),
            done,
            thread: Some(thread),
        }
    }

    /// An HTTP client with a long timeout.
    pub fn client() -> reqwest::blocking::Client {
        sluice_auth::tls::install_provider();
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }

    /// The JSON body of a successful response (panics on another).
    pub fn ok(r: reqwest::blocking::Response) -> Value {
        let status = r.status();
        let body: Value = r.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{status}: {body}");
        body
    }

    /// p50, p99 and max of `v` (sorted in place).
    pub fn percentiles(v: &mut [f64]) -> (f64, f64, f64) {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
        (at(0.5), at(0.99), at(1.0))
    }
}
