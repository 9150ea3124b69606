//! Field-level encryption of JSON values with AES-256-GCM (feature `crypto`).
//!
//! A field is replaced in place by an envelope `{"enc":"v1","kid":KEY_ID,"ct":BASE64}`, where
//! the ciphertext holds a 12-byte nonce, then the AES-256-GCM encryption of the field's
//! compact JSON text (any JSON value: strings, numbers, objects), then the tag. The field's
//! location (its JSON pointer) is authenticated too, so an envelope moved to another field
//! does not decrypt. Only holders of the key can read the field, wherever the record goes.
//!
//! Keys come from a keyring — `id:base64,id:base64` (32-byte keys), kept in a deployment's
//! secret config — and are named by id in every envelope, so keys rotate: encrypt with the
//! new id, keep the old ones in the decrypting keyring for what was written with them.
//!
//! Nonces are synthetic: an HMAC-SHA-256, under a key derived from the encryption key, of the
//! field's pointer, the caller's context (the record's topic, partition and offset) and the
//! plaintext. Every record gets its own ciphertext, and a replay after a crash writes the
//! same bytes again; a nonce only repeats for the same key, field, context and plaintext —
//! which is the same message, so nothing leaks that the position does not already tell.
//!
//! ```
//! use sluice_sdk::crypto::{Keyring, decrypt_fields, encrypt_fields};
//! let ring = Keyring::parse("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", None).unwrap();
//! let mut doc = serde_json::json!({"user": "ann", "ssn": "123-45-6789"});
//! encrypt_fields(&mut doc, &["ssn".into()], &ring, b"topic/0/42").unwrap();
//! assert_eq!(doc["ssn"]["enc"], "v1");
//! decrypt_fields(&mut doc, None, &ring).unwrap();
//! assert_eq!(doc["ssn"], "123-45-6789");
//! ```

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::Error;

/// The envelope format written in place of an encrypted field.
pub const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

struct Key {
    cipher: Aes256Gcm,
    nonce_key: [u8; 32],
}

/// Keys by id, and the one that encrypts.
pub struct Keyring {
    keys: BTreeMap<String, Key>,
    current: String,
}

impl std::fmt::Debug for Keyring {
    /// Ids only: key bytes are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids())
            .field("current", &self.current)
            .finish()
    }
}

fn derive_nonce_key(key: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC takes keys of any length.
        unreachable!("HMAC accepts every key length")
    });
    mac.update(b"sluice-enc-v1 nonce key");
    mac.finalize().into_bytes().into()
}

impl Keyring {
    /// Parses `id:base64key,id:base64key` (32-byte keys, standard base64). `current` names
    /// the key that encrypts; by default the first listed.
    pub fn parse(spec: &str, current: Option<&str>) -> Result<Keyring, Error> {
        let mut keys = BTreeMap::new();
        let mut first = None;
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (id, b64) = item.split_once(':').ok_or_else(|| {
                Error::new("a keyring entry is id:base64key (the key is not shown)")
            })?;
            let id = id.trim();
            if id.is_empty() || id.len() > 64 {
                return Err(Error::new("a key id is 1 to 64 characters"));
            }
            let raw = crate::text::base64_decode(b64.trim())
                .map_err(|_| Error::new(format!("key {id:?} is not base64")))?;
            if raw.len() != 32 {
                return Err(Error::new(format!(
                    "key {id:?} is {} bytes; AES-256 needs 32",
                    raw.len()
                )));
            }
            let cipher = Aes256Gcm::new_from_slice(&raw)
                .map_err(|_| Error::new(format!("key {id:?} is not a valid AES-256 key")))?;
            let key = Key {
                nonce_key: derive_nonce_key(&raw),
                cipher,
            };
            if keys.insert(id.to_string(), key).is_some() {
                return Err(Error::new(format!("key {id:?} is listed twice")));
            }
            first.get_or_insert_with(|| id.to_string());
        }
        let Some(first) = first else {
            return Err(Error::new("the keyring is empty"));
        };
        let current = current.map_or(first, str::to_string);
        if !keys.contains_key(&current) {
            return Err(Error::new(format!(
                "key_id {current:?} is not in the keyring"
            )));
        }
        Ok(Keyring { keys, current })
    }

    /// The ids of the keys, in order.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// The id of the key that encrypts.
    pub fn current(&self) -> &str {
        &self.current
    }

    /// The envelope of `plaintext`, encrypted with the current key for the field at
    /// `pointer` (a JSON pointer), with `context` (e.g. the record's position) in the nonce.
    pub fn seal(&self, pointer: &str, plaintext: &[u8], context: &[u8]) -> Result<Value, Error> {
        let key = &self.keys[&self.current];
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.nonce_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        for part in [pointer.as_bytes(), context, plaintext] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        let tag = mac.finalize().into_bytes();
        let nonce = &tag[..NONCE_LEN];
        let ct = key
            .cipher
            .encrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(pointer),
                },
            )
            .map_err(|_| Error::new(format!("field {pointer}: encryption failed")))?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(nonce);
        out.extend_from_slice(&ct);
        let mut env = Map::new();
        env.insert("enc".into(), Value::from(VERSION));
        env.insert("kid".into(), Value::from(self.current.as_str()));
        env.insert("ct".into(), Value::from(crate::text::base64_encode(&out)));
        Ok(Value::Object(env))
    }

    /// The plaintext of an envelope found at `pointer`.
    pub fn open(&self, pointer: &str, envelope: &Map<String, Value>) -> Result<Vec<u8>, Error> {
        let field = |what: &str| Error::new(format!("field {pointer}: {what}"));
        if envelope.get("enc").and_then(Value::as_str) != Some(VERSION) {
            return Err(field("not a v1 envelope"));
        }
        let kid = envelope
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| field("the envelope has no kid"))?;
        let key = self.keys.get(kid).ok_or_else(|| {
            field(&format!(
                "no key {kid:?} in the keyring (it has {})",
                self.ids().join(", ")
            ))
        })?;
        let ct = envelope
            .get("ct")
            .and_then(Value::as_str)
            .and_then(|s| crate::text::base64_decode(s).ok())
            .ok_or_else(|| field("the envelope's ct is not base64"))?;
        if ct.len() < NONCE_LEN + TAG_LEN {
            return Err(field("the ciphertext is too short"));
        }
        let (nonce, body) = ct.split_at(NONCE_LEN);
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: &aad(pointer),
                },
            )
            .map_err(|_| {
                field(&format!(
                    "decryption with key {kid:?} failed (wrong key, or the data or its place was altered)"
                ))
            })
    }
}

