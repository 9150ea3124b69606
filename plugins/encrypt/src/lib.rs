//! Encrypts named fields of JSON records with AES-256-GCM, in place: each becomes
//! `{"enc":"v1","kid":KEY_ID,"ct":BASE64}` (see `sluice_sdk::crypto`); `decrypt` reverses it.
//!
//! Config: `fields` (required: names, dotted paths or JSON pointers, comma-separated),
//! `key_id` (the key that encrypts; default the first of the keyring). Secret config:
//! `keys` = `id:base64key,…` (32-byte keys), given in the deployment's `secrets` so that
//! it is never shown by GET nor logged. Missing fields and fields already encrypted are
//! left as they are; values that are not JSON are rejected.

use sluice_sdk::crypto::{Keyring, encrypt_fields};
use sluice_sdk::{Error, Outcome, Record};

#[derive(Debug)]
pub struct Encrypt {
    fields: Vec<String>,
    ring: Keyring,
}

pub fn setup() -> Result<Encrypt, Error> {
    Encrypt::from_config(sluice_sdk::config)
}

impl Encrypt {
    /// Reads `fields`, `keys` and `key_id` through `get`.
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Encrypt, Error> {
        let fields: Vec<String> = get("fields")
            .ok_or_else(|| Error::new("config `fields` is required"))?
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect();
        if fields.is_empty() {
            return Err(Error::new("config `fields` names no field"));
        }
        let keys = get("keys").ok_or_else(|| {
            Error::new(
                "the keyring is missing: give `keys` (id:base64key,…) in the deployment's secrets",
            )
        })?;
        Ok(Encrypt {
            fields,
            ring: Keyring::parse(&keys, get("key_id").as_deref())?,
        })
    }
}

pub fn encrypt(e: &Encrypt, record: &Record) -> Result<Outcome, Error> {
    let mut doc = record.json()?;
    let context = format!(
        "{}/{}/{}",
        record.topic(),
        record.partition(),
        record.offset()
    );
    if encrypt_fields(&mut doc, &e.fields, &e.ring, context.as_bytes())? == 0 {
        return Ok(Outcome::keep());
    }
    Ok(Outcome::keep_with_value(serde_json::to_vec(&doc)?))
}

sluice_sdk::export_transform!(encrypt, init = setup);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, TestOutcome, TestRecord};

    const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    #[test]
    fn case_table() {
        Harness::with_init(setup, encrypt).run_suites(include_str!("../cases.json"));
    }

    #[test]
    fn each_record_gets_its_own_ciphertext_and_decrypt_reads_it() {
        let h = Harness::with_init(setup, encrypt)
            .config("fields", "ssn")
            .config("keys", KEYS);
        let value = r#"{"user":"ann","ssn":"123-45-6789"}"#;
        let out = h.run(&[TestRecord::value(value), TestRecord::value(value)]);
        let cts: Vec<serde_json::Value> = out
            .iter()
            .map(|o| match o {
                TestOutcome::Emitted(e) => serde_json::from_str(e[0].value_str()).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(cts[0]["user"], "ann");
        assert_ne!(
            cts[0]["ssn"]["ct"], cts[1]["ssn"]["ct"],
            "a nonce per record"
        );
        assert!(!cts[0].to_string().contains("123-45"));
        let ring = Keyring::parse(KEYS, None).unwrap();
        let mut d = cts[0].clone();
        sluice_sdk::crypto::decrypt_fields(&mut d, None, &ring).unwrap();
        assert_eq!(d["ssn"], "123-45-6789");
    }
}
