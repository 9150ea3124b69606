//! Subjects, versions and schemas by id: register, lookup, the reads, and soft and hard deletes,
//! with Confluent's error codes and their order.

use std::sync::Arc;

use serde_json::Value;

use super::api::{
    RegisterRequest, RegisterResponse, SchemaResponse, SchemaStringResponse, SubjectVersion,
};
use super::records::{DeleteSubjectValue, Key, SchemaValue, record, tombstone};
use super::state::{State, VersionEntry, guid, identity};
use super::{Record, Registry};
use crate::compat::{Policy, PreviousSchema, check_with_policy};
use crate::error::RegistryError;
use crate::schema::{ParsedSchema, normalized_references, parse_schema};
use crate::types::{
    CompatibilityLevel, Mode, SchemaReference, SchemaType, VersionId, is_valid_subject,
};

/// A request's schema, parsed and identified under the registry's current state.
pub(super) struct Prepared {
    pub(super) schema_type: SchemaType,
    pub(super) submitted: String,
    pub(super) references: Vec<SchemaReference>,
    pub(super) metadata: Option<Value>,
    pub(super) rule_set: Option<Value>,
    pub(super) parsed: Option<ParsedSchema>,
    /// What is stored: the canonical (or, with normalize, normalized) text.
    pub(super) text: String,
    pub(super) identity: [u8; 16],
}

/// Skips `offset` items and keeps `limit` of them (`limit` ≤ 0: all).
pub(super) fn page<T>(items: Vec<T>, offset: usize, limit: i64) -> Vec<T> {
    let iter = items.into_iter().skip(offset);
    match usize::try_from(limit) {
        Ok(n) if n > 0 => iter.take(n).collect(),
        _ => iter.collect(),
    }
}

impl Registry {
    /// Resolves a request's references (`-1` is the latest version) and parses its schema.
    /// `lenient` (IMPORT mode) keeps an unparsable schema as its raw text instead of failing.
    pub(super) fn prepare(
        &self,
        state: &State,
        req: &RegisterRequest,
        normalize: bool,
        lenient: bool,
    ) -> Result<Prepared, RegistryError> {
        let schema_type = req.parsed_type()?;
        let submitted = req.schema.clone().unwrap_or_default();
        if submitted.trim().is_empty() {
            return Err(RegistryError::invalid_schema("Empty schema"));
        }
        if submitted.len() > self.options.max_schema_bytes {
            return Err(RegistryError::schema_too_large());
        }
        let mut references = Vec::new();
        for r in req.references.iter().flatten() {
            let (Some(name), Some(subject), Some(version)) = (&r.name, &r.subject, r.version)
            else {
                return Err(RegistryError::invalid_schema(
                    "Invalid schema, details: a reference needs a name, a subject and a version",
                ));
            };
            let version = if version == -1 {
                state.latest(subject).map(|(v, _)| v).ok_or_else(|| {
                    RegistryError::invalid_schema(format!(
                        "Invalid schema, details: No schema reference found for subject \"{subject}\" and version -1"
                    ))
                })?
            } else {
                version
            };
            references.push(SchemaReference {
                name: name.clone(),
                subject: subject.clone(),
                version,
            });
        }
        if normalize {
            references = normalized_references(&references);
        }
        let resolver = |s: &str, v: i32| state.resolve(s, v);
        let parsed = match parse_schema(schema_type, &submitted, &references, &resolver) {
            Ok(p) => Some(p),
            Err(e) if !lenient => return Err(e.into()),
            Err(_) => None,
        };
        let text = match &parsed {
            Some(p) if normalize => p.normalized().to_string(),
            Some(p) => p.canonical().to_string(),
            None => submitted.trim().to_string(),
        };
        let identity = identity(
            &text,
            &references,
            req.metadata.as_ref(),
            req.rule_set.as_ref(),
        );
        Ok(Prepared {
            schema_type,
            submitted,
            references,
            metadata: req.metadata.clone(),
            rule_set: req.rule_set.clone(),
            parsed,
            text,
            identity,
        })
    }

