//! The HTTP API: the only module that knows HTTP and JSON.

mod access;
pub mod alerts;
mod contracts;
mod deployments;
mod error;
pub mod groups;
pub mod history;
mod lineage;
pub mod linger;
pub mod listener;
mod metrics;
mod openapi;
mod plugins;
mod records;
pub mod registry;
mod shadow;
mod state;
mod topics;
mod transforms;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use deployments::{Deployments, Reach};
pub use error::ApiError;
pub use plugins::{Follower, PluginHost, Uploaded};
pub use transforms::TransformLogs;

use sluice_connect::Connectors;
use sluice_log::Log;
use sluice_pipeline::Pipelines;

pub use sluice_config::Limits;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    pub log: Arc<Log>,
    pub pipelines: Arc<Pipelines>,
    pub connectors: Arc<Connectors>,
    /// The schema registry (data contracts, produce and consume by schema).
    pub registry: Arc<sluice_schema::Registry>,
    /// Identities; none = every request is allowed (loopback-only server).
    pub auth: Option<Arc<sluice_auth::Auth>>,
    pub limits: Limits,
    /// Permits are KiB of produce bodies in flight.
    produce_budget: Semaphore,
    /// Cancelled at shutdown so long polls and streams end and the server can drain.
    pub shutdown: CancellationToken,
    /// The Kafka listener's consumer groups (set once the listener's broker is open).
    pub groups: std::sync::OnceLock<Arc<dyn groups::GroupCoordinator>>,
    /// The built-in alerts (set once they started).
    pub alerts: std::sync::OnceLock<Arc<alerts::Alerts>>,
    /// The last minutes, for the console's charts (set once sampling started).
    pub history: std::sync::OnceLock<Arc<history::History>>,
}

impl std::fmt::Debug for dyn groups::GroupCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCoordinator")
    }
}

impl AppState {
    pub fn new(
        log: Arc<Log>,
        pipelines: Arc<Pipelines>,
        connectors: Arc<Connectors>,
        registry: Arc<sluice_schema::Registry>,
        auth: Option<Arc<sluice_auth::Auth>>,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let kib = (limits.max_inflight_produce_bytes / 1024).max(1);
        Arc::new(AppState {
            log,
            pipelines,
            connectors,
            registry,
            auth,
            produce_budget: Semaphore::new(kib),
            limits,
            shutdown,
            groups: std::sync::OnceLock::new(),
            alerts: std::sync::OnceLock::new(),
            history: std::sync::OnceLock::new(),
        })
    }

    fn max_wait(&self, wait_ms: Option<u64>) -> Duration {
        Duration::from_millis(wait_ms.unwrap_or(0).min(self.limits.max_wait_ms))
    }
}

pub type State = axum::extract::State<Arc<AppState>>;

/// The whole HTTP API.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(health))
        .route("/ui", get(console))
        .route("/openapi.json", get(openapi::openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/disk", get(disk))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/history", get(history::get))
        .route("/v1/topics", post(topics::create).get(topics::list))
        .route(
            "/v1/topics/{topic}",
            get(topics::describe).delete(topics::delete),
        )
        .route("/v1/topics/{topic}/records", post(records::produce))
        .route("/v1/topics/{topic}/schema", put(topics::set_schema))
        .route(
            "/v1/topics/{topic}/partitions/{partition}/records",
            get(records::consume),
        )
        .route("/v1/topics/{topic}/stream", get(records::stream))
        .route("/v1/topics/{topic}/keys/{key}", get(transforms::table_key))
        .route(
            "/v1/lineage/{topic}/{partition}/{offset}",
            get(lineage::lineage),
        )
        .route("/v1/groups", get(groups::list))
        .route(
            "/v1/groups/{group}",
            get(groups::describe).delete(groups::delete),
        )
        .route("/v1/groups/{group}/reset", post(groups::reset_offsets))
        .merge(runner_routes::<_, Pipelines>(&state.pipelines))
        .route("/v1/transforms/{name}/state", get(state::read))
        .route(
            "/v1/transforms/{name}/shadow",
            put(shadow::start).get(shadow::get).delete(shadow::delete),
        )
        .route(
            "/v1/transforms/{name}/shadow/promote",
            post(shadow::promote),
        )
        .merge(deployments::routes::<_, Connectors>("/v1/connectors"))
        .route_layer(axum::middleware::from_fn(observe))
        // The schema registry's API also under the HTTP API's address (for the console:
        // one origin, one token); clients use its own listener.
        .nest_service(
            "/v1/registry",
            registry::router(Arc::new(registry::RegistryApp {
                registry: state.registry.clone(),
                auth: state.auth.clone(),
                max_body_bytes: body_limit,
            })),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            access::Gate {
                auth: state.auth.clone(),
                owned: owned_topics(&state.log),
            },
            access::authorize,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn(json_newline))
        .layer(axum::middleware::from_fn(linger::linger))
        .with_state(state)
}

