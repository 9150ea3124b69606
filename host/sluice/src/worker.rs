//! `sluice worker`: runs the worker group's transform deployments over an existing Kafka
//! cluster (see the `sluice-worker` crate) and serves the plugins/transforms API, until
//! Ctrl-C or SIGTERM. `--plugin … --input … --output …` also deploys one transform at start
//! (uploading the plugin when its bytes are not the latest version already).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_config::FileConfig;
use sluice_pipeline::{TransformSpec, VersionSel};
use sluice_runtime::{Runtime, RuntimeOptions};
use sluice_worker::{EngineSettings, Worker};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The cluster: HOST:PORT[,HOST:PORT…].
    #[arg(long)]
    pub bootstrap_servers: String,
    /// The worker group; its workers share the deployments' partitions and its control
    /// topics `GROUP.sluice.config` / `GROUP.sluice.status`.
    #[arg(long, default_value = "sluice")]
    pub group: String,
    /// This worker's id in the group [default: host name and process id].
    #[arg(long)]
    pub id: Option<String>,
    /// Serve the plugins/transforms API, `/v1/worker`, `/metrics` and `/healthz` here.
    #[arg(long)]
    pub http: Option<String>,
    /// Server config file (TOML, as for `sluice serve`): `[auth]`, `[tls]` and `[limits]`
    /// apply to the worker's API and plugins.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Allow --http on a non-loopback address without authentication.
    #[arg(long)]
    pub insecure: bool,
    /// Where compiled plugins are cached [default: a temporary directory].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Where deployments with `"state_store": "disk"` keep their state while this worker
    /// holds their partitions (restored from the changelog on the cluster)
    /// [default: a temporary directory].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// How long records are gathered into one transaction (ms): throughput against
    /// end-to-end latency.
    #[arg(long, default_value_t = sluice_worker::DEFAULT_COMMIT_INTERVAL.as_millis() as u64)]
    pub commit_interval_ms: u64,
    /// Most records in one transaction.
    #[arg(long, default_value_t = sluice_worker::DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// A file holding the group's secrets key (32 bytes: 64 hex digits or base64, e.g.
    /// `openssl rand -hex 32`): deployment secrets are sealed with it in the control topic.
    /// Give every worker of the group the same key; never the cluster.
    #[arg(long)]
    pub secrets_key_file: Option<PathBuf>,
    /// Deploy at start: the deployment's name [default: the plugin file's name].
    #[arg(long, requires = "plugin")]
    pub name: Option<String>,
    /// Deploy at start: the plugin component (.wasm), stored under its file name.
    #[arg(long, requires_all = ["input", "outputs"])]
    pub plugin: Option<PathBuf>,
    /// Deploy at start: the input topic.
    #[arg(long, requires = "plugin")]
    pub input: Option<String>,
    /// Deploy at start: an output topic (repeat for several; the first is the default).
    #[arg(long = "output", requires = "plugin")]
    pub outputs: Vec<String>,
    /// Deploy at start: the dead-letter topic [default: INPUT.dlq].
    #[arg(long, requires = "plugin")]
    pub dead_letter: Option<String>,
    /// Deploy at start: a plugin config entry `key=value` (repeatable).
    #[arg(long = "plugin-config", requires = "plugin")]
    pub plugin_config: Vec<String>,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let auth = sluice_auth::Auth::from_config(&file.auth)?;
    let id = args.id.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
            std::process::id()
        )
    });
    let tmp = tempfile::tempdir()?;
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| tmp.path().join("state"));
    let settings = EngineSettings {
        state_dir,
        bootstrap_servers: args.bootstrap_servers.clone(),
        group: args.group.clone(),
        id: id.clone(),
        commit_interval: Duration::from_millis(args.commit_interval_ms.max(1)),
        max_batch: args.max_batch.max(1),
        secrets_key: match &args.secrets_key_file {
            Some(path) => Some(sluice_worker::SecretsKey::load(path).map_err(anyhow::Error::msg)?),
            None => None,
        },
    };
    let max_plugin_bytes = file.limits.max_plugin_bytes;
    let worker = tokio::task::spawn_blocking(move || -> anyhow::Result<Arc<Worker>> {
        let runtime = Runtime::with_options(
            &cache,
            RuntimeOptions {
                max_plugin_bytes,
                ..RuntimeOptions::default()
            },
        )?;
        Ok(Worker::start(settings, runtime)?)
    })
    .await??;
    crate::say(format_args!("sluice worker: {id} in group {}", args.group));
    if let Some(path) = &args.plugin {
        let w = worker.clone();
        let spec = startup_deployment(&args, path)?;
        tokio::task::spawn_blocking(move || deploy_at_start(&w, spec)).await??;
    }
    let token = CancellationToken::new();
    let server = match &args.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--http {addr}"))?;
            let local = listener.local_addr()?;
            if auth.is_none() && !local.ip().is_loopback() && !args.insecure {
                anyhow::bail!(
                    "refusing to bind {local} (not loopback) without authentication; \
                     bind 127.0.0.1 or pass --insecure"
                );
            }
            worker.set_http(local.to_string());
            crate::say(format_args!("sluice worker: http={local}"));
            let app = sluice_api::worker::router(Arc::new(sluice_api::worker::WorkerApp {
                worker: worker.clone(),
                auth,
                max_body_bytes: file.limits.max_body_bytes,
                shutdown: token.clone(),
            }));
            let t = token.clone();
            let tls = match &file.tls {
                Some(files) => Some(sluice_auth::tls::acceptor(files)?),
                None => None,
            };
            Some(tokio::spawn(async move {
                let stop = async move { t.cancelled().await };
                let r = match tls {
                    Some(acceptor) => {
                        match sluice_api::listener::TlsListener::new(listener, acceptor) {
                            Ok(l) => axum::serve(l, app).with_graceful_shutdown(stop).await,
                            Err(e) => Err(e),
                        }
                    }
                    None => {
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stop)
                            .await
                    }
                };
                if let Err(e) = r {
                    tracing::error!(error = %e, "worker API stopped");
                }
            }))
        }
        None => None,
    };
    let w = worker.clone();
    let mut work = tokio::task::spawn_blocking(move || w.run());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = &mut work => r?,
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    crate::say(format_args!("sluice worker: stopping"));
    token.cancel();
    worker.stop();
    if !work.is_finished() {
        work.await?;
    }
    if let Some(s) = server {
        let _ = s.await;
    }
    Ok(())
}

