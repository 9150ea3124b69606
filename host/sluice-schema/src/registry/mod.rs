//! The registry state machine: subjects, versions, global ids, configs and modes, kept in memory
//! and made durable through a [`Journal`] of Confluent `_schemas` records; plus the parsed-schema
//! cache and the data-path operations (decode, validate, encode) that share it.
//!
//! Every write takes the writer lock, validates against a read view of the state, computes its
//! records, appends them through the journal, and only then applies them: a failed append changes
//! nothing (50001), and readers never wait for an append (they take the state lock, which a writer
//! holds only while applying). A crash between append and apply is healed by replay at start.

pub mod api;
mod config;
pub(crate) mod records;
pub(crate) mod state;
mod subjects;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;

use self::api::{Decoded, EncodeTarget};
use self::records::Record;
pub use self::state::ApplyOutcome;
use self::state::State;
use crate::codec::ValidationMode;
use crate::error::{CodecError, RegistryError};
use crate::schema::{ParsedSchema, parse_schema};
use crate::types::CompatibilityLevel;

/// One `_schemas` record: key bytes and value bytes (`None` is a tombstone).
pub type JournalRecord = (Vec<u8>, Option<Vec<u8>>);

/// Where the registry's records go: the compacted `_schemas` topic. `append` is blocking and the
/// records are durable when it returns `Ok`; the records of one call belong together (append them
/// as one batch).
pub trait Journal: Send + Sync {
    fn append(&self, records: &[JournalRecord]) -> Result<(), String>;
}

/// A journal that keeps records in memory (tests, and a registry without durability).
#[derive(Debug, Default)]
pub struct MemoryJournal {
    records: Mutex<Vec<JournalRecord>>,
}

impl MemoryJournal {
    pub fn records(&self) -> Vec<JournalRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Journal for MemoryJournal {
    fn append(&self, records: &[JournalRecord]) -> Result<(), String> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(records);
        Ok(())
    }
}

/// Registry settings.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// The global compatibility level until one is PUT (Confluent's default is BACKWARD).
    pub default_compatibility: CompatibilityLevel,
    /// Largest schema text accepted (42209 above it).
    pub max_schema_bytes: usize,
    /// Whether `PUT /mode` is allowed (Confluent's `mode.mutability`).
    pub allow_mode_changes: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            default_compatibility: CompatibilityLevel::Backward,
            max_schema_bytes: 1 << 20,
            allow_mode_changes: true,
        }
    }
}

/// How a replay went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub applied: u64,
    pub ignored: u64,
    pub skipped: u64,
}

/// The writer side: only a holder of this guard appends and applies, so writes are serialized and
/// the state cannot change between a write's validation and its records.
struct Writer {
    journal: Arc<dyn Journal>,
}

/// The schema registry. Share it in an `Arc`; every method takes `&self`.
pub struct Registry {
    writer: Mutex<Writer>,
    state: RwLock<State>,
    /// Parsed schemas by id. An id's content never changes, so entries never go stale; they are
    /// dropped only when a replayed record gives an id other content.
    cache: RwLock<HashMap<i32, (String, Arc<ParsedSchema>)>>,
    options: RegistryOptions,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn millis_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Registry {
    pub fn new(journal: Arc<dyn Journal>) -> Registry {
        Registry::with_options(journal, RegistryOptions::default())
    }

    pub fn with_options(journal: Arc<dyn Journal>, options: RegistryOptions) -> Registry {
        Registry {
            writer: Mutex::new(Writer { journal }),
            state: RwLock::new(State::default()),
            cache: RwLock::new(HashMap::new()),
            options,
        }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn state_mut(&self, _writer: &MutexGuard<'_, Writer>) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one `_schemas` record read from the topic (replay at start, or records another
    /// writer appended). Idempotent; a malformed record changes nothing.
    pub fn apply(&self, key: &[u8], value: Option<&[u8]>) -> ApplyOutcome {
        let writer = self.lock_writer();
        let mut state = self.state_mut(&writer);
        let before = value.and_then(|_| records::Key::parse(key));
        let outcome = state.apply(key, value);
        if let Some(records::Key::Schema { .. }) = before {
            // An id whose content a record replaced must be parsed again.
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            cache.retain(|id, (text, _)| state.schemas.get(id).is_some_and(|e| e.schema == *text));
        }
        outcome
    }

    /// Replays records in topic order (the server does this at start).
    pub fn replay<I>(&self, records: I) -> ReplayStats
    where
        I: IntoIterator<Item = JournalRecord>,
    {
        let mut stats = ReplayStats::default();
        let writer = self.lock_writer();
        let mut state = self.state_mut(&writer);
        for (k, v) in records {
            match state.apply(&k, v.as_deref()) {
                ApplyOutcome::Applied => stats.applied += 1,
                ApplyOutcome::Ignored => stats.ignored += 1,
                ApplyOutcome::Skipped => stats.skipped += 1,
            }
        }
        drop(state);
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        stats
    }

    /// Runs a write: `plan` validates against the state and returns the answer and the records;
    /// the records are appended, then applied. The writer lock is held throughout.
    fn write<T>(
        &self,
        failure: &str,
        plan: impl FnOnce(&State) -> Result<(T, Vec<Record>), RegistryError>,
    ) -> Result<T, RegistryError> {
        let writer = self.lock_writer();
        let (answer, records) = {
            let state = self.read();
            plan(&state)?
        };
        if records.is_empty() {
            return Ok(answer);
        }
        writer
            .journal
            .append(&records)
            .map_err(|e| RegistryError::store(format!("{failure}: {e}")))?;
        let mut state = self.state_mut(&writer);
        for (k, v) in &records {
            state.apply(k, v.as_deref());
        }
        Ok(answer)
    }

    /// The parsed schema of an id (cached; parsed on first use with its references resolved).
    pub fn schema_by_id_parsed(&self, id: i32) -> Result<Arc<ParsedSchema>, CodecError> {
        if let Some((_, p)) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(p.clone());
        }
        let state = self.read();
        self.parsed(&state, id)
    }

    /// Parses (or fetches) an id's schema under an already-held state view.
    fn parsed(&self, state: &State, id: i32) -> Result<Arc<ParsedSchema>, CodecError> {
        if let Some((_, p)) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(p.clone());
        }
        let entry = state.schemas.get(&id).ok_or(CodecError::UnknownId(id))?;
        let resolver = |s: &str, v: i32| state.resolve(s, v);
        let parsed = parse_schema(
            entry.schema_type,
            &entry.schema,
            &entry.references,
            &resolver,
        )
        .map_err(|e| CodecError::Schema {
            id,
            reason: e.to_string(),
        })?;
        let parsed = Arc::new(parsed);
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (entry.schema.clone(), parsed.clone()));
        Ok(parsed)
    }

