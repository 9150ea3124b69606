//! `GET /openapi.json`: the OpenAPI document, generated (utoipa) from the `#[utoipa::path]`
//! annotations on the handlers and the wire shapes below. The shapes mirror what handlers
//! read and write; schemathesis checks them against the running server in CI.

// The shapes below are never built: they only describe the wire format to utoipa.
#![allow(dead_code)]

use std::collections::BTreeMap;

use axum::Json;
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{connectors, records, topics, transforms};

/// Every error: a stable code and a message for people.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// e.g. `unknown_topic`, `invalid_json`, `forbidden`.
    pub code: String,
    pub message: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum CleanupDoc {
    Delete,
    Compact,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum FlushDoc {
    EveryBatch,
    Interval,
    Os,
}

/// `POST /v1/topics`: a name and optional settings.
#[derive(ToSchema)]
pub struct CreateTopic {
    /// 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
    pub name: String,
    #[schema(minimum = 1, maximum = 1024)]
    pub partitions: Option<u32>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub cleanup: Option<CleanupDoc>,
    pub flush: Option<FlushDoc>,
    pub flush_interval_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    pub tombstone_retention_ms: Option<u64>,
}

#[derive(ToSchema)]
pub struct PartitionInfo {
    pub partition: u32,
    pub start_offset: u64,
    pub end_offset: u64,
    pub size_bytes: u64,
}

#[derive(ToSchema)]
pub struct TopicDescription {
    pub name: String,
    pub partition_count: u32,
    pub partitions: Vec<PartitionInfo>,
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<u64>,
    pub cleanup: CleanupDoc,
    pub flush: FlushDoc,
    pub flush_interval_ms: u64,
    pub segment_bytes: u64,
    pub segment_ms: u64,
    pub tombstone_retention_ms: u64,
}

#[derive(ToSchema)]
pub struct TopicSummary {
    pub name: String,
    pub partitions: u32,
}

#[derive(ToSchema)]
pub struct TopicList {
    pub topics: Vec<TopicSummary>,
}

/// One record to append.
#[derive(ToSchema)]
pub struct ProduceRecord {
    pub key: Option<String>,
    pub key_base64: Option<String>,
    /// A string is stored as its UTF-8 bytes, any other JSON as its text; null = tombstone.
    #[schema(value_type = Object)]
    pub value: Option<Value>,
    pub value_base64: Option<String>,
    pub headers: Option<BTreeMap<String, Option<String>>>,
    /// Default: by the key's murmur2 hash, else round robin.
    pub partition: Option<i64>,
    /// Milliseconds since the epoch; default now.
    pub timestamp: Option<i64>,
}

#[derive(ToSchema)]
pub struct ProduceRequest {
    pub records: Vec<ProduceRecord>,
}

#[derive(ToSchema)]
pub struct RecordPosition {
    pub partition: u32,
    pub offset: u64,
}

#[derive(ToSchema)]
pub struct ProduceResult {
    /// In request order.
    pub offsets: Vec<RecordPosition>,
}

/// A stored record; bytes that are not UTF-8 come as `*_base64` instead.
#[derive(ToSchema)]
pub struct RecordOut {
    pub partition: Option<u32>,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<String>,
    pub key_base64: Option<String>,
    pub value: Option<String>,
    pub value_base64: Option<String>,
    pub headers: BTreeMap<String, Option<String>>,
    pub headers_base64: Option<BTreeMap<String, String>>,
}

#[derive(ToSchema)]
pub struct ConsumeResult {
    pub records: Vec<RecordOut>,
    pub next_offset: u64,
    pub high_watermark: u64,
}

#[derive(ToSchema)]
pub struct TableValue {
    pub topic: String,
    pub key: String,
    /// The latest value (UTF-8), null when it is not text.
    pub value: Option<String>,
}

#[derive(ToSchema)]
pub struct PluginVersionDoc {
    pub version: u32,
    pub digest: String,
    pub size_bytes: u64,
    pub uploaded_ms: i64,
}

#[derive(ToSchema)]
pub struct UploadedPlugin {
    pub name: String,
    pub version: u32,
    pub digest: String,
    pub size_bytes: u64,
}

/// `PUT /v1/transforms/{name}`.
#[derive(ToSchema)]
pub struct TransformSpecDoc {
    pub plugin: String,
    /// A version number or `"latest"` (follows new uploads).
    #[schema(value_type = Object)]
    pub version: Option<Value>,
    pub input: String,
    pub outputs: Vec<String>,
    /// Default `<input>.dlq`.
    pub dead_letter: Option<String>,
    pub config: Option<BTreeMap<String, String>>,
    /// fuel_per_record, memory_bytes, timeout_ms, init_timeout_ms, max_outputs_per_record,
    /// max_output_bytes.
    #[schema(value_type = Object)]
    pub limits: Option<Value>,
    /// `earliest` or `latest` (first deployment only).
    pub start: Option<String>,
    /// Lookup tables the plugin may read; `lookup` of any other finds nothing.
    pub tables: Option<Vec<String>>,
    /// Let this deployment close a cycle of transforms (refused otherwise).
    pub allow_cycles: Option<bool>,
}

/// `PUT /v1/connectors/{name}`: `kind` (`http-pull`, `http-sink`, `postgres-sink`), `topic`
/// and the kind's settings (see the README).
#[derive(ToSchema)]
pub struct ConnectorSpecDoc {
    pub kind: String,
    pub topic: String,
}

/// A status document (transforms, connectors, plugins): see the README for the fields.
#[derive(ToSchema)]
#[schema(value_type = Object)]
pub struct StatusDoc(Value);

#[derive(ToSchema)]
pub struct Health {
    pub status: String,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "A streaming log that runs WebAssembly transforms over every record. \
            With identities configured every endpoint but /healthz and /openapi.json needs \
            `Authorization: Bearer TOKEN` (401 without, 403 when the role does not allow it)."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    paths(
        super::health,
        super::metrics::metrics,
        topics::create,
        topics::list,
        topics::describe,
        topics::delete,
        records::produce,
        records::consume,
        records::stream,
        transforms::table_key,
        transforms::list_plugins,
        transforms::upload_plugin,
        transforms::get_plugin,
        transforms::delete_plugin,
        transforms::list_transforms,
        transforms::put_transform,
        transforms::get_transform,
        transforms::delete_transform,
        transforms::pause,
        transforms::resume,
        transforms::logs,
        connectors::list,
        connectors::put,
        connectors::get,
        connectors::delete,
        connectors::pause,
        connectors::resume,
    )
)]
pub struct ApiDoc;

pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