    /// Confluent's `lookUpSchemaUnderSubject`: the identity first, then (on a miss) every version
    /// newest first compared on normalized forms. Returns the matching version.
    pub(super) fn find_under_subject(
        &self,
        state: &State,
        subject: &str,
        p: &Prepared,
        include_deleted: bool,
    ) -> Option<i32> {
        let versions = state.versions(subject)?;
        let visible = |e: &VersionEntry| include_deleted || !e.deleted;
        if let Some(id) = state.by_identity.get(&p.identity)
            && let Some((v, _)) = versions
                .iter()
                .rev()
                .find(|(_, e)| e.id == *id && visible(e))
        {
            return Some(*v);
        }
        let parsed = p.parsed.as_ref()?;
        let wanted_refs = normalized_references(&p.references);
        for (v, e) in versions.iter().rev().filter(|(_, e)| visible(e)) {
            let Some(entry) = state.schemas.get(&e.id) else {
                continue;
            };
            if entry.schema_type != p.schema_type
                || entry.metadata != p.metadata
                || entry.rule_set != p.rule_set
            {
                continue;
            }
            if normalized_references(&entry.references) != wanted_refs {
                continue;
            }
            if let Ok(stored) = self.parsed(state, e.id)
                && stored.normalized() == parsed.normalized()
            {
                return Some(*v);
            }
        }
        None
    }

    fn schema_response(
        &self,
        state: &State,
        subject: &str,
        version: i32,
        e: &VersionEntry,
        format: Option<&str>,
    ) -> Option<SchemaResponse> {
        let entry = state.schemas.get(&e.id)?;
        Some(SchemaResponse {
            subject: subject.to_string(),
            version,
            id: e.id,
            guid: guid(&entry.identity),
            schema_type: entry.schema_type,
            references: entry.references.clone(),
            metadata: entry.metadata.clone(),
            rule_set: entry.rule_set.clone(),
            schema: self.text_of(state, e.id, format),
            ts: e.ts,
            deleted: e.deleted,
        })
    }

    /// An id's schema text for a `format` (the stored text when it does not change it).
    fn text_of(&self, state: &State, id: i32, format: Option<&str>) -> String {
        let stored = state
            .schemas
            .get(&id)
            .map(|e| e.schema.clone())
            .unwrap_or_default();
        match format {
            Some(f) if !f.is_empty() => self
                .parsed(state, id)
                .map(|p| p.formatted(Some(f)))
                .unwrap_or(stored),
            _ => stored,
        }
    }

