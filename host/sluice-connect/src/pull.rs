//! `http-pull`: polls a URL on an interval (with jitter) and appends the records it returns.
//!
//! Cursor: conditional GET with the last `ETag` / `Last-Modified` (a 304 imports nothing),
//! and optionally a JSON field of the last imported record sent back as a query parameter.
//! While pages come back non-empty with a field cursor, the next page is fetched at once.
//!
//! Exactly once across crashes: before appending a page, its records and the cursor after it
//! are written (fsync) to `pull.json` as pending, each record carrying a `sluice-pull` header
//! `connector:seq:index`. After the appends the cursor is committed. A restart that finds a
//! pending page scans the topic from the end offsets noted with it, appends only the records
//! that are missing, and commits — so a page is neither imported twice nor skipped.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{TaskEnv, backoff, http_error, json_path, redact_url};
use sluice_log::batch::{self, NewRecord};
use sluice_log::{Topic, now_ms};

/// Header naming the poll and place of an imported record.
pub const PULL_HEADER: &str = "sluice-pull";

/// How the response body holds records.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum PullFormat {
    Named(NamedFormat),
    /// A JSON object whose (dotted) field holds the array of records.
    Field {
        array_field: String,
    },
}

impl<'de> Deserialize<'de> for PullFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Untagged enums only say "did not match any variant"; name what is accepted.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Field {
            array_field: String,
        }
        let v = Value::deserialize(d)?;
        let wanted = "expected \"ndjson\", \"json-array\" or {\"array_field\": \"path\"}";
        match v {
            Value::String(s) => match s.as_str() {
                "ndjson" => Ok(PullFormat::Named(NamedFormat::Ndjson)),
                "json-array" => Ok(PullFormat::Named(NamedFormat::JsonArray)),
                other => Err(serde::de::Error::custom(format!(
                    "unknown format {other:?}: {wanted}"
                ))),
            },
            Value::Object(_) => serde_json::from_value::<Field>(v)
                .map(|f| PullFormat::Field {
                    array_field: f.array_field,
                })
                .map_err(|e| serde::de::Error::custom(format!("format: {e}; {wanted}"))),
            _ => Err(serde::de::Error::custom(format!("format: {wanted}"))),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NamedFormat {
    /// One JSON document per line.
    Ndjson,
    /// A JSON array of records.
    JsonArray,
}

/// A JSON field of the last imported record, sent back as a query parameter.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CursorSpec {
    /// Dotted path of the field in each record (e.g. `id`, `meta.updated_at`).
    pub field: String,
    /// Query parameter that carries it (e.g. `since`).
    pub param: String,
    /// Value for the first poll; none = no parameter on the first poll.
    #[serde(default)]
    pub initial: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullSpec {
    pub topic: String,
    pub url: String,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Random extra delay added to each interval, up to this much; default a tenth of it.
    #[serde(default)]
    pub jitter_ms: Option<u64>,
    /// Default: a body starting with `[` is a JSON array, anything else NDJSON.
    #[serde(default)]
    pub format: Option<PullFormat>,
    /// Dotted path of the field that becomes the record key.
    #[serde(default)]
    pub key_field: Option<String>,
    #[serde(default)]
    pub cursor: Option<CursorSpec>,
    /// Extra request headers (e.g. `Authorization`); never shown by GET.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest response body accepted.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
}

fn default_interval_ms() -> u64 {
    60_000
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_bytes() -> usize {
    16 << 20
}

impl PullSpec {
    pub(super) fn validate(&self) -> Result<(), String> {
        let u = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("url {}: {e}", redact_url(&self.url)))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("url scheme {} is not http or https", u.scheme()));
        }
        if !(10..=86_400_000).contains(&self.interval_ms) {
            return Err("interval_ms must be 10..=86400000".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > 600_000 {
            return Err("timeout_ms must be 1..=600000".into());
        }
        if self.max_bytes == 0 || self.max_bytes > 256 << 20 {
            return Err("max_bytes must be 1..=268435456".into());
        }
        for (k, v) in &self.headers {
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("headers: {k:?} is not a valid header name"))?;
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| format!("headers: the value of {k} is not a valid header value"))?;
        }
        if let Some(c) = &self.cursor
            && (c.field.is_empty() || c.param.is_empty())
        {
            return Err("cursor needs field and param".into());
        }
        Ok(())
    }
}

