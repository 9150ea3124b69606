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
use crate::{ApiError, blocking, parse_spec};

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
        .route("/v1/transforms/{name}/state", get(state))
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

/// `GET /v1/transforms/{name}/state` on a worker: the same reads as on `sluice serve`,
/// each partition's part answered by the worker that holds it (this one, or another of the
/// group asked over its API with the caller's credentials), merged in partition order.
async fn state(
    s: St,
    name: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<
        axum::extract::Query<crate::state::StateQuery>,
        axum::extract::rejection::QueryRejection,
    >,
    headers: axum::http::HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = name?.0;
    let q = query?.0;
    let w = s.worker.clone();
    let (status, input_partitions) = {
        let (w, n) = (w.clone(), name.clone());
        blocking(move || {
            let st = w.status(&n)?;
            let parts = w.partitions_of(&st.input);
            Ok::<_, sluice_worker::WorkerError>((st, parts))
        })
        .await?
    };
    if !status.stateful {
        return Err(crate::state::not_stateful(&name));
    }
    // Every partition of the input, and who holds each (as the group's reports say).
    let mut holders: std::collections::BTreeMap<u32, Option<String>> = status
        .partitions
        .iter()
        .map(|p| (p.partition, p.worker.clone()))
        .collect();
    for p in 0..input_partitions {
        holders.entry(p).or_insert(None);
    }
    let partitions: Vec<u32> = holders.keys().copied().collect();
    let ask = crate::state::Ask::of(&name, q, partitions)?;
    let http_of: std::collections::HashMap<String, String> = status
        .workers
        .iter()
        .flatten()
        .filter_map(|s| Some((s.id.clone(), s.http.clone()?)))
        .collect();
    let me = w.settings.id.clone();
    let auth = headers.get(axum::http::header::AUTHORIZATION).cloned();
    let forwarded = headers.contains_key(FORWARDED);
    // One partition's part of the answer: here, or from its holder.
    let part = |p: u32, ask: crate::state::Ask| {
        let (w, name, me, auth) = (w.clone(), name.clone(), me.clone(), auth.clone());
        // This worker's own stores first (the reports may lag a rebalance); a read another
        // worker forwarded here is answered from them only, never forwarded again.
        let holder = if w.state_of(&name, p).is_some() {
            Some(me.clone())
        } else if forwarded {
            None
        } else {
            holders.get(&p).cloned().flatten()
        };
        let http: Option<String> = holder
            .as_ref()
            .and_then(|h| http_of.get(h.as_str()).cloned());
        async move {
            match holder {
                Some(h) if h == me => {
                    let page = blocking(move || {
                        crate::state::collect(&|p| w.state_of(&name, p), name.clone(), ask)
                    })
                    .await?;
                    serde_json::to_value(page).map_err(|e| ApiError::internal(e.to_string()))
                }
                Some(h) => match http {
                    Some(addr) => forward(&addr, &name, p, &ask, auth).await,
                    None => Err(unavailable(p, &format!("worker {h} serves no API"))),
                },
                None => Err(unavailable(p, "no worker holds it now")),
            }
        }
    };
    let only =
        |p: u32, ask: &crate::state::Ask, after: Option<Vec<u8>>, limit: usize| crate::state::Ask {
            only: Some(p),
            first: p,
            after,
            limit,
            ..ask.clone()
        };
    let listed: Vec<u32> = ask
        .partitions
        .iter()
        .copied()
        .filter(|p| *p >= ask.first && ask.only.is_none_or(|o| o == *p))
        .collect();
    let mut entries: Vec<serde_json::Value> = Vec::new();
    let mut next = serde_json::Value::Null;
    if ask.key.is_some() {
        for p in ask.partitions.iter().copied() {
            if ask.only.is_some_and(|o| o != p) {
                continue;
            }
            match part(p, only(p, &ask, None, ask.limit)).await {
                Ok(page) => entries.extend(page["entries"].as_array().cloned().unwrap_or_default()),
                Err(e) if e.status == axum::http::StatusCode::NOT_FOUND => {}
                Err(e) => return Err(e),
            }
        }
        if entries.is_empty() {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "unknown_key",
                format!(
                    "transform {name} holds no state under that key, nor composite keys (windows, sessions) of it"
                ),
            ));
        }
        entries.truncate(ask.limit);
    } else {
        for (i, &p) in listed.iter().enumerate() {
            let want = ask.limit - entries.len();
            let after = if p == ask.first {
                ask.after.clone()
            } else {
                None
            };
            let page = part(p, only(p, &ask, after, want)).await?;
            entries.extend(page["entries"].as_array().cloned().unwrap_or_default());
            if !page["next"].is_null() {
                next = page["next"].clone();
                break;
            }
            if entries.len() >= ask.limit {
                if let Some(&from) = listed.get(i + 1) {
                    next = serde_json::json!({ "from_partition": from });
                }
                break;
            }
        }
    }
    Ok(Json(serde_json::json!({
        "transform": name,
        "entries": entries,
        "next": next,
    })))
}