    /// `POST /subjects/{subject}/versions?normalize=&force=`: registers a schema, or returns the
    /// existing version when the subject already has it.
    pub fn register(
        &self,
        subject: &str,
        req: &RegisterRequest,
        normalize: bool,
        force: bool,
    ) -> Result<RegisterResponse, RegistryError> {
        if !is_valid_subject(subject) {
            return Err(RegistryError::invalid_subject(subject));
        }
        self.write("Register schema operation failed while writing to the Kafka store", |state| {
            let config = state.effective_config(Some(subject), self.options.default_compatibility);
            let normalize = normalize || config.get("normalize").and_then(Value::as_bool).unwrap_or(false);
            let mode = state.mode_in_scope(Some(subject));
            let import = mode == Mode::Import;
            let p = self.prepare(state, req, normalize, import)?;
            let same_id = |id: i32| req.id.is_none_or(|want| want < 0 || want == id);
            if let Some(v) = self.find_under_subject(state, subject, &p, false)
                && let Some(e) = state.versions(subject).and_then(|vs| vs.get(&v))
                && same_id(e.id)
                && req.version.is_none_or(|want| want == v)
            {
                return Ok((self.register_response(&p, e.id, v, e.ts), Vec::new()));
            }
            if mode.is_read_only() {
                return Err(RegistryError::read_only(subject));
            }
            let requested_id = req.id.filter(|id| *id >= 0);
            match (import, requested_id) {
                (true, None) => {
                    return Err(RegistryError::not_permitted(format!(
                        "Subject {subject} in context  is not in read-write mode"
                    )));
                }
                (false, Some(_)) => {
                    return Err(RegistryError::not_permitted(format!(
                        "Subject {subject} in context  is not in import mode"
                    )));
                }
                _ => {}
            }
            let id = match requested_id {
                Some(id) => {
                    if state.schemas.get(&id).is_some_and(|e| e.identity != p.identity) {
                        return Err(RegistryError::not_permitted(format!(
                            "Overwrite new schema with id {id} in context  is not permitted."
                        )));
                    }
                    id
                }
                None => match state.by_identity.get(&p.identity) {
                    Some(id) => *id,
                    None => state.max_id.checked_add(1).ok_or_else(|| RegistryError::store("schema ids are exhausted"))?,
                },
            };
            if !import && !force {
                let level = config
                    .get("compatibilityLevel")
                    .and_then(Value::as_str)
                    .and_then(|s| CompatibilityLevel::parse(s).ok())
                    .unwrap_or(self.options.default_compatibility);
                let policy = policy_of(&config);
                if let Some(parsed) = &p.parsed {
                    let messages = self.check_against_versions(state, subject, level, policy, parsed, None);
                    if !messages.is_empty() {
                        return Err(RegistryError::incompatible(subject, &messages));
                    }
                }
            }
            let versions = state.versions(subject);
            let next = versions.and_then(|vs| vs.keys().next_back().copied()).unwrap_or(0) + 1;
            let version = match req.version {
                Some(v) if import => {
                    if v < 1 {
                        return Err(RegistryError::invalid_version(&v.to_string()));
                    }
                    if versions.and_then(|vs| vs.get(&v)).is_some_and(|e| e.id != id) {
                        return Err(RegistryError::not_permitted(format!(
                            "Version {v} of subject {subject} already exists with another schema"
                        )));
                    }
                    v
                }
                Some(v) if v != next && v >= 0 => {
                    return Err(RegistryError::invalid_schema("Version is not one more than previous version"));
                }
                _ => next,
            };
            let mut records: Vec<Record> = Vec::new();
            // Re-registering a soft-deleted schema: the old version with the same id goes, unless
            // something still references it.
            for (v, e) in versions.into_iter().flatten() {
                if e.deleted && e.id == id && *v < version && state.referrers_of(subject, *v, true).is_empty() {
                    records.push(tombstone(&Key::Schema { subject: subject.to_string(), version: *v }));
                }
            }
            let ts = self.now();
            let value = SchemaValue {
                subject: subject.to_string(),
                version,
                id,
                schema_type: Some(p.schema_type.as_str().to_string()),
                references: p.references.clone(),
                metadata: p.metadata.clone(),
                rule_set: p.rule_set.clone(),
                schema: p.text.clone(),
                deleted: false,
                ts: Some(ts),
            };
            records.push(record(&Key::Schema { subject: subject.to_string(), version }, &value));
            Ok((self.register_response(&p, id, version, ts), records))
        })
    }

    fn register_response(&self, p: &Prepared, id: i32, version: i32, ts: i64) -> RegisterResponse {
        RegisterResponse {
            id,
            version,
            guid: guid(&p.identity),
            schema_type: p.schema_type,
            references: p.references.clone(),
            metadata: p.metadata.clone(),
            rule_set: p.rule_set.clone(),
            schema: p.submitted.clone(),
            ts,
            deleted: false,
        }
    }

    /// Checks `parsed` against the subject's undeleted versions (or one version) at `level`.
    pub(super) fn check_against_versions(
        &self,
        state: &State,
        subject: &str,
        level: CompatibilityLevel,
        policy: Policy,
        parsed: &ParsedSchema,
        only: Option<i32>,
    ) -> Vec<String> {
        let Some(versions) = state.versions(subject) else {
            return Vec::new();
        };
        let mut previous: Vec<(i32, Arc<ParsedSchema>)> = Vec::new();
        for (v, e) in versions.iter().rev() {
            if e.deleted || only.is_some_and(|o| o != *v) {
                continue;
            }
            if let Ok(p) = self.parsed(state, e.id) {
                previous.push((*v, p));
            }
        }
        let prev: Vec<PreviousSchema<'_>> = previous
            .iter()
            .map(|(v, p)| PreviousSchema {
                schema: p,
                version: Some(*v),
            })
            .collect();
        check_with_policy(level, policy, parsed, &prev)
    }

