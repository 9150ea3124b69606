//! `sluice group list|describe|delete|reset`: consumer groups, as `kafka-consumer-groups`
//! shows and changes them.

use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{Table, line};
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// List the consumer groups (Kafka clients' and transforms') with their lag.
    List,
    /// Show a group's members and, per partition, its committed offset, end and lag.
    Describe {
        /// Group id (`transform:NAME` for a transform's positions).
        group: String,
    },
    /// Delete a group and its committed offsets (refused while it has members).
    Delete {
        /// Group id.
        group: String,
    },
    /// Move a group's committed offsets (refused while it has members). Prints what is
    /// (or with --dry-run, would be) set.
    Reset {
        /// Group id.
        group: String,
        /// `earliest`, `latest`, an offset (`42`), a time (`@1767225600000`, ms since the
        /// epoch) or a shift (`+10`, `-10`).
        #[arg(long, allow_hyphen_values = true)]
        to: String,
        /// Every partition of this topic [default: every partition of the topics the group
        /// has committed on].
        #[arg(long)]
        topic: Option<String>,
        /// Only these partitions of --topic (comma-separated).
        #[arg(long, value_delimiter = ',', requires = "topic")]
        partitions: Option<Vec<i32>>,
        /// Show what would be set; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `--to` as the API's `to`.
fn target(to: &str) -> anyhow::Result<Value> {
    let bad = || {
        anyhow::anyhow!(
            "--to {to}: expected earliest, latest, an offset, @TIME_MS, or +N/-N to shift"
        )
    };
    Ok(match to {
        "earliest" | "latest" => json!(to),
        _ if to.starts_with('@') => {
            json!({"timestamp": to[1..].parse::<i64>().map_err(|_| bad())?})
        }
        _ if to.starts_with('+') || to.starts_with('-') => {
            json!({"shift_by": to.parse::<i64>().map_err(|_| bad())?})
        }
        _ => json!({"offset": to.parse::<i64>().map_err(|_| bad())?}),
    })
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn run(c: &Client, cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::List => {
            let v = c.get("/v1/groups").await?;
            let mut t = Table::new(
                &["GROUP", "KIND", "STATE", "MEMBERS", "LAG"],
                &[false, false, false, true, true],
            );
            for g in v["groups"].as_array().into_iter().flatten() {
                t.row(
                    ["group", "kind", "state", "members", "lag"]
                        .iter()
                        .map(|k| cell(&g[*k]))
                        .collect(),
                );
            }
            t.print();
        }
        GroupCmd::Describe { group } => {
            let v = c.get(&format!("/v1/groups/{}", urlencode(&group))).await?;
            line(format!(
                "group {} ({}): {}, {} member(s), lag {}",
                cell(&v["group"]),
                cell(&v["kind"]),
                cell(&v["state"]),
                v["members"].as_array().map_or(0, Vec::len),
                cell(&v["lag"])
            ));
            let mut t = Table::new(
                &[
                    "TOPIC",
                    "PARTITION",
                    "COMMITTED",
                    "END",
                    "LAG",
                    "CLIENT-ID",
                    "HOST",
                    "MEMBER-ID",
                ],
                &[false, true, true, true, true, false, false, false],
            );
            let members = v["members"].as_array().cloned().unwrap_or_default();
            for o in v["offsets"].as_array().into_iter().flatten() {
                let m = members.iter().find(|m| m["member_id"] == o["member_id"]);
                let of = |k: &str| m.map_or("-".to_string(), |m| cell(&m[k]));
                t.row(vec![
                    cell(&o["topic"]),
                    cell(&o["partition"]),
                    cell(&o["committed"]),
                    cell(&o["end"]),
                    cell(&o["lag"]),
                    of("client_id"),
                    of("client_host"),
                    of("member_id"),
                ]);
            }
            t.print();
        }
        GroupCmd::Delete { group } => {
            c.delete(&format!("/v1/groups/{}", urlencode(&group)))
                .await?;
            line(format!("deleted group {group}"));
        }
        GroupCmd::Reset {
            group,
            to,
            topic,
            partitions,
            dry_run,
        } => {
            let mut body = json!({"to": target(&to)?, "dry_run": dry_run});
            if let Some(t) = topic {
                body["topic"] = json!(t);
            }
            if let Some(p) = partitions {
                body["partitions"] = json!(p);
            }
            let v = c
                .post(&format!("/v1/groups/{}/reset", urlencode(&group)), &body)
                .await?;
            let mut t = Table::new(
                &["TOPIC", "PARTITION", "PREVIOUS", "NEW"],
                &[false, true, true, true],
            );
            for o in v["offsets"].as_array().into_iter().flatten() {
                t.row(
                    ["topic", "partition", "previous", "offset"]
                        .iter()
                        .map(|k| cell(&o[*k]))
                        .collect(),
                );
            }
            t.print();
            if dry_run {
                line("(dry run: nothing changed)");
            }
        }
    }
    Ok(())
}

/// A group id as one path segment (ids may hold any character but `/`-free ones are usual).
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_reads_every_form() {
        assert_eq!(target("earliest").unwrap(), json!("earliest"));
        assert_eq!(target("latest").unwrap(), json!("latest"));
        assert_eq!(target("42").unwrap(), json!({"offset": 42}));
        assert_eq!(target("@1700").unwrap(), json!({"timestamp": 1700}));
        assert_eq!(target("-5").unwrap(), json!({"shift_by": -5}));
        assert_eq!(target("+5").unwrap(), json!({"shift_by": 5}));
        assert!(target("sideways").is_err());
        assert_eq!(urlencode("a b/c:d"), "a%20b%2Fc:d");
    }
}
