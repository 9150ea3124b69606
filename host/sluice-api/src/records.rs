//! Produce and consume endpoints: JSON, NDJSON, long poll and server-sent events.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::BytesMut;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_stream::StreamExt as _;
use utoipa::ToSchema;

use super::{ApiError, State, blocking, parse_json};
use sluice_log::batch::{self, NewRecord, StoredRecord};
use sluice_log::{Partition, now_ms};

/// One record as a producer sends it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InRecord {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_base64: Option<String>,
    /// A string is stored as its UTF-8 bytes, any other JSON as its text; null = tombstone.
    #[serde(default)]
    #[schema(value_type = Object)]
    value: Option<Value>,
    #[serde(default)]
    value_base64: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, Option<String>>,
    /// Default: by the key's murmur2 hash, else round robin.
    #[serde(default)]
    partition: Option<i64>,
    /// Milliseconds since the epoch; default: the time of the request.
    #[serde(default)]
    timestamp: Option<i64>,
}

/// `POST …/records` as JSON (NDJSON: one record object per line).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProduceBody {
    records: Vec<InRecord>,
    /// Encode each record's JSON `value` with this schema of the registry (Confluent's wire
    /// format: magic byte, schema id, payload).
    #[serde(default)]
    value_schema: Option<SchemaRef>,
    /// Encode each record's `key` (a JSON document in the string) likewise.
    #[serde(default)]
    key_schema: Option<SchemaRef>,
}

/// A schema of the registry to encode with: a subject's latest version (or `version`), or
/// an `id`; `message` names the Protobuf message type (default: the file's first).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRef {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    version: Option<i32>,
    #[serde(default)]
    id: Option<i32>,
    #[serde(default)]
    message: Option<String>,
}

impl SchemaRef {
    fn target(&self, what: &str) -> Result<sluice_schema::EncodeTarget, ApiError> {
        use sluice_schema::EncodeTarget;
        match (&self.subject, self.version, self.id) {
            (Some(s), None, None) => Ok(EncodeTarget::Subject(s.clone())),
            (Some(s), Some(v), None) => Ok(EncodeTarget::SubjectVersion(s.clone(), v)),
            (None, None, Some(id)) => Ok(EncodeTarget::Id(id)),
            _ => Err(ApiError::bad_request(format!(
                "{what}: give a subject (and optionally a version), or an id"
            ))),
        }
    }
}

fn decode_b64(field: &str, i: usize, s: &str) -> Result<bytes::Bytes, ApiError> {
    B64.decode(s)
        .map(bytes::Bytes::from)
        .map_err(|e| ApiError::bad_request(format!("records[{i}].{field}: invalid base64: {e}")))
}

impl InRecord {
    fn into_new(self, i: usize) -> Result<(Option<i64>, NewRecord), ApiError> {
        let key = match (self.key, self.key_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "records[{i}]: give `key` or `key_base64`, not both"
                )));
            }
            (Some(k), None) => Some(bytes::Bytes::from(k)),
            (None, Some(b)) => Some(decode_b64("key_base64", i, &b)?),
            (None, None) => None,
        };
        let value = match (self.value, self.value_base64) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "records[{i}]: give `value` or `value_base64`, not both"
                )));
            }
            (Some(Value::Null), None) | (None, None) => None,
            (Some(Value::String(s)), None) => Some(bytes::Bytes::from(s)),
            (Some(v), None) => Some(bytes::Bytes::from(v.to_string())),
            (None, Some(b)) => Some(decode_b64("value_base64", i, &b)?),
        };
        let headers = self
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.map(bytes::Bytes::from)))
            .collect();
        Ok((
            self.partition,
            NewRecord {
                key,
                value,
                headers,
                timestamp: self.timestamp,
            },
        ))
    }
}

/// Records to encode by schema: (value schema, key schema).
type Encodings = (Option<SchemaRef>, Option<SchemaRef>);