    /// `POST /subjects/{subject}?normalize=&deleted=`: the version of the subject holding this
    /// schema.
    pub fn lookup(
        &self,
        subject: &str,
        req: &RegisterRequest,
        normalize: bool,
        deleted: bool,
    ) -> Result<SchemaResponse, RegistryError> {
        let state = self.read();
        let visible = state
            .versions(subject)
            .is_some_and(|vs| vs.values().any(|e| deleted || !e.deleted));
        if !visible {
            return Err(RegistryError::subject_not_found(subject));
        }
        let config = state.effective_config(Some(subject), self.options.default_compatibility);
        let normalize = normalize
            || config
                .get("normalize")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let p = self.prepare(&state, req, normalize, false)?;
        let v = self
            .find_under_subject(&state, subject, &p, deleted)
            .ok_or_else(RegistryError::schema_not_found)?;
        let e = state
            .versions(subject)
            .and_then(|vs| vs.get(&v))
            .ok_or_else(RegistryError::schema_not_found)?;
        self.schema_response(&state, subject, v, e, None)
            .ok_or_else(RegistryError::schema_not_found)
    }

    /// `GET /subjects?subjectPrefix=&deleted=&deletedOnly=&offset=&limit=`, sorted.
    pub fn list_subjects(
        &self,
        prefix: Option<&str>,
        deleted: bool,
        deleted_only: bool,
        offset: usize,
        limit: i64,
    ) -> Vec<String> {
        let state = self.read();
        let subjects = state
            .subjects
            .iter()
            .filter(|(s, _)| prefix.is_none_or(|p| s.starts_with(p)))
            .filter(|(_, vs)| {
                let live = vs.values().any(|e| !e.deleted);
                if deleted_only { !live } else { deleted || live }
            })
            .map(|(s, _)| s.clone())
            .collect();
        page(subjects, offset, limit)
    }

    /// `GET /subjects/{s}/versions?deleted=&deletedOnly=&deletedAsNegative=&offset=&limit=`.
    pub fn list_versions(
        &self,
        subject: &str,
        deleted: bool,
        deleted_only: bool,
        deleted_as_negative: bool,
        offset: usize,
        limit: i64,
    ) -> Result<Vec<i32>, RegistryError> {
        let state = self.read();
        let versions = state
            .versions(subject)
            .ok_or_else(|| RegistryError::subject_not_found(subject))?;
        let list: Vec<i32> = versions
            .iter()
            .filter_map(|(v, e)| {
                if deleted_as_negative {
                    Some(if e.deleted { -v } else { *v })
                } else if deleted_only {
                    e.deleted.then_some(*v)
                } else {
                    (deleted || !e.deleted).then_some(*v)
                }
            })
            .collect();
        if list.is_empty() {
            return Err(RegistryError::subject_not_found(subject));
        }
        Ok(page(list, offset, limit))
    }