    // ---- data path -------------------------------------------------------------------------

    /// Decodes a framed record of any type to JSON (Avro: see the codec's mapping; Protobuf:
    /// proto3 canonical JSON of the message its indexes name; JSON Schema: the payload).
    pub fn decode_to_json(&self, framed: &[u8]) -> Result<Decoded, CodecError> {
        let f = crate::wire::unframe(framed)?;
        let schema = self.schema_by_id_parsed(f.id)?;
        let value = schema.decode_payload(f.payload)?;
        Ok(Decoded { id: f.id, value })
    }

    /// Checks that a framed record carries the id of a (non-deleted) version of `subject`
    /// ([`ValidationMode::Id`], no decoding) and, in [`ValidationMode::Decode`], that it decodes
    /// (Avro, Protobuf) or validates (JSON Schema) against that schema. Returns the id.
    pub fn validate(
        &self,
        subject: &str,
        framed: &[u8],
        mode: ValidationMode,
    ) -> Result<i32, CodecError> {
        let f = crate::wire::unframe(framed)?;
        {
            let state = self.read();
            let versions = state
                .versions(subject)
                .ok_or_else(|| CodecError::UnknownSubject(subject.to_string()))?;
            if !versions.values().any(|e| e.id == f.id && !e.deleted) {
                return Err(if state.schemas.contains_key(&f.id) {
                    CodecError::WrongSubject {
                        id: f.id,
                        subject: subject.to_string(),
                    }
                } else {
                    CodecError::UnknownId(f.id)
                });
            }
        }
        if mode == ValidationMode::Decode {
            let schema = self.schema_by_id_parsed(f.id)?;
            schema.check_payload(f.payload)?;
        }
        Ok(f.id)
    }

    /// Encodes JSON under a subject's latest version, a subject-version or an id, framed.
    /// `message` picks a Protobuf message type by full name (default: the file's first).
    pub fn encode_from_json(
        &self,
        target: &EncodeTarget,
        value: &Value,
        message: Option<&str>,
    ) -> Result<Vec<u8>, CodecError> {
        let id = {
            let state = self.read();
            match target {
                EncodeTarget::Id(id) => *id,
                EncodeTarget::Subject(s) => state
                    .latest(s)
                    .map(|(_, e)| e.id)
                    .ok_or_else(|| CodecError::UnknownSubject(s.clone()))?,
                EncodeTarget::SubjectVersion(s, v) => state
                    .versions(s)
                    .and_then(|vs| vs.get(v))
                    .map(|e| e.id)
                    .ok_or_else(|| CodecError::UnknownSubject(format!("{s} version {v}")))?,
            }
        };
        let schema = self.schema_by_id_parsed(id)?;
        let payload = schema.encode_payload(value, message)?;
        Ok(crate::wire::frame(id, &payload))
    }

    /// A digest of the whole state (for tests and diagnostics): two registries with equal
    /// fingerprints hold the same subjects, versions, ids, configs and modes.
    pub fn fingerprint(&self) -> String {
        let state = self.read();
        format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            state.subjects,
            state
                .schemas
                .iter()
                .map(|(id, e)| (id, &e.schema, &e.references, e.schema_type, &e.holders))
                .collect::<Vec<_>>(),
            state.global_config,
            state.configs,
            state.global_mode,
            state.modes,
            state.max_id
        )
    }

    pub(crate) fn now(&self) -> i64 {
        millis_now()
    }
}
