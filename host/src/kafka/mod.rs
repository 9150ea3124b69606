//! The Kafka wire protocol in front of the log: unmodified Kafka clients produce and fetch
//! the same topics as the HTTP API. Framing and bounds are ours; the `kafka-protocol` crate
//! decodes requests and encodes responses.
//!
//! Served so far: ApiVersions, Metadata, Produce, Fetch, ListOffsets, InitProducerId.
//! Consumer groups (FindCoordinator, Join/Sync/Heartbeat/Leave, OffsetCommit/Fetch) are not
//! advertised yet, so clients read with explicitly assigned partitions.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ProducerId, RequestHeader, RequestKind, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::log::{Log, LogError, Topic, TopicConfig};

/// Largest request frame accepted; a bigger length closes the connection.
const MAX_FRAME: usize = 100 << 20;

mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
}

/// The versions served, per API key.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
];

fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|(k, lo, hi)| *k == key && (*lo..=*hi).contains(&version))
}

/// Settings of the Kafka listener.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Host and port given to clients in Metadata.
    pub advertise: (String, i32),
    /// Create unknown topics on Metadata or Produce.
    pub auto_create: bool,
    pub default_partitions: u32,
}

struct Broker {
    log: Arc<Log>,
    cfg: KafkaConfig,
    next_producer_id: AtomicI64,
    shutdown: CancellationToken,
}

