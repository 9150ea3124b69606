//! The `sluice` command line: `serve`, `demo`, and client commands over the HTTP API.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "sluice",
    version,
    about = "A streaming log that runs WebAssembly transforms"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Start a throwaway server, push sample events through it and print them.
    Demo,
    /// Create, list, describe and delete topics.
    #[command(subcommand)]
    Topic(TopicCmd),
    /// Append one record per stdin line to a topic.
    Produce(ProduceArgs),
    /// Print a topic's records.
    Consume(ConsumeArgs),
    /// Upload, list and scaffold plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// Deploy and manage transforms.
    #[command(subcommand)]
    Transform(TransformCmd),
    /// Deploy and manage connectors (http-pull sources, http/postgres sinks).
    #[command(subcommand)]
    Connector(ConnectorCmd),
}

#[derive(Debug, Subcommand)]
pub enum ConnectorCmd {
    /// Create or replace a connector from a JSON spec (see the README).
    Deploy {
        name: String,
        /// The spec file (`-` for stdin).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    List {
        #[command(flatten)]
        server: Server,
    },
    Status {
        name: String,
        #[command(flatten)]
        server: Server,
    },
    Pause {
        name: String,
        #[command(flatten)]
        server: Server,
    },
    Resume {
        name: String,
        #[command(flatten)]
        server: Server,
    },
    Delete {
        name: String,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCmd {
    /// Upload a component as the next version of a plugin.
    Push {
        name: String,
        file: PathBuf,
        #[command(flatten)]
        server: Server,
    },
    /// List plugins and their versions.
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Create a new plugin crate that builds with `cargo build --target wasm32-wasip2`.
    New {
        name: String,
        /// Path of the Sluice SDK crate (default: the one this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TransformCmd {
    /// Create or update a deployment (an update with another version is a hot swap).
    Deploy {
        name: String,
        #[arg(long)]
        plugin: String,
        /// A version number or `latest` (follows new uploads).
        #[arg(long, default_value = "latest")]
        version: String,
        #[arg(long)]
        input: String,
        /// Output topic (repeat for several; the first is the default).
        #[arg(long = "output", required = true)]
        outputs: Vec<String>,
        #[arg(long)]
        dead_letter: Option<String>,
        /// Plugin config entries, `key=value` (repeatable).
        #[arg(long = "config")]
        config: Vec<String>,
        /// A lookup table the plugin may read (repeatable; none by default).
        #[arg(long = "table")]
        tables: Vec<String>,
        /// Let this deployment close a cycle of transforms.
        #[arg(long)]
        allow_cycles: bool,
        /// earliest | latest (first deployment only).
        #[arg(long, default_value = "earliest")]
        start: String,
        #[command(flatten)]
        server: Server,
    },
    List {
        #[command(flatten)]
        server: Server,
    },
    Status {
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Print the plugin's log lines (`-f` to keep following).
    Logs {
        name: String,
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        server: Server,
    },
    Pause {
        name: String,
        #[command(flatten)]
        server: Server,
    },
    Resume {
        name: String,
        #[command(flatten)]
        server: Server,
    },
    Delete {
        name: String,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where topics are stored.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP listen address.
    #[arg(long)]
    pub http: Option<String>,
    /// Kafka protocol listen address (`off` to disable).
    #[arg(long)]
    pub kafka: Option<String>,
    /// Host:port given to Kafka clients (default: the Kafka listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// TOML config file (flags override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Allow binding a non-loopback address without authentication.
    #[arg(long)]
    pub insecure: bool,
    /// Watch this directory: writing `NAME.wasm` there uploads a new version of plugin NAME.
    #[arg(long)]
    pub plugins_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Server {
    /// The server's HTTP address.
    #[arg(
        long,
        global = true,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
}

#[derive(Debug, Subcommand)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        #[arg(long)]
        retention_ms: Option<i64>,
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// delete | compact
        #[arg(long, default_value = "delete")]
        cleanup: String,
        /// every_batch | interval | os
        #[arg(long)]
        flush: Option<String>,
        #[command(flatten)]
        server: Server,
    },
    /// List topics.
    List {
        #[command(flatten)]
        server: Server,
    },
    /// Show a topic's partitions and settings.
    Describe {
        name: String,
        #[command(flatten)]
        server: Server,
    },
    /// Delete a topic and its data.
    Delete {
        name: String,
        #[command(flatten)]
        server: Server,
    },
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// Key for every record (default: none, round-robin partitions).
    #[arg(long)]
    pub key: Option<String>,
    /// Partition for every record (default: by key or round-robin).
    #[arg(long)]
    pub partition: Option<u32>,
    #[command(flatten)]
    pub server: Server,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// earliest | latest
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Keep waiting for new records.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Read one partition only.
    #[arg(long)]
    pub partition: Option<u32>,
    /// Print whole records as JSON instead of values.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: Server,
}

/// A thin JSON client for the HTTP API with errors that quote the server's message.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Self {
        sluice_auth::tls::install_provider();
        Client {
            // A server with identities wants `Authorization: Bearer`; the token comes from
            // the environment so it never shows in `ps` or shell history.
            token: std::env::var("SLUICE_TOKEN").ok().filter(|t| !t.is_empty()),
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let msg = body["error"]["message"]
                .as_str()
                .map_or_else(|| body.to_string(), str::to_owned);
            if status == reqwest::StatusCode::UNAUTHORIZED {
                bail!("{status}: {msg} (set SLUICE_TOKEN to your token)");
            }
            bail!("{status}: {msg}");
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn post_ndjson(&self, path: &str, body: String) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/x-ndjson")
                .body(body),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        self.send(
            self.http
                .put(format!("{}{path}", self.base))
                .header("content-type", "application/wasm")
                .body(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }
}

pub async fn topic(cmd: TopicCmd) -> anyhow::Result<()> {
    match cmd {
        TopicCmd::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
            cleanup,
            flush,
            server,
        } => {
            let mut body = json!({"name": name, "partitions": partitions, "cleanup": cleanup,
                "retention_ms": retention_ms, "retention_bytes": retention_bytes});
            if let Some(f) = flush {
                body["flush"] = json!(f);
            }
            Client::new(&server.server)
                .post("/v1/topics", &body)
                .await?;
            println!("created topic {name} with {partitions} partition(s)");
        }
        TopicCmd::List { server } => {
            let v = Client::new(&server.server).get("/v1/topics").await?;
            println!("{:<40} PARTITIONS", "TOPIC");
            for t in v["topics"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {}",
                    t["name"].as_str().unwrap_or(""),
                    t["partitions"]
                );
            }
        }
        TopicCmd::Describe { name, server } => {
            let v = Client::new(&server.server)
                .get(&format!("/v1/topics/{name}"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        TopicCmd::Delete { name, server } => {
            Client::new(&server.server)
                .delete(&format!("/v1/topics/{name}"))
                .await?;
            println!("deleted topic {name}");
        }
    }
    Ok(())
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server.server);
    let path = format!("/v1/topics/{}/records", args.topic);
    let interactive = std::io::stdin().is_terminal();
    let mut pending = String::new();
    let mut count = 0usize;
    let mut sent = 0usize;
    let mut lines = std::io::stdin().lock().lines();
    loop {
        let line = lines.next().transpose()?;
        if let Some(line) = &line {
            let mut rec = json!({"value": line, "key": args.key});
            if let Some(p) = args.partition {
                rec["partition"] = json!(p);
            }
            pending.push_str(&rec.to_string());
            pending.push('\n');
            count += 1;
        }
        // Send per line when a person types, in batches of 1,000 when piped.
        let flush = line.is_none() || interactive || count == 1000;
        if flush && count > 0 {
            client
                .post_ndjson(&path, std::mem::take(&mut pending))
                .await?;
            sent += count;
            count = 0;
            if !interactive {
                eprint!("\rproduced {sent} records");
            }
        }
        if line.is_none() {
            break;
        }
    }
    eprintln!("\rproduced {sent} records to {}", args.topic);
    Ok(())
}

fn print_record(r: &Value, as_json: bool, out: &mut impl Write) -> std::io::Result<()> {
    if as_json {
        writeln!(out, "{r}")
    } else if let Some(v) = r["value"].as_str() {
        writeln!(out, "{v}")
    } else {
        writeln!(out, "{}", r.get("value_base64").unwrap_or(&Value::Null))
    }
}

pub async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.server.server);
    let topic = client.get(&format!("/v1/topics/{}", args.topic)).await?;
    let partitions: Vec<(u64, u64, u64)> = topic["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["partition"].as_u64().unwrap_or(0),
                p["start_offset"].as_u64().unwrap_or(0),
                p["end_offset"].as_u64().unwrap_or(0),
            )
        })
        .filter(|(id, _, _)| args.partition.is_none_or(|p| u64::from(p) == *id))
        .collect();
    if partitions.is_empty() {
        bail!("topic {} has no partition {:?}", args.topic, args.partition);
    }
    let latest = match args.from.as_str() {
        "earliest" => false,
        "latest" => true,
        other => bail!("--from must be earliest or latest, not {other}"),
    };
    if args.follow && args.partition.is_none() {
        return follow_stream(&args, latest).await;
    }
    let mut stdout = std::io::stdout().lock();
    // Positions per partition; without --follow, stop at the end seen at start.
    let mut pos: Vec<(u64, u64, u64)> = partitions
        .iter()
        .map(|&(id, start, end)| (id, if latest { end } else { start }, end))
        .collect();
    let wait = if args.follow { 1000 } else { 0 };
    loop {
        for (id, offset, end) in pos.iter_mut() {
            if !args.follow && *offset >= *end {
                continue;
            }
            let v = client
                .get(&format!(
                    "/v1/topics/{}/partitions/{id}/records?offset={offset}&max=1000&wait_ms={wait}",
                    args.topic
                ))
                .await?;
            for r in v["records"].as_array().into_iter().flatten() {
                print_record(r, args.json, &mut stdout)?;
            }
            *offset = v["next_offset"].as_u64().unwrap_or(*offset);
        }
        stdout.flush()?;
        if !args.follow && pos.iter().all(|(_, o, e)| o >= e) {
            return Ok(());
        }
    }
}

/// Follows every partition at once through the server-sent events stream.
async fn follow_stream(args: &ConsumeArgs, latest: bool) -> anyhow::Result<()> {
    use futures::StreamExt;
    let from = if latest { "latest" } else { "earliest" };
    let url = format!(
        "{}/v1/topics/{}/stream?from={from}",
        args.server.server.trim_end_matches('/'),
        args.topic
    );
    let resp = reqwest::get(&url).await?.error_for_status()?;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if let Some(data) = line.strip_prefix(b"data: ") {
                let rec: Value = serde_json::from_slice(data.trim_ascii_end())?;
                print_record(&rec, args.json, &mut stdout.lock())?;
            }
        }
        stdout.flush()?;
    }
    Ok(())
}

