//! The HTTP API of `sluice worker`: the same `/v1/plugins` and `/v1/transforms` routes as
//! `sluice serve` (the same handlers: same bodies, errors, roles and auth), answered from
//! the worker group's control topics; there is no `/v1/topics` (the cluster's topics are
//! the cluster's). `GET /v1/worker` is this worker's own report.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use sluice_pipeline::plugins::PluginVersion;
use sluice_pipeline::{LogRing, TransformSpec, TransformStatus};
use sluice_worker::{Worker, WorkerReport};

use crate::deployments::{Deployments, Reach};
use crate::plugins::{Follower, PluginHost, Uploaded};
use crate::transforms::TransformLogs;
use crate::{ApiError, blocking, parse_json};

/// What the worker's handlers reach.
#[derive(Debug)]
pub struct WorkerApp {
    pub worker: Arc<Worker>,
    pub auth: Option<Arc<sluice_auth::Auth>>,
    pub max_body_bytes: usize,
    pub shutdown: CancellationToken,
}

type St = axum::extract::State<Arc<WorkerApp>>;

impl Reach<Worker> for Arc<WorkerApp> {
    fn reach(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// The worker's whole HTTP API: the routes `sluice serve` has for plugins and transforms
/// (`crate::runner_routes`), and its own report.
pub fn router(app: Arc<WorkerApp>) -> Router {
    Router::new()
        .route("/healthz", get(crate::health))
        .route("/metrics", get(metrics))
        .route("/v1/worker", get(report))
        .merge(crate::runner_routes::<_, Worker>(&app.worker))
        .route_layer(axum::middleware::from_fn(crate::observe))
        .fallback(crate::not_found)
        .method_not_allowed_fallback(crate::method_not_allowed)
        .layer(DefaultBodyLimit::max(app.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            crate::access::Gate::without_topics(app.auth.clone()),
            crate::access::authorize,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(crate::json_newline))
        .with_state(app)
}

async fn report(s: St) -> Json<WorkerReport> {
    Json(s.worker.report(false))
}

/// `GET /v1/transforms` on a worker.
#[derive(Debug, Serialize)]
pub struct WorkerTransformList {
    transforms: Vec<TransformStatus>,
}

#[async_trait::async_trait]
impl Deployments for Worker {
    type Status = TransformStatus;
    type List = WorkerTransformList;

    fn list(&self) -> WorkerTransformList {
        WorkerTransformList {
            transforms: Worker::list(self),
        }
    }

    fn status(&self, name: &str) -> Result<TransformStatus, ApiError> {
        Ok(Worker::status(self, name)?)
    }

    async fn deploy(self: Arc<Self>, name: String, spec: Bytes) -> Result<bool, ApiError> {
        let spec: TransformSpec = parse_json(&spec)?;
        blocking(move || Worker::deploy(&self, &name, spec)).await
    }

    async fn delete(self: Arc<Self>, name: String) -> Result<(), ApiError> {
        blocking(move || Worker::delete(&self, &name)).await
    }

    async fn set_paused(self: Arc<Self>, name: String, paused: bool) -> Result<(), ApiError> {
        blocking(move || Worker::set_paused(&self, &name, paused)).await
    }
}

#[async_trait::async_trait]
impl PluginHost for Worker {
    fn max_plugin_bytes(&self) -> usize {
        self.runtime().max_plugin_bytes()
    }

    async fn upload(self: Arc<Self>, name: String, bytes: Bytes) -> Result<Uploaded, ApiError> {
        let w = self.clone();
        let n = name.clone();
        let (version, created) = blocking(move || w.upload_plugin(&n, &bytes)).await?;
        let followers = if created {
            self.followers_of_latest(&name)
                .into_iter()
                .map(|transform| Follower {
                    transform,
                    outcome: "switching",
                    error: None,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Uploaded {
            version,
            created,
            followers,
        })
    }

    fn plugins(&self) -> Vec<(String, Vec<PluginVersion>)> {
        Worker::plugins(self)
    }

    fn plugin(&self, name: &str) -> Result<(Vec<PluginVersion>, Vec<String>), ApiError> {
        Ok(Worker::plugin(self, name)?)
    }

    async fn delete_plugin(self: Arc<Self>, name: String) -> Result<(), ApiError> {
        blocking(move || Worker::delete_plugin(&self, &name)).await
    }
}

impl TransformLogs for Worker {
    fn logs(&self, transform: &str) -> Result<Arc<LogRing>, ApiError> {
        Ok(Worker::logs(self, transform)?)
    }
}

async fn metrics(s: St) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&s.worker),
    )
}

/// This worker's series (each worker exports its own part; sum over `worker`).
fn render(w: &Worker) -> String {
    use std::fmt::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::with_capacity(2048);
    let id = &w.settings.id;
    let local = w.local();
    type Pick = fn(&sluice_worker::Shared) -> u64;
    let counters: [(&str, &str, Pick); 9] = [
        (
            "sluice_transform_records_in_total",
            "Input records processed.",
            |s| s.records_in.load(Relaxed),
        ),
        (
            "sluice_transform_records_out_total",
            "Records emitted to output topics.",
            |s| s.records_out.load(Relaxed),
        ),
        (
            "sluice_transform_rejected_total",
            "Records rejected by the plugin (dead-lettered).",
            |s| s.rejected.load(Relaxed),
        ),
        (
            "sluice_transform_failed_total",
            "Records that made the plugin trap or break a limit (dead-lettered).",
            |s| s.failed.load(Relaxed),
        ),
        (
            "sluice_transform_traps_total",
            "Plugin calls that trapped or broke a limit.",
            |s| s.traps.load(Relaxed),
        ),
        (
            "sluice_transform_fuel_total",
            "wasmtime fuel consumed by metered calls (those isolating suspect records after a failed or timed-out call).",
            |s| s.fuel.load(Relaxed),
        ),
        (
            "sluice_transform_transactions_total",
            "Kafka transactions committed (each holds a read's outputs and offsets).",
            |s| s.transactions.load(Relaxed),
        ),
        (
            "sluice_worker_restarts_total",
            "Sessions that ended on an error (transaction aborted, resumed from the committed offsets).",
            |s| s.restarts.load(Relaxed),
        ),
        (
            "sluice_worker_rebalances_total",
            "Changes of the input partitions held.",
            |s| s.rebalances.load(Relaxed),
        ),
    ];
    for (name, help, pick) in counters {
        crate::metrics::family(&mut out, name, "counter", help);
        for (t, s) in &local {
            let _ = writeln!(
                out,
                "{name}{{transform=\"{t}\",worker=\"{id}\"}} {}",
                pick(s)
            );
        }
    }
    crate::metrics::family(
        &mut out,
        "sluice_transform_lag",
        "gauge",
        "Input records not yet processed, per partition held by this worker.",
    );
    for (t, s) in &local {
        for p in s.partitions() {
            let _ = writeln!(
                out,
                "sluice_transform_lag{{transform=\"{t}\",partition=\"{}\",worker=\"{id}\"}} {}",
                p.partition,
                p.lag.max(0)
            );
        }
    }
    crate::metrics::family(
        &mut out,
        "sluice_worker_assigned_partitions",
        "gauge",
        "Input partitions this worker holds.",
    );
    for (t, s) in &local {
        let _ = writeln!(
            out,
            "sluice_worker_assigned_partitions{{transform=\"{t}\",worker=\"{id}\"}} {}",
            s.partitions().len()
        );
    }
    sluice_common::telemetry::telemetry().encode(&mut out);
    crate::metrics::process(&mut out);
    out
}