fn parse_produce(headers: &HeaderMap, body: &[u8]) -> Result<(Vec<InRecord>, Encodings), ApiError> {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-ndjson"));
    if !ndjson {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "the body is a JSON array; expected an object with the records in it: \
                 {\"records\": [{\"value\": …}, …]} (or one record object per line with \
                 content-type application/x-ndjson)",
            ));
        }
        let b = parse_json::<ProduceBody>(body)?;
        return Ok((b.records, (b.value_schema, b.key_schema)));
    }
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(n, line)| {
            serde_json::from_slice(line).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("line {}: {e}", n + 1),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|r| (r, (None, None)))
}

/// Encodes a record's JSON value (and key) with the schemas asked, in Confluent's wire
/// format.
fn encode_by_schema(
    registry: &sluice_schema::Registry,
    enc: &Encodings,
    i: usize,
    r: &mut InRecord,
) -> Result<(), ApiError> {
    let fail = |part: &str, e: sluice_schema::CodecError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "schema_violation",
            format!("records[{i}].{part}: {e}"),
        )
    };
    if let Some(s) = &enc.0 {
        if r.value_base64.is_some() {
            return Err(ApiError::bad_request(format!(
                "records[{i}]: value_schema encodes `value` (JSON); value_base64 is already bytes"
            )));
        }
        if let Some(v) = r.value.take().filter(|v| !v.is_null()) {
            let framed = registry
                .encode_from_json(&s.target("value_schema")?, &v, s.message.as_deref())
                .map_err(|e| fail("value", e))?;
            r.value_base64 = Some(B64.encode(framed));
        }
    }
    if let Some(s) = &enc.1
        && let Some(k) = r.key.take()
    {
        let v: Value = serde_json::from_str(&k).unwrap_or(Value::String(k));
        let framed = registry
            .encode_from_json(&s.target("key_schema")?, &v, s.message.as_deref())
            .map_err(|e| fail("key", e))?;
        r.key_base64 = Some(B64.encode(framed));
    }
    Ok(())
}

#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/records",
    tag = "records",
    params(("topic" = String, Path, description = "topic name")),
    request_body(content((ProduceBody = "application/json"), (String = "application/x-ndjson"))),
    responses(
        (status = 200, description = "durable per the topic's flush policy", body = ProduceResult),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "unknown topic", body = crate::error::ErrorBody),
        (status = 413, description = "body or record count over the limit", body = crate::error::ErrorBody),
        (status = 429, description = "too much produce data in flight", body = crate::error::ErrorBody),
        (status = 507, description = "the data disk is full (`storage_full`, retriable; `details` says which records were written when some were)", body = crate::error::ErrorBody)
    )
)]
pub async fn produce(
    state: State,
    topic: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ProduceResult>, ApiError> {
    let topic = state.log.topic(&topic?.0)?;
    state.log.check_writable(&topic.name)?;
    let body = body?;
    // Admission: bytes in flight are bounded; past the bound, ask the client to come back.
    let kib = (body.len() / 1024).max(1) as u32;
    let _permit = state.produce_budget.try_acquire_many(kib).map_err(|_| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "over_capacity",
            "too much produce data in flight; retry later",
        );
        e.retry_after = Some(1);
        e
    })?;
    let (mut records, encodings) = parse_produce(&headers, &body)?;
    if encodings.0.is_some() || encodings.1.is_some() {
        for (i, r) in records.iter_mut().enumerate() {
            encode_by_schema(&state.registry, &encodings, i, r)?;
        }
    }
    if records.is_empty() {
        return Err(ApiError::bad_request("no records in request"));
    }
    if records.len() > state.limits.max_records_per_request {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_records",
            format!(
                "{} records in one request; the limit is {}",
                records.len(),
                state.limits.max_records_per_request
            ),
        ));
    }
    // Route every record, remembering its place in the request.
    let n = topic.partitions.len() as i64;
    let mut by_partition: BTreeMap<u32, Vec<(usize, NewRecord)>> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut refused_parts = [0u64; 2];
    for (i, r) in records.into_iter().enumerate() {
        let (explicit, rec) = r.into_new(i)?;
        if let Some(rules) = &topic.config.schema
            && let Err((part, why)) = crate::contracts::check(&state.registry, rules, &rec)
        {
            refused_parts[usize::from(part == "key")] += 1;
            if refused.len() < 10 {
                refused.push(format!("records[{i}].{part}: {why}"));
            }
            continue;
        }
        let p = match explicit {
            Some(p) if (0..n).contains(&p) => p as u32,
            Some(p) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_partition",
                    format!(
                        "records[{i}].partition {p}: topic {} has partitions 0..{n}",
                        topic.name
                    ),
                ));
            }
            None => topic.pick_partition(rec.key.as_deref()),
        };
        by_partition.entry(p).or_default().push((i, rec));
    }
    if !refused.is_empty() {
        // Nothing of a refused request is appended: a client's retry of the whole request
        // then duplicates nothing.
        let t = sluice_common::telemetry::telemetry();
        for (part, count) in ["value", "key"].iter().zip(refused_parts) {
            if count > 0 {
                t.schema_refused(&topic.name, "http", part, count);
            }
        }
        let total: u64 = refused_parts.iter().sum();
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "schema_violation",
            format!(
                "{total} record(s) do not meet topic {}'s schema contract; nothing was written: {}",
                topic.name,
                refused.join("; ")
            ),
        ));
    }
    // One batch per partition; partitions append (and fsync) in parallel.
    let now = now_ms();
    let batches: Vec<(u32, Vec<usize>, BytesMut)> = by_partition
        .into_iter()
        .map(|(p, recs)| {
            let data = batch::build(recs.iter().map(|(_, r)| r), now);
            (p, recs.into_iter().map(|(i, _)| i).collect(), data)
        })
        .collect();
    // Room for all of it before any partition writes: a full disk refuses the request
    // whole, and a client's retry duplicates nothing.
    let total: usize = batches.iter().map(|(_, _, d)| d.len()).sum();
    state
        .log
        .space()
        .check(total as u64)
        .map_err(|full| ApiError::from(state.log.full_error(full)))?;
    let mut offsets = append_batches(&topic, batches).await?;
    offsets.sort_unstable_by_key(|(i, _, _)| *i);
    let offsets = offsets
        .into_iter()
        .map(|(_, partition, offset)| RecordPosition { partition, offset })
        .collect();
    Ok(Json(ProduceResult { offsets }))
}

