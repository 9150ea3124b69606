//! `sluice transform …` and `sluice connector …`: each kind deploys its own way; listing,
//! status, pause, resume and delete are the same verbs over the same API shape.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{Table, line, note};
use crate::client::Client;

/// The verbs every kind of named deployment has.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// List deployments with their status and lag.
    List,
    /// Show one deployment's status (JSON).
    Status {
        /// Deployment name.
        name: String,
    },
    /// Stop processing; what arrives meanwhile waits as lag.
    Pause {
        /// Deployment name.
        name: String,
    },
    /// Go on after a pause.
    Resume {
        /// Deployment name.
        name: String,
    },
    /// Stop and forget a deployment (its topics stay).
    Delete {
        /// Deployment name.
        name: String,
    },
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum TransformCmd {
    /// Create or update a deployment (an update with another version is a hot swap).
    Deploy {
        /// Deployment name.
        name: String,
        /// Plugin to run.
        #[arg(long)]
        plugin: String,
        /// A version number, or `latest` to follow new uploads.
        #[arg(long, default_value = "latest")]
        version: String,
        /// Input topic; give it twice for a deployment over two co-partitioned inputs.
        #[arg(long = "input", required = true)]
        inputs: Vec<String>,
        /// Output topic (repeat for several; the first is the default).
        #[arg(long = "output", required = true)]
        outputs: Vec<String>,
        /// Dead-letter topic [default: INPUT.dlq].
        #[arg(long)]
        dead_letter: Option<String>,
        /// Plugin config entry `key=value` (repeatable).
        #[arg(long = "config")]
        config: Vec<String>,
        /// A lookup table the plugin may read (repeatable; none by default).
        #[arg(long = "table")]
        tables: Vec<String>,
        /// Let this deployment close a cycle of transforms.
        #[arg(long)]
        allow_cycles: bool,
        /// `earliest` or `latest`: where a new deployment starts reading.
        #[arg(long, default_value = "earliest")]
        start: String,
        /// Stateful plugins: a JSON field of the value holding the event time
        /// [default: the record timestamp].
        #[arg(long)]
        event_time_field: Option<String>,
        /// Stateful plugins: how far behind the latest event time a record may be
        /// [server default: 5000].
        #[arg(long)]
        allowed_lateness_ms: Option<u64>,
        /// Stateful plugins: input silence after which the watermark follows the clock
        /// [server default: 10000].
        #[arg(long)]
        idle_timeout_ms: Option<u64>,
        /// Stateful plugins: a topic for late records [default: the dead-letter topic].
        #[arg(long)]
        late_output: Option<String>,
        /// Stateful plugins: start this (re)deployment with empty state.
        #[arg(long)]
        reset_state: bool,
    },
    /// Read a stateful transform's state: one key, or a page of keys by prefix.
    State {
        /// Deployment name.
        name: String,
        /// One key (every partition holding it).
        #[arg(long, conflicts_with = "prefix")]
        key: Option<String>,
        /// List the keys starting with this [default: all].
        #[arg(long)]
        prefix: Option<String>,
        /// Only this input partition.
        #[arg(long)]
        partition: Option<u32>,
        /// Entries per page.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Print the plugin's log lines.
    Logs {
        /// Deployment name.
        name: String,
        /// Keep printing new lines.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Run a candidate version (and config) next to the live one on the same input,
    /// writing nothing, and compare their outputs record by record; with `--status`,
    /// show the comparison; with `--stop`, drop the candidate.
    Shadow {
        /// Deployment name.
        name: String,
        /// The candidate's plugin version, or `latest`.
        #[arg(long, default_value = "latest")]
        version: String,
        /// The candidate's plugin config entry `key=value` (repeatable) [default: the
        /// deployment's].
        #[arg(long = "config")]
        config: Vec<String>,
        /// Show the running shadow's counts, examples and costs instead (JSON).
        #[arg(long, conflicts_with_all = ["stop", "config"])]
        status: bool,
        /// Stop the shadow (the live version never changed).
        #[arg(long, conflicts_with = "config")]
        stop: bool,
    },
    /// Make the shadow's candidate live (at a batch boundary, nothing lost or doubled).
    Promote {
        /// Deployment name.
        name: String,
    },
    #[command(flatten)]
    Verb(Verb),
}

/// `key=value` entries as a JSON object.
fn config_entries(config: &[String]) -> anyhow::Result<serde_json::Map<String, Value>> {
    let mut cfg = serde_json::Map::new();
    for kv in config {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv}: expected key=value"))?;
        cfg.insert(k.to_string(), json!(v));
    }
    Ok(cfg)
}

/// `--version`: a number or `latest`.
fn version_arg(version: &str) -> anyhow::Result<Value> {
    Ok(match version {
        "latest" => json!("latest"),
        v => json!(
            v.parse::<u32>()
                .with_context(|| format!("--version {v}: a number or latest"))?
        ),
    })
}

#[derive(Debug, Subcommand)]
pub enum ConnectorCmd {
    /// Create or replace a connector from a JSON spec (see the README).
    Deploy {
        /// Connector name.
        name: String,
        /// The spec file (`-` for stdin).
        #[arg(long)]
        file: PathBuf,
    },
    #[command(flatten)]
    Verb(Verb),
}

/// A kind of named deployment, as the CLI shows it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Transform,
    Connector,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Transform => "/v1/transforms",
            Kind::Connector => "/v1/connectors",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Transform => "transform",
            Kind::Connector => "connector",
        }
    }

    /// The list view: one row per deployment.
    fn table(self, v: &Value) -> Table {
        let s = |x: &Value| x.as_str().unwrap_or("").to_string();
        let lag = |d: &Value| {
            let parts = d["partitions"].as_array();
            match (parts, d.get("lag")) {
                (_, Some(l)) => l.to_string(),
                (Some(ps), None) => ps
                    .iter()
                    .filter_map(|p| p["lag"].as_u64())
                    .sum::<u64>()
                    .to_string(),
                (None, None) => "-".into(),
            }
        };
        match self {
            Kind::Transform => {
                let mut t = Table::new(
                    &["TRANSFORM", "STATUS", "PLUGIN", "VERSION", "INPUT", "LAG"],
                    &[false, false, false, true, false, true],
                );
                for d in v["transforms"].as_array().into_iter().flatten() {
                    t.row(vec![
                        s(&d["name"]),
                        s(&d["status"]),
                        s(&d["plugin"]),
                        d["version"].to_string(),
                        match d["inputs"].as_array() {
                            Some(two) => two.iter().map(s).collect::<Vec<_>>().join("+"),
                            None => s(&d["input"]),
                        },
                        lag(d),
                    ]);
                }
                t
            }
            Kind::Connector => {
                let mut t = Table::new(
                    &["CONNECTOR", "KIND", "STATUS", "TOPIC", "RECORDS", "LAG"],
                    &[false, false, false, false, true, true],
                );
                for d in v["connectors"].as_array().into_iter().flatten() {
                    t.row(vec![
                        s(&d["name"]),
                        s(&d["kind"]),
                        s(&d["status"]),
                        s(&d["topic"]),
                        d["records"].to_string(),
                        lag(d),
                    ]);
                }
                t
            }
        }
    }
}

