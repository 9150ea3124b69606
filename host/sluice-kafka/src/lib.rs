//! The Kafka wire protocol in front of the log: unmodified Kafka clients produce and fetch
//! the same topics as the HTTP API. Framing and bounds are ours; the `kafka-protocol` crate
//! decodes requests and encodes responses.
//!
//! Served: ApiVersions, Metadata, Produce, Fetch, ListOffsets, InitProducerId, and consumer
//! groups (FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups) through [`groups::Coordinator`].

pub mod groups;
mod idempotence;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FetchRequest, FetchResponse, InitProducerIdResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ProducerId, RequestHeader, RequestKind, ResponseHeader, TopicName,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, SaslAuthenticateResponse,
    SaslHandshakeResponse,
};
use kafka_protocol::messages::{
    DescribeGroupsResponse, FindCoordinatorResponse, GroupId, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, ListGroupsResponse, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sluice_auth::{Action, Auth, Principal};
use sluice_log::{Log, LogError, Topic, TopicConfig};

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
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_CONFIG: i16 = 40;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
}

/// The versions served, per API key.
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::CreateTopics, 2, 5),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

fn supported(key: ApiKey, version: i16) -> bool {
    SUPPORTED
        .iter()
        .any(|(k, lo, hi)| *k == key && (*lo..=*hi).contains(&version))
}

/// Settings of the Kafka listener.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Host and port given to clients in Metadata.
    pub advertise: (String, i32),
    /// Create unknown topics on Metadata or Produce.
    pub auto_create: bool,
    pub default_partitions: u32,
    /// Where committed offsets of consumer groups are kept.
    pub groups_dir: std::path::PathBuf,
    /// Identities; when set, clients must authenticate with SASL/PLAIN first.
    pub auth: Option<Arc<Auth>>,
    /// When set, connections speak TLS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Open connections; more are closed at once.
    pub max_connections: usize,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("advertise", &self.advertise)
            .field("auto_create", &self.auto_create)
            .field("auth", &self.auth.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

struct Broker {
    log: Arc<Log>,
    producers: idempotence::Producers,
    groups: groups::Coordinator,
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
    let coordinator = match groups::Coordinator::open(cfg.groups_dir.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "kafka group offsets unreadable; kafka listener not started");
            return;
        }
    };
    let broker = Arc::new(Broker {
        log,
        producers: Default::default(),
        groups: coordinator,
        cfg,
        next_producer_id: AtomicI64::new(sluice_log::now_ms()),
        shutdown: token.clone(),
    });
    tokio::pin!(shutdown);
    let connections = Arc::new(tokio::sync::Semaphore::new(broker.cfg.max_connections));
    let ticker = broker.clone();
    tokio::spawn(async move {
        while !ticker.shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ticker.groups.tick();
        }
    });
    loop {
        tokio::select! {
            _ = &mut shutdown => { token.cancel(); return; }
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, limit = broker.cfg.max_connections, "kafka connection limit reached; closing the new connection");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let b = broker.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let served = match b.cfg.tls.clone() {
                        None => b.serve(stream).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => b.serve(tls).await,
                                Ok(Err(e)) => Err(anyhow::Error::from(e).context("TLS handshake")),
                                Err(_) => Err(anyhow::anyhow!("TLS handshake timed out")),
                            }
                        }
                    };
                    if let Err(e) = served {
                        // A client hanging up or failing to log in is routine; anything else
                        // is worth a look.
                        if e.downcast_ref::<std::io::Error>().is_some() || e.to_string().starts_with("SASL") {
                            tracing::debug!(%peer, error = %e, "kafka connection closed");
                        } else {
                            tracing::warn!(%peer, error = %format!("{e:#}"), "kafka connection closed on error");
                        }
                    }
                });
            }
        }
    }
}

/// The topics a DeleteTopics request names (by name before v6, in `topics` since).
fn deleted_names(r: DeleteTopicsRequest, version: i16) -> Vec<TopicName> {
    if version >= 6 {
        r.topics.into_iter().filter_map(|t| t.name).collect()
    } else {
        r.topic_names
    }
}