/// Appends one batch per partition (in parallel): each record's (index in the request,
/// partition, offset). A partition that fails fails the request, its error saying exactly
/// which records were written (a retry sends only the others) and which were not.
async fn append_batches(
    topic: &sluice_log::Topic,
    batches: Vec<(u32, Vec<usize>, BytesMut)>,
) -> Result<Vec<(usize, u32, u64)>, ApiError> {
    let mut tasks = Vec::with_capacity(batches.len());
    for (p, places, data) in batches {
        let part = topic.partitions[p as usize].clone();
        tasks.push(async move {
            let appended = blocking(move || part.append(data)).await;
            (p, places, appended)
        });
    }
    let mut offsets = Vec::new();
    let mut failed: Vec<(ApiError, Vec<usize>)> = Vec::new();
    for (p, places, result) in futures::future::join_all(tasks).await {
        match result {
            Ok(appended) => {
                for (k, i) in places.into_iter().enumerate() {
                    offsets.push((i, p, appended.base_offset + k as u64));
                }
            }
            Err(e) => failed.push((e, places)),
        }
    }
    if !failed.is_empty() {
        // Partitions write on their own: say exactly which records were stored (a retry
        // sends only the others) and which were not.
        offsets.sort_unstable_by_key(|(i, _, _)| *i);
        let mut not_written: Vec<usize> = failed.iter().flat_map(|(_, v)| v.clone()).collect();
        not_written.sort_unstable();
        let (mut e, _) = failed.swap_remove(0);
        if !offsets.is_empty() {
            e.message = format!(
                "{} ({} of the request's records were written, {} were not: see details)",
                e.message,
                offsets.len(),
                not_written.len()
            );
        }
        e.details = Some(Box::new(serde_json::json!({
            "written": offsets
                .iter()
                .map(|(i, p, o)| serde_json::json!({"record": i, "partition": p, "offset": o}))
                .collect::<Vec<_>>(),
            "not_written": not_written,
        })));
        return Err(e);
    }
    Ok(offsets)
}

