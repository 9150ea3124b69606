//! The registry's in-memory state and how each `_schemas` record changes it. Applying is
//! idempotent (a record applied twice leaves the state as once) and total: a record that does not
//! parse changes nothing and is reported as skipped.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use md5::{Digest, Md5};
use serde_json::{Map, Value};

use super::records::{
    ClearSubjectValue, ConfigValue, DeleteSubjectValue, Key, ModeValue, SchemaValue,
};
use crate::schema::ResolvedReference;
use crate::types::{CompatibilityLevel, Mode, SchemaReference, SchemaType};

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VersionEntry {
    pub(crate) id: i32,
    pub(crate) deleted: bool,
    pub(crate) ts: i64,
}

/// The content behind a schema id, shared by every subject-version holding it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SchemaEntry {
    pub(crate) schema_type: SchemaType,
    pub(crate) schema: String,
    pub(crate) references: Vec<SchemaReference>,
    pub(crate) metadata: Option<Value>,
    pub(crate) rule_set: Option<Value>,
    pub(crate) identity: [u8; 16],
    /// The subject-versions holding this id (soft-deleted ones included).
    pub(crate) holders: BTreeSet<(String, i32)>,
}

/// Outcome of applying one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// A record type the registry does not use (NOOP, CONTEXT, associations…).
    Ignored,
    /// Malformed: not a `_schemas` key, or a value that does not parse for its key.
    Skipped,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct State {
    pub(crate) subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    pub(crate) schemas: BTreeMap<i32, SchemaEntry>,
    pub(crate) by_identity: HashMap<[u8; 16], i32>,
    /// Referenced (subject, version) → the (subject, version)s whose schema references it.
    pub(crate) referrers: HashMap<(String, i32), BTreeSet<(String, i32)>>,
    pub(crate) global_config: Option<ConfigValue>,
    pub(crate) configs: BTreeMap<String, ConfigValue>,
    pub(crate) global_mode: Option<Mode>,
    pub(crate) modes: BTreeMap<String, Mode>,
    /// The highest id ever seen: new ids are one more, so ids are never reused.
    pub(crate) max_id: i32,
}

/// Confluent's schema identity: MD5 over the canonical text, each reference's name, subject and
/// version in order, then metadata and rule set. The schema type is not part of it.
pub(crate) fn identity(
    schema: &str,
    references: &[SchemaReference],
    metadata: Option<&Value>,
    rule_set: Option<&Value>,
) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(schema.as_bytes());
    for r in references {
        h.update([0u8]);
        h.update(r.name.as_bytes());
        h.update([0u8]);
        h.update(r.subject.as_bytes());
        h.update(r.version.to_be_bytes());
    }
    if let Some(m) = metadata {
        h.update(b"\0metadata");
        h.update(m.to_string().as_bytes());
    }
    if let Some(r) = rule_set {
        h.update(b"\0ruleSet");
        h.update(r.to_string().as_bytes());
    }
    h.finalize().into()
}

