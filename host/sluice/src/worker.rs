//! `sluice worker`: one transform deployment over an existing Kafka cluster (see the
//! `sluice-worker` crate), until Ctrl-C or SIGTERM. Prints its counters every second.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_worker::{Counters, Deployment, WorkerConfig};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The cluster: HOST:PORT[,HOST:PORT…].
    #[arg(long)]
    pub bootstrap_servers: String,
    /// The worker group; workers of one group share each deployment's partitions.
    #[arg(long, default_value = "sluice")]
    pub group: String,
    /// This worker's id in the group [default: host name and process id].
    #[arg(long)]
    pub id: Option<String>,
    /// Deployment name.
    #[arg(long)]
    pub name: String,
    /// The plugin component (.wasm).
    #[arg(long)]
    pub plugin: PathBuf,
    /// Input topic.
    #[arg(long)]
    pub input: String,
    /// Output topic (repeat for several; the first is the default).
    #[arg(long = "output", required = true)]
    pub outputs: Vec<String>,
    /// Dead-letter topic [default: INPUT.dlq].
    #[arg(long)]
    pub dead_letter: Option<String>,
    /// Plugin config entry `key=value` (repeatable).
    #[arg(long = "config")]
    pub config: Vec<String>,
    /// Where compiled plugins are cached [default: a temporary directory].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Serve the worker's status (`GET /v1/worker`), `/metrics` and `/healthz` here.
    #[arg(long)]
    pub http: Option<String>,
    /// How long records are gathered into one transaction (ms): throughput against
    /// end-to-end latency.
    #[arg(long, default_value_t = sluice_worker::DEFAULT_COMMIT_INTERVAL.as_millis() as u64)]
    pub commit_interval_ms: u64,
    /// Most records in one transaction.
    #[arg(long, default_value_t = sluice_worker::DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
}

/// `GET /v1/worker`.
#[derive(Debug, serde::Serialize)]
struct Status {
    id: String,
    group: String,
    deployment: String,
    plugin: String,
    input: String,
    outputs: Vec<String>,
    /// The input partitions this worker holds now.
    assigned: Vec<i32>,
    records_in: u64,
    records_out: u64,
    dead_letters: u64,
    transactions: u64,
    /// Sessions that ended on an error (their open transaction aborted).
    restarts: u64,
    /// Times the held partitions changed (the group rebalanced).
    rebalances: u64,
    last_error: Option<String>,
}

fn status(cfg: &WorkerConfig, c: &Counters) -> Status {
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Status {
        id: cfg.id.clone(),
        group: cfg.group.clone(),
        deployment: cfg.deployment.name.clone(),
        plugin: cfg.deployment.plugin.clone(),
        input: cfg.deployment.input.clone(),
        outputs: cfg.deployment.outputs.clone(),
        assigned: c.assigned(),
        records_in: l(&c.records_in),
        records_out: l(&c.records_out),
        dead_letters: l(&c.dead_letters),
        transactions: l(&c.transactions),
        restarts: l(&c.aborts),
        rebalances: l(&c.rebalances),
        last_error: c.last_error(),
    }
}

fn metrics(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let labels = format!("deployment=\"{}\",worker=\"{}\"", s.deployment, s.id);
    for (name, kind, help, v) in [
        (
            "sluice_worker_records_in_total",
            "counter",
            "Input records processed.",
            s.records_in,
        ),
        (
            "sluice_worker_records_out_total",
            "counter",
            "Records sent to outputs.",
            s.records_out,
        ),
        (
            "sluice_worker_dead_letters_total",
            "counter",
            "Records dead-lettered.",
            s.dead_letters,
        ),
        (
            "sluice_worker_transactions_total",
            "counter",
            "Transactions committed.",
            s.transactions,
        ),
        (
            "sluice_worker_restarts_total",
            "counter",
            "Sessions ended on an error.",
            s.restarts,
        ),
        (
            "sluice_worker_rebalances_total",
            "counter",
            "Changes of the held partitions.",
            s.rebalances,
        ),
        (
            "sluice_worker_assigned_partitions",
            "gauge",
            "Input partitions held.",
            s.assigned.len() as u64,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {v}"
        );
    }
    out
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    let plugin_bytes = std::fs::read(&args.plugin)
        .with_context(|| format!("reading plugin {}", args.plugin.display()))?;
    let mut config = BTreeMap::new();
    for kv in &args.config {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv}: expected key=value"))?;
        config.insert(k.to_string(), v.to_string());
    }
    let plugin = args.plugin.file_stem().map_or_else(
        || "plugin".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let tmp = tempfile::tempdir()?;
    let cfg = WorkerConfig {
        bootstrap_servers: args.bootstrap_servers,
        group: args.group,
        id: args.id.unwrap_or_else(|| {
            format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
                std::process::id()
            )
        }),
        deployment: Deployment {
            name: args.name,
            plugin,
            plugin_bytes,
            input: args.input,
            outputs: args.outputs,
            dead_letter: args.dead_letter,
            config,
            limits: Default::default(),
        },
        cache_dir: args.cache_dir.unwrap_or_else(|| tmp.path().to_path_buf()),
        commit_interval: Duration::from_millis(args.commit_interval_ms.max(1)),
        max_batch: args.max_batch.max(1),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    println!(
        "sluice worker: {} in group {} running {} ({} → {})",
        cfg.id,
        cfg.group,
        cfg.deployment.name,
        cfg.deployment.input,
        cfg.deployment.outputs.join(", ")
    );
    let cfg = Arc::new(cfg);
    if let Some(addr) = &args.http {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--http {addr}"))?;
        println!("sluice worker: http={}", listener.local_addr()?);
        let (c1, k1, c2, k2) = (cfg.clone(), counters.clone(), cfg.clone(), counters.clone());
        let app = axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .route(
                "/v1/worker",
                axum::routing::get(move || async move { axum::Json(status(&c1, &k1)) }),
            )
            .route(
                "/metrics",
                axum::routing::get(move || async move { metrics(&status(&c2, &k2)) }),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    let (s, c, w) = (stop.clone(), counters.clone(), cfg.clone());
    let mut work = tokio::task::spawn_blocking(move || sluice_worker::run(&w, &s, &c));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            r = &mut work => {
                r??;
                return Ok(());
            }
            _ = tokio::signal::ctrl_c() => stop.store(true, Ordering::Release),
            _ = term.recv() => stop.store(true, Ordering::Release),
            _ = tick.tick() => {
                let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                println!(
                    "sluice worker: in={} out={} dead_letters={} transactions={} restarts={}",
                    l(&counters.records_in),
                    l(&counters.records_out),
                    l(&counters.dead_letters),
                    l(&counters.transactions),
                    l(&counters.aborts)
                );
            }
        }
    }
}
