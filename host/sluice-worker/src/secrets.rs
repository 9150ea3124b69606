//! Deployment secrets on a worker group: the deployments live in the cluster's control
//! topic, which the cluster's clients may read, so their secrets are sealed there with
//! AES-256-GCM under a key given to the workers (`--secrets-key-file`), never to the
//! cluster. A sealed value is `enc:v1:<base64(nonce ‖ ciphertext ‖ tag)>`, with the
//! deployment's and the secret's names as associated data (a sealed value copied into
//! another deployment or secret does not open). A worker without the key runs no
//! deployment that has secrets, and says why.

use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sluice_pipeline::TransformSpec;

const PREFIX: &str = "enc:v1:";

/// The key that seals a worker group's deployment secrets.
#[derive(Clone)]
pub struct SecretsKey(Aes256Gcm);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(***)")
    }
}

impl SecretsKey {
    /// A key from its text: 32 bytes as 64 hex digits or as base64.
    pub fn from_text(text: &str) -> Result<SecretsKey, String> {
        let t = text.trim();
        let bytes = hex::decode(t)
            .ok()
            .filter(|b| b.len() == 32)
            .or_else(|| B64.decode(t).ok().filter(|b| b.len() == 32))
            .ok_or("a secrets key is 32 bytes, as 64 hex digits or base64 (e.g. `openssl rand -hex 32`)")?;
        Aes256Gcm::new_from_slice(&bytes)
            .map(SecretsKey)
            .map_err(|e| e.to_string())
    }

    /// The key in a file (see [`SecretsKey::from_text`]).
    pub fn load(path: &Path) -> Result<SecretsKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("secrets key file {}: {e}", path.display()))?;
        SecretsKey::from_text(&text)
            .map_err(|e| format!("secrets key file {}: {e}", path.display()))
    }

    fn aad(deployment: &str, name: &str) -> Vec<u8> {
        format!("{deployment}\0{name}").into_bytes()
    }

    pub fn seal(&self, deployment: &str, name: &str, value: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = Self::aad(deployment, name);
        // Encryption with a valid key and nonce does not fail.
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", B64.encode(out))
    }

    pub fn open(&self, deployment: &str, name: &str, sealed: &str) -> Result<String, String> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| B64.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or_else(|| format!("secret {name} of {deployment} is not sealed"))?;
        let (nonce, ct) = raw.split_at(12);
        let aad = Self::aad(deployment, name);
        let plain = self
            .0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| {
                format!(
                    "secret {name} of {deployment} does not open with this worker's secrets key (another key sealed it)"
                )
            })?;
        String::from_utf8(plain).map_err(|e| e.to_string())
    }
}

/// The spec as stored: every secret sealed.
pub fn seal_spec(key: &SecretsKey, deployment: &str, mut spec: TransformSpec) -> TransformSpec {
    for (name, value) in &mut spec.secrets {
        *value = key.seal(deployment, name, value);
    }
    spec
}

/// The spec as run: every secret opened. Without a key, a spec with secrets cannot run.
pub fn open_spec(
    key: Option<&SecretsKey>,
    deployment: &str,
    mut spec: TransformSpec,
) -> Result<TransformSpec, String> {
    if spec.secrets.is_empty() {
        return Ok(spec);
    }
    let key = key.ok_or_else(|| {
        format!(
            "deployment {deployment} has secrets, and this worker has no secrets key to open them (start it with --secrets-key-file, the same key as the workers that deployed it)"
        )
    })?;
    for (name, value) in &mut spec.secrets {
        *value = key.open(deployment, name, value)?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_where_they_were_sealed() {
        let key = SecretsKey::from_text(&"ab".repeat(32)).unwrap();
        let sealed = key.seal("d", "k", "hunter2");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            key.seal("d", "k", "hunter2"),
            "a fresh nonce each time"
        );
        assert_eq!(key.open("d", "k", &sealed).unwrap(), "hunter2");
        assert!(key.open("other", "k", &sealed).is_err());
        assert!(key.open("d", "other", &sealed).is_err());
        let other = SecretsKey::from_text(&B64.encode([7u8; 32])).unwrap();
        assert!(other.open("d", "k", &sealed).is_err());
        assert!(key.open("d", "k", "plain").is_err());
        assert!(SecretsKey::from_text("short").is_err());
    }
}