/// Where a produced record went.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPosition {
    pub partition: u32,
    pub offset: u64,
}

/// `POST …/records`: one position per record, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProduceResult {
    pub offsets: Vec<RecordPosition>,
}

/// A stored record. Bytes that are UTF-8 come as strings; others come base64 under
/// `*_base64` and the plain field is left out (a missing key or value is null).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    pub offset: i64,
    pub timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub key: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub value: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    pub headers: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_base64: BTreeMap<String, String>,
    /// With `decode=json`: the value of a framed record (Confluent's wire format), decoded
    /// by its schema to JSON (then `value`/`value_base64` are left out).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value_json: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_schema_id: Option<i32>,
    /// With `decode=json`: the key, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub key_json: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_schema_id: Option<i32>,
}

/// Optional bytes as (text, base64): `(Some(None), None)` for none.
fn text_or_base64(b: &Option<bytes::Bytes>) -> (Option<Option<String>>, Option<String>) {
    match b {
        None => (Some(None), None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(Some(s.to_owned())), None),
            Err(_) => (None, Some(B64.encode(b))),
        },
    }
}

impl RecordOut {
    pub fn of(r: &StoredRecord, partition: Option<u32>) -> RecordOut {
        let (key, key_base64) = text_or_base64(&r.key);
        let (value, value_base64) = text_or_base64(&r.value);
        let mut headers = BTreeMap::new();
        let mut headers_base64 = BTreeMap::new();
        for (k, v) in &r.headers {
            match v.as_ref().map(|v| std::str::from_utf8(v)) {
                None => {
                    headers.insert(k.clone(), None);
                }
                Some(Ok(s)) => {
                    headers.insert(k.clone(), Some(s.to_owned()));
                }
                Some(Err(_)) => {
                    let b = v.as_deref().unwrap_or_default();
                    headers_base64.insert(k.clone(), B64.encode(b));
                }
            }
        }
        RecordOut {
            partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key,
            key_base64,
            value,
            value_base64,
            headers,
            headers_base64,
            value_json: None,
            value_schema_id: None,
            key_json: None,
            key_schema_id: None,
        }
    }

    /// Decodes a framed value and key with their schemas (what does not decode stays as
    /// bytes).
    fn decode(mut self, r: &StoredRecord, registry: &sluice_schema::Registry) -> RecordOut {
        if let Some(Ok(d)) = r.value.as_ref().map(|v| registry.decode_to_json(v)) {
            (self.value, self.value_base64) = (None, None);
            (self.value_json, self.value_schema_id) = (Some(d.value), Some(d.id));
        }
        if let Some(Ok(d)) = r.key.as_ref().map(|k| registry.decode_to_json(k)) {
            (self.key, self.key_base64) = (None, None);
            (self.key_json, self.key_schema_id) = (Some(d.value), Some(d.id));
        }
        self
    }
}

/// `GET …/records`: records from the offset asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumeResult {
    pub records: Vec<RecordOut>,
    /// Where to read next.
    pub next_offset: u64,
    pub high_watermark: u64,
}