/// Marks a state read one worker forwarded to another.
const FORWARDED: &str = "x-sluice-forwarded";

fn unavailable(partition: u32, why: &str) -> ApiError {
    let mut e = ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "partition_unavailable",
        format!("partition {partition}'s state cannot be read now: {why}; try again shortly"),
    );
    e.retry_after = Some(2);
    e
}

/// Asks the worker at `addr` for one partition's part of a state read.
async fn forward(
    addr: &str,
    name: &str,
    partition: u32,
    ask: &crate::state::Ask,
    auth: Option<axum::http::HeaderValue>,
) -> Result<serde_json::Value, ApiError> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut query: Vec<(&str, String)> = vec![
        ("partition", partition.to_string()),
        ("limit", ask.limit.to_string()),
    ];
    if let Some(k) = &ask.key {
        query.push(("key_base64", b64(k)));
    }
    if let Some(p) = &ask.prefix {
        query.push(("prefix_base64", b64(p)));
    }
    if let Some(a) = &ask.after {
        query.push(("after_base64", b64(a)));
    }
    let mut url = reqwest::Url::parse(&format!("http://{addr}/v1/transforms/{name}/state"))
        .map_err(|e| unavailable(partition, &format!("its worker's address {addr}: {e}")))?;
    for (k, v) in &query {
        url.query_pairs_mut().append_pair(k, v);
    }
    let mut req = reqwest::Client::new()
        .get(url)
        .timeout(std::time::Duration::from_secs(10));
    if let Some(a) = auth {
        req = req.header(reqwest::header::AUTHORIZATION, a.as_bytes());
    }
    req = req.header(FORWARDED, "1");
    let resp = req.send().await.map_err(|e| {
        unavailable(
            partition,
            &format!("its worker at {addr} did not answer: {e}"),
        )
    })?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.map_err(|e| {
        unavailable(
            partition,
            &format!("its worker at {addr} answered badly: {e}"),
        )
    })?;
    if status.is_success() {
        return Ok(body);
    }
    // The codes a partition's read can answer with, as this API names them.
    let code = match body["error"]["code"].as_str().unwrap_or_default() {
        "unknown_key" => "unknown_key",
        "unknown_partition" => "unknown_partition",
        "unknown_transform" => "unknown_transform",
        "not_stateful" => "not_stateful",
        "bad_request" => "bad_request",
        "unauthorized" => "unauthorized",
        "forbidden" => "forbidden",
        _ => "partition_unavailable",
    };
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or("the partition's worker refused the read")
        .to_string();
    Err(ApiError::new(
        axum::http::StatusCode::from_u16(status.as_u16())
            .unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
        code,
        message,
    ))
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
        let spec: TransformSpec = parse_spec(&spec)?;
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
