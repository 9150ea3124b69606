//! `sluice produce` and `sluice consume`.

use std::io::{BufRead, IsTerminal};

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};

use super::output::{count, line, progress, progress_done};
use crate::client::Client;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to append to.
    pub topic: String,
    /// Key for every record [default: none; partitions round-robin].
    #[arg(long)]
    pub key: Option<String>,
    /// Partition for every record [default: by key, else round-robin].
    #[arg(long)]
    pub partition: Option<u32>,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// `earliest` or `latest` [default: earliest; latest with --follow, like `tail -f`].
    #[arg(long)]
    pub from: Option<String>,
    /// Keep waiting for new records.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Read one partition only [default: all].
    #[arg(long)]
    pub partition: Option<u32>,
    /// Print whole records as JSON instead of values.
    #[arg(long)]
    pub json: bool,
}

pub async fn produce(c: &Client, args: ProduceArgs) -> anyhow::Result<()> {
    let path = format!("/v1/topics/{}/records", args.topic);
    let interactive = std::io::stdin().is_terminal();
    let mut pending = String::new();
    let (mut batched, mut sent) = (0usize, 0u64);
    let mut lines = std::io::stdin().lock().lines();
    loop {
        let next = lines.next().transpose()?;
        if let Some(l) = &next {
            let mut rec = json!({"value": l, "key": args.key});
            if let Some(p) = args.partition {
                rec["partition"] = json!(p);
            }
            pending.push_str(&rec.to_string());
            pending.push('\n');
            batched += 1;
        }
        // Send per line when a person types, in batches of 1,000 when piped.
        let flush = next.is_none() || interactive || batched == 1000;
        if flush && batched > 0 {
            c.post_ndjson(&path, std::mem::take(&mut pending)).await?;
            sent += batched as u64;
            batched = 0;
            if !interactive {
                progress(format!("produced {}", count(sent, "record", "records")));
            }
        }
        if next.is_none() {
            break;
        }
    }
    if !interactive {
        progress_done();
    }
    super::output::note(format!(
        "produced {} to {}",
        count(sent, "record", "records"),
        args.topic
    ));
    Ok(())
}

fn print_record(r: &Value, as_json: bool) {
    if as_json {
        line(r);
    } else if let Some(v) = r["value"].as_str() {
        line(v);
    } else {
        line(r.get("value_base64").unwrap_or(&Value::Null));
    }
}

pub async fn consume(c: &Client, args: ConsumeArgs) -> anyhow::Result<()> {
    let topic = c.get(&format!("/v1/topics/{}", args.topic)).await?;
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
    if let (true, Some(p)) = (partitions.is_empty(), args.partition) {
        bail!(
            "topic {} has no partition {p} (it has {})",
            args.topic,
            count(
                topic["partition_count"].as_u64().unwrap_or(0),
                "partition",
                "partitions"
            )
        );
    }
    let latest = match args.from.as_deref() {
        None => args.follow,
        Some("earliest") => false,
        Some("latest") => true,
        Some(other) => bail!("--from must be earliest or latest, not {other}"),
    };
    if args.follow && args.partition.is_none() {
        return follow_stream(c, &args, latest).await;
    }
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
            let v = c
                .get(&format!(
                    "/v1/topics/{}/partitions/{id}/records?offset={offset}&max=1000&wait_ms={wait}",
                    args.topic
                ))
                .await?;
            for r in v["records"].as_array().into_iter().flatten() {
                print_record(r, args.json);
            }
            *offset = v["next_offset"].as_u64().unwrap_or(*offset);
        }
        if !args.follow && pos.iter().all(|(_, o, e)| o >= e) {
            return Ok(());
        }
    }
}

/// Follows every partition at once through the server-sent events stream.
async fn follow_stream(c: &Client, args: &ConsumeArgs, latest: bool) -> anyhow::Result<()> {
    use futures::StreamExt;
    let from = if latest { "latest" } else { "earliest" };
    let resp = c
        .stream(&format!("/v1/topics/{}/stream?from={from}", args.topic))
        .await?;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk?);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let l: Vec<u8> = buf.drain(..=nl).collect();
            if let Some(data) = l.strip_prefix(b"data: ") {
                let rec: Value = serde_json::from_slice(data.trim_ascii_end())?;
                print_record(&rec, args.json);
            }
        }
    }
    Ok(())
}
