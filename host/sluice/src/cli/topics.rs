//! `sluice topic create|list|describe|schema|delete`.

use clap::Subcommand;
use serde_json::json;

use super::output::{Table, count, line};
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        /// Topic name: 1-249 of [a-zA-Z0-9._-].
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Delete data older than this many milliseconds [default: keep].
        #[arg(long)]
        retention_ms: Option<i64>,
        /// Delete the oldest data past this many bytes per partition [default: keep].
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// `delete` (retention) or `compact` (latest value per key; a lookup table).
        #[arg(long, default_value = "delete")]
        cleanup: String,
        /// When an append is durable: `every_batch`, `interval` or `os`.
        #[arg(long, default_value = "every_batch")]
        flush: String,
        /// Bytes per segment file [default: 1 GiB].
        #[arg(long)]
        segment_bytes: Option<u64>,
        /// Tiered storage: move sealed segments to this bucket of the server's object store
        /// ([tier] in its config).
        #[arg(long)]
        tiered_bucket: Option<String>,
        /// Tiered storage: key prefix in the bucket [default: sluice].
        #[arg(long, requires = "tiered_bucket")]
        tiered_prefix: Option<String>,
        /// Tiered storage: keep uploaded segments locally this long [default: remove once
        /// uploaded].
        #[arg(long, requires = "tiered_bucket")]
        local_retention_ms: Option<i64>,
        /// Tiered storage: keep at most this many bytes of uploaded segments locally.
        #[arg(long, requires = "tiered_bucket")]
        local_retention_bytes: Option<u64>,
        #[command(flatten)]
        contract: Contract,
    },
    /// Set (or with no subject, remove) the schema contract of a topic's records.
    Schema {
        /// Topic name.
        name: String,
        #[command(flatten)]
        contract: Contract,
    },
    /// List topics.
    List,
    /// Show a topic's partitions and settings (JSON).
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

/// A topic's data contract: the registry subjects its records must carry.
#[derive(Debug, clap::Args)]
pub struct Contract {
    /// Values must be framed with a registered id of this subject (Confluent's wire format).
    #[arg(long)]
    value_subject: Option<String>,
    /// Keys likewise.
    #[arg(long)]
    key_subject: Option<String>,
    /// `id` (the framing and a registered id: cheap) or `decode` (the record also decodes
    /// against its schema).
    #[arg(long, default_value = "id")]
    validation: String,
}

impl Contract {
    /// The topic setting, if any subject is given.
    fn setting(&self) -> Option<serde_json::Value> {
        let rule = |s: &Option<String>| {
            s.as_ref()
                .map(|s| json!({"subject": s, "validation": self.validation}))
        };
        let mut v = json!({});
        if let Some(r) = rule(&self.value_subject) {
            v["value"] = r;
        }
        if let Some(r) = rule(&self.key_subject) {
            v["key"] = r;
        }
        (v != json!({})).then_some(v)
    }
}

pub async fn run(c: &Client, cmd: TopicCmd) -> anyhow::Result<()> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            cleanup,
            flush,
            segment_bytes,
            tiered_bucket,
            tiered_prefix,
            local_retention_ms,
            local_retention_bytes,
            contract,
        } => {
            let mut body = json!({"name": name, "partitions": partitions, "cleanup": cleanup,
                "retention_ms": retention_ms, "retention_bytes": retention_bytes, "flush": flush});
            if let Some(b) = segment_bytes {
                body["segment_bytes"] = json!(b);
            }
            if let Some(bucket) = tiered_bucket {
                let mut t = json!({"bucket": bucket});
                if let Some(p) = tiered_prefix {
                    t["prefix"] = json!(p);
                }
                if let Some(ms) = local_retention_ms {
                    t["local_retention_ms"] = json!(ms);
                }
                if let Some(b) = local_retention_bytes {
                    t["local_retention_bytes"] = json!(b);
                }
                body["tiered"] = t;
            }
            if let Some(schema) = contract.setting() {
                body["schema"] = schema;
            }
            c.post("/v1/topics", &body).await?;
            line(format!(
                "created topic {name} with {}",
                count(partitions, "partition", "partitions")
            ));
        }
        TopicCmd::List => {
            let v = c.get("/v1/topics").await?;
            let mut t = Table::new(&["TOPIC", "PARTITIONS"], &[false, true]);
            for topic in v["topics"].as_array().into_iter().flatten() {
                t.row(vec![
                    topic["name"].as_str().unwrap_or("").to_string(),
                    topic["partitions"].to_string(),
                ]);
            }
            t.print();
        }
        TopicCmd::Describe { name } => {
            let v = c.get(&format!("/v1/topics/{name}")).await?;
            line(serde_json::to_string_pretty(&v)?);
        }
        TopicCmd::Schema { name, contract } => {
            let setting = contract.setting();
            let body = setting.clone().unwrap_or_else(|| json!({}));
            c.put(&format!("/v1/topics/{name}/schema"), &body).await?;
            match setting {
                Some(s) => line(format!("topic {name} requires {s}")),
                None => line(format!("topic {name} requires no schema")),
            }
        }
        TopicCmd::Delete { name } => {
            c.delete(&format!("/v1/topics/{name}")).await?;
            line(format!("deleted topic {name}"));
        }
    }
    Ok(())
}