    /// Resolves a version id for reading: `latest` is the newest undeleted version; a number must
    /// exist and, unless `deleted`, not be soft-deleted.
    fn resolve_version<'s>(
        &self,
        state: &'s State,
        subject: &str,
        version: VersionId,
        deleted: bool,
    ) -> Result<(i32, &'s VersionEntry), RegistryError> {
        let versions = state
            .versions(subject)
            .ok_or_else(|| RegistryError::subject_not_found(subject))?;
        if !deleted && !versions.values().any(|e| !e.deleted) {
            return Err(RegistryError::subject_not_found(subject));
        }
        match version {
            VersionId::Latest => state
                .latest(subject)
                .ok_or_else(|| RegistryError::version_not_found(-1)),
            VersionId::Number(n) => match versions.get(&n) {
                Some(e) if deleted || !e.deleted => Ok((n, e)),
                _ => Err(RegistryError::version_not_found(n)),
            },
        }
    }

    /// `GET /subjects/{s}/versions/{v}?deleted=&format=`.
    pub fn get_version(
        &self,
        subject: &str,
        version: VersionId,
        deleted: bool,
        format: Option<&str>,
    ) -> Result<SchemaResponse, RegistryError> {
        let state = self.read();
        let (v, e) = self.resolve_version(&state, subject, version, deleted)?;
        self.schema_response(&state, subject, v, e, format)
            .ok_or_else(|| RegistryError::version_not_found(v))
    }

    /// `GET /subjects/{s}/versions/{v}/schema`: the raw schema text.
    pub fn get_version_schema(
        &self,
        subject: &str,
        version: VersionId,
        deleted: bool,
        format: Option<&str>,
    ) -> Result<String, RegistryError> {
        let state = self.read();
        let (_, e) = self.resolve_version(&state, subject, version, deleted)?;
        Ok(self.text_of(&state, e.id, format))
    }

    /// `GET /subjects/{s}/versions/{v}/referencedby?deleted=`: ids of the schemas referencing it.
    pub fn referenced_by(
        &self,
        subject: &str,
        version: VersionId,
        deleted: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        let state = self.read();
        let (v, _) = self.resolve_version(&state, subject, version, true)?;
        let mut ids: Vec<i32> = state
            .referrers_of(subject, v, deleted)
            .iter()
            .filter_map(|(s, rv)| state.versions(s).and_then(|vs| vs.get(rv)).map(|e| e.id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Config and mode tombstones when a subject's last version goes for good.
    fn forget_subject_settings(state: &State, subject: &str, records: &mut Vec<Record>) {
        if state.configs.contains_key(subject) {
            records.push(tombstone(&Key::Config {
                subject: Some(subject.to_string()),
            }));
        }
        if state.modes.contains_key(subject) {
            records.push(tombstone(&Key::Mode {
                subject: Some(subject.to_string()),
            }));
        }
    }

    /// `DELETE /subjects/{s}/versions/{v}?permanent=`: soft delete, or hard delete of a
    /// soft-deleted version. Returns the version.
    pub fn delete_version(
        &self,
        subject: &str,
        version: VersionId,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        self.write(
            "Error while deleting the schema in the backend Kafka store",
            |state| {
                let versions = state
                    .versions(subject)
                    .ok_or_else(|| RegistryError::subject_not_found(subject))?;
                let (v, e) = match version {
                    VersionId::Latest => state
                        .latest(subject)
                        .ok_or_else(|| RegistryError::version_not_found(-1))?,
                    VersionId::Number(n) => (
                        n,
                        versions
                            .get(&n)
                            .ok_or_else(|| RegistryError::version_not_found(n))?,
                    ),
                };
                if e.deleted && !permanent {
                    return Err(RegistryError::version_soft_deleted(subject, v));
                }
                if state.mode_in_scope(Some(subject)).is_read_only() {
                    return Err(RegistryError::read_only(subject));
                }
                if !state.referrers_of(subject, v, permanent).is_empty() {
                    return Err(RegistryError::reference_exists(subject, v));
                }
                if permanent && !e.deleted {
                    return Err(RegistryError::version_not_soft_deleted(subject, v));
                }
                let key = Key::Schema {
                    subject: subject.to_string(),
                    version: v,
                };
                let mut records = Vec::new();
                if permanent {
                    records.push(tombstone(&key));
                    if versions.len() == 1 {
                        Self::forget_subject_settings(state, subject, &mut records);
                    }
                } else {
                    let entry = state
                        .schemas
                        .get(&e.id)
                        .ok_or_else(|| RegistryError::version_not_found(v))?;
                    let value = SchemaValue {
                        subject: subject.to_string(),
                        version: v,
                        id: e.id,
                        schema_type: Some(entry.schema_type.as_str().to_string()),
                        references: entry.references.clone(),
                        metadata: entry.metadata.clone(),
                        rule_set: entry.rule_set.clone(),
                        schema: entry.schema.clone(),
                        deleted: true,
                        ts: Some(e.ts),
                    };
                    records.push(record(&key, &value));
                }
                Ok((v, records))
            },
        )
    }

    /// `DELETE /subjects/{s}?permanent=`: the versions deleted (soft: the undeleted ones; hard:
    /// all, which must all be soft-deleted already).
    pub fn delete_subject(
        &self,
        subject: &str,
        permanent: bool,
    ) -> Result<Vec<i32>, RegistryError> {
        self.write(
            "Error while deleting the subject in the backend Kafka store",
            |state| {
                let versions = state
                    .versions(subject)
                    .filter(|vs| !vs.is_empty())
                    .ok_or_else(|| RegistryError::subject_not_found(subject))?;
                if !permanent && versions.values().all(|e| e.deleted) {
                    return Err(RegistryError::subject_soft_deleted(subject));
                }
                if state.mode_in_scope(Some(subject)).is_read_only() {
                    return Err(RegistryError::read_only(subject));
                }
                let mut deleted = Vec::new();
                for (v, e) in versions {
                    if !permanent && e.deleted {
                        continue;
                    }
                    let outside = state
                        .referrers_of(subject, *v, permanent)
                        .into_iter()
                        .any(|(s, _)| s != subject);
                    if outside {
                        return Err(RegistryError::reference_exists(subject, *v));
                    }
                    if permanent && !e.deleted {
                        return Err(RegistryError::subject_not_soft_deleted(subject));
                    }
                    deleted.push(*v);
                }
                let mut records = Vec::new();
                if permanent {
                    for v in deleted.iter().rev() {
                        records.push(tombstone(&Key::Schema {
                            subject: subject.to_string(),
                            version: *v,
                        }));
                    }
                    Self::forget_subject_settings(state, subject, &mut records);
                } else if let Some(&last) = deleted.last() {
                    let value = DeleteSubjectValue {
                        subject: subject.to_string(),
                        version: last,
                    };
                    records.push(record(
                        &Key::DeleteSubject {
                            subject: subject.to_string(),
                        },
                        &value,
                    ));
                }
                Ok((deleted, records))
            },
        )
    }

    /// `GET /schemas/ids/{id}?subject=&format=&fetchMaxId=`. The id resolves while any version
    /// holds it, soft-deleted ones included; `subject` is a hint, not a filter.
    pub fn schema_by_id(
        &self,
        id: i32,
        subject: Option<&str>,
        format: Option<&str>,
        fetch_max_id: bool,
    ) -> Result<SchemaStringResponse, RegistryError> {
        let state = self.read();
        let entry = state
            .schemas
            .get(&id)
            .ok_or_else(|| RegistryError::schema_id_not_found(id))?;
        let holder = subject
            .and_then(|s| entry.holders.iter().rev().find(|(hs, _)| hs == s))
            .or_else(|| entry.holders.iter().next());
        let version_entry = holder.and_then(|(s, v)| state.versions(s).and_then(|vs| vs.get(v)));
        Ok(SchemaStringResponse {
            schema_type: entry.schema_type,
            schema: self.text_of(&state, id, format),
            references: entry.references.clone(),
            metadata: entry.metadata.clone(),
            rule_set: entry.rule_set.clone(),
            subject: subject.and(holder.map(|(s, _)| s.clone())),
            version: subject.and(holder.map(|(_, v)| *v)),
            guid: guid(&entry.identity),
            ts: version_entry.map_or(0, |e| e.ts),
            deleted: subject.is_some() && version_entry.is_some_and(|e| e.deleted),
            max_id: fetch_max_id.then_some(state.max_id),
        })
    }

    /// `GET /schemas/ids/{id}/schema`: the raw text (404/40403 for an unknown id, where Confluent
    /// answers 500).
    pub fn schema_text_by_id(
        &self,
        id: i32,
        format: Option<&str>,
    ) -> Result<String, RegistryError> {
        let state = self.read();
        if !state.schemas.contains_key(&id) {
            return Err(RegistryError::schema_id_not_found(id));
        }
        Ok(self.text_of(&state, id, format))
    }

    /// `GET /schemas/guids/{guid}`.
    pub fn schema_by_guid(
        &self,
        guid_text: &str,
        format: Option<&str>,
    ) -> Result<SchemaStringResponse, RegistryError> {
        let id = {
            let state = self.read();
            let hex: String = guid_text.chars().filter(|c| *c != '-').collect();
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect();
            let ident: Option<[u8; 16]> = bytes.and_then(|b| b.try_into().ok());
            ident.and_then(|i| state.by_identity.get(&i).copied())
        };
        match id {
            Some(id) => self.schema_by_id(id, None, format, false),
            None => Err(RegistryError::schema_not_found()),
        }
    }

    fn holders_of(&self, id: i32, deleted: bool) -> Result<Vec<(String, i32)>, RegistryError> {
        let state = self.read();
        let entry = state
            .schemas
            .get(&id)
            .ok_or_else(RegistryError::schema_not_found)?;
        Ok(entry
            .holders
            .iter()
            .filter(|(s, v)| {
                deleted
                    || state
                        .versions(s)
                        .and_then(|vs| vs.get(v))
                        .is_some_and(|e| !e.deleted)
            })
            .cloned()
            .collect())
    }

    /// `GET /schemas/ids/{id}/subjects?deleted=`.
    pub fn subjects_for_id(
        &self,
        id: i32,
        deleted: bool,
        offset: usize,
        limit: i64,
    ) -> Result<Vec<String>, RegistryError> {
        let mut subjects: Vec<String> = self
            .holders_of(id, deleted)?
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        subjects.dedup();
        Ok(page(subjects, offset, limit))
    }

    /// `GET /schemas/ids/{id}/versions?deleted=`.
    pub fn versions_for_id(
        &self,
        id: i32,
        deleted: bool,
        offset: usize,
        limit: i64,
    ) -> Result<Vec<SubjectVersion>, RegistryError> {
        let list = self
            .holders_of(id, deleted)?
            .into_iter()
            .map(|(subject, version)| SubjectVersion { subject, version })
            .collect();
        Ok(page(list, offset, limit))
    }

    /// `GET /schemas?subjectPrefix=&deleted=&latestOnly=&offset=&limit=`, by subject then version.
    pub fn list_schemas(
        &self,
        prefix: Option<&str>,
        deleted: bool,
        latest_only: bool,
        offset: usize,
        limit: i64,
    ) -> Vec<SchemaResponse> {
        let state = self.read();
        let mut out = Vec::new();
        for (subject, versions) in state
            .subjects
            .iter()
            .filter(|(s, _)| prefix.is_none_or(|p| s.starts_with(p)))
        {
            let visible: Vec<(&i32, &VersionEntry)> = versions
                .iter()
                .filter(|(_, e)| deleted || !e.deleted)
                .collect();
            let chosen: Vec<(&i32, &VersionEntry)> = if latest_only {
                visible.last().copied().into_iter().collect()
            } else {
                visible
            };
            for (v, e) in chosen {
                out.extend(self.schema_response(&state, subject, *v, e, None));
            }
        }
        page(out, offset, limit)
    }

    /// `GET /schemas/types`.
    pub fn schema_types(&self) -> Vec<&'static str> {
        SchemaType::ALL.iter().map(|t| t.as_str()).collect()
    }

    /// `GET /contexts`: only the default context exists.
    pub fn contexts(&self) -> Vec<String> {
        vec![".".to_string()]
    }

    /// `GET /associations/resources/{namespace}/{name}`: no associations, ever. confluent-kafka
    /// (2.16+) asks on every first record and falls back to `<topic>-key|value` on `[]`; any
    /// error status would fail its produce and consume.
    pub fn associations(&self, _namespace: &str, _resource: &str) -> Vec<Value> {
        Vec::new()
    }
}

pub(super) fn policy_of(config: &serde_json::Map<String, Value>) -> Policy {
    match config.get("compatibilityPolicy").and_then(Value::as_str) {
        Some(p) if p.eq_ignore_ascii_case("LENIENT") => Policy::Lenient,
        _ => Policy::Strict,
    }
}
