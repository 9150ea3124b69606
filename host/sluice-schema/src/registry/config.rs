//! Compatibility configuration, modes and the compatibility-check endpoints.

use serde_json::{Map, Value};

use super::api::{
    CONFIG_KEYS, CompatibilityResponse, ConfigResponse, ConfigUpdate, ModeResponse, ModeUpdate,
    RegisterRequest,
};
use super::records::{ClearSubjectValue, ConfigValue, Key, ModeValue, record, tombstone};
use super::subjects::policy_of;
use super::{Record, Registry};
use crate::error::RegistryError;
use crate::types::{CompatibilityLevel, Mode, VersionId, is_valid_subject};

/// Java prints a null subject as `null` in the read-only message of global operations.
const GLOBAL: &str = "null";

impl Registry {
    fn level_of(&self, config: &Map<String, Value>) -> CompatibilityLevel {
        config
            .get("compatibilityLevel")
            .and_then(Value::as_str)
            .and_then(|s| CompatibilityLevel::parse(s).ok())
            .unwrap_or(self.options.default_compatibility)
    }

    /// `GET /config`: the global config (the server default until one is PUT).
    pub fn get_global_config(&self) -> ConfigResponse {
        let state = self.read();
        let map = state.effective_config(None, self.options.default_compatibility);
        ConfigResponse::from_map(&map, self.options.default_compatibility)
    }