fn aad(pointer: &str) -> Vec<u8> {
    let mut a = b"sluice-enc-v1\0".to_vec();
    a.extend_from_slice(pointer.as_bytes());
    a
}

/// The JSON pointer of a field given as a name, dotted path or JSON pointer.
pub fn pointer_of(field: &str) -> String {
    if field.starts_with('/') {
        return field.to_string();
    }
    field
        .split('.')
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// Whether a value is an envelope.
pub fn is_envelope(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        o.get("enc").and_then(Value::as_str) == Some(VERSION) && o.contains_key("ct")
    })
}

/// Encrypts `fields` (names, dotted paths or JSON pointers) of `doc` in place with the
/// current key. Missing fields and fields already encrypted are left alone. Returns how
/// many fields it encrypted.
pub fn encrypt_fields(
    doc: &mut Value,
    fields: &[String],
    ring: &Keyring,
    context: &[u8],
) -> Result<usize, Error> {
    let mut n = 0;
    for f in fields {
        let pointer = pointer_of(f);
        let Some(slot) = doc.pointer_mut(&pointer) else {
            continue;
        };
        if is_envelope(slot) {
            continue;
        }
        let plain = serde_json::to_vec(slot)?;
        *slot = ring.seal(&pointer, &plain, context)?;
        n += 1;
    }
    Ok(n)
}

/// Decrypts envelopes in `doc` in place: those at `fields`, or with `None` every one found
/// (at any depth). A field that does not decrypt fails the whole document, naming the
/// field and the key. Returns how many fields it decrypted.
pub fn decrypt_fields(
    doc: &mut Value,
    fields: Option<&[String]>,
    ring: &Keyring,
) -> Result<usize, Error> {
    let pointers: Vec<String> = match fields {
        Some(fs) => fs.iter().map(|f| pointer_of(f)).collect(),
        None => {
            let mut found = Vec::new();
            find_envelopes(doc, &mut String::new(), &mut found);
            found
        }
    };
    let mut n = 0;
    for pointer in pointers {
        let Some(slot) = doc.pointer_mut(&pointer) else {
            continue;
        };
        let Some(env) = slot.as_object().filter(|_| is_envelope(slot)) else {
            continue;
        };
        let plain = ring.open(&pointer, env)?;
        *slot = serde_json::from_slice(&plain).map_err(|e| {
            Error::new(format!(
                "field {pointer}: the decrypted text is not JSON: {e}"
            ))
        })?;
        n += 1;
    }
    Ok(n)
}