#[derive(Debug, Deserialize)]
pub struct ConsumeQuery {
    offset: Option<u64>,
    /// Start at the first record whose timestamp is at or after this (ms since the epoch)
    /// instead of at an offset.
    timestamp: Option<i64>,
    max: Option<usize>,
    wait_ms: Option<u64>,
    /// `json`: decode records framed in Confluent's wire format (Avro, Protobuf, JSON
    /// Schema) with their schemas, as JSON.
    decode: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/partitions/{partition}/records",
    tag = "records",
    params(("topic" = String, Path, description = "topic name"), ("partition" = u32, Path), ("offset" = Option<u64>, Query), ("timestamp" = Option<i64>, Query, description = "instead of offset: from the first record whose timestamp (ms since the epoch) is at or after this; past every record, from the high watermark"), ("max" = Option<u32>, Query, minimum = 1), ("wait_ms" = Option<u64>, Query, description = "wait up to this long for data (capped by the server)"), ("decode" = Option<String>, Query, description = "json: show records framed in Confluent's wire format decoded by their schemas")),
    responses(
        (status = 200, description = "records from offset (long poll with wait_ms)", body = ConsumeResult),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "unknown topic or partition", body = crate::error::ErrorBody),
        (status = 416, description = "offset outside the partition", body = crate::error::ErrorBody)
    )
)]
pub async fn consume(
    state: State,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<ConsumeQuery>, QueryRejection>,
) -> Result<Json<ConsumeResult>, ApiError> {
    let Path((topic, partition)) = path?;
    let Query(q) = query?;
    let topic = state.log.topic(&topic)?;
    let p: i64 = partition.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_path",
            format!("partition {partition:?} is not a number"),
        )
    })?;
    let part = topic.partition(p)?.clone();
    let offset = match (q.offset, q.timestamp) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                "give offset or timestamp, not both",
            ));
        }
        (Some(o), None) => o,
        (None, Some(ts)) => {
            let p = part.clone();
            blocking(move || {
                let hw = p.high_watermark();
                p.offset_for_timestamp(ts).map(|o| o.unwrap_or(hw))
            })
            .await?
        }
        (None, None) => part.start_offset(),
    };
    let decode = match q.decode.as_deref() {
        None | Some("") | Some("none") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("decode must be json, not {other:?}"),
            ));
        }
    };
    let max = q
        .max
        .unwrap_or(500)
        .clamp(1, state.limits.max_records_per_fetch);
    let wait = state.max_wait(q.wait_ms);
    let read = |part: Arc<Partition>| blocking(move || part.read_records(offset, max));
    let (mut recs, mut next, mut hw) = read(part.clone()).await?;
    if recs.is_empty() && !wait.is_zero() && offset >= hw {
        tokio::select! {
            r = part.wait_for(offset, wait) => r?,
            _ = state.shutdown.cancelled() => {}
        }
        (recs, next, hw) = read(part.clone()).await?;
    }
    Ok(Json(ConsumeResult {
        records: recs
            .iter()
            .map(|r| {
                let out = RecordOut::of(r, None);
                if decode {
                    out.decode(r, &state.registry)
                } else {
                    out
                }
            })
            .collect(),
        next_offset: next,
        high_watermark: hw,
    }))
}

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    from: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/stream",
    tag = "records",
    params(("topic" = String, Path, description = "topic name"), ("from" = Option<String>, Query, description = "earliest | latest")),
    responses(
        (status = 200, description = "server-sent events, one per record", content_type = "text/event-stream", body = String),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "unknown topic", body = crate::error::ErrorBody)
    )
)]
pub async fn stream(
    state: State,
    topic: Result<Path<String>, PathRejection>,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let topic = state.log.topic(&topic?.0)?;
    let latest = match query?.0.from.as_deref() {
        None | Some("earliest") => false,
        Some("latest") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "from must be earliest or latest, not {other:?}"
            )));
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(256);
    for part in &topic.partitions {
        let part = part.clone();
        let tx = tx.clone();
        let shutdown = state.shutdown.clone();
        let mut offset = if latest {
            part.high_watermark()
        } else {
            part.start_offset()
        };
        tokio::spawn(async move {
            loop {
                let p = part.clone();
                let read = blocking(move || p.read_records(offset, 1000)).await;
                let (recs, next) = match read {
                    Ok((r, n, _)) => (r, n),
                    Err(e) => {
                        let ev = Event::default().event("error").data(e.message);
                        let _ = tx.send(ev).await;
                        return;
                    }
                };
                for r in &recs {
                    let ev = Event::default()
                        .id(format!("{}:{}", part.id, r.offset))
                        .event("record")
                        .data(
                            serde_json::to_string(&RecordOut::of(r, Some(part.id)))
                                .unwrap_or_default(),
                        );
                    if tx.send(ev).await.is_err() {
                        return; // client went away
                    }
                }
                offset = next;
                if recs.is_empty() {
                    tokio::select! {
                        r = part.wait_for(offset, std::time::Duration::from_secs(30)) => if r.is_err() { return },
                        _ = shutdown.cancelled() => return,
                        _ = tx.closed() => return,
                    }
                }
            }
        });
    }
    drop(tx);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