    /// `GET /config/{s}?defaultToGlobal=`: the subject's own config; 40408 when it has none,
    /// unless `default_to_global` (then the effective config, never 404). kafkajs reads any 404
    /// as "first registration".
    pub fn get_subject_config(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<ConfigResponse, RegistryError> {
        let state = self.read();
        if default_to_global {
            let map = state.effective_config(Some(subject), self.options.default_compatibility);
            return Ok(ConfigResponse::from_map(
                &map,
                self.options.default_compatibility,
            ));
        }
        let own = state
            .config_map(Some(subject))
            .ok_or_else(|| RegistryError::subject_config_not_found(subject))?;
        let level = own
            .get("compatibilityLevel")
            .and_then(Value::as_str)
            .and_then(|s| CompatibilityLevel::parse(s).ok());
        let mut resp = ConfigResponse::from_map(own, self.options.default_compatibility);
        if level.is_none() {
            // A subject config without a level (e.g. only `normalize`) shows the global level.
            let global = state.effective_config(None, self.options.default_compatibility);
            resp.compatibility_level = self.level_of(&global);
        }
        Ok(resp)
    }

    /// Merges a PUT body into a stored config: `compatibility` becomes `compatibilityLevel`
    /// (upper-case), the other known keys are kept as given, unknown ones ignored.
    fn merged_config(
        old: Option<&Map<String, Value>>,
        update: &ConfigUpdate,
    ) -> Result<(Map<String, Value>, ConfigUpdate), RegistryError> {
        let mut stored = old.cloned().unwrap_or_default();
        let mut echo = Map::new();
        for (k, v) in &update.0 {
            match k.as_str() {
                "compatibility" | "compatibilityLevel" => {
                    if v.is_null() {
                        continue;
                    }
                    let level = v
                        .as_str()
                        .ok_or_else(RegistryError::invalid_compatibility_level)
                        .and_then(CompatibilityLevel::parse)?;
                    stored.insert(
                        "compatibilityLevel".into(),
                        Value::String(level.as_str().into()),
                    );
                    echo.insert("compatibility".into(), Value::String(level.as_str().into()));
                }
                key if CONFIG_KEYS.contains(&key) => {
                    if v.is_null() {
                        continue;
                    }
                    let v = if key == "compatibilityPolicy" {
                        Value::String(v.as_str().unwrap_or_default().to_ascii_uppercase())
                    } else {
                        v.clone()
                    };
                    stored.insert(k.clone(), v.clone());
                    echo.insert(k.clone(), v);
                }
                _ => {}
            }
        }
        Ok((stored, ConfigUpdate(echo)))
    }

    fn put_config(
        &self,
        subject: Option<&str>,
        update: &ConfigUpdate,
    ) -> Result<ConfigUpdate, RegistryError> {
        if let Some(s) = subject
            && !is_valid_subject(s)
        {
            return Err(RegistryError::invalid_subject(s));
        }
        self.write("Failed to write new config value to the store", |state| {
            if state.mode_in_scope(subject).is_read_only() {
                return Err(RegistryError::read_only(subject.unwrap_or(GLOBAL)));
            }
            let (stored, echo) = Self::merged_config(state.config_map(subject), update)?;
            let key = Key::Config {
                subject: subject.map(String::from),
            };
            let bytes = ConfigValue(stored).to_bytes(subject);
            Ok((echo, vec![(key.to_bytes(), Some(bytes))]))
        })
    }

    /// `PUT /config`: merges into the global config; answers the accepted keys
    /// (`{"compatibility": "FULL"}`).
    pub fn put_global_config(&self, update: &ConfigUpdate) -> Result<ConfigUpdate, RegistryError> {
        self.put_config(None, update)
    }

    /// `PUT /config/{s}` (allowed for subjects without schemas).
    pub fn put_subject_config(
        &self,
        subject: &str,
        update: &ConfigUpdate,
    ) -> Result<ConfigUpdate, RegistryError> {
        self.put_config(Some(subject), update)
    }

    /// `DELETE /config`: back to the server default; answers the config that was in effect.
    pub fn delete_global_config(&self) -> Result<ConfigResponse, RegistryError> {
        self.write("Failed to delete config value from store", |state| {
            if state.mode_in_scope(None).is_read_only() {
                return Err(RegistryError::read_only(GLOBAL));
            }
            let old = ConfigResponse::from_map(
                &state.effective_config(None, self.options.default_compatibility),
                self.options.default_compatibility,
            );
            let records = if state.global_config.is_some() {
                vec![tombstone(&Key::Config { subject: None })]
            } else {
                Vec::new()
            };
            Ok((old, records))
        })
    }

    /// `DELETE /config/{s}`: 40401 (not 40408) when the subject has no config.
    pub fn delete_subject_config(&self, subject: &str) -> Result<ConfigResponse, RegistryError> {
        self.write(
            "Failed to delete subject config value from store",
            |state| {
                if state.mode_in_scope(Some(subject)).is_read_only() {
                    return Err(RegistryError::read_only(subject));
                }
                let own = state
                    .config_map(Some(subject))
                    .ok_or_else(|| RegistryError::subject_not_found(subject))?;
                let old = ConfigResponse::from_map(own, self.options.default_compatibility);
                Ok((
                    old,
                    vec![tombstone(&Key::Config {
                        subject: Some(subject.to_string()),
                    })],
                ))
            },
        )
    }

    /// `GET /mode`.
    pub fn get_global_mode(&self) -> ModeResponse {
        ModeResponse {
            mode: self.read().global_mode.unwrap_or(Mode::Readwrite),
        }
    }

    /// `GET /mode/{s}?defaultToGlobal=`: 40409 when the subject has none and not
    /// `default_to_global`.
    pub fn get_subject_mode(
        &self,
        subject: &str,
        default_to_global: bool,
    ) -> Result<ModeResponse, RegistryError> {
        let state = self.read();
        match state.modes.get(subject) {
            Some(m) => Ok(ModeResponse { mode: *m }),
            None if default_to_global => Ok(ModeResponse {
                mode: state.mode_in_scope(Some(subject)),
            }),
            None => Err(RegistryError::subject_mode_not_found(subject)),
        }
    }

    fn put_mode(
        &self,
        subject: Option<&str>,
        update: &ModeUpdate,
        force: bool,
    ) -> Result<ModeUpdate, RegistryError> {
        if !self.options.allow_mode_changes {
            return Err(RegistryError::not_permitted("Mode changes are not allowed"));
        }
        if let Some(s) = subject
            && !is_valid_subject(s)
        {
            return Err(RegistryError::invalid_subject(s));
        }
        let mode = Mode::parse(&update.mode)?;
        if mode == Mode::Forward && subject.is_some() {
            return Err(RegistryError::invalid_mode(
                "Forward mode only supported on global level",
            ));
        }
        self.write("Failed to write new mode to the store", |state| {
            let mut records: Vec<Record> = Vec::new();
            if mode == Mode::Import && state.mode_in_scope(subject) != Mode::Import && !force {
                let in_scope: Vec<&String> = state
                    .subjects
                    .keys()
                    .filter(|s| subject.is_none_or(|x| x == s.as_str()))
                    .collect();
                if in_scope.iter().any(|s| state.has_live_versions(s)) {
                    return Err(RegistryError::not_permitted(
                        "Cannot import since found existing subjects",
                    ));
                }
                // Soft-deleted leftovers are hard-deleted first (unless referenced).
                for s in in_scope {
                    for v in state.versions(s).into_iter().flat_map(|vs| vs.keys()) {
                        if !state.referrers_of(s, *v, true).is_empty() {
                            return Err(RegistryError::reference_exists(s, *v));
                        }
                        records.push(tombstone(&Key::Schema {
                            subject: s.clone(),
                            version: *v,
                        }));
                    }
                }
                let clear = ClearSubjectValue {
                    subject: subject.map(String::from),
                };
                records.push(record(
                    &Key::ClearSubject {
                        subject: subject.map(String::from),
                    },
                    &clear,
                ));
            }
            let value = ModeValue {
                subject: subject.map(String::from),
                mode,
            };
            records.push(record(
                &Key::Mode {
                    subject: subject.map(String::from),
                },
                &value,
            ));
            Ok((
                ModeUpdate {
                    mode: mode.as_str().to_string(),
                },
                records,
            ))
        })
    }

    /// `PUT /mode?force=`: answers the body. Switching to IMPORT with live schemas needs `force`.
    pub fn put_global_mode(
        &self,
        update: &ModeUpdate,
        force: bool,
    ) -> Result<ModeUpdate, RegistryError> {
        self.put_mode(None, update, force)
    }

    /// `PUT /mode/{s}?force=`.
    pub fn put_subject_mode(
        &self,
        subject: &str,
        update: &ModeUpdate,
        force: bool,
    ) -> Result<ModeUpdate, RegistryError> {
        self.put_mode(Some(subject), update, force)
    }

    /// `DELETE /mode`: answers the mode that was in effect (READWRITE by default).
    pub fn delete_global_mode(&self) -> Result<ModeResponse, RegistryError> {
        self.write("Failed to delete mode from the store", |state| {
            let old = ModeResponse {
                mode: state.global_mode.unwrap_or(Mode::Readwrite),
            };
            let records = if state.global_mode.is_some() {
                vec![tombstone(&Key::Mode { subject: None })]
            } else {
                Vec::new()
            };
            Ok((old, records))
        })
    }

    /// `DELETE /mode/{s}`: 40401 when the subject has no mode.
    pub fn delete_subject_mode(&self, subject: &str) -> Result<ModeResponse, RegistryError> {
        self.write("Failed to delete mode from the store", |state| {
            let old = state
                .modes
                .get(subject)
                .copied()
                .ok_or_else(|| RegistryError::subject_not_found(subject))?;
            Ok((
                ModeResponse { mode: old },
                vec![tombstone(&Key::Mode {
                    subject: Some(subject.to_string()),
                })],
            ))
        })
    }

    /// `POST /compatibility/subjects/{s}/versions[/{v}]?normalize=&verbose=`. With a version,
    /// checks against that one version (a missing `latest` is compatible, a missing number
    /// 40402); without, against every undeleted version as register would. With `verbose`, an
    /// invalid schema is an incompatible answer carrying the 42201 text rather than an error.
    pub fn check_compatibility(
        &self,
        subject: &str,
        version: Option<VersionId>,
        req: &RegisterRequest,
        normalize: bool,
        verbose: bool,
    ) -> Result<CompatibilityResponse, RegistryError> {
        let state = self.read();
        let config = state.effective_config(Some(subject), self.options.default_compatibility);
        let normalize = normalize
            || config
                .get("normalize")
                .and_then(Value::as_bool)
                .unwrap_or(false);
        let only = match version {
            None => None,
            Some(VersionId::Latest) => match state.latest(subject) {
                Some((v, _)) => Some(v),
                None => {
                    return Ok(CompatibilityResponse {
                        is_compatible: true,
                        messages: verbose.then(Vec::new),
                    });
                }
            },
            Some(VersionId::Number(n)) => {
                let live = state
                    .versions(subject)
                    .and_then(|vs| vs.get(&n))
                    .is_some_and(|e| !e.deleted);
                if !live {
                    return Err(RegistryError::version_not_found(n));
                }
                Some(n)
            }
        };
        let prepared = match self.prepare(&state, req, normalize, false) {
            Ok(p) => p,
            Err(e) if verbose && e.error_code == 42201 => {
                return Ok(CompatibilityResponse {
                    is_compatible: false,
                    messages: Some(vec![e.message]),
                });
            }
            Err(e) => return Err(e),
        };
        let Some(parsed) = &prepared.parsed else {
            return Err(RegistryError::invalid_schema("Empty schema"));
        };
        let level = self.level_of(&config);
        let messages =
            self.check_against_versions(&state, subject, level, policy_of(&config), parsed, only);
        Ok(CompatibilityResponse {
            is_compatible: messages.is_empty(),
            messages: verbose.then_some(messages),
        })
    }
}
