//! What `GET /v1/transforms/{name}` answers, on `sluice serve` and on `sluice worker`
//! alike: the spec as deployed (secrets `***`), where each partition stands, counters, and
//! on a worker the group's view (consumer group, workers).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Limits;
use crate::names::state_topic;
use crate::spec::{
    DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_IDLE_TIMEOUT_MS, EventTime, TransformSpec, VersionSel,
};

/// Whether a deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Paused,
    /// It waits for something outside it (see `waiting_for`: the data disk is full) and
    /// goes on by itself once that is back; nothing is dead-lettered meanwhile.
    Waiting,
    /// It cannot run (see `last_error`); a re-PUT or a new plugin version may fix it.
    Failed,
}

/// Where one input partition stands.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionStatus {
    pub partition: u32,
    /// The next input offset to process (null on a worker until it has fetched).
    pub position: Option<u64>,
    /// Input records not processed yet (null while unknown).
    pub lag: Option<u64>,
    /// The plugin version this partition runs.
    pub version: u32,
    /// Stateful deployments: event time and state of the partition.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub state: Option<PartitionState>,
    /// Workers: the worker holding the partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// Event time and keyed state of one partition of a stateful deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionState {
    /// Event times before it are late (null until the partition has seen an event).
    pub watermark: Option<i64>,
    /// The largest event time seen.
    pub max_event_time: Option<i64>,
    /// Late records since the server started.
    pub late: u64,
    pub state_keys: u64,
    /// State held, with a per-entry overhead (what counts against `limits.state_bytes`).
    pub state_bytes: u64,
    /// Pending timers, and the earliest one's time.
    pub timers: u64,
    pub next_timer: Option<i64>,
    pub checkpoint: StateCheckpoint,
    /// How the state was restored when the partition started.
    pub restore: Option<RestoreInfo>,
}

/// The last durable commit of a partition's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StateCheckpoint {
    /// The input position the committed state covers.
    pub position: u64,
    /// When it was committed (ms since the epoch; null before the first commit).
    pub at: Option<i64>,
    /// The changelog's end after it.
    pub changelog_offset: u64,
    /// Changelog offset of the last snapshot, if any.
    pub snapshot_offset: Option<u64>,
}

/// How a partition's state was last restored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RestoreInfo {
    pub took_ms: u64,
    pub keys: u64,
    pub timers: u64,
    /// Changelog offset of the snapshot used, if one was.
    pub snapshot_offset: Option<u64>,
    /// Changelog records replayed after it.
    pub replayed: u64,
}

/// Counters of a deployment since the server (on workers: each live worker) started.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CounterValues {
    pub records_in: u64,
    pub records_out: u64,
    pub rejected: u64,
    pub failed: u64,
    pub traps: u64,
    pub fuel: u64,
    /// Records later than the watermark (stateful deployments).
    pub late: u64,
    /// Workers: Kafka transactions committed (each holds a read's outputs and offsets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactions: Option<u64>,
    /// Workers: sessions that ended on an error (their transaction aborted, the work
    /// resumed from the committed offsets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u64>,
    /// Workers: changes of the input partitions held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebalances: Option<u64>,
}

/// Which version took over at which offset of which partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    pub version: u32,
    pub partition: u32,
    pub from_offset: u64,
}

/// One live worker running a deployment.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerSummary {
    pub id: String,
    pub http: Option<String>,
    pub reported_ms: i64,
    pub version: u32,
    pub partitions: Vec<u32>,
}

/// The status of one transform (`GET /v1/transforms/{name}`).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransformStatus {
    pub name: String,
    pub status: RunState,
    pub plugin: String,
    /// The active version (0 while none is).
    pub version: u32,
    /// A version number or `"latest"`.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub version_selector: VersionSel,
    pub input: String,
    /// Over two inputs: their topics (`input` is the topic they are merged into).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub dead_letter: String,
    pub config: BTreeMap<String, String>,
    /// Secret config keys, each value shown as `***`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    pub limits: Limits,
    pub tables: Vec<String>,
    pub allow_cycles: bool,
    /// The plugin keeps keyed state (it imports `sluice:transform/state`).
    pub stateful: bool,
    /// Stateful: the changelog topic of the state.
    pub state_topic: Option<String>,
    /// Stateful: where the state lives (`memory` or `disk`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_store: Option<crate::spec::StateStoreKind>,
    /// `"state_store": "disk"`: memory the cached values and unwritten changes hold
    /// (bounded by half of `limits.state_cache_bytes`), and the store's bytes on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_memory_bytes: Option<u64>,
    /// Workers: other workers keeping a warm copy of each partition's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_replicas: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_disk_bytes: Option<u64>,
    /// Stateful: the event-time settings in force.
    pub event_time: Option<EventTime>,
    pub allowed_lateness_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub late_output: Option<String>,
    /// Schema-aware processing: `json` when framed values reach the plugin as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode: Option<crate::spec::Decode>,
    /// The subject each output's values must carry.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output_schemas: BTreeMap<String, String>,
    /// Which version took over at which offset of which partition.
    pub history: Vec<HistoryEntry>,
    pub partitions: Vec<PartitionStatus>,
    pub counters: CounterValues,
    pub last_error: Option<String>,
    /// Why a `waiting` deployment waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// Workers: the consumer group whose committed offsets are the positions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    /// Workers: when the deployment was created and last changed (ms since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_ms: Option<i64>,
    /// Workers: the live workers running it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<Vec<WorkerSummary>>,
}

impl TransformStatus {
    /// The status of a deployment of `spec` before anything ran: what the spec says
    /// (secrets `***`), running, no partitions, zero counters.
    pub fn of_spec(name: &str, spec: &TransformSpec, stateful: bool) -> TransformStatus {
        TransformStatus {
            name: name.to_string(),
            status: RunState::Running,
            plugin: spec.plugin.clone(),
            version: 0,
            version_selector: spec.version,
            input: spec.input.clone(),
            inputs: spec.inputs.clone(),
            outputs: spec.outputs.clone(),
            dead_letter: spec.dead_letter_topic(),
            config: spec.config.clone(),
            secrets: spec.redacted_secrets(),
            limits: spec.limits.clone(),
            tables: spec.tables.clone(),
            allow_cycles: spec.allow_cycles,
            stateful,
            state_topic: stateful.then(|| state_topic(name)),
            state_store: stateful.then_some(spec.state_store),
            state_memory_bytes: None,
            standby_replicas: (stateful && spec.standby_replicas > 0)
                .then_some(spec.standby_replicas),
            state_disk_bytes: None,
            event_time: spec.event_time.clone(),
            allowed_lateness_ms: stateful.then_some(
                spec.allowed_lateness_ms
                    .unwrap_or(DEFAULT_ALLOWED_LATENESS_MS),
            ),
            idle_timeout_ms: stateful
                .then_some(spec.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS)),
            late_output: spec.late_output.clone(),
            decode: spec.decode,
            output_schemas: spec.output_schemas.clone(),
            history: Vec::new(),
            partitions: Vec::new(),
            counters: CounterValues::default(),
            last_error: None,
            waiting_for: None,
            consumer_group: None,
            created_ms: None,
            updated_ms: None,
            workers: None,
        }
    }
}
