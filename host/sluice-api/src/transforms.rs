//! Plugin and transform endpoints.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, State, blocking, parse_json};
use sluice_pipeline::plugins::PluginError;
use sluice_pipeline::{PipelineError, TransformSpec};
use sluice_runtime::RuntimeError;

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> Self {
        let msg = e.to_string();
        match e {
            PluginError::Unknown(_) | PluginError::UnknownVersion { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_plugin", msg)
            }
            PluginError::BadName(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", msg),
            PluginError::Runtime(RuntimeError::TooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "plugin_too_large", msg)
            }
            PluginError::Runtime(RuntimeError::Init(_)) => {
                ApiError::new(StatusCode::BAD_REQUEST, "plugin_init_failed", msg)
            }
            PluginError::Runtime(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_plugin", msg)
            }
            PluginError::Io { .. } => ApiError::internal(msg),
        }
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        let msg = e.to_string();
        match e {
            PipelineError::BadName(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", msg)
            }
            PipelineError::Unknown(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_transform", msg)
            }
            PipelineError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_transform", msg)
            }
            PipelineError::UnknownInput(_) | PipelineError::UnknownOutput(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "unknown_topic", msg)
            }
            PipelineError::PluginInUse { .. } => {
                ApiError::new(StatusCode::CONFLICT, "plugin_in_use", msg)
            }
            PipelineError::Plugin(p) => p.into(),
            PipelineError::Log(l) => l.into(),
            PipelineError::Runtime(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "plugin_failed", msg)
            }
        }
    }
}

#[utoipa::path(
    put,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    request_body(content((Vec<u8> = "application/wasm"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 201, description = "the new version", body = super::openapi::UploadedPlugin),
        (status = 400, description = "not a valid component of the transform world", body = super::openapi::ErrorBody),
        (status = 413, description = "over the upload limit", body = super::openapi::ErrorBody)
    )
)]
pub async fn upload_plugin(
    state: State,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = name?.0;
    let limit = state.pipelines.plugins.runtime().max_plugin_bytes();
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "plugin_too_large",
                format!("the component is larger than the {limit}-byte plugin limit"),
            )
        } else {
            r.into()
        }
    })?;
    let p = state.pipelines.clone();
    let n = name.clone();
    let v = blocking(move || p.plugins.upload(&n, &body)).await?;
    let p = state.pipelines.clone();
    let (n, version) = (name.clone(), v.version);
    // Deployments that follow `latest` swap now; a failure shows in their status.
    let _ = tokio::task::spawn_blocking(move || p.plugin_uploaded(&n, version)).await;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"name": name, "version": v.version, "digest": v.digest, "size_bytes": v.size_bytes}),
        ),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    responses(
        (status = 200, description = "plugins and their latest versions", body = super::openapi::StatusDoc)
    )
)]
pub async fn list_plugins(state: State) -> Json<Value> {
    let plugins: Vec<Value> = state
        .pipelines
        .plugins
        .list()
        .into_iter()
        .map(|(name, versions)| {
            let latest = versions.last().cloned();
            json!({"name": name, "versions": versions.len(), "latest": latest})
        })
        .collect();
    Json(json!({ "plugins": plugins }))
}

#[utoipa::path(
    get,
    path = "/v1/plugins/{name}",
    tag = "plugins",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "versions and users", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown plugin", body = super::openapi::ErrorBody)
    )
)]
pub async fn get_plugin(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = name?.0;
    let versions = state.pipelines.plugins.versions(&name)?;
    let used_by = state.pipelines.users_of(&name);
    Ok(Json(
        json!({"name": name, "versions": versions, "used_by": used_by}),
    ))
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

#[utoipa::path(
    put,
    path = "/v1/transforms/{name}",
    tag = "transforms",
    params(("name" = String, Path)),
    request_body = super::openapi::TransformSpecDoc,
    responses(
        (status = 201, description = "deployed", body = super::openapi::StatusDoc), (status = 200, description = "updated (swap or rollback)", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown plugin or version", body = super::openapi::ErrorBody)
    )
)]
pub async fn put_transform(
    state: State,
    name: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let name = name?.0;
    let spec: TransformSpec = parse_json(&body?)?;
    let p = state.pipelines.clone();
    let n = name.clone();
    let created = blocking(move || p.deploy(&n, spec)).await?;
    let t = state.pipelines.get(&name)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(state.pipelines.status(&t))))
}