/// The topics the server keeps for itself ([`sluice_log::Log::kept_by_server`]).
pub fn owned_topics(log: &Arc<sluice_log::Log>) -> sluice_auth::OwnedTopics {
    let log = log.clone();
    Arc::new(move |t: &str| log.kept_by_server(t))
}

/// The routes `sluice serve` and `sluice worker` share, over whatever runs their
/// transforms: plugins, transforms and their logs.
pub fn runner_routes<S, T>(host: &T) -> Router<S>
where
    S: Reach<T>,
    T: Deployments + PluginHost + TransformLogs,
{
    Router::new()
        .merge(plugins::routes::<S, T>(host))
        .merge(deployments::routes::<S, T>("/v1/transforms"))
        .route("/v1/transforms/{name}/logs", get(transforms::logs::<S, T>))
}

/// The admin console: one self-contained page (vanilla JavaScript, no dependencies, no
/// build step, ~30 KB) that drives the public API with the operator's token.
async fn console() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("console.html"))
}

/// Ends every JSON body with a newline, so `curl` output ends its line in a terminal.
/// (Streams — server-sent events — are left alone.)
async fn json_newline(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::body::HttpBody;
    use axum::http::header;
    let resp = next.run(req).await;
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !json || resp.body().size_hint().exact().is_none() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("reading a response body").into_response();
    };
    let mut with_newline = Vec::with_capacity(bytes.len() + 1);
    with_newline.extend_from_slice(&bytes);
    with_newline.push(b'\n');
    parts.headers.remove(header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(with_newline))
}

/// Counts and times every routed request by its route template.
async fn observe(
    route: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = req.method().as_str().to_string();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", |r| r.as_str());
    sluice_common::telemetry::telemetry().http_request(
        &method,
        route,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

#[utoipa::path(
    get,
    path = "/healthz",
    responses(
        (status = 200, description = "the server is up", body = Health)
    )
)]
async fn health() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// `GET /healthz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// `GET /v1/disk`: the data directory's filesystem — free space, the thresholds, and
/// `ok`, `low` (act now) or `full` (produce refused with `storage_full`).
#[utoipa::path(
    get,
    path = "/v1/disk",
    tag = "server",
    responses((status = 200, description = "the data disk", body = sluice_log::space::DiskStatus))
)]
pub async fn disk(state: State) -> axum::Json<sluice_log::space::DiskStatus> {
    axum::Json(state.log.space().status())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

/// Parses JSON with an error that says where and what went wrong.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "request body is empty; expected JSON",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let code = if e.is_data() {
            "invalid_field"
        } else {
            "invalid_json"
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            code,
            format!("invalid request body: {e}"),
        )
    })
}

/// A deployment spec: JSON, with an input (`input`, or two in `inputs`).
fn parse_spec(body: &[u8]) -> Result<sluice_pipeline::TransformSpec, ApiError> {
    let spec: sluice_pipeline::TransformSpec = parse_json(body)?;
    if spec.input.is_empty() && spec.inputs.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            "invalid request body: missing field `input` (a topic), or `inputs` (two topics)",
        ));
    }
    Ok(spec)
}

/// Runs blocking log work off the reactor.
async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("blocking task failed: {e}")))?
        .map_err(Into::into)
}
