//! The HTTP API of `sluice worker`: the same `/v1/plugins` and `/v1/transforms` surface as
//! `sluice serve` (same bodies, errors, roles and auth), answered from the worker group's
//! control topics; there is no `/v1/topics` (the cluster's topics are the cluster's).
//! `GET /v1/worker` is this worker's own report.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use sluice_pipeline::TransformSpec;
use sluice_worker::{DeploymentStatus, Worker, WorkerReport};

use crate::transforms::{
    LogsQuery, PluginDetail, PluginList, UploadedPlugin, logs_response, plugin_body,
};
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

/// The worker's whole HTTP API.
pub fn router(app: Arc<WorkerApp>) -> Router {
    let plugin_limit = app.worker.runtime().max_plugin_bytes() + 1;
    Router::new()
        .route("/healthz", get(crate::health))
        .route("/metrics", get(metrics))
        .route("/v1/worker", get(report))
        .route("/v1/plugins", get(list_plugins))
        .route(
            "/v1/plugins/{name}",
            put(upload_plugin)
                .layer(DefaultBodyLimit::max(plugin_limit))
                .get(get_plugin)
                .delete(delete_plugin),
        )
        .route("/v1/transforms", get(list))
        .route(
            "/v1/transforms/{name}",
            put(deploy).get(status).delete(delete),
        )
        .route("/v1/transforms/{name}/pause", post(pause))
        .route("/v1/transforms/{name}/resume", post(resume))
        .route("/v1/transforms/{name}/logs", get(logs))
        .route_layer(axum::middleware::from_fn(crate::observe))
        .fallback(crate::not_found)
        .method_not_allowed_fallback(crate::method_not_allowed)
        .layer(DefaultBodyLimit::max(app.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            app.auth.clone(),
            crate::access::authorize,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(crate::json_newline))
        .with_state(app)
}

async fn report(s: St) -> Json<WorkerReport> {
    Json(s.worker.report(false))
}

async fn upload_plugin(
    s: St,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UploadedPlugin>), ApiError> {
    let name = name?.0;
    let body = plugin_body(body, s.worker.runtime().max_plugin_bytes())?;
    let (w, n) = (s.worker.clone(), name.clone());
    let v = blocking(move || w.upload_plugin(&n, &body)).await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadedPlugin {
            name,
            version: v.version,
            digest: v.digest,
            size_bytes: v.size_bytes,
        }),
    ))
}

async fn list_plugins(s: St) -> Json<PluginList> {
    Json(PluginList::of(s.worker.plugins()))
}

async fn get_plugin(
    s: St,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PluginDetail>, ApiError> {
    let name = name?.0;
    let (versions, used_by) = s.worker.plugin(&name)?;
    Ok(Json(PluginDetail {
        name,
        versions,
        used_by,
    }))
}

async fn delete_plugin(
    s: St,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let (w, name) = (s.worker.clone(), name?.0);
    blocking(move || w.delete_plugin(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/transforms` on a worker.
#[derive(Debug, Serialize)]
struct TransformList {
    transforms: Vec<DeploymentStatus>,
}

async fn list(s: St) -> Json<TransformList> {
    Json(TransformList {
        transforms: s.worker.list(),
    })
}

async fn status(
    s: St,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    Ok(Json(s.worker.status(&name?.0)?))
}

async fn deploy(
    s: St,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<DeploymentStatus>), ApiError> {
    let name = name?.0;
    let spec: TransformSpec = parse_json(&body?)?;
    let (w, n) = (s.worker.clone(), name.clone());
    let created = blocking(move || w.deploy(&n, spec)).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(s.worker.status(&name)?)))
}

async fn delete(s: St, name: Result<Path<String>, PathRejection>) -> Result<StatusCode, ApiError> {
    let (w, name) = (s.worker.clone(), name?.0);
    blocking(move || w.delete(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(
    s: St,
    name: Result<Path<String>, PathRejection>,
    paused: bool,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let name = name?.0;
    let (w, n) = (s.worker.clone(), name.clone());
    blocking(move || w.set_paused(&n, paused)).await?;
    Ok(Json(s.worker.status(&name)?))
}

async fn pause(
    s: St,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    set_paused(s, name, true).await
}

async fn resume(
    s: St,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    set_paused(s, name, false).await
}

/// This worker's plugin log lines of a deployment (each worker keeps its own).
async fn logs(
    s: St,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let ring = s.worker.logs(&name?.0)?;
    Ok(logs_response(
        ring,
        query?.0.follow == Some(true),
        s.shutdown.clone(),
    ))
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