/// Where the source stands: what to ask for next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Cursor {
    field: Option<String>,
    etag: Option<String>,
    last_modified: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingRecord {
    partition: u32,
    key: Option<String>,
    value: String,
}

/// A page whose records may or may not all be in the topic yet.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    seq: u64,
    /// End offset of each partition before the page was appended.
    ends: BTreeMap<u32, u64>,
    records: Vec<PendingRecord>,
    after: Cursor,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PullState {
    /// Polls that imported records so far (numbers the pages).
    seq: u64,
    cursor: Cursor,
    pending: Option<Pending>,
}

struct Puller {
    env: TaskEnv,
    spec: PullSpec,
    topic: Arc<Topic>,
    state: PullState,
}

/// Runs until the connector stops.
pub async fn run(mut env: TaskEnv, spec: PullSpec, topic: Arc<Topic>) {
    let path = env.dir.join("pull.json");
    let state = match tokio::fs::read(&path).await {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(s) => s,
            Err(e) => {
                env.health
                    .failed(&env.name, &format!("{}: {e}; not started", path.display()));
                return;
            }
        },
        Err(_) => PullState::default(),
    };
    let interval = Duration::from_millis(spec.interval_ms);
    let jitter = spec.jitter_ms.unwrap_or(spec.interval_ms / 10);
    let mut p = Puller {
        env: env.clone(),
        spec,
        topic,
        state,
    };
    let mut attempt = 0;
    // A page cut short by a crash is completed before anything else.
    while let Some(pending) = p.state.pending.clone() {
        match p.finish(pending).await {
            Ok(()) => break,
            Err(e) => {
                env.health.failed(&env.name, &e);
                if !env.sleep(backoff(attempt, interval)).await {
                    return;
                }
                attempt += 1;
            }
        }
    }
    attempt = 0;
    loop {
        if !env.wait_unpaused().await {
            return;
        }
        env.health.next_run_ms.store(0, Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        let result = tokio::select! {
            r = p.poll() => r,
            _ = env.cancel.cancelled() => return,
        };
        let wait = match result {
            Ok(n) => {
                env.health.ok();
                attempt = 0;
                if n > 0 && p.spec.cursor.is_some() {
                    continue; // more pages may be waiting
                }
                let extra = if jitter > 0 {
                    fastrand::u64(0..=jitter)
                } else {
                    0
                };
                (interval + Duration::from_millis(extra)).saturating_sub(started.elapsed())
            }
            Err(e) => {
                env.health.failed(&env.name, &e);
                attempt += 1;
                backoff(attempt - 1, interval)
            }
        };
        env.health
            .next_run_ms
            .store(now_ms() + wait.as_millis() as i64, Ordering::Relaxed);
        if !env.sleep(wait).await {
            return;
        }
    }
}

impl Puller {
    fn marker(&self, seq: u64, i: usize) -> String {
        format!("{}:{seq}:{i}", self.env.name)
    }

    async fn save(&self) -> Result<(), String> {
        let path = self.env.dir.join("pull.json");
        let bytes = serde_json::to_vec(&self.state).map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || sluice_common::fs::write_file(&path, &bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("saving the source cursor: {e}"))
    }

