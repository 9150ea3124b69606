//! The Kafka wire protocol in front of the log: unmodified Kafka clients produce and fetch
//! the same topics as the HTTP API. Framing and bounds are ours; the `kafka-protocol` crate
//! decodes requests and encodes responses.
//!
//! # Layout
//! - [`conn`]: one connection — framing, the SASL state, decoding, then the authorization
//!   filter and a handler per request; it alone writes to the socket.
//! - [`authz`]: the one authorization filter: what an identity may not see is taken out of
//!   the request and answered with the API's own error, or the whole request is refused.
//! - Handlers that **return** their response, by API family: [`data`] (Produce, Fetch,
//!   ListOffsets, Metadata, InitProducerId), [`group_api`] (consumer groups, through
//!   [`groups::Coordinator`]), [`admin`] (ApiVersions, CreateTopics, DeleteTopics,
//!   DescribeConfigs).
//! - [`error`]: the typed error that ends a connection.

/// The committed offsets `(topic, partition, offset, metadata)` and leader epochs
/// `(topic, partition, epoch)` of an OffsetCommit or TxnOffsetCommit request's topics
/// (their types differ; their fields do not).
macro_rules! committed_offsets {
    ($topics:expr) => {{
        let topics = &$topics;
        let offsets: Vec<(String, i32, i64, Option<String>)> = topics
            .iter()
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
        let epochs: Vec<(String, i32, i32)> = topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|p| {
                    (
                        t.name.0.to_string(),
                        p.partition_index,
                        p.committed_leader_epoch,
                    )
                })
            })
            .collect();
        (offsets, epochs)
    }};
}

pub mod admin;
pub mod admin_ext;
pub mod authz;
pub mod conn;
pub mod data;
pub mod error;
pub mod group_api;
pub mod groups;
mod idempotence;
pub mod txn;
pub mod txn_api;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use sluice_auth::Auth;
use sluice_log::Log;

pub use error::KafkaError;

/// Largest request frame accepted; a bigger length closes the connection.
pub const MAX_FRAME: usize = 100 << 20;

/// Kafka error codes used here.
pub mod code {
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
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    pub const INVALID_RECORD: i16 = 87;
    pub const INVALID_REQUEST: i16 = 42;
    /// Retriable: the data is there but could not be read now (e.g. the object store of
    /// a tiered topic is unreachable); clients retry instead of resetting their offset.
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
}

/// The versions served, per API key.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
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
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::OffsetForLeaderEpoch, 0, 4),
];

/// Whether `version` of `key` is served.
pub fn supported(key: ApiKey, version: i16) -> bool {
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
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay: Duration,
    /// The schema registry: schema-validated topics refuse records that break their
    /// contract (none: no topic is validated).
    pub schemas: Option<Arc<sluice_schema::Registry>>,
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

/// What every connection and handler shares.
pub struct Broker {
    pub(crate) log: Arc<Log>,
    pub(crate) producers: idempotence::Producers,
    pub(crate) groups: groups::Coordinator,
    pub(crate) txns: txn::Transactions,
    pub(crate) cfg: KafkaConfig,
    pub(crate) next_producer_id: AtomicI64,
    pub(crate) shutdown: CancellationToken,
    /// The topics the server keeps for itself (read with the state permission).
    pub(crate) owned: sluice_auth::OwnedTopics,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("cfg", &self.cfg).finish()
    }
}

impl Broker {
    /// The group coordinator (consumer groups and their committed offsets).
    pub fn groups(&self) -> &groups::Coordinator {
        &self.groups
    }

    /// A broker over `log`, with its group offsets under `cfg.groups_dir`.
    pub fn open(
        log: Arc<Log>,
        cfg: KafkaConfig,
        shutdown: CancellationToken,
    ) -> std::io::Result<Arc<Broker>> {
        let groups =
            groups::Coordinator::open(cfg.groups_dir.clone(), cfg.group_initial_rebalance_delay)?;
        let txns = txn::Transactions::open(log.clone()).map_err(std::io::Error::other)?;
        let owned: sluice_auth::OwnedTopics = {
            let log = log.clone();
            Arc::new(move |t: &str| log.kept_by_server(t))
        };
        let b = Arc::new(Broker {
            owned,
            log,
            producers: Default::default(),
            groups,
            txns,
            cfg,
            next_producer_id: AtomicI64::new(sluice_log::now_ms()),
            shutdown,
        });
        // Ends a crash left half-done are finished; open transactions are aborted.
        b.txns
            .recover(&|g, o, e| txn_api::apply(&b, g, o, e))
            .map_err(std::io::Error::other)?;
        Ok(b)
    }
}

