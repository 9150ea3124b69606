//! The plugin store: uploaded components by name and version, on disk, compiled on demand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use sluice_common::fs::write_file;
use sluice_runtime::{Compiled, Runtime, RuntimeError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginVersion {
    pub version: u32,
    pub digest: String,
    pub size_bytes: usize,
    pub uploaded_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("unknown plugin {0}")]
    Unknown(String),
    #[error("plugin {name} has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    #[error("invalid plugin name {0:?}: use 1-100 of [a-zA-Z0-9._-]")]
    BadName(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("plugin store i/o on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub use sluice_deploy::names::valid_name;

/// Components under `<data>/plugins/<name>/<version>.wasm`, with `versions.json` beside them.
#[derive(Debug)]
pub struct PluginStore {
    dir: PathBuf,
    runtime: Arc<Runtime>,
    index: Mutex<BTreeMap<String, Vec<PluginVersion>>>,
    compiled: Mutex<BTreeMap<String, Arc<Compiled>>>,
}

impl PluginStore {
    pub fn open(dir: &Path, runtime: Arc<Runtime>) -> Result<PluginStore, PluginError> {
        let io = |e| PluginError::Io {
            path: dir.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut index = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                continue;
            }
            let Ok(text) = std::fs::read(entry.path().join("versions.json")) else {
                continue;
            };
            match serde_json::from_slice::<Vec<PluginVersion>>(&text) {
                Ok(v) if !v.is_empty() => {
                    index.insert(name, v);
                }
                _ => tracing::warn!(plugin = %name, "unreadable plugin index ignored"),
            }
        }
        Ok(PluginStore {
            dir: dir.to_path_buf(),
            runtime,
            index: Mutex::new(index),
            compiled: Mutex::default(),
        })
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<PluginVersion>>> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Validates and compiles `bytes`, then stores them as the next version; bytes equal to
    /// a stored version's are that version (`false`: nothing new). Blocking.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<(PluginVersion, bool), PluginError> {
        if !valid_name(name) {
            return Err(PluginError::BadName(name.to_string()));
        }
        if let Some(same) = self.with_digest(name, &sluice_runtime::digest(bytes)) {
            return Ok((same, false));
        }
        let compiled = self.runtime.compile(bytes)?;
        let dir = self.dir.join(name);
        let io = |e| PluginError::Io {
            path: dir.clone(),
            source: e,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut index = self.lock_index();
        let versions = index.entry(name.to_string()).or_default();
        // Two uploads of the same bytes at once: the first one stored is the version.
        if let Some(same) = versions.iter().find(|v| v.digest == compiled.digest) {
            return Ok((same.clone(), false));
        }
        let version = versions.last().map_or(1, |v| v.version + 1);
        write_file(&dir.join(format!("{version}.wasm")), bytes).map_err(io)?;
        let v = PluginVersion {
            version,
            digest: compiled.digest.clone(),
            size_bytes: bytes.len(),
            uploaded_ms: sluice_log::now_ms(),
        };
        versions.push(v.clone());
        let json = serde_json::to_vec_pretty(versions).unwrap_or_default();
        write_file(&dir.join("versions.json"), &json).map_err(io)?;
        drop(index);
        self.compiled_lock()
            .insert(format!("{name}@{version}"), compiled);
        tracing::info!(plugin = name, version, digest = %v.digest, "plugin uploaded");
        Ok((v, true))
    }

    /// The stored version of `name` whose bytes have `digest`.
    fn with_digest(&self, name: &str, digest: &str) -> Option<PluginVersion> {
        self.lock_index()
            .get(name)?
            .iter()
            .find(|v| v.digest == digest)
            .cloned()
    }

    fn compiled_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Compiled>>> {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list(&self) -> BTreeMap<String, Vec<PluginVersion>> {
        self.lock_index().clone()
    }

    pub fn versions(&self, name: &str) -> Result<Vec<PluginVersion>, PluginError> {
        self.lock_index()
            .get(name)
            .cloned()
            .ok_or_else(|| PluginError::Unknown(name.to_string()))
    }

    pub fn latest(&self, name: &str) -> Result<u32, PluginError> {
        self.versions(name)?
            .last()
            .map(|v| v.version)
            .ok_or_else(|| PluginError::Unknown(name.to_string()))
    }

    /// The compiled component of one version (from memory, the artifact cache, or compiled).
    /// Blocking.
    pub fn compiled(&self, name: &str, version: u32) -> Result<Arc<Compiled>, PluginError> {
        let key = format!("{name}@{version}");
        if let Some(c) = self.compiled_lock().get(&key) {
            return Ok(c.clone());
        }
        if !self.versions(name)?.iter().any(|v| v.version == version) {
            return Err(PluginError::UnknownVersion {
                name: name.to_string(),
                version,
            });
        }
        let path = self.dir.join(name).join(format!("{version}.wasm"));
        let bytes = std::fs::read(&path).map_err(|e| PluginError::Io { path, source: e })?;
        let c = self.runtime.compile(&bytes)?;
        self.compiled_lock().insert(key, c.clone());
        Ok(c)
    }

    pub fn delete(&self, name: &str) -> Result<(), PluginError> {
        self.lock_index()
            .remove(name)
            .ok_or_else(|| PluginError::Unknown(name.to_string()))?;
        self.compiled_lock()
            .retain(|k, _| !k.starts_with(&format!("{name}@")));
        let dir = self.dir.join(name);
        std::fs::remove_dir_all(&dir).map_err(|e| PluginError::Io {
            path: dir,
            source: e,
        })
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}