    /// One request; returns how many records it imported.
    async fn poll(&mut self) -> Result<usize, String> {
        let url = redact_url(&self.spec.url);
        let mut target = reqwest::Url::parse(&self.spec.url).map_err(|e| format!("{url}: {e}"))?;
        let c = &self.state.cursor;
        if let Some(spec) = &self.spec.cursor
            && let Some(v) = c.field.as_ref().or(spec.initial.as_ref())
        {
            target.query_pairs_mut().append_pair(&spec.param, v);
        }
        let mut req = self
            .env
            .http
            .get(target)
            .timeout(Duration::from_millis(self.spec.timeout_ms));
        for (k, v) in &self.spec.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some(e) = &c.etag {
            req = req.header(IF_NONE_MATCH, e.as_str());
        }
        if let Some(m) = &c.last_modified {
            req = req.header(IF_MODIFIED_SINCE, m.as_str());
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", http_error(e)))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(0);
        }
        if !status.is_success() {
            return Err(format!("GET {url}: HTTP {status}"));
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut after = self.state.cursor.clone();
        after.etag = header(ETAG);
        after.last_modified = header(LAST_MODIFIED);
        // A server that ignores conditional requests but sends the same validator again
        // sent the same document: nothing new.
        let same = |new: &Option<String>, old: &Option<String>| new.is_some() && new == old;
        if same(&after.etag, &self.state.cursor.etag)
            || (after.etag.is_none()
                && same(&after.last_modified, &self.state.cursor.last_modified))
        {
            return Ok(0);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {}", http_error(e)))?
        {
            if body.len() + chunk.len() > self.spec.max_bytes {
                return Err(format!(
                    "GET {url}: response larger than max_bytes {}",
                    self.spec.max_bytes
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let docs =
            parse(&body, self.spec.format.as_ref()).map_err(|e| format!("GET {url}: {e}"))?;
        if let (Some(cs), Some(last)) = (&self.spec.cursor, docs.last()) {
            match json_path(last, &cs.field).and_then(scalar) {
                Some(v) => after.field = Some(v),
                None => {
                    return Err(format!(
                        "GET {url}: the last record has no cursor field {}; nothing imported",
                        cs.field
                    ));
                }
            }
        }
        if docs.is_empty() {
            if after != self.state.cursor {
                self.state.cursor = after;
                self.save().await?;
            }
            return Ok(0);
        }
        let records: Vec<PendingRecord> = docs
            .iter()
            .map(|d| {
                let key = self
                    .spec
                    .key_field
                    .as_ref()
                    .and_then(|f| json_path(d, f))
                    .and_then(scalar);
                PendingRecord {
                    partition: self
                        .topic
                        .pick_partition(key.as_ref().map(|k| k.as_bytes())),
                    key,
                    value: d.to_string(),
                }
            })
            .collect();
        let n = records.len();
        let pending = Pending {
            seq: self.state.seq,
            ends: self
                .topic
                .partitions
                .iter()
                .map(|p| (p.id, p.high_watermark()))
                .collect(),
            records,
            after,
        };
        self.state.pending = Some(pending.clone());
        self.save().await?;
        self.finish(pending).await?;
        Ok(n)
    }

    /// Appends whatever of a pending page is not in the topic yet, then commits its cursor.
    async fn finish(&mut self, pending: Pending) -> Result<(), String> {
        let topic = self.topic.clone();
        let prefix = format!("{}:{}:", self.env.name, pending.seq);
        let marker: Vec<String> = (0..pending.records.len())
            .map(|i| self.marker(pending.seq, i))
            .collect();
        let p2 = pending.clone();
        let appended = tokio::task::spawn_blocking(move || -> Result<usize, String> {
            // Which records of this page are already there?
            let mut present: HashSet<usize> = HashSet::new();
            for part in &topic.partitions {
                let mut from = p2.ends.get(&part.id).copied().unwrap_or(0);
                loop {
                    let (recs, next, hw) = part
                        .read_records(from.max(part.start_offset()), 10_000)
                        .map_err(|e| e.to_string())?;
                    for r in &recs {
                        for (k, v) in &r.headers {
                            if k == PULL_HEADER
                                && let Some(v) = v
                                && let Some(i) = std::str::from_utf8(v)
                                    .ok()
                                    .and_then(|s| s.strip_prefix(prefix.as_str()))
                                    .and_then(|i| i.parse::<usize>().ok())
                            {
                                present.insert(i);
                            }
                        }
                    }
                    if recs.is_empty() || next >= hw {
                        break;
                    }
                    from = next;
                }
            }
            let now = now_ms();
            let mut by_part: BTreeMap<u32, Vec<NewRecord>> = BTreeMap::new();
            for (i, r) in p2.records.iter().enumerate() {
                if present.contains(&i) {
                    continue;
                }
                by_part.entry(r.partition).or_default().push(NewRecord {
                    key: r.key.clone().map(Bytes::from),
                    value: Some(Bytes::from(r.value.clone())),
                    headers: vec![(
                        PULL_HEADER.to_string(),
                        Some(Bytes::from(marker[i].clone())),
                    )],
                    timestamp: Some(now),
                });
            }
            let mut n = 0;
            for (p, recs) in by_part {
                let part = topic
                    .partitions
                    .get(p as usize)
                    .ok_or_else(|| format!("topic {} has no partition {p}", topic.name))?;
                part.append(batch::build(recs.iter(), now))
                    .map_err(|e| format!("appending to {}/{p}: {e}", topic.name))?;
                n += recs.len();
            }
            Ok(n)
        })
        .await
        .map_err(|e| e.to_string())??;
        self.env
            .health
            .records
            .fetch_add(appended as u64, Ordering::Relaxed);
        self.state.seq = pending.seq + 1;
        self.state.cursor = pending.after;
        self.state.pending = None;
        self.save().await
    }
}

/// A JSON scalar as text (strings without quotes); none for null, objects and arrays.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The records of a response body.
fn parse(body: &[u8], format: Option<&PullFormat>) -> Result<Vec<Value>, String> {
    let trimmed = body.trim_ascii_start();
    let format = match format {
        Some(f) => f.clone(),
        None if trimmed.starts_with(b"[") => PullFormat::Named(NamedFormat::JsonArray),
        None => PullFormat::Named(NamedFormat::Ndjson),
    };
    match format {
        PullFormat::Named(NamedFormat::Ndjson) => body
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.trim_ascii().is_empty())
            .map(|(i, l)| {
                serde_json::from_slice(l).map_err(|e| format!("line {}: invalid JSON: {e}", i + 1))
            })
            .collect(),
        PullFormat::Named(NamedFormat::JsonArray) => {
            match serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))? {
                Value::Array(a) => Ok(a),
                _ => Err("expected a JSON array".into()),
            }
        }
        PullFormat::Field { array_field } => {
            let doc: Value =
                serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
            match json_path(&doc, &array_field) {
                Some(Value::Array(a)) => Ok(a.clone()),
                Some(_) => Err(format!("field {array_field} is not an array")),
                None => Err(format!("no field {array_field} in the response")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        let nd = parse(b"{\"a\":1}\n\n{\"a\":2}\n", None).unwrap();
        assert_eq!(nd.len(), 2);
        let arr = parse(b" [{\"a\":1},{\"a\":2},{\"a\":3}]", None).unwrap();
        assert_eq!(arr.len(), 3);
        let f = PullFormat::Field {
            array_field: "data.items".into(),
        };
        let obj = parse(b"{\"data\":{\"items\":[{\"a\":1}]}}", Some(&f)).unwrap();
        assert_eq!(obj, vec![serde_json::json!({"a":1})]);
        assert!(parse(b"{\"a\":", None).unwrap_err().contains("line 1"));
        assert!(
            parse(
                b"{\"a\":1}",
                Some(&PullFormat::Named(NamedFormat::JsonArray))
            )
            .unwrap_err()
            .contains("array")
        );
    }

    #[test]
    fn format_spec_reads_both_shapes() {
        let a: PullFormat = serde_json::from_str("\"json-array\"").unwrap();
        assert_eq!(a, PullFormat::Named(NamedFormat::JsonArray));
        let b: PullFormat = serde_json::from_str("{\"array_field\":\"items\"}").unwrap();
        let e = serde_json::from_str::<PullFormat>("\"csv\"").unwrap_err();
        assert!(e.to_string().contains("unknown format \"csv\""), "{e}");
        assert_eq!(
            b,
            PullFormat::Field {
                array_field: "items".into()
            }
        );
    }
}
