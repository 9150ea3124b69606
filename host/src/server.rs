//! Runs the server: opens the log, serves HTTP, and shuts down gracefully.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState};
use crate::config::ServerConfig;
use crate::log::Log;
use crate::pipeline::Pipelines;
use crate::pipeline::plugins::PluginStore;
use crate::pipeline::tables::TableRegistry;
use crate::runtime::Runtime;

/// Serves until `shutdown` completes, then drains requests and flushes the log.
pub async fn run(
    config: ServerConfig,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let dir = config.data_dir.clone();
    let log = tokio::task::spawn_blocking(move || Log::open(dir)).await??;
    let stop = Arc::new(AtomicBool::new(false));
    let maint = log.spawn_maintenance(
        Duration::from_millis(config.log.retention_check_ms.max(10)),
        stop.clone(),
    );
    let data = config.data_dir.clone();
    let (log2, stop2) = (log.clone(), stop.clone());
    let pipelines = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let runtime = Runtime::new(&data.join("plugin-cache"))?;
        let plugins = Arc::new(PluginStore::open(&data.join("plugins"), runtime)?);
        let tables = TableRegistry::new(log2.clone(), stop2);
        Ok(Pipelines::open(
            log2,
            plugins,
            tables,
            data.join("transforms"),
        )?)
    })
    .await??;
    let token = CancellationToken::new();
    let state = AppState::new(
        log.clone(),
        pipelines.clone(),
        config.limits.clone(),
        token.clone(),
    );
    let app = api::router(state);
    let addr = http.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "http listening");
    // Machine-readable line for scripts and tests that bind port 0.
    println!("sluice: listening http={addr}");
    let serve_token = token.clone();
    axum::serve(http, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            serve_token.cancel();
        })
        .await?;
    let _ = tokio::task::spawn_blocking(move || {
        // Transforms finish their current batch first, then the log flushes.
        pipelines.shutdown();
        stop.store(true, Ordering::Release);
        let _ = maint.join();
        log.close();
    })
    .await;
    tracing::info!("stopped; log flushed");
    Ok(())
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