/// Serves one decoded, authorized request from a client at `host`: its response, or none
/// (Produce with acks=0).
pub async fn handle(
    b: &Arc<Broker>,
    header: &RequestHeader,
    request: RequestKind,
    version: i16,
    host: &str,
) -> Result<Option<ResponseKind>, KafkaError> {
    Ok(Some(match request {
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let resp = data::produce(b, r, version).await;
            if acks == 0 {
                return Ok(None);
            }
            resp.into()
        }
        RequestKind::Fetch(r) => data::fetch(b, r, version).await.into(),
        RequestKind::ListOffsets(r) => data::list_offsets(b, r).await.into(),
        RequestKind::Metadata(r) => data::metadata(b, r, version).await.into(),
        RequestKind::InitProducerId(r) => txn_api::init_producer_id(b, r).await.into(),
        RequestKind::AddPartitionsToTxn(r) => txn_api::add_partitions(b, r, version).await.into(),
        RequestKind::AddOffsetsToTxn(r) => txn_api::add_offsets(b, r).await.into(),
        RequestKind::TxnOffsetCommit(r) => txn_api::txn_offset_commit(b, r).await.into(),
        RequestKind::EndTxn(r) => txn_api::end_txn(b, r).await.into(),
        RequestKind::FindCoordinator(r) => group_api::find_coordinator(b, r, version).into(),
        RequestKind::JoinGroup(r) => group_api::join_group(b, header, r, version, host)
            .await
            .into(),
        RequestKind::SyncGroup(r) => group_api::sync_group(b, r, version).await.into(),
        RequestKind::Heartbeat(r) => group_api::heartbeat(b, r).into(),
        RequestKind::LeaveGroup(r) => group_api::leave_group(b, r, version).into(),
        RequestKind::OffsetCommit(r) => group_api::offset_commit(b, r).await.into(),
        RequestKind::OffsetFetch(r) => group_api::offset_fetch(b, r, version).into(),
        RequestKind::ListGroups(_) => group_api::list_groups(b, version).into(),
        RequestKind::DescribeGroups(r) => group_api::describe_groups(b, r).into(),
        RequestKind::ApiVersions(_) => admin::api_versions(code::NONE).into(),
        RequestKind::CreateTopics(r) => admin::create_topics(b, r, version).await?.into(),
        RequestKind::DeleteTopics(r) => admin::delete_topics(b, r, version).await?.into(),
        RequestKind::DescribeConfigs(r) => admin::describe_configs(b, r).into(),
        RequestKind::CreatePartitions(r) => admin_ext::create_partitions(b, r).await.into(),
        RequestKind::AlterConfigs(r) => admin_ext::alter_configs(b, r).await.into(),
        RequestKind::IncrementalAlterConfigs(r) => {
            admin_ext::incremental_alter_configs(b, r).await.into()
        }
        RequestKind::DeleteRecords(r) => admin_ext::delete_records(b, r).await.into(),
        RequestKind::DeleteGroups(r) => admin_ext::delete_groups(b, r).await.into(),
        RequestKind::OffsetDelete(r) => admin_ext::offset_delete(b, r).await.into(),
        RequestKind::DescribeCluster(r) => admin_ext::describe_cluster(b, r).into(),
        RequestKind::OffsetForLeaderEpoch(r) => admin_ext::offset_for_leader_epoch(b, r).into(),
        other => {
            return Err(KafkaError::Unhandled(
                format!("{other:?}").chars().take(60).collect(),
            ));
        }
    }))
}

/// Accepts Kafka connections until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    log: Arc<Log>,
    cfg: KafkaConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let broker = match Broker::open(log, cfg, CancellationToken::new()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "kafka group offsets unreadable; kafka listener not started");
            return;
        }
    };
    serve(listener, broker, shutdown).await
}

/// Accepts Kafka connections for `broker` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let token = broker.shutdown.clone();
    tokio::pin!(shutdown);
    let connections = Arc::new(tokio::sync::Semaphore::new(broker.cfg.max_connections));
    let ticker = broker.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        while !ticker.shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            ticker.groups.tick();
            n += 1;
            if n.is_multiple_of(5) {
                // Transactions past their timeout are aborted (markers: blocking work).
                let b = ticker.clone();
                let _ = blocking(move || {
                    b.txns
                        .expire(sluice_log::now_ms(), &|g, o, e| txn_api::apply(&b, g, o, e))
                })
                .await;
            }
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
                    if let Err(e) = conn::accept(b, stream).await {
                        // A client hanging up or failing to log in is routine; anything
                        // else is worth a look.
                        if e.is_routine() {
                            tracing::debug!(%peer, error = %e, "kafka connection closed");
                        } else {
                            tracing::warn!(%peer, error = %e, "kafka connection closed on error");
                        }
                    }
                });
            }
        }
    }
}

/// The API's name as Kafka spells it, for metrics labels and messages.
pub fn api_name(api: ApiKey) -> &'static str {
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

pub(crate) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Runs blocking log work off the reactor.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KafkaError::Task(e.to_string()))
}

#[cfg(test)]
pub(crate) mod testing {
    //! A broker over a log in a temp dir, for the handlers' unit tests.
    use super::*;

    pub struct TestBroker {
        pub b: Arc<Broker>,
        _dir: tempfile::TempDir,
    }

    pub fn broker() -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("data")).unwrap();
        let cfg = KafkaConfig {
            advertise: ("127.0.0.1".into(), 9092),
            auto_create: true,
            default_partitions: 2,
            groups_dir: dir.path().join("groups"),
            auth: None,
            tls: None,
            max_connections: 10,
            group_initial_rebalance_delay: Duration::ZERO,
            schemas: None,
        };
        TestBroker {
            b: Broker::open(log, cfg, CancellationToken::new()).unwrap(),
            _dir: dir,
        }
    }
}
