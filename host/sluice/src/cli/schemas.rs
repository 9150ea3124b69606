//! `sluice schema register|get|list|check|delete|config`: the Schema Registry from the
//! command line (its own listener: `--registry URL` or `SLUICE_SCHEMA_REGISTRY`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{Table, line};
use crate::client::Client;

#[derive(Debug, Subcommand)]
pub enum SchemaCmd {
    /// Register a schema under a subject (the existing version if it is already there).
    Register {
        subject: String,
        /// The schema's text (Avro JSON, .proto, or JSON Schema).
        file: PathBuf,
        /// AVRO, PROTOBUF or JSON [default: from the file's extension, else AVRO].
        #[arg(long = "type")]
        schema_type: Option<String>,
        /// A reference: NAME=SUBJECT:VERSION (an Avro named type, a .proto import or a
        /// JSON Schema $ref of another subject). Repeat for more.
        #[arg(long = "reference")]
        references: Vec<String>,
    },
    /// Show a subject's version (latest by default), or a schema by id.
    Get {
        /// The subject (or give --id).
        subject: Option<String>,
        #[arg(long)]
        version: Option<String>,
        #[arg(long, conflicts_with = "subject")]
        id: Option<i64>,
    },
    /// List subjects with their latest version.
    List {
        /// Include soft-deleted subjects.
        #[arg(long)]
        deleted: bool,
    },
    /// Check a schema against a subject's compatibility rule (exit status 1 when it is
    /// incompatible), with the reasons.
    Check {
        subject: String,
        file: PathBuf,
        #[arg(long = "type")]
        schema_type: Option<String>,
        /// Against this version only [default: as registering would].
        #[arg(long)]
        version: Option<String>,
        #[arg(long = "reference")]
        references: Vec<String>,
    },
    /// Delete a subject (or one version): soft, then with --permanent for good.
    Delete {
        subject: String,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        permanent: bool,
    },
    /// Show or set the compatibility level, globally or of a subject.
    Config {
        subject: Option<String>,
        /// BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL,
        /// FULL_TRANSITIVE or NONE.
        #[arg(long)]
        compatibility: Option<String>,
    },
}

/// Subjects may hold `/` (Protobuf imports): one path segment, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request body of a schema file.
fn schema_body(
    file: &PathBuf,
    schema_type: Option<String>,
    references: &[String],
) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let by_ext = match file.extension().and_then(|e| e.to_str()) {
        Some("proto") => "PROTOBUF",
        Some("json") if text.contains("\"$schema\"") || text.contains("\"properties\"") => "JSON",
        _ => "AVRO",
    };
    let t = schema_type.map_or_else(|| by_ext.to_string(), |t| t.to_uppercase());
    if !["AVRO", "PROTOBUF", "JSON"].contains(&t.as_str()) {
        bail!("--type {t}: use AVRO, PROTOBUF or JSON");
    }
    let mut refs = Vec::new();
    for r in references {
        let parsed = r
            .split_once('=')
            .and_then(|(name, rest)| rest.rsplit_once(':').map(|(s, v)| (name, s, v)))
            .and_then(|(name, s, v)| v.parse::<i64>().ok().map(|v| (name, s, v)));
        let Some((name, subject, version)) = parsed else {
            bail!("--reference {r}: expected NAME=SUBJECT:VERSION");
        };
        refs.push(json!({"name": name, "subject": subject, "version": version}));
    }
    let mut body = json!({"schema": text, "schemaType": t});
    if !refs.is_empty() {
        body["references"] = Value::Array(refs);
    }
    Ok(body)
}

pub async fn run(c: &Client, cmd: SchemaCmd) -> anyhow::Result<()> {
    match cmd {
        SchemaCmd::Register {
            subject,
            file,
            schema_type,
            references,
        } => {
            let body = schema_body(&file, schema_type, &references)?;
            let v = c
                .post(&format!("/subjects/{}/versions", seg(&subject)), &body)
                .await?;
            let id = v["id"].clone();
            let latest = c
                .get(&format!("/subjects/{}/versions/latest", seg(&subject)))
                .await?;
            line(format!(
                "subject {subject}: version {} (schema id {id})",
                v["version"]
                    .as_i64()
                    .map_or_else(|| latest["version"].to_string(), |n| n.to_string())
            ));
        }
        SchemaCmd::Get {
            subject,
            version,
            id,
        } => {
            let v = match (subject, id) {
                (_, Some(id)) => c.get(&format!("/schemas/ids/{id}")).await?,
                (Some(s), None) => {
                    let v = version.as_deref().unwrap_or("latest");
                    c.get(&format!("/subjects/{}/versions/{v}", seg(&s)))
                        .await?
                }
                (None, None) => bail!("give a subject or --id"),
            };
            let mut shown = v.clone();
            // The schema text as a document when it is JSON, else as text.
            if let Some(text) = v["schema"].as_str()
                && let Ok(doc) = serde_json::from_str::<Value>(text)
            {
                shown["schema"] = doc;
            }
            line(serde_json::to_string_pretty(&shown)?);
        }
        SchemaCmd::List { deleted } => {
            let subjects = c.get(&format!("/subjects?deleted={deleted}")).await?;
            let mut t = Table::new(
                &["SUBJECT", "VERSION", "ID", "TYPE"],
                &[false, true, true, false],
            );
            for s in subjects.as_array().into_iter().flatten() {
                let s = s.as_str().unwrap_or_default();
                let latest = c
                    .get(&format!(
                        "/subjects/{}/versions/latest?deleted={deleted}",
                        seg(s)
                    ))
                    .await
                    .unwrap_or(Value::Null);
                t.row(vec![
                    s.to_string(),
                    latest["version"].to_string(),
                    latest["id"].to_string(),
                    latest["schemaType"].as_str().unwrap_or("AVRO").to_string(),
                ]);
            }
            t.print();
        }
        SchemaCmd::Check {
            subject,
            file,
            schema_type,
            version,
            references,
        } => {
            let body = schema_body(&file, schema_type, &references)?;
            let path = match version {
                Some(v) => format!(
                    "/compatibility/subjects/{}/versions/{v}?verbose=true",
                    seg(&subject)
                ),
                None => format!(
                    "/compatibility/subjects/{}/versions?verbose=true",
                    seg(&subject)
                ),
            };
            let v = c.post(&path, &body).await?;
            if v["is_compatible"] == true {
                line(format!("compatible with {subject}"));
            } else {
                line(format!("incompatible with {subject}:"));
                for m in v["messages"].as_array().into_iter().flatten() {
                    line(format!("  {}", m.as_str().unwrap_or_default()));
                }
                bail!("the schema is incompatible with {subject}");
            }
        }
        SchemaCmd::Delete {
            subject,
            version,
            permanent,
        } => {
            let path = match &version {
                Some(v) => format!("/subjects/{}/versions/{v}", seg(&subject)),
                None => format!("/subjects/{}", seg(&subject)),
            };
            let v = c.delete(&format!("{path}?permanent={permanent}")).await?;
            let how = if permanent { "permanently" } else { "(soft)" };
            line(format!("deleted {subject} version(s) {v} {how}"));
        }
        SchemaCmd::Config {
            subject,
            compatibility,
        } => {
            let path = match &subject {
                Some(s) => format!("/config/{}", seg(s)),
                None => "/config".to_string(),
            };
            let v = match compatibility {
                Some(level) => {
                    c.put(&path, &json!({"compatibility": level.to_uppercase()}))
                        .await?
                }
                None => c.get(&format!("{path}?defaultToGlobal=true")).await?,
            };
            line(serde_json::to_string(&v)?);
        }
    }
    Ok(())
}