async fn verb(c: &Client, kind: Kind, v: Verb) -> anyhow::Result<()> {
    let (path, noun) = (kind.path(), kind.noun());
    match v {
        Verb::List => kind.table(&c.get(path).await?).print(),
        Verb::Status { name } => {
            let st = c.get(&format!("{path}/{name}")).await?;
            line(serde_json::to_string_pretty(&st)?);
        }
        Verb::Pause { name } => {
            c.post(&format!("{path}/{name}/pause"), &json!({})).await?;
            line(format!("paused {noun} {name}"));
        }
        Verb::Resume { name } => {
            c.post(&format!("{path}/{name}/resume"), &json!({})).await?;
            line(format!("resumed {noun} {name}"));
        }
        Verb::Delete { name } => {
            c.delete(&format!("{path}/{name}")).await?;
            line(format!("deleted {noun} {name}"));
        }
    }
    Ok(())
}

pub async fn transform(c: &Client, cmd: TransformCmd) -> anyhow::Result<()> {
    match cmd {
        TransformCmd::Deploy {
            name,
            plugin,
            version,
            inputs,
            outputs,
            dead_letter,
            config,
            tables,
            allow_cycles,
            start,
            event_time_field,
            allowed_lateness_ms,
            idle_timeout_ms,
            late_output,
            reset_state,
        } => {
            let version = version_arg(&version)?;
            let cfg = config_entries(&config)?;
            let mut spec = json!({"plugin": plugin, "version": version,
                "outputs": outputs, "config": cfg, "tables": tables, "start": start,
                "allow_cycles": allow_cycles});
            match inputs.as_slice() {
                [one] => spec["input"] = json!(one),
                more => spec["inputs"] = json!(more),
            }
            if let Some(d) = dead_letter {
                spec["dead_letter"] = json!(d);
            }
            if let Some(f) = event_time_field {
                spec["event_time"] = json!({ "field": f });
            }
            if let Some(ms) = allowed_lateness_ms {
                spec["allowed_lateness_ms"] = json!(ms);
            }
            if let Some(ms) = idle_timeout_ms {
                spec["idle_timeout_ms"] = json!(ms);
            }
            if let Some(t) = late_output {
                spec["late_output"] = json!(t);
            }
            if reset_state {
                spec["state"] = json!("reset");
            }
            note(format!(
                "deploying {name} (instantiating the plugin for every partition)…"
            ));
            let st = c.put(&format!("/v1/transforms/{name}"), &spec).await?;
            line(format!(
                "transform {name}: {} {} v{}",
                st["status"].as_str().unwrap_or(""),
                st["plugin"].as_str().unwrap_or(""),
                st["version"]
            ));
        }
        TransformCmd::State {
            name,
            key,
            prefix,
            partition,
            limit,
        } => {
            let enc = |s: &str| -> String {
                s.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect()
            };
            let mut q = format!("limit={limit}");
            if let Some(k) = key {
                q = format!("key={}", enc(&k));
            } else if let Some(p) = prefix {
                q.push_str(&format!("&prefix={}", enc(&p)));
            }
            if let Some(p) = partition {
                q.push_str(&format!("&partition={p}"));
            }
            let v = c.get(&format!("/v1/transforms/{name}/state?{q}")).await?;
            line(serde_json::to_string_pretty(&v)?);
        }
        TransformCmd::Logs { name, follow } => {
            let mut next = 0u64;
            loop {
                let v = c.get(&format!("/v1/transforms/{name}/logs")).await?;
                for l in v["lines"].as_array().into_iter().flatten() {
                    let seq = l["seq"].as_u64().unwrap_or(0);
                    if seq < next {
                        continue;
                    }
                    next = seq + 1;
                    let at = l["offset"]
                        .as_i64()
                        .map_or_else(|| "init".to_string(), |o| format!("@{o}"));
                    line(format!(
                        "v{} p{} {at} {:<6} {}",
                        l["version"],
                        l["partition"],
                        l["level"].as_str().unwrap_or(""),
                        l["message"].as_str().unwrap_or("")
                    ));
                }
                if !follow {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        TransformCmd::Shadow {
            name,
            version,
            config,
            status,
            stop,
        } => {
            let path = format!("/v1/transforms/{name}/shadow");
            if status {
                let v = c.get(&path).await?;
                line(serde_json::to_string_pretty(&v)?);
            } else if stop {
                c.delete(&path).await?;
                line(format!("stopped the shadow of {name}"));
            } else {
                let mut body = json!({"version": version_arg(&version)?});
                if !config.is_empty() {
                    body["config"] = Value::Object(config_entries(&config)?);
                }
                let v = c.put(&path, &body).await?;
                line(format!(
                    "shadowing {name}: version {} next to live version {}; see `sluice transform shadow {name} --status`",
                    v["version"], v["live_version"]
                ));
            }
        }
        TransformCmd::Promote { name } => {
            let v = c
                .post(&format!("/v1/transforms/{name}/shadow/promote"), &json!({}))
                .await?;
            line(format!("{name} now runs version {}", v["version"]));
        }
        TransformCmd::Verb(v) => verb(c, Kind::Transform, v).await?,
    }
    Ok(())
}

pub async fn connector(c: &Client, cmd: ConnectorCmd) -> anyhow::Result<()> {
    match cmd {
        ConnectorCmd::Deploy { name, file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let spec: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", file.display()))?;
            let st = c.put(&format!("/v1/connectors/{name}"), &spec).await?;
            line(format!(
                "connector {name}: {} {} on {}",
                st["kind"].as_str().unwrap_or(""),
                st["status"].as_str().unwrap_or(""),
                st["topic"].as_str().unwrap_or("")
            ));
        }
        ConnectorCmd::Verb(v) => verb(c, Kind::Connector, v).await?,
    }
    Ok(())
}