#[utoipa::path(
    get,
    path = "/v1/transforms",
    tag = "transforms",
    responses(
        (status = 200, description = "status of every transform", body = super::openapi::StatusDoc)
    )
)]
pub async fn list_transforms(state: State) -> Json<Value> {
    let list: Vec<Value> = state
        .pipelines
        .list()
        .iter()
        .map(|t| state.pipelines.status(t))
        .collect();
    Json(json!({ "transforms": list }))
}

#[utoipa::path(
    get,
    path = "/v1/transforms/{name}",
    tag = "transforms",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "status", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown transform", body = super::openapi::ErrorBody)
    )
)]
pub async fn get_transform(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let t = state.pipelines.get(&name?.0)?;
    Ok(Json(state.pipelines.status(&t)))
}

#[utoipa::path(
    delete,
    path = "/v1/transforms/{name}",
    tag = "transforms",
    params(("name" = String, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown transform", body = super::openapi::ErrorBody)
    )
)]
pub async fn delete_transform(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = name?.0;
    let p = state.pipelines.clone();
    blocking(move || p.delete(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/v1/transforms/{name}/pause",
    tag = "transforms",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "paused", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown transform", body = super::openapi::ErrorBody)
    )
)]
pub async fn pause(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = name?.0;
    state.pipelines.set_paused(&name, true)?;
    let t = state.pipelines.get(&name)?;
    Ok(Json(state.pipelines.status(&t)))
}

#[utoipa::path(
    post,
    path = "/v1/transforms/{name}/resume",
    tag = "transforms",
    params(("name" = String, Path)),
    responses(
        (status = 200, description = "resumed", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown transform", body = super::openapi::ErrorBody)
    )
)]
pub async fn resume(
    state: State,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let name = name?.0;
    state.pipelines.set_paused(&name, false)?;
    let t = state.pipelines.get(&name)?;
    Ok(Json(state.pipelines.status(&t)))
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    follow: Option<bool>,
}

fn line_json(seq: u64, l: &sluice_runtime::LogLine) -> Value {
    json!({"seq": seq, "level": l.level, "message": l.message, "version": l.version,
           "partition": l.partition, "offset": l.offset})
}

#[utoipa::path(
    get,
    path = "/v1/transforms/{name}/logs",
    params(("name" = String, Path), ("follow" = Option<bool>, Query)),
    responses(
        (status = 200, description = "recent plugin log lines, or server-sent events with follow=true", body = super::openapi::StatusDoc),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown transform", body = super::openapi::ErrorBody)
    )
)]
pub async fn logs(
    state: State,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let t = state.pipelines.get(&name?.0)?;
    if query?.0.follow != Some(true) {
        let lines: Vec<Value> = t
            .logs
            .since(0)
            .iter()
            .map(|(s, l)| line_json(*s, l))
            .collect();
        let dropped = t.logs.dropped.load(std::sync::atomic::Ordering::Relaxed);
        return Ok(Json(json!({ "lines": lines, "dropped": dropped })).into_response());
    }
    let shutdown = state.shutdown.clone();
    let stream = async_stream(t, shutdown);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn async_stream(
    t: std::sync::Arc<sluice_pipeline::Transform>,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((0u64, Vec::<Event>::new()), move |(mut next, mut queue)| {
        let (t, shutdown) = (t.clone(), shutdown.clone());
        async move {
            loop {
                if let Some(ev) = queue.pop() {
                    return Some((Ok(ev), (next, queue)));
                }
                for (seq, l) in t.logs.since(next) {
                    next = seq + 1;
                    queue.insert(
                        0,
                        Event::default()
                            .event("log")
                            .data(line_json(seq, &l).to_string()),
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
        (status = 200, description = "the latest value of a key of a compacted topic", body = super::openapi::TableValue),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown table or key", body = super::openapi::ErrorBody)
    )
)]
pub async fn table_key(
    state: State,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
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
        Some(v) => {
            let value = match std::str::from_utf8(&v) {
                Ok(s) => json!(s),
                Err(_) => json!(null),
            };
            Ok(Json(json!({"topic": topic, "key": key, "value": value})))
        }
    }
}