pub async fn plugin(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Push { name, file, server } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            eprintln!(
                "uploading {} ({} KiB), validating and compiling…",
                file.display(),
                bytes.len() / 1024
            );
            let v = Client::new(&server.server)
                .put_bytes(&format!("/v1/plugins/{name}"), bytes)
                .await?;
            println!(
                "plugin {name} version {} ({})",
                v["version"],
                v["digest"].as_str().unwrap_or("")
            );
        }
        PluginCmd::List { server } => {
            let v = Client::new(&server.server).get("/v1/plugins").await?;
            println!("{:<30} {:>8} {:>8}  DIGEST", "PLUGIN", "VERSIONS", "LATEST");
            for p in v["plugins"].as_array().into_iter().flatten() {
                println!(
                    "{:<30} {:>8} {:>8}  {}",
                    p["name"].as_str().unwrap_or(""),
                    p["versions"],
                    p["latest"]["version"],
                    p["latest"]["digest"].as_str().unwrap_or("")
                );
            }
        }
        PluginCmd::New { name, sdk } => scaffold(&name, sdk)?,
    }
    Ok(())
}

/// Writes a plugin crate: Cargo.toml, a one-function transform and a native test.
fn scaffold(name: &str, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    if !sluice_pipeline::plugins::valid_name(name) || name.contains('.') {
        bail!("plugin name {name:?}: use letters, digits, '-' and '_'");
    }
    let dir = PathBuf::from(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk = sdk.unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk")));
    let sdk = std::fs::canonicalize(&sdk)
        .with_context(|| format!("SDK not found at {}; pass --sdk", sdk.display()))?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
             [dependencies]\nsluice-sdk = {{ path = {sdk:?} }}\nserde_json = \"1\"\n\n\
             # A crate of its own, not a member of an enclosing workspace.\n[workspace]\n",
            sdk = sdk.display().to_string()
        ),
    )?;
    std::fs::write(
        dir.join("src/lib.rs"),
        r#"//! A Sluice transform. Build: `cargo build --release --target wasm32-wasip2`, then
//! `sluice plugin push NAME target/wasm32-wasip2/release/NAME.wasm`.

use sluice_sdk::{Error, Outcome, Record};

/// Upper-cases text values; drops empty ones; rejects binary ones.
pub fn transform(record: &Record) -> Result<Outcome, Error> {
    match record.value_str() {
        Some("") => Ok(Outcome::drop()),
        Some(text) => Ok(Outcome::emit(record.to_owned().with_value(text.to_uppercase()))),
        None => Err(Error::new("value is not UTF-8 text")),
    }
}

sluice_sdk::export_transform!(transform);

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::testing::{Harness, TestOutcome, TestRecord};

    #[test]
    fn upper_cases_and_drops_empty_values() {
        let out = Harness::new(transform).run(&[TestRecord::value("hello"), TestRecord::value("")]);
        assert_eq!(out[0].values(), ["HELLO"]);
        assert_eq!(out[1], TestOutcome::Dropped);
    }
}
"#,
    )?;
    println!("created plugin crate {name}/");
    println!("  test:   cd {name} && cargo test");
    println!("  build:  cargo build --release --target wasm32-wasip2");
    println!(
        "  deploy: sluice plugin push {name} target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    );
    Ok(())
}