/// Accepts Kafka connections until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    log: Arc<Log>,
    cfg: KafkaConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let token = CancellationToken::new();
    let broker = Arc::new(Broker {
        log,
        cfg,
        next_producer_id: AtomicI64::new(crate::log::now_ms()),
        shutdown: token.clone(),
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => { token.cancel(); return; }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let b = broker.clone();
                tokio::spawn(async move {
                    if let Err(e) = b.serve(stream).await {
                        tracing::debug!(%peer, error = %e, "kafka connection closed");
                    }
                });
            }
        }
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl Broker {
    async fn serve(self: Arc<Self>, mut stream: TcpStream) -> anyhow::Result<()> {
        stream.set_nodelay(true)?;
        loop {
            let mut len = [0u8; 4];
            tokio::select! {
                r = stream.read_exact(&mut len) => { r?; }
                _ = self.shutdown.cancelled() => return Ok(()),
            }
            let len = i32::from_be_bytes(len);
            if len < 8 || len as usize > MAX_FRAME {
                tracing::warn!(len, "kafka frame length out of bounds; closing connection");
                anyhow::bail!("frame length {len} out of bounds");
            }
            let mut frame = vec![0u8; len as usize];
            stream.read_exact(&mut frame).await?;
            let mut buf = Bytes::from(frame);
            let key = i16::from_be_bytes([buf[0], buf[1]]);
            let version = i16::from_be_bytes([buf[2], buf[3]]);
            let Ok(api) = ApiKey::try_from(key) else {
                tracing::warn!(key, "unknown kafka api key; closing connection");
                anyhow::bail!("unknown api key {key}");
            };
            if api == ApiKey::ApiVersions && !supported(api, version) {
                // Too new for us: answer v0 with our ranges; the client retries.
                let correlation = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                let body = self.api_versions(code::UNSUPPORTED_VERSION);
                write_response(&mut stream, correlation, 0, &body, 0).await?;
                continue;
            }
            if !supported(api, version) {
                anyhow::bail!("unsupported {api:?} v{version}");
            }
            // The codec reads lengths from the wire; a decoding bug must cost this connection,
            // never the process.
            let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let header = RequestHeader::decode(&mut buf, api.request_header_version(version))?;
                let request = RequestKind::decode(api, &mut buf, version)?;
                anyhow::Ok((header, request))
            }));
            let Ok(decoded) = decoded else {
                tracing::warn!(
                    ?api,
                    version,
                    "kafka request decoder panicked; closing connection"
                );
                anyhow::bail!("undecodable {api:?} request");
            };
            let (header, request) = decoded?;
            let correlation = header.correlation_id;
            let resp_header = api.response_header_version(version);
            match request {
                RequestKind::ApiVersions(_) => {
                    let body = self.api_versions(code::NONE);
                    // The ApiVersions response header is always v0.
                    write_response(&mut stream, correlation, 0, &body, version).await?;
                }
                RequestKind::Metadata(r) => {
                    let body = self.clone().metadata(r).await;
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::Produce(r) => {
                    let acks = r.acks;
                    let body = self.clone().produce(r).await;
                    if acks != 0 {
                        write_response(&mut stream, correlation, resp_header, &body, version)
                            .await?;
                    }
                }
                RequestKind::Fetch(r) => {
                    let body = self.clone().fetch(r).await;
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::ListOffsets(r) => {
                    let body = self.clone().list_offsets(r).await;
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::InitProducerId(_) => {
                    let id = self.next_producer_id.fetch_add(1, Ordering::Relaxed);
                    let body = InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(id))
                        .with_producer_epoch(0);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                other => anyhow::bail!("unhandled request {other:?}"),
            }
        }
    }

    fn api_versions(&self, error: i16) -> ApiVersionsResponse {
        ApiVersionsResponse::default()
            .with_error_code(error)
            .with_api_keys(
                SUPPORTED
                    .iter()
                    .map(|(k, lo, hi)| {
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(*lo)
                            .with_max_version(*hi)
                    })
                    .collect(),
            )
    }

    /// A topic, created with the default settings when auto-creation is on.
    fn topic(&self, t: &str, create: bool) -> Result<Arc<Topic>, LogError> {
        match self.log.topic(t) {
            Err(LogError::UnknownTopic(_)) if create && self.cfg.auto_create => {
                let config = TopicConfig {
                    partitions: self.cfg.default_partitions,
                    ..TopicConfig::default()
                };
                match self.log.create_topic(t, config) {
                    Err(LogError::TopicExists(_)) => self.log.topic(t),
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn metadata(self: Arc<Self>, r: MetadataRequest) -> MetadataResponse {
        let b = self.clone();
        tokio::task::spawn_blocking(move || {
            let topics: Vec<(String, Result<Arc<Topic>, LogError>)> = match &r.topics {
                None => b
                    .log
                    .topics()
                    .into_iter()
                    .map(|t| (t.name.clone(), Ok(t)))
                    .collect(),
                Some(list) => list
                    .iter()
                    .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                    .map(|n| {
                        let t = b.topic(&n, r.allow_auto_topic_creation);
                        (n, t)
                    })
                    .collect(),
            };
            let broker = MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_string(b.cfg.advertise.0.clone()))
                .with_port(b.cfg.advertise.1);
            MetadataResponse::default()
                .with_brokers(vec![broker])
                .with_cluster_id(Some(StrBytes::from_static_str("sluice")))
                .with_controller_id(BrokerId(0))
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(n, t)| match t {
                            Ok(t) => MetadataResponseTopic::default()
                                .with_name(Some(name(&n)))
                                .with_partitions(
                                    (0..t.partitions.len() as i32)
                                        .map(|p| {
                                            MetadataResponsePartition::default()
                                                .with_partition_index(p)
                                                .with_leader_id(BrokerId(0))
                                                .with_replica_nodes(vec![BrokerId(0)])
                                                .with_isr_nodes(vec![BrokerId(0)])
                                        })
                                        .collect(),
                                ),
                            Err(LogError::InvalidTopicName { .. }) => {
                                MetadataResponseTopic::default()
                                    .with_name(Some(name(&n)))
                                    .with_error_code(code::INVALID_TOPIC_EXCEPTION)
                            }
                            Err(_) => MetadataResponseTopic::default()
                                .with_name(Some(name(&n)))
                                .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
                        })
                        .collect(),
                )
        })
        .await
        .unwrap_or_default()
    }

    async fn produce(self: Arc<Self>, r: ProduceRequest) -> ProduceResponse {
        let b = self.clone();
        tokio::task::spawn_blocking(move || {
            let responses = r
                .topic_data
                .into_iter()
                .map(|td| {
                    let topic_name = td.name.0.to_string();
                    let topic = b.topic(&topic_name, true);
                    let partitions = td
                        .partition_data
                        .into_iter()
                        .map(|pd| {
                            let resp = PartitionProduceResponse::default().with_index(pd.index);
                            let part = match &topic {
                                Ok(t) => t.partition(i64::from(pd.index)).cloned(),
                                Err(_) => return resp.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
                            };
                            let Ok(part) = part else {
                                return resp.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                            };
                            let Some(records) = pd.records.filter(|r| !r.is_empty()) else {
                                return resp.with_error_code(code::CORRUPT_MESSAGE);
                            };
                            // Like a Kafka broker, refuse batches whose records do not decode
                            // (the CRC only proves the bytes arrived as sent).
                            if let Err(e) = validate_records(&records) {
                                return resp
                                    .with_error_code(code::CORRUPT_MESSAGE)
                                    .with_error_message(Some(StrBytes::from_string(e)));
                            }
                            match part.append(BytesMut::from(&records[..])) {
                                Ok(a) => resp
                                    .with_base_offset(a.base_offset as i64)
                                    .with_log_append_time_ms(-1)
                                    .with_log_start_offset(part.start_offset() as i64),
                                Err(LogError::InvalidBatch(e)) => resp
                                    .with_error_code(code::CORRUPT_MESSAGE)
                                    .with_error_message(Some(StrBytes::from_string(e.to_string()))),
                                Err(e) => {
                                    tracing::error!(topic = %topic_name, error = %e, "kafka produce failed");
                                    resp.with_error_code(code::UNKNOWN_SERVER_ERROR)
                                }
                            }
                        })
                        .collect();
                    TopicProduceResponse::default().with_name(td.name).with_partition_responses(partitions)
                })
                .collect();
            ProduceResponse::default().with_responses(responses)
        })
        .await
        .unwrap_or_default()
    }

    fn fetch_once(
        &self,
        r: &FetchRequest,
    ) -> (FetchResponse, usize, Vec<tokio::sync::watch::Receiver<u64>>) {
        let mut total = 0usize;
        let mut watches = Vec::new();
        let max_total = usize::try_from(r.max_bytes).unwrap_or(usize::MAX).max(1);
        let responses = r
            .topics
            .iter()
            .map(|ft| {
                let topic = self.log.topic(&ft.topic.0);
                let partitions = ft
                    .partitions
                    .iter()
                    .map(|fp| {
                        let resp = PartitionData::default().with_partition_index(fp.partition);
                        let part = topic
                            .as_ref()
                            .ok()
                            .and_then(|t| t.partition(i64::from(fp.partition)).ok());
                        let Some(part) = part else {
                            return resp.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                        };
                        watches.push(part.subscribe());
                        let hw = part.high_watermark() as i64;
                        let resp = resp
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(part.start_offset() as i64)
                            .with_aborted_transactions(Some(Vec::new()));
                        let room = max_total.saturating_sub(total);
                        let max = usize::try_from(fp.partition_max_bytes)
                            .unwrap_or(0)
                            .min(room)
                            .max(1);
                        match u64::try_from(fp.fetch_offset)
                            .map_err(|_| ())
                            .and_then(|o| part.read(o, max).map_err(|_| ()))
                        {
                            Ok(read) => {
                                total += read.data.len();
                                resp.with_records(Some(read.data))
                            }
                            Err(()) => resp.with_error_code(code::OFFSET_OUT_OF_RANGE),
                        }
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(ft.topic.clone())
                    .with_partitions(partitions)
            })
            .collect();
        (
            FetchResponse::default().with_responses(responses),
            total,
            watches,
        )
    }

    async fn fetch(self: Arc<Self>, r: FetchRequest) -> FetchResponse {
        let deadline = Instant::now()
            + Duration::from_millis(u64::try_from(r.max_wait_ms).unwrap_or(0).min(30_000));
        let r = Arc::new(r);
        loop {
            let (b, req) = (self.clone(), r.clone());
            let Ok((resp, total, mut watches)) =
                tokio::task::spawn_blocking(move || b.fetch_once(&req)).await
            else {
                return FetchResponse::default().with_error_code(code::UNKNOWN_SERVER_ERROR);
            };
            let now = Instant::now();
            if total >= usize::try_from(r.min_bytes).unwrap_or(1).max(1)
                || now >= deadline
                || watches.is_empty()
            {
                return resp;
            }
            for w in &mut watches {
                w.borrow_and_update();
            }
            let changed =
                futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = tokio::time::sleep(deadline - now) => {}
                _ = changed => {}
                _ = self.shutdown.cancelled() => return resp,
            }
        }
    }

    async fn list_offsets(self: Arc<Self>, r: ListOffsetsRequest) -> ListOffsetsResponse {
        let b = self.clone();
        tokio::task::spawn_blocking(move || {
            let topics = r
                .topics
                .iter()
                .map(|t| {
                    let topic = b.log.topic(&t.name.0);
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let resp = ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index);
                            let part = topic
                                .as_ref()
                                .ok()
                                .and_then(|tp| tp.partition(i64::from(p.partition_index)).ok());
                            let Some(part) = part else {
                                return resp.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                            };
                            let offset = match p.timestamp {
                                -2 => Some(part.start_offset()),
                                -1 => Some(part.high_watermark()),
                                ts => match part.offset_for_timestamp(ts) {
                                    Ok(o) => o,
                                    Err(_) => {
                                        return resp.with_error_code(code::UNKNOWN_SERVER_ERROR);
                                    }
                                },
                            };
                            match offset {
                                Some(o) => resp.with_offset(o as i64).with_timestamp(-1),
                                None => resp.with_offset(-1).with_timestamp(-1),
                            }
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect();
            ListOffsetsResponse::default().with_topics(topics)
        })
        .await
        .unwrap_or_default()
    }
}

/// Checks that every record of every batch decodes and fits its batch's offset span.
fn validate_records(data: &Bytes) -> Result<(), String> {
    for (h, b) in crate::log::batch::split(data.clone()).map_err(|e| e.to_string())? {
        let recs = crate::log::batch::decode(&b).map_err(|e| e.to_string())?;
        if !h.is_control() && recs.len() != h.record_count as usize {
            return Err(format!(
                "batch claims {} records, holds {}",
                h.record_count,
                recs.len()
            ));
        }
        if recs
            .iter()
            .any(|r| r.offset < h.base_offset || r.offset > h.last_offset())
        {
            return Err("record offset outside its batch".into());
        }
    }
    Ok(())
}

async fn write_response<T: Encodable>(
    stream: &mut TcpStream,
    correlation: i32,
    header_version: i16,
    body: &T,
    version: i16,
) -> anyhow::Result<()> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut buf, header_version)?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&buf).await?;
    let _ = buf.remaining();
    Ok(())
}
