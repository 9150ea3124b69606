//! Topic administration endpoints.

use axum::Json;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{ApiError, State, blocking, parse_json};
use sluice_log::partition::PartitionStats;
use sluice_log::{Cleanup, FlushPolicy, Topic, TopicConfig, TopicSchema};

/// `POST /v1/topics`: a name and optional settings (the settings' defaults apply to the
/// rest).
#[derive(ToSchema)]
#[allow(dead_code)] // describes the request; the handler reads it in two steps
pub struct CreateTopic {
    /// 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    name: String,
    #[serde(flatten)]
    settings: TopicConfig,
}

/// A topic's settings and partitions.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicDescription {
    pub name: String,
    pub partition_count: u32,
    pub partitions: Vec<PartitionStats>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub cleanup: Cleanup,
    pub flush: FlushPolicy,
    pub flush_interval_ms: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub tombstone_retention_ms: u64,
    /// Tiered storage settings, if the topic is tiered (each partition's `tier` says what
    /// is where).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tiered: Option<sluice_log::tier::TierSettings>,
    /// The schema subjects its records must carry, if it is schema-validated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<TopicSchema>,
}

impl TopicDescription {
    fn of(t: &Topic) -> TopicDescription {
        let c = &t.config;
        TopicDescription {
            name: t.name.clone(),
            partition_count: t.partitions.len() as u32,
            partitions: t.partitions.iter().map(|p| p.stats()).collect(),
            retention_ms: c.retention_ms,
            retention_bytes: c.retention_bytes,
            cleanup: c.cleanup,
            flush: c.flush,
            flush_interval_ms: c.flush_interval_ms,
            segment_bytes: c.segment_bytes,
            segment_ms: c.segment_ms,
            tombstone_retention_ms: c.tombstone_retention_ms,
            tiered: c.tiered.clone(),
            schema: c.schema.clone(),
        }
    }
}

/// One topic in `GET /v1/topics`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

#[utoipa::path(
    post,
    path = "/v1/topics",
    tag = "topics",
    request_body = CreateTopic,
    responses(
        (status = 201, description = "created", body = TopicDescription),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 409, description = "topic exists", body = crate::error::ErrorBody)
    )
)]
pub async fn create(
    state: State,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TopicDescription>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(TopicDescription::of(&t))))
}

#[utoipa::path(
    get,
    path = "/v1/topics",
    tag = "topics",
    responses(
        (status = 200, description = "all topics", body = TopicList)
    )
)]
pub async fn list(state: State) -> Json<TopicList> {
    let topics = state
        .log
        .topics()
        .iter()
        .map(|t| TopicSummary {
            name: t.name.clone(),
            partitions: t.partitions.len() as u32,
        })
        .collect();
    Json(TopicList { topics })
}

#[utoipa::path(
    get,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "topic name")),
    responses(
        (status = 200, description = "settings and partitions", body = TopicDescription),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "unknown topic", body = crate::error::ErrorBody)
    )
)]
pub async fn describe(
    state: State,
    topic: Result<Path<String>, PathRejection>,
) -> Result<Json<TopicDescription>, ApiError> {
    let t = state.log.topic(&topic?.0)?;
    Ok(Json(TopicDescription::of(&t)))
}

#[utoipa::path(
    delete,
    path = "/v1/topics/{topic}",
    tag = "topics",
    params(("topic" = String, Path, description = "topic name")),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "unknown topic", body = crate::error::ErrorBody)
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

#[utoipa::path(
    put,
    path = "/v1/topics/{topic}/schema",
    tag = "topics",
    params(("topic" = String, Path, description = "topic name")),
    request_body = TopicSchema,
    responses(
        (status = 200, description = "the topic with its new schema setting ({} removes it)", body = TopicDescription),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "unknown topic", body = crate::error::ErrorBody)
    )
)]
pub async fn set_schema(
    state: State,
    topic: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TopicDescription>, ApiError> {
    let name = topic?.0;
    let schema: TopicSchema = parse_json(&body?)?;
    let t = state.log.topic(&name)?;
    let mut config = t.config.clone();
    config.schema = (schema.value.is_some() || schema.key.is_some()).then_some(schema);
    let log = state.log.clone();
    let t = blocking(move || log.alter_topic(&name, config)).await?;
    Ok(Json(TopicDescription::of(&t)))
}