pub async fn transform(cmd: TransformCmd) -> anyhow::Result<()> {
    match cmd {
        TransformCmd::Deploy {
            name,
            plugin,
            version,
            input,
            outputs,
            dead_letter,
            config,
            tables,
            allow_cycles,
            start,
            server,
        } => {
            let version = match version.as_str() {
                "latest" => json!("latest"),
                v => json!(
                    v.parse::<u32>()
                        .with_context(|| format!("--version {v}: a number or latest"))?
                ),
            };
            let mut cfg = serde_json::Map::new();
            for kv in config {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("--config {kv}: expected key=value"))?;
                cfg.insert(k.to_string(), json!(v));
            }
            let mut spec = json!({"plugin": plugin, "version": version, "input": input, "outputs": outputs,
                "config": cfg, "tables": tables, "start": start, "allow_cycles": allow_cycles});
            if let Some(d) = dead_letter {
                spec["dead_letter"] = json!(d);
            }
            eprintln!("deploying {name} (instantiating the plugin for every partition)…");
            let st = Client::new(&server.server)
                .put(&format!("/v1/transforms/{name}"), &spec)
                .await?;
            println!(
                "transform {name}: {} {} v{}",
                st["status"].as_str().unwrap_or(""),
                st["plugin"].as_str().unwrap_or(""),
                st["version"]
            );
        }
        TransformCmd::List { server } => {
            let v = Client::new(&server.server).get("/v1/transforms").await?;
            println!(
                "{:<24} {:<8} {:<16} {:>7} {:<24} LAG",
                "TRANSFORM", "STATUS", "PLUGIN", "VERSION", "INPUT"
            );
            for t in v["transforms"].as_array().into_iter().flatten() {
                let lag: u64 = t["partitions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["lag"].as_u64())
                    .sum();
                println!(
                    "{:<24} {:<8} {:<16} {:>7} {:<24} {lag}",
                    t["name"].as_str().unwrap_or(""),
                    t["status"].as_str().unwrap_or(""),
                    t["plugin"].as_str().unwrap_or(""),
                    t["version"],
                    t["input"].as_str().unwrap_or("")
                );
            }
        }
        TransformCmd::Status { name, server } => {
            let v = Client::new(&server.server)
                .get(&format!("/v1/transforms/{name}"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        TransformCmd::Logs {
            name,
            follow,
            server,
        } => {
            let c = Client::new(&server.server);
            let mut next = 0u64;
            loop {
                let v = c.get(&format!("/v1/transforms/{name}/logs")).await?;
                for l in v["lines"].as_array().into_iter().flatten() {
                    let seq = l["seq"].as_u64().unwrap_or(0);
                    if seq < next {
                        continue;
                    }
                    next = seq + 1;
                    println!(
                        "v{} p{} @{} {:<6} {}",
                        l["version"],
                        l["partition"],
                        l["offset"],
                        l["level"].as_str().unwrap_or(""),
                        l["message"].as_str().unwrap_or("")
                    );
                }
                if !follow {
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        TransformCmd::Pause { name, server } => {
            Client::new(&server.server)
                .post(&format!("/v1/transforms/{name}/pause"), &json!({}))
                .await?;
            println!("paused {name}");
        }
        TransformCmd::Resume { name, server } => {
            Client::new(&server.server)
                .post(&format!("/v1/transforms/{name}/resume"), &json!({}))
                .await?;
            println!("resumed {name}");
        }
        TransformCmd::Delete { name, server } => {
            Client::new(&server.server)
                .delete(&format!("/v1/transforms/{name}"))
                .await?;
            println!("deleted {name}");
        }
    }
    Ok(())
}

pub async fn connector(cmd: ConnectorCmd) -> anyhow::Result<()> {
    match cmd {
        ConnectorCmd::Deploy { name, file, server } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let spec: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", file.display()))?;
            let st = Client::new(&server.server)
                .put(&format!("/v1/connectors/{name}"), &spec)
                .await?;
            println!(
                "connector {name}: {} {} on {}",
                st["kind"].as_str().unwrap_or(""),
                st["status"].as_str().unwrap_or(""),
                st["topic"].as_str().unwrap_or("")
            );
        }
        ConnectorCmd::List { server } => {
            let v = Client::new(&server.server).get("/v1/connectors").await?;
            println!(
                "{:<24} {:<14} {:<8} {:<24} {:>10} {:>8}",
                "CONNECTOR", "KIND", "STATUS", "TOPIC", "RECORDS", "LAG"
            );
            for c in v["connectors"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<14} {:<8} {:<24} {:>10} {:>8}",
                    c["name"].as_str().unwrap_or(""),
                    c["kind"].as_str().unwrap_or(""),
                    c["status"].as_str().unwrap_or(""),
                    c["topic"].as_str().unwrap_or(""),
                    c["records"],
                    c.get("lag").map_or("-".to_string(), |l| l.to_string())
                );
            }
        }
        ConnectorCmd::Status { name, server } => {
            let v = Client::new(&server.server)
                .get(&format!("/v1/connectors/{name}"))
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ConnectorCmd::Pause { name, server } => {
            Client::new(&server.server)
                .post(&format!("/v1/connectors/{name}/pause"), &json!({}))
                .await?;
            println!("paused {name}");
        }
        ConnectorCmd::Resume { name, server } => {
            Client::new(&server.server)
                .post(&format!("/v1/connectors/{name}/resume"), &json!({}))
                .await?;
            println!("resumed {name}");
        }
        ConnectorCmd::Delete { name, server } => {
            Client::new(&server.server)
                .delete(&format!("/v1/connectors/{name}"))
                .await?;
            println!("deleted {name}");
        }
    }
    Ok(())
}