fn find_envelopes(v: &Value, at: &mut String, out: &mut Vec<String>) {
    if is_envelope(v) {
        out.push(at.clone());
        return;
    }
    let len = at.len();
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                at.push('/');
                at.push_str(&k.replace('~', "~0").replace('/', "~1"));
                find_envelopes(child, at, out);
                at.truncate(len);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push('/');
                at.push_str(&i.to_string());
                find_envelopes(child, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn ring(spec: &str, current: Option<&str>) -> Keyring {
        Keyring::parse(spec, current).unwrap()
    }

    #[test]
    fn round_trips_every_json_type_and_binds_the_field() {
        let r = ring(&format!("k1:{K1}"), None);
        let original =
            json!({"s": "x", "n": 12.5, "o": {"a": [1, 2]}, "b": true, "z": null, "keep": 1});
        let mut doc = original.clone();
        let fields: Vec<String> = ["s", "n", "o", "b", "z", "missing"]
            .map(String::from)
            .to_vec();
        assert_eq!(encrypt_fields(&mut doc, &fields, &r, b"ctx").unwrap(), 5);
        assert_eq!(doc["keep"], 1);
        assert!(is_envelope(&doc["o"]));
        // Encrypting again changes nothing (already envelopes).
        let again = doc.clone();
        assert_eq!(encrypt_fields(&mut doc, &fields, &r, b"ctx").unwrap(), 0);
        assert_eq!(doc, again);
        // Moving an envelope to another field does not decrypt.
        let mut moved = doc.clone();
        moved["s"] = moved["n"].clone();
        let e = decrypt_fields(&mut moved, None, &r)
            .unwrap_err()
            .to_string();
        assert!(e.contains("field /s") && e.contains("failed"), "{e}");
        assert_eq!(decrypt_fields(&mut doc, None, &r).unwrap(), 5);
        assert_eq!(doc, original);
    }

    #[test]
    fn nonces_differ_per_context_and_repeat_for_the_same_input() {
        let r = ring(&format!("k1:{K1}"), None);
        let a = r.seal("/f", b"\"same\"", b"t/0/1").unwrap();
        let b = r.seal("/f", b"\"same\"", b"t/0/2").unwrap();
        let a2 = r.seal("/f", b"\"same\"", b"t/0/1").unwrap();
        assert_ne!(a["ct"], b["ct"]);
        assert_eq!(a, a2, "deterministic: a replay writes the same bytes");
    }

    #[test]
    fn rotation_wrong_keys_and_tampering_are_clear_errors() {
        let old = ring(&format!("k1:{K1}"), None);
        let both = ring(&format!("k1:{K1},k2:{K2}"), Some("k2"));
        let mut doc = json!({"f": "secret"});
        encrypt_fields(&mut doc, &["f".into()], &old, b"c").unwrap();
        let mut newer = json!({"f": "secret2"});
        encrypt_fields(&mut newer, &["f".into()], &both, b"c").unwrap();
        assert_eq!(newer["f"]["kid"], "k2");
        // The rotated keyring still reads what the old key wrote.
        let mut d = doc.clone();
        decrypt_fields(&mut d, None, &both).unwrap();
        assert_eq!(d["f"], "secret");
        // A keyring without k2 names what is missing.
        let e = decrypt_fields(&mut newer.clone(), None, &old)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no key \"k2\""), "{e}");
        // The same id with another key: the tag does not verify.
        let wrong = ring(&format!("k1:{K2}"), None);
        let e = decrypt_fields(&mut doc.clone(), None, &wrong)
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrong key"), "{e}");
        // A flipped bit in the ciphertext.
        let mut t = doc.clone();
        let mut ct = crate::text::base64_decode(t["f"]["ct"].as_str().unwrap()).unwrap();
        ct[20] ^= 1;
        t["f"]["ct"] = Value::from(crate::text::base64_encode(&ct));
        assert!(decrypt_fields(&mut t, None, &old).is_err());
    }

    #[test]
    fn bad_keyrings_are_refused_without_showing_keys() {
        for (spec, want) in [
            ("", "empty"),
            ("k1", "id:base64key"),
            ("k1:!!", "not base64"),
            ("k1:AAAA", "needs 32"),
            (&format!("k1:{K1},k1:{K2}") as &str, "twice"),
        ] {
            let e = Keyring::parse(spec, None).unwrap_err().to_string();
            assert!(e.contains(want), "{spec}: {e}");
            assert!(!e.contains(K1) && !e.contains(K2));
        }
        let e = Keyring::parse(&format!("k1:{K1}"), Some("k9"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("k9"), "{e}");
        assert!(!format!("{:?}", ring(&format!("k1:{K1}"), None)).contains(K1));
    }
}
