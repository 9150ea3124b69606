//! `http-sink`: POSTs batches of a topic's records to a URL. 2xx advances the position (kept
//! in a file per partition), 5xx/408/429 and connection errors are retried with backoff, any
//! other 4xx refuses the batch (bisected down to the record, which goes to the dead-letter
//! topic with the response). Delivery is at-least-once: each request carries the partition
//! and offset range in `Sluice-*` headers so a receiver can drop repeats.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::sink::{Failure, Sink};
use super::{BatchSpec, SinkStart, TaskEnv, http_error, redact_url};
use sluice_log::batch::StoredRecord;

/// How a batch is laid out in the request body.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SinkFormat {
    #[default]
    JsonArray,
    Ndjson,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkSpec {
    pub topic: String,
    pub url: String,
    /// Extra request headers (e.g. `Authorization`); never shown by GET.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub format: SinkFormat,
    #[serde(default)]
    pub batch: BatchSpec,
    /// Where refused records go; default `<topic>.sink.dlq`.
    #[serde(default)]
    pub dead_letter: Option<String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Send `{"partition","offset","timestamp","key","value","headers"}` objects instead of
    /// the bare values.
    #[serde(default)]
    pub envelope: bool,
    /// Where to begin when no position is stored.
    #[serde(default)]
    pub start: SinkStart,
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl HttpSinkSpec {
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| sluice_deploy::names::sink_dead_letter_topic(&self.topic))
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        let u = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("url {}: {e}", redact_url(&self.url)))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("url scheme {} is not http or https", u.scheme()));
        }
        header_map(&self.headers)?;
        self.batch.validate()?;
        if self.timeout_ms == 0 || self.timeout_ms > 600_000 {
            return Err("timeout_ms must be 1..=600000".into());
        }
        Ok(())
    }
}

fn header_map(h: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut m = HeaderMap::new();
    for (k, v) in h {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("headers: {k:?} is not a valid header name"))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| format!("headers: the value of {k} is not a valid header value"))?;
        m.insert(name, value);
    }
    Ok(m)
}

/// A record's value as JSON: embedded as-is when it is JSON, else as a string; null for a
/// tombstone.
pub(super) fn value_json(v: Option<&[u8]>) -> Value {
    match v {
        None => Value::Null,
        Some(b) => serde_json::from_slice(b)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned())),
    }
}

pub struct HttpSink {
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
    format: SinkFormat,
    envelope: bool,
    timeout: Duration,
    partition: u32,
    topic: String,
    position_file: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Position {
    position: u64,
}

impl HttpSink {
    pub fn new(env: &TaskEnv, spec: &HttpSinkSpec, partition: u32) -> HttpSink {
        HttpSink {
            client: env.http.clone(),
            url: spec.url.clone(),
            // Validated at deploy time.
            headers: header_map(&spec.headers).unwrap_or_default(),
            format: spec.format,
            envelope: spec.envelope,
            timeout: Duration::from_millis(spec.timeout_ms),
            partition,
            topic: spec.topic.clone(),
            position_file: env.dir.join(format!("p{partition}.json")),
        }
    }

    fn item(&self, r: &StoredRecord) -> Value {
        let value = value_json(r.value.as_deref());
        if !self.envelope {
            return value;
        }
        let headers: serde_json::Map<String, Value> = r
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_ref().map_or(Value::Null, |v| {
                        Value::String(String::from_utf8_lossy(v).into_owned())
                    }),
                )
            })
            .collect();
        json!({
            "partition": self.partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "key": r.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
            "value": value,
            "headers": headers,
        })
    }

    fn body(&self, records: &[StoredRecord]) -> (Vec<u8>, &'static str) {
        match self.format {
            SinkFormat::JsonArray => {
                let items: Vec<Value> = records.iter().map(|r| self.item(r)).collect();
                (
                    serde_json::to_vec(&items).unwrap_or_default(),
                    "application/json",
                )
            }
            SinkFormat::Ndjson => {
                let mut out = Vec::new();
                for r in records {
                    if serde_json::to_writer(&mut out, &self.item(r)).is_ok() {
                        out.push(b'\n');
                    }
                }
                (out, "application/x-ndjson")
            }
        }
    }

    async fn write_position(&self, next: u64) -> Result<(), String> {
        let path = self.position_file.clone();
        let bytes = serde_json::to_vec(&Position { position: next }).map_err(|e| e.to_string())?;
        tokio::task::spawn_blocking(move || sluice_common::fs::write_file(&path, &bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("writing the sink position: {e}"))
    }
}

#[async_trait::async_trait]
impl Sink for HttpSink {
    async fn load_position(&mut self) -> Result<Option<u64>, String> {
        match tokio::fs::read(&self.position_file).await {
            Ok(b) => serde_json::from_slice::<Position>(&b)
                .map(|p| Some(p.position))
                .map_err(|e| format!("{}: {e}", self.position_file.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", self.position_file.display())),
        }
    }

    async fn deliver(&mut self, records: &[StoredRecord], next: u64) -> Result<(), Failure> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let (body, content_type) = self.body(records);
        let resp = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, content_type)
            .header("Sluice-Topic", &self.topic)
            .header("Sluice-Partition", self.partition.to_string())
            .header("Sluice-First-Offset", first.offset.to_string())
            .header("Sluice-Last-Offset", last.offset.to_string())
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                Failure::Retry(format!("POST {}: {}", redact_url(&self.url), http_error(e)))
            })?;
        let status = resp.status();
        if status.is_success() {
            return self.write_position(next).await.map_err(Failure::Retry);
        }
        let mut text = resp.text().await.unwrap_or_default();
        if text.len() > 1024 {
            let cut = (0..=1024)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text.truncate(cut);
        }
        let msg = format!("HTTP {status} from {}: {text}", redact_url(&self.url));
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(Failure::Retry(msg))
        } else {
            Err(Failure::Reject(msg))
        }
    }

    async fn store_position(&mut self, next: u64) -> Result<(), String> {
        self.write_position(next).await
    }
}
