//! What transforms use: the plugin store, a transform's plugin log lines, and lookup
//! tables. (Deploying and running transforms: `deployments`.)

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sluice_pipeline::LogRing;
use sluice_pipeline::plugins::PluginVersion;

use super::{ApiError, State, blocking};

#[utoipa::path(
    put,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    request_body(content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 201, description = "the new version", body = UploadedPlugin),
        (status = 400, description = "not a valid component of the transform world", body = super::openapi::ErrorBody),
        (status = 413, description = "over the upload limit", body = super::openapi::ErrorBody)
    )
)]
pub async fn upload_plugin(
    state: State,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<UploadedPlugin>), ApiError> {
    let name = name?.0;
    let body = plugin_body(body, state.pipelines.plugins.runtime().max_plugin_bytes())?;
    let p = state.pipelines.clone();
    let n = name.clone();
    let v = blocking(move || p.plugins.upload(&n, &body)).await?;
    let p = state.pipelines.clone();
    let (n, version) = (name.clone(), v.version);
    // Deployments that follow `latest` swap now; a failure shows in their status.
    let _ = tokio::task::spawn_blocking(move || p.plugin_uploaded(&n, version)).await;
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

/// An uploaded component's bytes; over the plugin limit is `plugin_too_large` (413).
pub(crate) fn plugin_body(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "plugin_too_large",
                format!("the component is larger than the {limit}-byte plugin limit"),
            )
        } else {
            r.into()
        }
    })
}

/// `PUT /v1/plugins/{name}`: the version the upload made.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedPlugin {
    pub name: String,
    pub version: u32,
    /// `sha256:<hex of the uploaded bytes>`.
    pub digest: String,
    pub size_bytes: usize,
}

/// One plugin in `GET /v1/plugins`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginSummary {
    pub name: String,
    /// How many versions are stored.
    pub versions: usize,
    pub latest: Option<PluginVersion>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginSummary>,
}

/// `GET /v1/plugins/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginDetail {
    pub name: String,
    pub versions: Vec<PluginVersion>,
    /// Transforms that use it (it cannot be deleted while there are any).
    pub used_by: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    responses(
        (status = 200, description = "plugins and their latest versions", body = PluginList)
    )
)]
pub async fn list_plugins(state: State) -> Json<PluginList> {
    Json(PluginList::of(state.pipelines.plugins.list()))
}

impl PluginList {
    /// Each plugin's version count and latest version.
    pub(crate) fn of(
        plugins: impl IntoIterator<Item = (String, Vec<PluginVersion>)>,
    ) -> PluginList {
        let plugins = plugins
            .into_iter()
            .map(|(name, versions)| PluginSummary {
                name,
                versions: versions.len(),
                latest: versions.last().cloned(),
            })
            .collect();
        PluginList { plugins }
    }
}

#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "versions and users", body = PluginDetail),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown plugin", body = super::openapi::ErrorBody)
    )
)]
pub async fn get_plugin(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<PluginDetail>, ApiError> {
    let name = name?.0;
    let versions = state.pipelines.plugins.versions(&name)?;
    let used_by = state.pipelines.users_of(&name);
    Ok(Json(PluginDetail {
        name,
        versions,
        used_by,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown plugin", body = super::openapi::ErrorBody),
        (status = 409, description = "in use by a transform", body = super::openapi::ErrorBody)
    )
)]
pub async fn delete_plugin(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = name?.0;
    let p = state.pipelines.clone();
    blocking(move || p.delete_plugin(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    pub(crate) follow: Option<bool>,
}

/// One plugin log line.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLineOut {
    /// Increasing; `follow` resumes after the last seen.
    pub seq: u64,
    /// `trace`…`error` from the `log` import, or `stdout`/`stderr`.
    pub level: String,
    pub message: String,
    pub version: u32,
    pub partition: u32,
    /// First offset of the batch being processed (none during init).
    pub offset: Option<i64>,
}

impl LogLineOut {
    fn of(seq: u64, l: sluice_runtime::LogLine) -> LogLineOut {
        LogLineOut {
            seq,
            level: l.level,
            message: l.message,
            version: l.version,
            partition: l.partition,
            offset: l.offset,
        }
    }
}

/// `GET /v1/transforms/{name}/logs`: the last lines kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLines {
    pub lines: Vec<LogLineOut>,
    /// Lines refused by the rate limit since the server started.
    pub dropped: u64,
}

#[utoipa::path(
    get,
    path = "/v1/transforms/{name}/logs",
    params(("name" = String, Path), ("follow" = Option<bool>, Query)),
    responses(
        (status = 200, description = "recent plugin log lines, or server-sent events with follow=true", body = LogLines),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown transform", body = super::openapi::ErrorBody)
    )
)]
pub async fn logs(
    state: State,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let t = state.pipelines.get(&name?.0)?;
    Ok(logs_response(
        t.logs.clone(),
        query?.0.follow == Some(true),
        state.shutdown.clone(),
    ))
}

/// The lines kept, or with `follow` a stream of server-sent events from the first kept
/// line on, until the client goes or the server stops.
pub(crate) fn logs_response(
    ring: std::sync::Arc<LogRing>,
    follow: bool,
    shutdown: tokio_util::sync::CancellationToken,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !follow {
        let lines = ring
            .since(0)
            .into_iter()
            .map(|(s, l)| LogLineOut::of(s, l))
            .collect();
        let dropped = ring.dropped.load(std::sync::atomic::Ordering::Relaxed);
        return Json(LogLines { lines, dropped }).into_response();
    }
    Sse::new(log_events(ring, shutdown))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn log_events(
    ring: std::sync::Arc<LogRing>,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((0u64, Vec::<Event>::new()), move |(mut next, mut queue)| {
        let (ring, shutdown) = (ring.clone(), shutdown.clone());
        async move {
            loop {
                if let Some(ev) = queue.pop() {
                    return Some((Ok(ev), (next, queue)));
                }
                for (seq, l) in ring.since(next) {
                    next = seq + 1;
                    queue.insert(
                        0,
                        Event::default().event("log").data(
                            serde_json::to_string(&LogLineOut::of(seq, l)).unwrap_or_default(),
                        ),
                    );
                }
                if queue.is_empty() {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = shutdown.cancelled() => return None,
                    }
                }
            }
        }
    })
}

#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/keys/{key}",
    params(("topic" = String, Path, description = "topic name"), ("key" = String, Path)),
    responses(
        (status = 200, description = "the latest value of a key of a compacted topic", body = TableValue),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown table or key", body = super::openapi::ErrorBody)
    )
)]
pub async fn table_key(
    state: State,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<TableValue>, ApiError> {
    let Path((topic, key)) = path?;
    let tables = state.pipelines.tables.clone();
    let k = key.clone();
    let t = topic.clone();
    let found = blocking(move || tables.get(&t, k.as_bytes())).await?;
    match found {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_key",
            format!("no key {key:?} in table {topic}"),
        )),
        Some(v) => Ok(Json(TableValue {
            topic,
            key,
            value: std::str::from_utf8(&v).ok().map(str::to_owned),
        })),
    }
}

/// `GET /v1/topics/{topic}/keys/{key}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TableValue {
    pub topic: String,
    pub key: String,
    /// The latest value (UTF-8), null when it is not text.
    pub value: Option<String>,
}
