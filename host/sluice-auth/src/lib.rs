//! Who may do what: identities from the config file (a token stored as its SHA-256, a role,
//! topic patterns) and the one decision function used by HTTP and Kafka alike.
//!
//! Roles: `admin` may do everything; `viewer` may read the admin surface (topics, plugins,
//! transforms, connectors, logs, metrics) but no records; `operator` may also read the
//! state of stateful transforms and pause/resume transforms and connectors; `producer` and
//! `consumer` may describe, and write respectively read, the topics their glob patterns
//! match.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use sluice_config::{AuthConfig, Identity, Role};

pub mod tls;

/// An authenticated identity.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    topics: Vec<glob::Pattern>,
}

/// What a request wants to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Change the server: topics, plugins, transforms, connectors.
    Admin,
    /// Read the admin surface (no records).
    View,
    /// See that a topic exists and its partitions/offsets.
    Describe(String),
    Produce(String),
    Consume(String),
    /// Read the records of a topic the server keeps for itself (a transform's state
    /// changelog, the transaction log, the schema registry's journal, workers' control
    /// topics): their contents are state, read with the state permission whatever the
    /// topic patterns match. See [`Action::refine`].
    ConsumeOwned(String),
    /// Write to a topic the server keeps for itself, where the server lets clients write at
    /// all (workers' control topics, which workers obey): admins only.
    ProduceOwned(String),
    /// Join/commit in a consumer group.
    Group,
    /// Read a stateful transform's state (it holds record contents).
    ReadState,
    /// Pause or resume a transform or connector.
    Operate,
    /// Ask who the caller is (`GET /v1/whoami`): every identity may.
    Identify,
    /// Read the schema registry (schemas are not record contents: every role may).
    ReadSchemas,
    /// Register a schema under a subject (or check one's compatibility).
    RegisterSchema(String),
}

/// The topic a subject is named after by the default (topic-name) strategy:
/// `orders-value` and `orders-key` are `orders`'s.
pub fn subject_topic(subject: &str) -> Option<&str> {
    subject
        .strip_suffix("-value")
        .or_else(|| subject.strip_suffix("-key"))
}

impl Action {
    /// The action as it applies to a topic the server keeps (`owned` says which): reading
    /// one needs the state permission. Every check of a topic action goes through here.
    pub fn refine(self, owned: &dyn Fn(&str) -> bool) -> Action {
        match self {
            Action::Consume(t) if owned(&t) => Action::ConsumeOwned(t),
            Action::Produce(t) if owned(&t) => Action::ProduceOwned(t),
            a => a,
        }
    }
}

/// Which topics the server keeps for itself, for [`Action::refine`].
pub type OwnedTopics = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl Principal {
    fn topic_ok(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| p.matches(topic))
    }

    pub fn allows(&self, action: &Action) -> bool {
        match (self.role, action) {
            (Role::Admin, _) | (_, Action::Identify) => true,
            (Role::Viewer | Role::Operator, Action::View | Action::Describe(_)) => true,
            (Role::Operator, Action::ReadState | Action::Operate | Action::ConsumeOwned(_)) => true,
            (Role::Producer, Action::Produce(t) | Action::Describe(t)) => self.topic_ok(t),
            (Role::Consumer, Action::Consume(t) | Action::Describe(t)) => self.topic_ok(t),
            (Role::Consumer, Action::Group) => true,
            (_, Action::ReadSchemas) => true,
            // A producer registers the schemas of its topics' records, and those that name
            // no topic (references such as `common/address.proto`, record-name subjects).
            (Role::Producer, Action::RegisterSchema(s)) => {
                subject_topic(s).is_none_or(|t| self.topic_ok(t))
            }
            _ => false,
        }
    }

    /// "identity ingest (producer) may not consume topic t" — for 403s and Kafka errors.
    pub fn denial(&self, action: &Action) -> String {
        let what = match action {
            Action::Admin => "change the server configuration".to_string(),
            Action::View => "read the admin API".to_string(),
            Action::Describe(t) => format!("describe topic {t}"),
            Action::Produce(t) => format!("produce to topic {t}"),
            Action::Consume(t) => format!("consume topic {t}"),
            Action::ProduceOwned(t) => {
                format!("produce to topic {t}: the server keeps it, and only admins may write it")
            }
            Action::ConsumeOwned(t) => format!(
                "consume topic {t}: the server keeps it (it holds state), and reading it needs the state permission (admin or operator)"
            ),
            Action::Group => "use consumer groups".to_string(),
            Action::ReadState => "read transform state".to_string(),
            Action::Operate => "pause or resume deployments".to_string(),
            Action::Identify => "ask who it is".to_string(),
            Action::ReadSchemas => "read schemas".to_string(),
            Action::RegisterSchema(s) => format!("register schemas under subject {s}"),
        };
        format!("identity {} ({}) may not {what}", self.name, self.role)
    }
}

