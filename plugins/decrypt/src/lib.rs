//! Decrypts fields that `encrypt` wrote (`{"enc":"v1","kid":…,"ct":…}`), in place.
//!
//! Config: `fields` (optional: names, dotted paths or JSON pointers, comma-separated;
//! default every envelope in the record, at any depth). Secret config: `keys` =
//! `id:base64key,…` — every key still needed, so that records written before a rotation
//! keep decrypting. A record that does not decrypt (unknown key id, wrong key, altered
//! ciphertext) is rejected with the field and the key id in the reason, and goes to the
//! dead-letter topic unchanged.

use sluice_sdk::crypto::{Keyring, decrypt_fields};
use sluice_sdk::{Error, Outcome, Record};

#[derive(Debug)]
pub struct Decrypt {
    fields: Option<Vec<String>>,
    ring: Keyring,
}

pub fn setup() -> Result<Decrypt, Error> {
    let get = sluice_sdk::config;
    let keys = get("keys").ok_or_else(|| {
        Error::new(
            "the keyring is missing: give `keys` (id:base64key,…) in the deployment's secrets",
        )
    })?;
    Ok(Decrypt {
        fields: get("fields").map(|f| {
            f.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(String::from)
                .collect()
        }),
        ring: Keyring::parse(&keys, None)?,
    })
}

pub fn decrypt(d: &Decrypt, record: &Record) -> Result<Outcome, Error> {
    let mut doc = record.json()?;
    if decrypt_fields(&mut doc, d.fields.as_deref(), &d.ring)? == 0 {
        return Ok(Outcome::keep());
    }
    Ok(Outcome::keep_with_value(serde_json::to_vec(&doc)?))
}

sluice_sdk::export_transform!(decrypt, init = setup);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::Harness;

    #[test]
    fn case_table() {
        Harness::with_init(setup, decrypt).run_suites(include_str!("../cases.json"));
    }
}
