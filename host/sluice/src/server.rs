//! Runs the server: opens the log, serves HTTP, and shuts down gracefully.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServerConfig;
use sluice_api::AppState;
use sluice_log::Log;
use sluice_pipeline::Pipelines;
use sluice_pipeline::plugins::PluginStore;
use sluice_pipeline::tables::TableRegistry;
use sluice_runtime::{Runtime, RuntimeOptions};

/// The sockets a server answers on, bound by the caller (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    pub http: TcpListener,
    pub kafka: Option<TcpListener>,
    /// The Schema Registry's REST API (Confluent's v1).
    pub schema_registry: Option<TcpListener>,
}

/// Serves until `shutdown` completes, then drains requests and flushes the log.
pub async fn run(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listeners {
        http,
        kafka,
        schema_registry,
    } = listeners;
    // One server per data directory, for as long as this one runs.
    let lock = sluice_common::fs::DataDirLock::acquire(&config.data_dir)?;
    let dir = config.data_dir.clone();
    let tier = open_tier(&config).await?;
    let log = tokio::task::spawn_blocking(move || Log::open_with(dir, tier)).await??;
    log.space().configure(sluice_log::space::SpaceLimits {
        min_free_bytes: config.log.min_free_bytes,
        alert_free_bytes: config.log.alert_free_bytes,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let maint = log.spawn_maintenance(
        Duration::from_millis(config.log.retention_check_ms.max(10)),
        stop.clone(),
    );
    let tiering = log.spawn_tiering(
        Duration::from_millis(
            config
                .tier
                .as_ref()
                .map_or(1000, |t| t.upload_interval_ms.max(10)),
        ),
        stop.clone(),
    );
    let log_r = log.clone();
    let registry = tokio::task::spawn_blocking(move || crate::schemas::open(log_r)).await??;
    let data = config.data_dir.clone();
    let (log2, stop2) = (log.clone(), stop.clone());
    let registry2 = registry.clone();
    let max_plugin_bytes = config.limits.max_plugin_bytes;
    let pipelines = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let runtime = Runtime::with_options(
            &data.join("plugin-cache"),
            RuntimeOptions {
                max_plugin_bytes,
                ..RuntimeOptions::default()
            },
        )?;
        let plugins = Arc::new(PluginStore::open(&data.join("plugins"), runtime)?);
        let tables = TableRegistry::new(log2.clone(), stop2);
        Ok(Pipelines::open(
            log2,
            plugins,
            tables,
            data.join("transforms"),
            Some(registry2),
        )?)
    })
    .await??;
    let (log3, dir) = (log.clone(), config.data_dir.join("connectors"));
    let connectors =
        tokio::task::spawn_blocking(move || sluice_connect::Connectors::open(log3, dir)).await??;
    let token = CancellationToken::new();
    let state = AppState::new(
        log.clone(),
        pipelines.clone(),
        connectors.clone(),
        registry.clone(),
        config.auth.clone(),
        config.limits.clone(),
        token.clone(),
    );
    let tls = match &config.tls {
        Some(files) => Some(sluice_auth::tls::acceptor(files)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let alerts = sluice_api::alerts::Alerts::start(
        state.clone(),
        config.alerts.clone(),
        format!("{scheme}://{}", http.local_addr()?),
        token.clone(),
    );
    let _ = state.alerts.set(alerts);
    let _ = state.history.set(sluice_api::history::History::start(
        state.clone(),
        token.clone(),
    ));
    let kafka_task = match kafka {
        Some(listener) => Some(
            start_kafka(
                listener,
                &config,
                tls.clone(),
                log.clone(),
                registry.clone(),
                &state,
                token.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let registry_task = match schema_registry {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "schema registry listening");
            crate::say(format_args!("sluice: listening schema-registry={addr}"));
            let app = sluice_api::registry::router(Arc::new(sluice_api::registry::RegistryApp {
                registry: registry.clone(),
                auth: config.auth.clone(),
                max_body_bytes: config.limits.max_body_bytes,
            }));
            let t = token.clone();
            let tls = tls.clone();
            let max_conns = config.limits.max_connections.max(1);
            Some(tokio::spawn(async move {
                let stopped = async move { t.cancelled().await };
                let served = match tls {
                    Some(acceptor) => {
                        match sluice_api::listener::TlsListener::new(listener, acceptor) {
                            Ok(l) => {
                                axum::serve(sluice_api::listener::Limited::new(l, max_conns), app)
                                    .with_graceful_shutdown(stopped)
                                    .await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    None => {
                        axum::serve(sluice_api::listener::Limited::new(listener, max_conns), app)
                            .with_graceful_shutdown(stopped)
                            .await
                    }
                };
                if let Err(e) = served {
                    tracing::error!(error = %e, "schema registry listener failed");
                }
            }))
        }
        None => None,
    };
    if let Some(dir) = config.plugins_dir.clone() {
        tokio::spawn(watch_plugins_dir(dir, pipelines.clone(), token.clone()));
    }
    let app = sluice_api::router(state);
    let addr = http.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "http listening");
    // Machine-readable line for scripts and tests that bind port 0.
    crate::say(format_args!("sluice: listening http={addr}"));
    let serve_token = token.clone();
    let stopping = pipelines.clone();
    let drained = async move {
        shutdown.await;
        tracing::info!("shutting down");
        serve_token.cancel();
        // Plugin calls and instance setups in progress end now, not at their deadlines.
        stopping.begin_shutdown();
    };
    let max_conns = config.limits.max_connections.max(1);
    match tls {
        Some(acceptor) => {
            let listener = sluice_api::listener::TlsListener::new(http, acceptor)?;
            axum::serve(sluice_api::listener::Limited::new(listener, max_conns), app)
                .with_graceful_shutdown(drained)
                .await?
        }
        None => {
            axum::serve(sluice_api::listener::Limited::new(http, max_conns), app)
                .with_graceful_shutdown(drained)
                .await?
        }
    }
    if let Some(k) = kafka_task {
        let _ = k.await;
    }
    if let Some(r) = registry_task {
        let _ = r.await;
    }
    // Connectors finish their current request or transaction before the log closes.
    connectors.shutdown().await;
    let _ = tokio::task::spawn_blocking(move || {
        // Transforms finish their current batch first, then the log flushes.
        pipelines.shutdown();
        stop.store(true, Ordering::Release);
        let _ = maint.join();
        if let Some(t) = tiering {
            let _ = t.join();
        }
        log.close();
    })
    .await;
    tracing::info!("stopped; log flushed");
    drop(lock);
    Ok(())
}

/// Opens the Kafka listener's broker (its groups and transactions), hands its group
/// coordinator to the HTTP API, and serves Kafka connections until `token` is cancelled.
async fn start_kafka(
    listener: TcpListener,
    config: &ServerConfig,
    tls: Option<sluice_auth::tls::TlsAcceptor>,
    log: Arc<Log>,
    registry: Arc<sluice_schema::Registry>,
    state: &AppState,
    token: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr = listener.local_addr()?;
    let advertise = match &config.advertise {
        Some(a) => {
            let (h, p) = a
                .rsplit_once(':')
                .ok_or_else(|| anyhow::anyhow!("--advertise {a}: expected HOST:PORT"))?;
            (h.to_string(), p.parse::<i32>()?)
        }
        None => (addr.ip().to_string(), i32::from(addr.port())),
    };
    let cfg = sluice_kafka::KafkaConfig {
        advertise,
        auto_create: config.kafka_settings.auto_create_topics,
        default_partitions: config.kafka_settings.default_partitions.max(1),
        groups_dir: config.data_dir.join("kafka-groups"),
        auth: config.auth.clone(),
        tls,
        max_connections: config.limits.max_kafka_connections.max(1),
        schemas: Some(registry.clone()),
        group_initial_rebalance_delay: std::time::Duration::from_millis(
            config.kafka_settings.group_initial_rebalance_delay_ms,
        ),
    };
    let log_k = log.clone();
    let broker = tokio::task::spawn_blocking(move || {
        sluice_kafka::Broker::open(log_k, cfg, CancellationToken::new())
    })
    .await?
    .map_err(|e| {
        anyhow::anyhow!("cannot open the Kafka listener's groups and transactions: {e}")
    })?;
    let _ = state
        .groups
        .set(Arc::new(crate::groups::BrokerGroups(broker.clone())));
    tracing::info!(%addr, "kafka listening");
    crate::say(format_args!("sluice: listening kafka={addr}"));
    Ok(tokio::spawn(sluice_kafka::serve(
        listener,
        broker,
        async move { token.cancelled().await },
    )))
}

/// `sluice serve`: binds the listeners (saying what to do when an address is taken) and
/// runs until ctrl-c or SIGTERM.
pub async fn serve(args: crate::config::ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::from_flags(args).await?;
    let bind = |addr: std::net::SocketAddr, flag: &'static str| async move {
        TcpListener::bind(addr).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow::anyhow!(
                    "cannot listen on {addr}: address in use (another server?) — pass --{flag} \
                     with another address"
                )
            } else {
                anyhow::anyhow!("cannot listen on {addr} (--{flag}): {e}")
            }
        })
    };
    let http = bind(config.http, "http").await?;
    let kafka = match config.kafka {
        Some(addr) => Some(bind(addr, "kafka").await?),
        None => None,
    };
    let schema_registry = match config.schema_registry {
        Some(addr) => Some(bind(addr, "schema-registry").await?),
        None => None,
    };
    let listeners = Listeners {
        http,
        kafka,
        schema_registry,
    };
    run(config, listeners, shutdown_signal()).await
}

/// Completes on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Polls a directory for `NAME.wasm` files; a new or changed file (once its size has
/// settled) becomes the next version of plugin NAME, and `latest` deployments swap to it.
async fn watch_plugins_dir(
    dir: std::path::PathBuf,
    pipelines: Arc<Pipelines>,
    stop: CancellationToken,
) {
    use std::collections::HashMap;
    tracing::info!(dir = %dir.display(), "watching plugins directory");
    // path -> (size, modified) last seen, and whether that state was uploaded.
    let mut seen: HashMap<std::path::PathBuf, ((u64, std::time::SystemTime), bool)> =
        HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = stop.cancelled() => return,
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "wasm") {
                continue;
            }
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let Ok(meta) = e.metadata() else { continue };
            let state = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            let entry = seen.entry(path.clone()).or_insert((state, false));
            if entry.0 != state {
                *entry = (state, false); // still being written: wait for it to settle
                continue;
            }
            if entry.1 {
                continue;
            }
            entry.1 = true;
            let p = pipelines.clone();
            let result = tokio::task::spawn_blocking(move || -> Result<Option<u32>, String> {
                let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                // Bytes of a stored version are that version: nothing to load.
                let (v, created) = p.plugins.upload(&name, &bytes).map_err(|e| e.to_string())?;
                if !created {
                    return Ok(None);
                }
                p.plugin_uploaded(&name, v.version);
                Ok(Some(v.version))
            })
            .await;
            match result {
                Ok(Ok(Some(v))) => {
                    tracing::info!(file = %e.path().display(), version = v, "plugin loaded from directory")
                }
                Ok(Ok(None)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(file = %e.path().display(), error = %err, "plugin file refused")
                }
                Err(err) => tracing::error!(error = %err, "plugin watcher task failed"),
            }
        }
    }
}

/// The object store of tiered topics (`[tier]`), after restoring the tiered topics missing
/// from the data directory when `--restore-from-tier` asks for it.
async fn open_tier(config: &ServerConfig) -> anyhow::Result<Option<sluice_log::tier::TierBackend>> {
    let Some(t) = &config.tier else {
        return Ok(None);
    };
    let backend = sluice_tier::backend(t)?;
    if config.restore_from_tier {
        let bucket = t.restore_bucket.clone().ok_or_else(|| {
            anyhow::anyhow!("--restore-from-tier: set restore_bucket in [tier] (the bucket of the tiered topics)")
        })?;
        let (dir, b, prefix) = (
            config.data_dir.clone(),
            backend.clone(),
            t.restore_prefix.clone(),
        );
        let report =
            tokio::task::spawn_blocking(move || Log::restore_from_tier(&dir, &b, &bucket, &prefix))
                .await??;
        if report.is_empty() {
            tracing::warn!("restore from the object store: no tiered topic found there");
        }
        for line in report {
            tracing::warn!("restore from the object store: {line}");
        }
    }
    Ok(Some(backend))
}