/// The identity as the `guid` Confluent shows (a UUID string).
pub(crate) fn guid(identity: &[u8; 16]) -> String {
    let hex: String = identity.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl State {
    /// Applies one `_schemas` record (`value` `None` is a tombstone).
    pub(crate) fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> ApplyOutcome {
        let Some(key) = Key::parse(key) else {
            return ApplyOutcome::Skipped;
        };
        match (key, value) {
            (Key::Schema { subject, version }, Some(v)) => {
                let Ok(value) = serde_json::from_slice::<SchemaValue>(v) else {
                    return ApplyOutcome::Skipped;
                };
                let Some(schema_type) = value
                    .schema_type
                    .as_deref()
                    .map_or(Some(SchemaType::Avro), SchemaType::parse)
                else {
                    return ApplyOutcome::Skipped;
                };
                if value.id < 0 {
                    return ApplyOutcome::Skipped;
                }
                self.put_version(&subject, version, value, schema_type);
            }
            (Key::Schema { subject, version }, None) => self.remove_version(&subject, version),
            (Key::Config { subject }, Some(v)) => {
                let Some(config) = ConfigValue::parse(v) else {
                    return ApplyOutcome::Skipped;
                };
                match subject {
                    Some(s) => {
                        self.configs.insert(s, config);
                    }
                    None => self.global_config = Some(config),
                }
            }
            (Key::Config { subject }, None) => match subject {
                Some(s) => {
                    self.configs.remove(&s);
                }
                None => self.global_config = None,
            },
            (Key::Mode { subject }, Some(v)) => {
                let Ok(mode) = serde_json::from_slice::<ModeValue>(v) else {
                    return ApplyOutcome::Skipped;
                };
                match subject {
                    Some(s) => {
                        self.modes.insert(s, mode.mode);
                    }
                    None => self.global_mode = Some(mode.mode),
                }
            }
            (Key::Mode { subject }, None) => match subject {
                Some(s) => {
                    self.modes.remove(&s);
                }
                None => self.global_mode = None,
            },
            (Key::DeleteSubject { subject }, Some(v)) => {
                let Ok(d) = serde_json::from_slice::<DeleteSubjectValue>(v) else {
                    return ApplyOutcome::Skipped;
                };
                if let Some(versions) = self.subjects.get_mut(&subject) {
                    for (_, e) in versions.range_mut(..=d.version) {
                        e.deleted = true;
                    }
                }
            }
            (Key::ClearSubject { subject }, Some(v)) => {
                let Ok(c) = serde_json::from_slice::<ClearSubjectValue>(v) else {
                    return ApplyOutcome::Skipped;
                };
                let subject = c.subject.or(subject);
                let targets: Vec<(String, i32)> = self
                    .subjects
                    .iter()
                    .filter(|(s, _)| subject.as_ref().is_none_or(|x| x == *s))
                    .flat_map(|(s, vs)| {
                        vs.iter()
                            .filter(|(_, e)| e.deleted)
                            .map(|(v, _)| (s.clone(), *v))
                    })
                    .collect();
                for (s, v) in targets {
                    self.remove_version(&s, v);
                }
            }
            (Key::DeleteSubject { .. } | Key::ClearSubject { .. }, None) => {
                return ApplyOutcome::Ignored;
            }
            (Key::Ignored, _) => return ApplyOutcome::Ignored,
        }
        ApplyOutcome::Applied
    }

    fn put_version(
        &mut self,
        subject: &str,
        version: i32,
        value: SchemaValue,
        schema_type: SchemaType,
    ) {
        let id = value.id;
        let ident = identity(
            &value.schema,
            &value.references,
            value.metadata.as_ref(),
            value.rule_set.as_ref(),
        );
        let entry = VersionEntry {
            id,
            deleted: value.deleted,
            ts: value.ts.unwrap_or(0),
        };
        let previous = self
            .subjects
            .get(subject)
            .and_then(|vs| vs.get(&version))
            .cloned();
        if previous.as_ref().is_some_and(|p| p.id != id) {
            self.remove_version(subject, version);
        }
        let holder = (subject.to_string(), version);
        let content_changed = self.schemas.get(&id).is_some_and(|e| e.identity != ident);
        if content_changed {
            // A record that gives an existing id other content (only a corrupt or hand-written
            // topic does): the latest record wins for every holder.
            if let Some(old) = self.schemas.get(&id) {
                let old_refs = old.references.clone();
                let holders: Vec<(String, i32)> = old.holders.iter().cloned().collect();
                if self.by_identity.get(&old.identity) == Some(&id) {
                    self.by_identity.remove(&old.identity);
                }
                for h in &holders {
                    self.unlink_references(&old_refs, h);
                }
            }
        }
        let schema = self.schemas.entry(id).or_insert_with(|| SchemaEntry {
            schema_type,
            schema: String::new(),
            references: Vec::new(),
            metadata: None,
            rule_set: None,
            identity: ident,
            holders: BTreeSet::new(),
        });
        if content_changed || schema.schema.is_empty() {
            schema.schema_type = schema_type;
            schema.schema = value.schema;
            schema.references = value.references;
            schema.metadata = value.metadata;
            schema.rule_set = value.rule_set;
            schema.identity = ident;
        }
        schema.holders.insert(holder.clone());
        let refs = schema.references.clone();
        let all_holders: Vec<(String, i32)> = schema.holders.iter().cloned().collect();
        self.by_identity.entry(ident).or_insert(id);
        for h in &all_holders {
            self.link_references(&refs, h);
        }
        self.subjects
            .entry(subject.to_string())
            .or_default()
            .insert(version, entry);
        self.max_id = self.max_id.max(id);
    }

    fn link_references(&mut self, refs: &[SchemaReference], holder: &(String, i32)) {
        for r in refs {
            self.referrers
                .entry((r.subject.clone(), r.version))
                .or_default()
                .insert(holder.clone());
        }
    }

    fn unlink_references(&mut self, refs: &[SchemaReference], holder: &(String, i32)) {
        for r in refs {
            let key = (r.subject.clone(), r.version);
            if let Some(set) = self.referrers.get_mut(&key) {
                set.remove(holder);
                if set.is_empty() {
                    self.referrers.remove(&key);
                }
            }
        }
    }

    /// A hard delete: the version is gone; its id goes when no version holds it any more.
    pub(crate) fn remove_version(&mut self, subject: &str, version: i32) {
        let Some(versions) = self.subjects.get_mut(subject) else {
            return;
        };
        let Some(entry) = versions.remove(&version) else {
            return;
        };
        if versions.is_empty() {
            self.subjects.remove(subject);
        }
        let holder = (subject.to_string(), version);
        if let Some(schema) = self.schemas.get_mut(&entry.id) {
            schema.holders.remove(&holder);
            let refs = schema.references.clone();
            let gone = schema.holders.is_empty();
            let ident = schema.identity;
            self.unlink_references(&refs, &holder);
            if gone {
                self.schemas.remove(&entry.id);
                if self.by_identity.get(&ident) == Some(&entry.id) {
                    self.by_identity.remove(&ident);
                }
            }
        }
    }

    // ---- queries -------------------------------------------------------------------------

    pub(crate) fn versions(&self, subject: &str) -> Option<&BTreeMap<i32, VersionEntry>> {
        self.subjects.get(subject)
    }

    /// The highest non-deleted version.
    pub(crate) fn latest(&self, subject: &str) -> Option<(i32, &VersionEntry)> {
        self.subjects
            .get(subject)?
            .iter()
            .rev()
            .find(|(_, e)| !e.deleted)
            .map(|(v, e)| (*v, e))
    }

    pub(crate) fn has_live_versions(&self, subject: &str) -> bool {
        self.latest(subject).is_some()
    }

    /// The (non-deleted unless `include_deleted`) subject-versions whose schema references
    /// `(subject, version)`.
    pub(crate) fn referrers_of(
        &self,
        subject: &str,
        version: i32,
        include_deleted: bool,
    ) -> Vec<(String, i32)> {
        let Some(set) = self.referrers.get(&(subject.to_string(), version)) else {
            return Vec::new();
        };
        set.iter()
            .filter(|(s, v)| {
                include_deleted
                    || self
                        .subjects
                        .get(s)
                        .and_then(|vs| vs.get(v))
                        .is_some_and(|e| !e.deleted)
            })
            .cloned()
            .collect()
    }

    /// What a reference to `(subject, version)` resolves to (soft-deleted versions included).
    pub(crate) fn resolve(&self, subject: &str, version: i32) -> Option<ResolvedReference> {
        let entry = self.subjects.get(subject)?.get(&version)?;
        let schema = self.schemas.get(&entry.id)?;
        Some(ResolvedReference {
            schema_type: schema.schema_type,
            schema: schema.schema.clone(),
            references: schema.references.clone(),
        })
    }

    pub(crate) fn config_map(&self, subject: Option<&str>) -> Option<&Map<String, Value>> {
        match subject {
            Some(s) => self.configs.get(s).map(|c| &c.0),
            None => self.global_config.as_ref().map(|c| &c.0),
        }
    }

    /// The effective config of a subject: its own keys over the global ones over the default.
    pub(crate) fn effective_config(
        &self,
        subject: Option<&str>,
        default: CompatibilityLevel,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert(
            "compatibilityLevel".into(),
            Value::String(default.as_str().into()),
        );
        for source in [
            self.config_map(None),
            subject.and_then(|s| self.config_map(Some(s))),
        ]
        .into_iter()
        .flatten()
        {
            for (k, v) in source {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// The mode in scope: the subject's, else the global one, else READWRITE.
    pub(crate) fn mode_in_scope(&self, subject: Option<&str>) -> Mode {
        subject
            .and_then(|s| self.modes.get(s).copied())
            .or(self.global_mode)
            .unwrap_or(Mode::Readwrite)
    }
}
