//! What `PUT /v1/transforms/{name}` takes: the deployment spec, as `sluice serve` and
//! `sluice worker` both read it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Limits;
use crate::names::transform_dead_letter_topic;

/// A version selector: a number, or `"latest"` (follows new uploads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionSel {
    #[default]
    Latest,
    Exact(u32),
}

impl Serialize for VersionSel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            VersionSel::Latest => s.serialize_str("latest"),
            VersionSel::Exact(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for VersionSel {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if s == "latest" => Ok(VersionSel::Latest),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .map(VersionSel::Exact)
                .ok_or_else(|| {
                    serde::de::Error::custom("version must be a positive integer or \"latest\"")
                }),
            _ => Err(serde::de::Error::custom(
                "version must be a positive integer or \"latest\"",
            )),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    #[default]
    Earliest,
    Latest,
}

/// What `PUT /v1/transforms/{name}` takes.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSpec {
    pub plugin: String,
    /// A version number or `"latest"` (follows new uploads).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Value))]
    pub version: VersionSel,
    /// The input topic. A deployment over two inputs (`inputs`) reads the topic the server
    /// merges them into, `<name>.inputs`, and shows it here.
    #[serde(default)]
    pub input: String,
    /// Two co-partitioned input topics instead of `input`: one keyed state and one set of
    /// timers over both, the watermark the lower of theirs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    #[serde(default)]
    pub dead_letter: Option<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Config values the plugin reads like `config` but nobody else sees: GET shows them as
    /// `***`, the server never logs them, and a re-PUT that sends `***` keeps the value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub start: Start,
    /// Lookup tables the plugin may read (`lookup` of any other finds nothing).
    #[serde(default)]
    pub tables: Vec<String>,
    /// Lets this deployment close a cycle of transforms (its outputs or dead letters reach
    /// its input again through other deployments). Refused without it: a loop amplifies
    /// forever.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cycles: bool,
    /// Stateful plugins: where a record's event time comes from (default: its timestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTime>,
    /// Stateful plugins: how far behind the largest event time seen the watermark stays
    /// (default 5000); a record older than the watermark is late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness_ms: Option<u64>,
    /// Stateful plugins: after this long without input, a partition's watermark moves on
    /// with the clock so that its windows close (default 10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Stateful plugins: a topic for late records (default: the dead-letter topic, with
    /// `sluice-error: late`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_output: Option<String>,
    /// Stateful plugins: where the state lives — `"memory"` (the default) or `"disk"` (an
    /// embedded store per deployment with `limits.state_cache_bytes` of memory, for state
    /// larger than memory). Cannot change on a deployed transform.
    #[serde(default, skip_serializing_if = "StateStoreKind::is_memory")]
    pub state_store: StateStoreKind,
    /// Stateful plugins on `sluice worker`: how many other workers of the group keep a
    /// warm copy of each partition's state (following its changelog), so that one taking
    /// the partition over restores only the tail. No effect on one `sluice serve`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub standby_replicas: u32,
    /// `"reset"` on a re-PUT: the new version starts with empty state. Not kept.
    #[serde(default, skip_serializing)]
    pub state: Option<StateMode>,
    /// `"json"`: values framed in Confluent's wire format (Avro, Protobuf, JSON Schema)
    /// reach the plugin decoded to JSON, and the JSON values it emits are encoded again —
    /// with the output's subject (`output_schemas`), else with the input record's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<Decode>,
    /// The schema registry subject each output topic's values must carry (default: the
    /// topic's own schema setting). An emitted record that does not match — or that cannot
    /// be encoded with it — dead-letters its input, with the reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub output_schemas: BTreeMap<String, String>,
}

/// How a deployment's plugin sees schema-framed values.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decode {
    /// As JSON (decoded by the host at native speed; encoded again on the way out).
    Json,
}

/// Where a stateful deployment reads event times.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTime {
    /// A JSON field of the record value (a name, dotted path or JSON pointer) holding ms
    /// since the epoch or an RFC 3339 time; records without it are dead-lettered.
    pub field: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Most `standby_replicas`.
pub const MAX_STANDBY_REPLICAS: u32 = 3;

/// Where a stateful deployment keeps its state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateStoreKind {
    /// In memory (snapshots and the changelog on disk).
    #[default]
    Memory,
    /// In an embedded LSM store on disk, with a bounded cache in memory.
    Disk,
}

impl StateStoreKind {
    pub fn is_memory(&self) -> bool {
        *self == StateStoreKind::Memory
    }

    pub fn name(&self) -> &'static str {
        match self {
            StateStoreKind::Memory => "memory",
            StateStoreKind::Disk => "disk",
        }
    }
}

/// What a re-PUT does with the state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateMode {
    /// The new version inherits the state (the default).
    Keep,
    /// The new version starts with empty state (timers and watermarks too).
    Reset,
}

/// Default `allowed_lateness_ms`.
pub const DEFAULT_ALLOWED_LATENESS_MS: u64 = 5_000;
/// Default `idle_timeout_ms`.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10_000;
/// Largest `allowed_lateness_ms` and `idle_timeout_ms`.
pub const MAX_TIME_SETTING_MS: u64 = 365 * 24 * 3600 * 1000;

/// The event-time settings a partition task works with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTimeSettings {
    pub field: Option<String>,
    pub allowed_lateness_ms: i64,
    pub idle_timeout_ms: u64,
    /// How many inputs the watermark is the minimum of (1 or 2).
    pub inputs: usize,
}

impl TransformSpec {
    pub fn event_time_settings(&self) -> EventTimeSettings {
        EventTimeSettings {
            field: self.event_time.as_ref().map(|e| e.field.clone()),
            allowed_lateness_ms: self
                .allowed_lateness_ms
                .unwrap_or(DEFAULT_ALLOWED_LATENESS_MS)
                .min(i64::MAX as u64) as i64,
            idle_timeout_ms: self.idle_timeout_ms.unwrap_or(DEFAULT_IDLE_TIMEOUT_MS),
            inputs: self.inputs.len().max(1),
        }
    }

    /// The topics the deployment reads: `inputs`, or `input`.
    pub fn input_topics(&self) -> Vec<&str> {
        if self.inputs.is_empty() {
            vec![self.input.as_str()]
        } else {
            self.inputs.iter().map(String::as_str).collect()
        }
    }

    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| transform_dead_letter_topic(&self.input))
    }

    /// What the plugin's `config` answers: the config and the secrets.
    pub fn plugin_config(&self) -> BTreeMap<String, String> {
        let mut c = self.config.clone();
        c.extend(self.secrets.iter().map(|(k, v)| (k.clone(), v.clone())));
        c
    }

    /// The secrets as GET shows them: every value `***`.
    pub fn redacted_secrets(&self) -> BTreeMap<String, String> {
        self.secrets
            .keys()
            .map(|k| (k.clone(), REDACTED.to_string()))
            .collect()
    }

    /// Checks the secrets (no key also in `config`; no `***` left), taking the value of
    /// each secret sent as `***` from `old` (a re-PUT of what GET showed keeps it).
    pub fn settle_secrets(&mut self, old: Option<&TransformSpec>) -> Result<(), String> {
        for (k, v) in &mut self.secrets {
            if self.config.contains_key(k) {
                return Err(format!("{k:?} is both a config key and a secret"));
            }
            if v == REDACTED {
                match old.and_then(|o| o.secrets.get(k)) {
                    Some(kept) => v.clone_from(kept),
                    None => {
                        return Err(format!(
                            "secret {k:?} is {REDACTED} (what GET shows), but there is no earlier value to keep"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What GET shows instead of a secret value.
pub const REDACTED: &str = "***";
