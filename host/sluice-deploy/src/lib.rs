//! The deployment contract of Sluice: what a transform deployment says (`spec`), what its
//! status shows (`status`), how things are named (`names`), the limits of its instances
//! (`limits`) and the one validation both `sluice serve` and `sluice worker` apply
//! (`validate`). Pure data and rules: nothing here runs anything.
//!
//! # Layout
//! - `names` — deployment/plugin/topic names, default dead-letter and state topics.
//! - `limits` — `Limits` of a deployment's instances and their bounds.
//! - `spec` — `TransformSpec` and its parts.
//! - `status` — `TransformStatus` and its parts.
//! - `validate` — `Catalog`, `Capabilities`, `prepare`, `check_plugin`, `DeployError`.

pub mod limits;
pub mod names;
pub mod spec;
pub mod status;
pub mod validate;

pub use limits::{Limits, MAX_DISK_STATE_BYTES, MAX_MEMORY_BYTES, MAX_STATE_BYTES};
pub use names::{valid_name, valid_topic_name};
pub use spec::{
    DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_IDLE_TIMEOUT_MS, Decode, EventTime, EventTimeSettings,
    MAX_TIME_SETTING_MS, REDACTED, Start, StateMode, StateStoreKind, TransformSpec, VersionSel,
};
pub use status::{
    CounterValues, HistoryEntry, PartitionState, PartitionStatus, RestoreInfo, RunState,
    StateCheckpoint, TransformStatus, WorkerSummary,
};
pub use validate::{Capabilities, Catalog, DeployError, Prepared, check_plugin, prepare};
