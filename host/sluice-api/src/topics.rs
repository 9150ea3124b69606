//! Topic administration endpoints.

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{ApiError, State, blocking, parse_json};
use sluice_log::{Topic, TopicConfig};

fn describe_json(t: &Topic) -> Value {
    let mut v = serde_json::to_value(&t.config).unwrap_or_else(|_| json!({}));
    let parts: Vec<Value> = t
        .partitions
        .iter()
        .map(|p| serde_json::to_value(p.stats()).unwrap_or(Value::Null))
        .collect();
    if let Some(o) = v.as_object_mut() {
        o.insert("name".into(), json!(t.name));
        o.insert("partition_count".into(), json!(t.partitions.len()));
        o.insert("partitions".into(), Value::Array(parts));
    }
    v
}

#[utoipa::path(
    post,
    path = "/v1/topics",
    tag = "topics",
    request_body = super::openapi::CreateTopic,
    responses(
        (status = 201, description = "created", body = super::openapi::TopicDescription),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 409, description = "topic exists", body = super::openapi::ErrorBody)
    )
)]
pub async fn create(
    state: State,
    body: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    // `name` plus the topic settings; unknown fields are refused so typos do not pass silently.
    let mut fields: serde_json::Map<String, Value> = parse_json(&body?)?;
    let name = match fields.remove("name") {
        Some(Value::String(n)) => n,
        Some(_) => return Err(ApiError::bad_request("field `name` must be a string")),
        None => return Err(ApiError::bad_request("missing field `name`")),
    };
    let config: TopicConfig = serde_json::from_value(Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("invalid topic settings: {e}")))?;
    let log = state.log.clone();
    let t = blocking(move || log.create_topic(&name, config)).await?;
    Ok((StatusCode::CREATED, Json(describe_json(&t))))
}

#[utoipa::path(
    get,
    path = "/v1/topics",
    tag = "topics",
    responses(
        (status = 200, description = "all topics", body = super::openapi::TopicList)
    )
)]
pub async fn list(state: State) -> Json<Value> {
    let topics: Vec<Value> = state
        .log
        .topics()
        .iter()
        .map(|t| json!({"name": t.name, "partitions": t.partitions.len()}))
        .collect();
    Json(json!({ "topics": topics }))
}

#[utoipa::path(
    get,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "topic name")),
    responses(
        (status = 200, description = "settings and partitions", body = super::openapi::TopicDescription),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown topic", body = super::openapi::ErrorBody)
    )
)]
pub async fn describe(
    state: State,
    topic: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let t = state.log.topic(&topic?.0)?;
    Ok(Json(describe_json(&t)))
}

#[utoipa::path(
    delete,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "topic name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "invalid request (body, path or query)", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown topic", body = super::openapi::ErrorBody)
    )
)]
pub async fn delete(
    state: State,
    topic: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = topic?.0;
    let log = state.log.clone();
    blocking(move || log.delete_topic(&name)).await?;
    Ok(StatusCode::NO_CONTENT)
}
