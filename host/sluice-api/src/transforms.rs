//! What transforms use besides their plugins: their plugin log lines, and lookup tables.
//! (Deploying and running transforms: `deployments`; plugins: `plugins`.)

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sluice_pipeline::{LogRing, Pipelines};

use crate::deployments::Reach;
use crate::error::ErrorBody;
use crate::{ApiError, State, blocking};

/// Where a deployment's plugin log lines are kept.
pub trait TransformLogs: Send + Sync + 'static {
    fn logs(&self, transform: &str) -> Result<Arc<LogRing>, ApiError>;
}

impl TransformLogs for Pipelines {
    fn logs(&self, transform: &str) -> Result<Arc<LogRing>, ApiError> {
        Ok(self.get(transform)?.logs.clone())
    }
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
        (status = 400, description = "invalid request (body, path or query)", body = ErrorBody),
        (status = 404, description = "unknown transform", body = ErrorBody)
    )
)]
pub async fn logs<S: Reach<T>, T: TransformLogs>(
    axum::extract::State(app): axum::extract::State<S>,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<LogsQuery>, QueryRejection>,
) -> Result<axum::response::Response, ApiError> {
    let ring = app.reach().logs(&name?.0)?;
    Ok(logs_response(
        ring,
        query?.0.follow == Some(true),
        app.shutdown(),
    ))
}

/// The lines kept, or with `follow` a stream of server-sent events from the first kept
/// line on, until the client goes or the server stops.
fn logs_response(
    ring: Arc<LogRing>,
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
    ring: Arc<LogRing>,
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
        (status = 400, description = "invalid request (body, path or query)", body = ErrorBody),
        (status = 404, description = "unknown table or key", body = ErrorBody)
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