/// Why the configured identities are unusable.
#[derive(Debug, thiserror::Error)]
#[error("auth identity {identity}: {problem}")]
pub struct AuthConfigError {
    pub identity: String,
    pub problem: String,
}

/// The identities of the server, by the hash of their token.
#[derive(Debug)]
pub struct Auth {
    by_hash: HashMap<[u8; 32], Arc<Principal>>,
}

impl Auth {
    /// None when the config names no identities (then the server is open, loopback only).
    pub fn from_config(cfg: &AuthConfig) -> Result<Option<Arc<Auth>>, AuthConfigError> {
        if cfg.identities.is_empty() {
            return Ok(None);
        }
        let mut by_hash = HashMap::new();
        for id in &cfg.identities {
            let bad = |problem: String| AuthConfigError {
                identity: id.name.clone(),
                problem,
            };
            let raw = hex::decode(id.token_sha256.trim()).ok();
            let Some(hash) = raw.and_then(|r| <[u8; 32]>::try_from(r).ok()) else {
                return Err(bad(
                    "token_sha256 must be 64 hex digits (sha256 of the token)".into(),
                ));
            };
            if matches!(id.role, Role::Admin | Role::Viewer | Role::Operator)
                && !id.topics.is_empty()
            {
                return Err(bad(
                    "topics apply to producer and consumer roles only".into()
                ));
            }
            let topics = id
                .topics
                .iter()
                .map(|t| {
                    glob::Pattern::new(t).map_err(|e| bad(format!("topic pattern {t:?}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let p = Arc::new(Principal {
                name: id.name.clone(),
                role: id.role,
                topics,
            });
            if by_hash.insert(hash, p).is_some() {
                return Err(bad("another identity has the same token".into()));
            }
        }
        Ok(Some(Arc::new(Auth { by_hash })))
    }

    /// The identity whose token this is.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Principal>> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.by_hash.get(&hash).cloned()
    }

    /// SASL/PLAIN: the user name must be the identity's name and the password its token.
    pub fn authenticate_plain(&self, user: &str, password: &str) -> Option<Arc<Principal>> {
        self.authenticate(password).filter(|p| p.name == user)
    }
}

/// Hex SHA-256 of a token, as `token_sha256` wants it (`sluice auth hash`).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Arc<Auth> {
        let cfg: AuthConfig = toml::from_str(&format!(
            r#"
            [[identities]]
            name = "ops"
            role = "admin"
            token_sha256 = "{}"
            [[identities]]
            name = "ingest"
            role = "producer"
            topics = ["user_*", "audit"]
            token_sha256 = "{}"
            "#,
            hash_token("ops-token"),
            hash_token("ingest-token")
        ))
        .unwrap();
        Auth::from_config(&cfg).unwrap().unwrap()
    }

    #[test]
    fn tokens_and_patterns_decide() {
        let a = auth();
        assert!(a.authenticate("nope").is_none());
        let ops = a.authenticate("ops-token").unwrap();
        assert!(ops.allows(&Action::Admin));
        let ingest = a.authenticate("ingest-token").unwrap();
        assert!(ingest.allows(&Action::Produce("user_events".into())));
        assert!(ingest.allows(&Action::Produce("audit".into())));
        assert!(!ingest.allows(&Action::Produce("audits".into())));
        assert!(!ingest.allows(&Action::Consume("user_events".into())));
        assert!(!ingest.allows(&Action::Admin));
        assert_eq!(
            ingest.denial(&Action::Consume("x".into())),
            "identity ingest (producer) may not consume topic x"
        );
        assert!(a.authenticate_plain("ingest", "ingest-token").is_some());
        assert!(a.authenticate_plain("ops", "ingest-token").is_none());
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad: AuthConfig = toml::from_str(
            "[[identities]]\nname = \"x\"\nrole = \"admin\"\ntoken_sha256 = \"abc\"",
        )
        .unwrap();
        assert!(
            Auth::from_config(&bad)
                .unwrap_err()
                .to_string()
                .contains("64 hex")
        );
        assert!(
            toml::from_str::<AuthConfig>(
                "[[identities]]\nname = \"x\"\nrole = \"root\"\ntoken_sha256 = \"abc\""
            )
            .is_err()
        );
    }
}