/// The `--plugin/--input/--output` deployment.
fn startup_deployment(
    args: &WorkerArgs,
    path: &std::path::Path,
) -> anyhow::Result<(String, Vec<u8>, TransformSpec)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading plugin {}", path.display()))?;
    let plugin = path.file_stem().map_or_else(
        || "plugin".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let mut config = BTreeMap::new();
    for kv in &args.plugin_config {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--plugin-config {kv}: expected key=value"))?;
        config.insert(k.to_string(), v.to_string());
    }
    let spec = serde_json::json!({
        "plugin": plugin,
        "version": "latest",
        "input": args.input,
        "outputs": args.outputs,
        "dead_letter": args.dead_letter,
        "config": config,
    });
    let spec: TransformSpec = serde_json::from_value(spec)?;
    let name = args.name.clone().unwrap_or_else(|| plugin.clone());
    Ok((name, bytes, spec))
}

/// Uploads the plugin unless its latest version has these bytes, and deploys unless the
/// deployment already says the same: workers started alike write nothing twice.
fn deploy_at_start(
    w: &Worker,
    (name, bytes, spec): (String, Vec<u8>, TransformSpec),
) -> anyhow::Result<()> {
    w.control.sync()?;
    let digest = sluice_worker::control::digest(&bytes);
    let latest = w
        .plugins()
        .into_iter()
        .find(|(n, _)| *n == spec.plugin)
        .and_then(|(_, vs)| vs.last().map(|v| v.digest.clone()));
    if latest.as_deref() != Some(digest.as_str()) {
        let (v, _) = w.upload_plugin(&spec.plugin, &bytes)?;
        crate::say(format_args!(
            "sluice worker: uploaded {} version {}",
            spec.plugin, v.version
        ));
    }
    let current = w.control.view().deployments.get(&name).cloned();
    let same = current.is_some_and(|d| {
        serde_json::to_value(TransformSpec {
            start: spec.start,
            ..d.spec
        })
        .ok()
            == serde_json::to_value(&spec).ok()
    });
    if !same {
        w.deploy(&name, spec.clone())?;
    }
    crate::say(format_args!(
        "sluice worker: deployment {name}: {} ({}) {} → {}",
        spec.plugin,
        match spec.version {
            VersionSel::Latest => "latest".to_string(),
            VersionSel::Exact(v) => v.to_string(),
        },
        spec.input,
        spec.outputs.join(", ")
    ));
    Ok(())
}