/// The API's name as Kafka spells it, for metrics labels.
fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::InitProducerId => "InitProducerId",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        _ => "other",
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

impl Broker {
    /// May this connection's identity do `action`? Always when auth is off.
    fn allowed(&self, who: &Option<Arc<Principal>>, action: &Action) -> bool {
        match (&self.cfg.auth, who) {
            (None, _) => true,
            (Some(_), Some(p)) => p.allows(action),
            (Some(_), None) => false,
        }
    }

    /// SASL/PLAIN `authzid NUL user NUL password`: Ok(None) when auth is off (anyone may).
    fn sasl_plain(&self, bytes: &[u8]) -> Result<Option<Arc<Principal>>, String> {
        let Some(auth) = &self.cfg.auth else {
            return Ok(None);
        };
        let parts: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
        let [_, user, password] = parts.as_slice() else {
            return Err("malformed SASL/PLAIN message".into());
        };
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return Err("SASL/PLAIN user and password must be UTF-8".into());
        };
        match auth.authenticate_plain(user, password) {
            Some(p) => {
                tracing::debug!(identity = %p.name, "kafka client authenticated");
                Ok(Some(p))
            }
            None => {
                tracing::info!(user, "kafka SASL/PLAIN authentication failed");
                Err(format!("authentication failed for user {user}"))
            }
        }
    }

    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
        self: Arc<Self>,
        mut stream: S,
    ) -> anyhow::Result<()> {
        // The identity of this connection once SASL succeeded.
        let mut who: Option<Arc<Principal>> = None;
        let mut authenticated = self.cfg.auth.is_none();
        // After a v0 SaslHandshake the next frame is the bare SASL token.
        let mut raw_sasl = false;
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
            if raw_sasl {
                raw_sasl = false;
                match self.sasl_plain(&frame) {
                    Ok(p) => {
                        who = p;
                        authenticated = true;
                        stream.write_all(&0i32.to_be_bytes()).await?;
                        continue;
                    }
                    Err(e) => anyhow::bail!("SASL: {e}"),
                }
            }
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
            if !authenticated
                && !matches!(
                    api,
                    ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
                )
            {
                tracing::info!(
                    ?api,
                    "kafka request before SASL authentication; closing connection"
                );
                anyhow::bail!("{api:?} before SASL authentication");
            }
            let group_ok = self.allowed(&who, &Action::Group);
            let started = Instant::now();
            // A group request from an identity without group rights: the API's own error.
            macro_rules! group_denied {
                ($response:ty) => {{
                    let body =
                        <$response>::default().with_error_code(code::GROUP_AUTHORIZATION_FAILED);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }};
            }
            match request {
                RequestKind::SaslHandshake(r) => {
                    let plain = r.mechanism.as_str() == "PLAIN";
                    let body = SaslHandshakeResponse::default()
                        .with_error_code(if plain {
                            code::NONE
                        } else {
                            code::UNSUPPORTED_SASL_MECHANISM
                        })
                        .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                    raw_sasl = plain && version == 0;
                }
                RequestKind::SaslAuthenticate(_) if authenticated && who.is_some() => {
                    anyhow::bail!("SASL: already authenticated");
                }
                RequestKind::SaslAuthenticate(r) => match self.sasl_plain(&r.auth_bytes) {
                    Ok(p) => {
                        who = p;
                        authenticated = true;
                        let body = SaslAuthenticateResponse::default();
                        write_response(&mut stream, correlation, resp_header, &body, version)
                            .await?;
                    }
                    Err(e) => {
                        let body = SaslAuthenticateResponse::default()
                            .with_error_code(code::SASL_AUTHENTICATION_FAILED)
                            .with_error_message(Some(StrBytes::from_string(e.clone())));
                        write_response(&mut stream, correlation, resp_header, &body, version)
                            .await?;
                        anyhow::bail!("SASL: {e}");
                    }
                },
                RequestKind::SyncGroup(_) if !group_ok => group_denied!(SyncGroupResponse),
                RequestKind::Heartbeat(_) if !group_ok => group_denied!(HeartbeatResponse),
                RequestKind::LeaveGroup(_) if !group_ok => group_denied!(LeaveGroupResponse),
                RequestKind::ListGroups(_) if !group_ok => group_denied!(ListGroupsResponse),
                RequestKind::DescribeGroups(r) if !group_ok => {
                    let groups = r
                        .groups
                        .into_iter()
                        .map(|g| {
                            DescribedGroup::default()
                                .with_group_id(g)
                                .with_error_code(code::GROUP_AUTHORIZATION_FAILED)
                        })
                        .collect();
                    let body = DescribeGroupsResponse::default().with_groups(groups);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::OffsetFetch(r) if !group_ok => {
                    let mut body = OffsetFetchResponse::default();
                    if version >= 8 {
                        body = body.with_groups(
                            r.groups
                                .into_iter()
                                .map(|g| {
                                    OffsetFetchResponseGroup::default()
                                        .with_group_id(g.group_id)
                                        .with_error_code(code::GROUP_AUTHORIZATION_FAILED)
                                })
                                .collect(),
                        );
                    } else {
                        body = body.with_error_code(code::GROUP_AUTHORIZATION_FAILED);
                    }
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::OffsetCommit(r) if !group_ok => {
                    let body = OffsetCommitResponse::default().with_topics(
                        r.topics
                            .iter()
                            .map(|t| {
                                OffsetCommitResponseTopic::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                OffsetCommitResponsePartition::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_error_code(
                                                        code::GROUP_AUTHORIZATION_FAILED,
                                                    )
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    );
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::JoinGroup(_) if !group_ok => {
                    let body = JoinGroupResponse::default()
                        .with_error_code(code::GROUP_AUTHORIZATION_FAILED);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::FindCoordinator(r) if !group_ok => {
                    let mut body = FindCoordinatorResponse::default();
                    if version < 4 {
                        body = body.with_error_code(code::GROUP_AUTHORIZATION_FAILED);
                    } else {
                        body = body.with_coordinators(
                            r.coordinator_keys
                                .into_iter()
                                .map(|k| {
                                    Coordinator::default()
                                        .with_key(k)
                                        .with_error_code(code::GROUP_AUTHORIZATION_FAILED)
                                })
                                .collect(),
                        );
                    }
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::ApiVersions(_) => {
                    let body = self.api_versions(code::NONE);
                    // The ApiVersions response header is always v0.
                    write_response(&mut stream, correlation, 0, &body, version).await?;
                }
                RequestKind::Metadata(mut r) => {
                    let asked_all = r.topics.is_none();
                    if let Some(list) = &r.topics {
                        // Auto-creation is for identities that may produce to every name asked.
                        let may_create = list.iter().all(|t| {
                            t.name.as_ref().is_some_and(|n| {
                                self.allowed(&who, &Action::Produce(n.0.to_string()))
                            })
                        });
                        r.allow_auto_topic_creation &= may_create;
                    }
                    let mut body = self.clone().metadata(r, version).await;
                    body.topics.retain_mut(|t| {
                        let n = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                        if self.allowed(&who, &Action::Describe(n)) {
                            return true;
                        }
                        t.error_code = code::TOPIC_AUTHORIZATION_FAILED;
                        t.partitions.clear();
                        !asked_all
                    });
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::Produce(mut r) => {
                    let acks = r.acks;
                    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topic_data)
                        .into_iter()
                        .partition(|td| {
                            self.allowed(&who, &Action::Produce(td.name.0.to_string()))
                        });
                    r.topic_data = ok;
                    let mut body = self.clone().produce(r, version).await;
                    for td in denied {
                        body.responses.push(
                            TopicProduceResponse::default()
                                .with_name(td.name)
                                .with_partition_responses(
                                    td.partition_data
                                        .iter()
                                        .map(|pd| {
                                            PartitionProduceResponse::default()
                                                .with_index(pd.index)
                                                .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                                        })
                                        .collect(),
                                ),
                        );
                    }
                    if acks != 0 {
                        write_response(&mut stream, correlation, resp_header, &body, version)
                            .await?;
                    }
                }
                RequestKind::Fetch(mut r) => {
                    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                        .into_iter()
                        .partition(|t| self.allowed(&who, &Action::Consume(t.topic.0.to_string())));
                    r.topics = ok;
                    let mut body = self.clone().fetch(r, version).await;
                    for t in denied {
                        body.responses.push(
                            FetchableTopicResponse::default()
                                .with_topic(t.topic)
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            PartitionData::default()
                                                .with_partition_index(p.partition)
                                                .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                                        })
                                        .collect(),
                                ),
                        );
                    }
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::ListOffsets(mut r) => {
                    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                        .into_iter()
                        .partition(|t| self.allowed(&who, &Action::Describe(t.name.0.to_string())));
                    r.topics = ok;
                    let mut body = self.clone().list_offsets(r).await;
                    for t in denied {
                        body.topics.push(
                            ListOffsetsTopicResponse::default()
                                .with_name(t.name)
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            ListOffsetsPartitionResponse::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                                        })
                                        .collect(),
                                ),
                        );
                    }
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::InitProducerId(_) => {
                    let id = self.next_producer_id.fetch_add(1, Ordering::Relaxed);
                    let body = InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(id))
                        .with_producer_epoch(0);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::FindCoordinator(r) => {
                    let (host, port) = (
                        StrBytes::from_string(self.cfg.advertise.0.clone()),
                        self.cfg.advertise.1,
                    );
                    // Fields exist only in some versions; the codec refuses others that are set.
                    let mut body = FindCoordinatorResponse::default();
                    if version < 4 {
                        body = body
                            .with_node_id(BrokerId(0))
                            .with_host(host.clone())
                            .with_port(port);
                    } else {
                        body = body.with_coordinators(
                            r.coordinator_keys
                                .into_iter()
                                .map(|k| {
                                    Coordinator::default()
                                        .with_key(k)
                                        .with_node_id(BrokerId(0))
                                        .with_host(host.clone())
                                        .with_port(port)
                                })
                                .collect(),
                        );
                    }
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::JoinGroup(r) => {
                    let client = header
                        .client_id
                        .as_ref()
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "client".into());
                    let rebalance = if version >= 1 {
                        r.rebalance_timeout_ms
                    } else {
                        r.session_timeout_ms
                    };
                    let res = self
                        .groups
                        .join(
                            &r.group_id.0,
                            &r.member_id,
                            &client,
                            &r.protocol_type,
                            r.protocols
                                .into_iter()
                                .map(|p| (p.name.to_string(), p.metadata))
                                .collect(),
                            Duration::from_millis(
                                u64::try_from(r.session_timeout_ms).unwrap_or(10_000),
                            ),
                            Duration::from_millis(u64::try_from(rebalance).unwrap_or(10_000)),
                        )
                        .await;
                    let mut body = JoinGroupResponse::default();
                    if version >= 7 {
                        body =
                            body.with_protocol_type(Some(StrBytes::from_string(res.protocol_type)));
                    }
                    let body = body
                        .with_error_code(res.error)
                        .with_generation_id(res.generation)
                        .with_protocol_name(Some(StrBytes::from_string(
                            res.protocol.unwrap_or_default(),
                        )))
                        .with_leader(StrBytes::from_string(res.leader))
                        .with_member_id(StrBytes::from_string(res.member_id))
                        .with_members(
                            res.members
                                .into_iter()
                                .map(|(id, md)| {
                                    JoinGroupResponseMember::default()
                                        .with_member_id(StrBytes::from_string(id))
                                        .with_metadata(md)
                                })
                                .collect(),
                        );
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::SyncGroup(r) => {
                    let assignments = r
                        .assignments
                        .into_iter()
                        .map(|a| (a.member_id.to_string(), a.assignment))
                        .collect();
                    let res = self
                        .groups
                        .sync(&r.group_id.0, r.generation_id, &r.member_id, assignments)
                        .await;
                    let mut body = SyncGroupResponse::default()
                        .with_error_code(res.error)
                        .with_assignment(res.assignment);
                    if version >= 5 {
                        body = body
                            .with_protocol_type(r.protocol_type)
                            .with_protocol_name(r.protocol_name);
                    }
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::Heartbeat(r) => {
                    let e = self
                        .groups
                        .heartbeat(&r.group_id.0, r.generation_id, &r.member_id);
                    let body = HeartbeatResponse::default().with_error_code(e);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::LeaveGroup(r) => {
                    let ids: Vec<String> = if version >= 3 {
                        r.members.iter().map(|m| m.member_id.to_string()).collect()
                    } else {
                        vec![r.member_id.to_string()]
                    };
                    let codes = self.groups.leave(&r.group_id.0, &ids);
                    let mut body = LeaveGroupResponse::default();
                    if version >= 3 {
                        body = body.with_members(
                            ids.iter()
                                .zip(&codes)
                                .map(|(id, c)| {
                                    MemberResponse::default()
                                        .with_member_id(StrBytes::from_string(id.clone()))
                                        .with_error_code(*c)
                                })
                                .collect(),
                        );
                    } else {
                        body = body.with_error_code(codes.first().copied().unwrap_or(0));
                    }
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::OffsetCommit(r) => {
                    // Like Kafka: partitions of topics the identity may not read are refused,
                    // the others are committed.
                    let may = |t: &TopicName| self.allowed(&who, &Action::Consume(t.0.to_string()));
                    let offsets: Vec<(String, i32, i64, Option<String>)> = r
                        .topics
                        .iter()
                        .filter(|t| may(&t.name))
                        .flat_map(|t| {
                            t.partitions.iter().map(|p| {
                                (
                                    t.name.0.to_string(),
                                    p.partition_index,
                                    p.committed_offset,
                                    p.committed_metadata.as_ref().map(|m| m.to_string()),
                                )
                            })
                        })
                        .collect();
                    let b = self.clone();
                    let (g, generation, member) = (
                        r.group_id.0.to_string(),
                        r.generation_id_or_member_epoch,
                        r.member_id.to_string(),
                    );
                    let e = tokio::task::spawn_blocking(move || {
                        b.groups.commit(&g, generation, &member, &offsets)
                    })
                    .await
                    .unwrap_or(code::UNKNOWN_SERVER_ERROR);
                    let body = OffsetCommitResponse::default().with_topics(
                        r.topics
                            .iter()
                            .map(|t| {
                                let e = if may(&t.name) {
                                    e
                                } else {
                                    code::TOPIC_AUTHORIZATION_FAILED
                                };
                                OffsetCommitResponseTopic::default()
                                    .with_name(t.name.clone())
                                    .with_partitions(
                                        t.partitions
                                            .iter()
                                            .map(|p| {
                                                OffsetCommitResponsePartition::default()
                                                    .with_partition_index(p.partition_index)
                                                    .with_error_code(e)
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    );
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::OffsetFetch(r) => {
                    let body = self.offset_fetch(r, version);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::ListGroups(_) => {
                    let body = ListGroupsResponse::default().with_groups(
                        self.groups
                            .list()
                            .into_iter()
                            .map(|(g, pt, st)| {
                                let l = ListedGroup::default()
                                    .with_group_id(GroupId(StrBytes::from_string(g)))
                                    .with_protocol_type(StrBytes::from_string(pt));
                                if version >= 4 {
                                    l.with_group_state(StrBytes::from_static_str(st))
                                } else {
                                    l
                                }
                            })
                            .collect(),
                    );
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::DescribeGroups(r) => {
                    let groups = r
                        .groups
                        .into_iter()
                        .map(|g| match self.groups.describe(&g.0) {
                            None => DescribedGroup::default()
                                .with_group_id(g)
                                .with_group_state(StrBytes::from_static_str("Dead")),
                            Some((state, pt, proto, members)) => DescribedGroup::default()
                                .with_group_id(g)
                                .with_group_state(StrBytes::from_static_str(state))
                                .with_protocol_type(StrBytes::from_string(pt))
                                .with_protocol_data(StrBytes::from_string(proto))
                                .with_members(
                                    members
                                        .into_iter()
                                        .map(|(id, client, md, a)| {
                                            DescribedGroupMember::default()
                                                .with_member_id(StrBytes::from_string(id))
                                                .with_client_id(StrBytes::from_string(client))
                                                .with_member_metadata(md)
                                                .with_member_assignment(a)
                                        })
                                        .collect(),
                                ),
                        })
                        .collect();
                    let body = DescribeGroupsResponse::default().with_groups(groups);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::CreateTopics(r) if !self.allowed(&who, &Action::Admin) => {
                    let topics = r
                        .topics
                        .into_iter()
                        .map(|t| {
                            let res = CreatableTopicResult::default()
                                .with_name(t.name)
                                .with_error_code(code::TOPIC_AUTHORIZATION_FAILED);
                            if version >= 1 {
                                res.with_error_message(Some(StrBytes::from_static_str(
                                    "creating topics needs the admin role",
                                )))
                            } else {
                                res
                            }
                        })
                        .collect();
                    let body = CreateTopicsResponse::default().with_topics(topics);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::DeleteTopics(r) if !self.allowed(&who, &Action::Admin) => {
                    let responses = deleted_names(r, version)
                        .into_iter()
                        .map(|n| {
                            DeletableTopicResult::default()
                                .with_name(Some(n))
                                .with_error_code(code::TOPIC_AUTHORIZATION_FAILED)
                        })
                        .collect();
                    let body = DeleteTopicsResponse::default().with_responses(responses);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::CreateTopics(r) => {
                    let b = self.clone();
                    let body =
                        tokio::task::spawn_blocking(move || b.create_topics(r, version)).await?;
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::DeleteTopics(r) => {
                    let b = self.clone();
                    let body =
                        tokio::task::spawn_blocking(move || b.delete_topics(r, version)).await?;
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                RequestKind::DescribeConfigs(r) => {
                    let body = self.describe_configs(r);
                    write_response(&mut stream, correlation, resp_header, &body, version).await?;
                }
                other => anyhow::bail!("unhandled request {other:?}"),
            }
            sluice_common::telemetry::telemetry().kafka_request(api_name(api), started.elapsed());
        }
    }

    fn offset_fetch(&self, r: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let partition = |g: &str, t: &str, p: i32| {
            let (o, md) = self.groups.committed(g, t, p).unwrap_or((-1, None));
            (o, md.map(StrBytes::from_string))
        };
        if version >= 8 {
            let groups = r
                .groups
                .into_iter()
                .map(|g| {
                    let gid = g.group_id.0.to_string();
                    let topics: Vec<(String, Vec<i32>)> = match g.topics {
                        Some(ts) => ts
                            .into_iter()
                            .map(|t| (t.name.0.to_string(), t.partition_indexes))
                            .collect(),
                        None => group_by_topic(self.groups.committed_all(&gid)),
                    };
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id)
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(name(&t))
                                        .with_partitions(
                                            ps.into_iter()
                                                .map(|p| {
                                                    let (o, md) = partition(&gid, &t, p);
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(o)
                                                        .with_metadata(md)
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
            return OffsetFetchResponse::default().with_groups(groups);
        }
        let gid = r.group_id.0.to_string();
        let topics: Vec<(String, Vec<i32>)> = match r.topics {
            Some(ts) => ts
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect(),
            None => group_by_topic(self.groups.committed_all(&gid)),
        };
        OffsetFetchResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(name(&t))
                        .with_partitions(
                            ps.into_iter()
                                .map(|p| {
                                    let (o, md) = partition(&gid, &t, p);
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(o)
                                        .with_metadata(md)
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    fn create_topics(&self, r: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
        let topics = r
            .topics
            .into_iter()
            .map(|t| {
                let res = CreatableTopicResult::default().with_name(t.name.clone());
                let fail = |code: i16, msg: String| {
                    let res = res.clone().with_error_code(code);
                    if version >= 1 {
                        res.with_error_message(Some(StrBytes::from_string(msg)))
                    } else {
                        res
                    }
                };
                let mut config = TopicConfig {
                    partitions: if t.num_partitions < 0 {
                        self.cfg.default_partitions
                    } else {
                        t.num_partitions as u32
                    },
                    ..TopicConfig::default()
                };
                for c in &t.configs {
                    let v = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    let bad = || {
                        fail(
                            code::INVALID_CONFIG,
                            format!("invalid value {v:?} for {}", c.name),
                        )
                    };
                    match &*c.name {
                        "retention.ms" => match v.parse::<i64>() {
                            Ok(-1) => config.retention_ms = None,
                            Ok(n) => config.retention_ms = Some(n),
                            Err(_) => return bad(),
                        },
                        "retention.bytes" => match v.parse::<i64>() {
                            Ok(-1) => config.retention_bytes = None,
                            Ok(n) if n > 0 => config.retention_bytes = Some(n as u64),
                            _ => return bad(),
                        },
                        "segment.bytes" => match v.parse() {
                            Ok(n) => config.segment_bytes = n,
                            Err(_) => return bad(),
                        },
                        "segment.ms" => match v.parse() {
                            Ok(n) => config.segment_ms = n,
                            Err(_) => return bad(),
                        },
                        "cleanup.policy" => match v.as_str() {
                            "delete" => config.cleanup = sluice_log::Cleanup::Delete,
                            "compact" => config.cleanup = sluice_log::Cleanup::Compact,
                            _ => return bad(),
                        },
                        _ => {} // other Kafka settings have no meaning here
                    }
                }
                if let Err(e) = sluice_log::validate_topic_name(&t.name.0) {
                    return fail(code::INVALID_TOPIC_EXCEPTION, e.to_string());
                }
                if let Err(e) = config.validate() {
                    return fail(code::INVALID_PARTITIONS, e.to_string());
                }
                if r.validate_only {
                    return if self.log.topic(&t.name.0).is_ok() {
                        fail(
                            code::TOPIC_ALREADY_EXISTS,
                            format!("topic {} already exists", &*t.name.0),
                        )
                    } else {
                        res
                    };
                }
                match self.log.create_topic(&t.name.0, config) {
                    Ok(_) => res,
                    Err(LogError::TopicExists(n)) => fail(
                        code::TOPIC_ALREADY_EXISTS,
                        format!("topic {n} already exists"),
                    ),
                    Err(e) => fail(code::INVALID_CONFIG, e.to_string()),
                }
            })
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }

    fn delete_topics(&self, r: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
        let responses = deleted_names(r, version)
            .into_iter()
            .map(|n| {
                let res = DeletableTopicResult::default().with_name(Some(n.clone()));
                match self.log.delete_topic(&n.0) {
                    Ok(()) => res,
                    Err(_) => res.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
                }
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(responses)
    }

    fn describe_configs(&self, r: DescribeConfigsRequest) -> DescribeConfigsResponse {
        const TOPIC: i8 = 2;
        let results = r
            .resources
            .into_iter()
            .map(|res| {
                let out = DescribeConfigsResult::default()
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name.clone());
                if res.resource_type != TOPIC {
                    return out;
                }
                let Ok(t) = self.log.topic(&res.resource_name) else {
                    return out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                };
                let c = &t.config;
                let entries = [
                    (
                        "cleanup.policy",
                        match c.cleanup {
                            sluice_log::Cleanup::Delete => "delete".to_string(),
                            sluice_log::Cleanup::Compact => "compact".to_string(),
                        },
                    ),
                    (
                        "retention.ms",
                        c.retention_ms.map_or("-1".into(), |v| v.to_string()),
                    ),
                    (
                        "retention.bytes",
                        c.retention_bytes.map_or("-1".into(), |v| v.to_string()),
                    ),
                    ("segment.bytes", c.segment_bytes.to_string()),
                    ("segment.ms", c.segment_ms.to_string()),
                ];
                let wanted = res.configuration_keys.as_ref();
                out.with_configs(
                    entries
                        .into_iter()
                        .filter(|(k, _)| wanted.is_none_or(|w| w.iter().any(|x| &**x == *k)))
                        .map(|(k, v)| {
                            DescribeConfigsResourceResult::default()
                                .with_name(StrBytes::from_static_str(k))
                                .with_value(Some(StrBytes::from_string(v)))
                                .with_config_source(1)
                        })
                        .collect(),
                )
            })
            .collect();
        DescribeConfigsResponse::default().with_results(results)
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

    async fn metadata(self: Arc<Self>, r: MetadataRequest, version: i16) -> MetadataResponse {
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
            let mut resp = MetadataResponse::default().with_brokers(vec![broker]);
            if version >= 1 {
                resp = resp.with_controller_id(BrokerId(0));
            }
            if version >= 2 {
                resp = resp.with_cluster_id(Some(StrBytes::from_static_str("sluice")));
            }
            resp.with_topics(
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
                        Err(LogError::InvalidTopicName { .. }) => MetadataResponseTopic::default()
                            .with_name(Some(name(&n)))
                            .with_error_code(code::INVALID_TOPIC_EXCEPTION),
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

    async fn produce(self: Arc<Self>, r: ProduceRequest, version: i16) -> ProduceResponse {
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
                            // Idempotent producers: one batch per request and partition.
                            let header = sluice_log::batch::BatchHeader::parse(&records).ok();
                            let idem = header.filter(|h| h.producer_id >= 0 && h.base_sequence >= 0);
                            let slot = idem.map(|h| b.producers.slot(h.producer_id, &topic_name, pd.index));
                            let mut guard = slot.as_ref().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()));
                            if let (Some(h), Some(last)) = (idem, guard.as_deref()) {
                                match idempotence::decide(last, h.producer_epoch, h.base_sequence, h.record_count) {
                                    idempotence::Decision::Append => {}
                                    idempotence::Decision::Duplicate(base) => {
                                        return resp.with_base_offset(base).with_log_append_time_ms(-1);
                                    }
                                    idempotence::Decision::OutOfOrder { expected, got } => {
                                        return resp.with_error_code(code::OUT_OF_ORDER_SEQUENCE_NUMBER).with_error_message(
                                            Some(StrBytes::from_string(format!("expected sequence {expected}, got {got}"))),
                                        );
                                    }
                                }
                            }
                            let appended = part.append(BytesMut::from(&records[..]));
                            if let (Some(h), Some(last), Ok(a)) = (idem, guard.as_deref_mut(), &appended) {
                                idempotence::record(last, h.producer_epoch, h.base_sequence, h.record_count, a.base_offset as i64);
                            }
                            drop(guard);
                            match appended {
                                Ok(a) if version >= 5 => resp
                                    .with_base_offset(a.base_offset as i64)
                                    .with_log_append_time_ms(-1)
                                    .with_log_start_offset(part.start_offset() as i64),
                                Ok(a) => resp.with_base_offset(a.base_offset as i64).with_log_append_time_ms(-1),
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
        version: i16,
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
                        let mut resp = resp
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_aborted_transactions(Some(Vec::new()));
                        if version >= 5 {
                            resp = resp.with_log_start_offset(part.start_offset() as i64);
                        }
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

    async fn fetch(self: Arc<Self>, r: FetchRequest, version: i16) -> FetchResponse {
        let deadline = Instant::now()
            + Duration::from_millis(u64::try_from(r.max_wait_ms).unwrap_or(0).min(30_000));
        let r = Arc::new(r);
        loop {
            let (b, req) = (self.clone(), r.clone());
            let Ok((resp, total, mut watches)) =
                tokio::task::spawn_blocking(move || b.fetch_once(&req, version)).await
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

fn group_by_topic(committed: Vec<(String, i32, i64, Option<String>)>) -> Vec<(String, Vec<i32>)> {
    let mut m: std::collections::BTreeMap<String, Vec<i32>> = std::collections::BTreeMap::new();
    for (t, p, _, _) in committed {
        m.entry(t).or_default().push(p);
    }
    m.into_iter().collect()
}

/// Checks that every record of every batch decodes and fits its batch's offset span.
fn validate_records(data: &Bytes) -> Result<(), String> {
    for (h, b) in sluice_log::batch::split(data.clone()).map_err(|e| e.to_string())? {
        let recs = sluice_log::batch::decode(&b).map_err(|e| e.to_string())?;
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

async fn write_response<T: Encodable, S: AsyncWrite + Unpin>(
    stream: &mut S,
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
