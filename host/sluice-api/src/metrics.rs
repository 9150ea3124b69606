//! `GET /metrics`: Prometheus text exposition of the log, the transforms and the process.

use std::fmt::Write;

use axum::http::header;
use axum::response::IntoResponse;

use super::State;

pub(crate) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Resident memory and CPU seconds from /proc (Linux).
pub(crate) fn process(out: &mut String) {
    let page = 4096u64;
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(rss) = statm
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
    {
        family(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(out, "process_resident_memory_bytes {}", rss * page);
    }
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may contain spaces) start after ')'.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let (Some(u), Some(s)) = (
            f.get(11).and_then(|v| v.parse::<u64>().ok()),
            f.get(12).and_then(|v| v.parse::<u64>().ok()),
        ) {
            family(
                out,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time in seconds.",
            );
            let _ = writeln!(out, "process_cpu_seconds_total {}", (u + s) as f64 / 100.0);
        }
    }
}

/// The data directory's filesystem: free space, and the state (0 ok, 1 low, 2 full).
fn disk(out: &mut String, d: &sluice_log::space::DiskStatus) {
    use sluice_log::space::DiskState;
    for (name, help, v) in [
        (
            "sluice_disk_free_bytes",
            "Free bytes on the data directory's filesystem.",
            d.free_bytes,
        ),
        (
            "sluice_disk_total_bytes",
            "Size of the data directory's filesystem.",
            d.total_bytes,
        ),
        (
            "sluice_disk_min_free_bytes",
            "Produce is refused (storage_full) below this much free space.",
            d.min_free_bytes,
        ),
        (
            "sluice_disk_alert_free_bytes",
            "The disk is reported low below this much free space.",
            d.alert_free_bytes,
        ),
        (
            "sluice_disk_state",
            "0 ok, 1 low (act now), 2 full (produce refused).",
            match d.state {
                DiskState::Ok => 0,
                DiskState::Low => 1,
                DiskState::Full => 2,
            },
        ),
    ] {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    }
}

/// The remote tier: process-wide counters, and local vs remote bytes per tiered partition.
fn tier(out: &mut String, topics: &[std::sync::Arc<sluice_log::Topic>]) {
    use std::sync::atomic::Ordering::Relaxed;
    let m = &sluice_log::tier::METRICS;
    for (name, kind, help, v) in [
        (
            "sluice_tier_uploads_total",
            "counter",
            "Objects uploaded to the object store.",
            &m.uploads,
        ),
        (
            "sluice_tier_upload_bytes_total",
            "counter",
            "Bytes uploaded to the object store.",
            &m.upload_bytes,
        ),
        (
            "sluice_tier_downloads_total",
            "counter",
            "Reads (whole objects or ranges) from the object store.",
            &m.downloads,
        ),
        (
            "sluice_tier_download_bytes_total",
            "counter",
            "Bytes read from the object store.",
            &m.download_bytes,
        ),
        (
            "sluice_tier_errors_total",
            "counter",
            "Object store calls that failed (they are retried).",
            &m.errors,
        ),
        (
            "sluice_tier_cache_hits_total",
            "counter",
            "Remote reads answered by the cache.",
            &m.cache_hits,
        ),
        (
            "sluice_tier_cache_misses_total",
            "counter",
            "Remote reads that went to the object store.",
            &m.cache_misses,
        ),
        (
            "sluice_tier_cache_bytes",
            "gauge",
            "Bytes of remote data held by the read cache.",
            &m.cache_bytes,
        ),
        (
            "sluice_tier_segments_deleted_total",
            "counter",
            "Remote segments deleted by retention.",
            &m.segments_deleted,
        ),
        (
            "sluice_tier_pending_bytes",
            "gauge",
            "Bytes of sealed segments waiting for upload.",
            &m.pending_bytes,
        ),
        (
            "sluice_disk_free_bytes",
            "gauge",
            "Free bytes on the data directory's file system.",
            &m.disk_free_bytes,
        ),
        (
            "sluice_disk_full_danger",
            "gauge",
            "1 while segments waiting for upload threaten to fill the disk.",
            &m.disk_danger,
        ),
    ] {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {}", v.load(Relaxed));
    }
    family(
        out,
        "sluice_partition_local_bytes",
        "gauge",
        "Tiered partitions: bytes of segments on local disk.",
    );
    family(
        out,
        "sluice_partition_remote_bytes",
        "gauge",
        "Tiered partitions: bytes of segments in the object store.",
    );
    for t in topics {
        for p in &t.partitions {
            if let Some(ts) = p.stats().tier {
                for (name, v) in [
                    ("sluice_partition_local_bytes", ts.local_bytes),
                    ("sluice_partition_remote_bytes", ts.remote_bytes),
                ] {
                    let _ = writeln!(
                        out,
                        "{name}{{topic=\"{}\",partition=\"{}\"}} {v}",
                        t.name, p.id
                    );
                }
            }
        }
    }
}

/// Connector counters, health and sink lag.
fn connectors(out: &mut String, state: &super::AppState) {
    let statuses: Vec<_> = state
        .connectors
        .list()
        .iter()
        .map(|c| serde_json::to_value(state.connectors.status(c)).unwrap_or_default())
        .collect();
    for (key, help) in [
        (
            "records",
            "Records imported (sources) or delivered (sinks).",
        ),
        (
            "dead_letters",
            "Records the store refused, sent to the dead-letter topic.",
        ),
        ("failures", "Failed attempts (retried with backoff)."),
        ("requests", "Successful requests or transactions."),
    ] {
        let name = format!("sluice_connector_{key}_total");
        family(out, &name, "counter", help);
        for st in &statuses {
            let _ = writeln!(
                out,
                "{name}{{connector=\"{}\",kind=\"{}\"}} {}",
                st["name"].as_str().unwrap_or(""),
                st["kind"].as_str().unwrap_or(""),
                st[key].as_u64().unwrap_or(0)
            );
        }
    }
    family(
        out,
        "sluice_connector_up",
        "gauge",
        "1 while the connector's last attempt succeeded and it is not paused.",
    );
    for st in &statuses {
        let _ = writeln!(
            out,
            "sluice_connector_up{{connector=\"{}\"}} {}",
            st["name"].as_str().unwrap_or(""),
            u8::from(st["status"] == "running")
        );
    }
    family(
        out,
        "sluice_connector_lag",
        "gauge",
        "Records of the topic a sink has not delivered yet, per partition.",
    );
    for st in &statuses {
        for p in st["partitions"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "sluice_connector_lag{{connector=\"{}\",partition=\"{}\"}} {}",
                st["name"].as_str().unwrap_or(""),
                p["partition"],
                p["lag"].as_u64().unwrap_or(0)
            );
        }
    }
}

#[utoipa::path(
    get,
    path = "/metrics",
    responses(
        (status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)
    )
)]
pub async fn metrics(state: State) -> Result<impl IntoResponse, super::ApiError> {
    // It reads /proc and every partition's segments: off the reactor.
    let state = state.0.clone();
    let out = super::blocking(move || Ok::<_, super::ApiError>(render(&state))).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    ))
}

/// The whole exposition.
fn render(state: &super::AppState) -> String {
    let mut out = String::with_capacity(4096);
    disk(&mut out, &state.log.space().status());
    let topics = state.log.topics();
    for (name, help, pick) in [
        (
            "sluice_partition_end_offset",
            "Next offset of the partition (high watermark).",
            0,
        ),
        (
            "sluice_partition_start_offset",
            "First offset still stored.",
            1,
        ),
        (
            "sluice_partition_size_bytes",
            "Bytes of segments (local and, for tiered topics, remote).",
            2,
        ),
    ] {
        family(&mut out, name, "gauge", help);
        for t in &topics {
            for p in &t.partitions {
                let s = p.stats();
                let v = [s.end_offset, s.start_offset, s.size_bytes][pick];
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{}\",partition=\"{}\"}} {v}",
                    t.name, p.id
                );
            }
        }
    }
    tier(&mut out, &topics);
    let statuses: Vec<_> = state
        .pipelines
        .statuses()
        .iter()
        .map(|st| serde_json::to_value(st).unwrap_or_default())
        .collect();
    for (key, help) in [
        ("records_in", "Input records processed."),
        ("records_out", "Records emitted to output topics."),
        (
            "rejected",
            "Records rejected by the plugin (dead-lettered).",
        ),
        (
            "failed",
            "Records that made the plugin trap or break a limit (dead-lettered).",
        ),
        ("traps", "Plugin calls that trapped or broke a limit."),
        (
            "fuel",
            "wasmtime fuel consumed by metered calls (those isolating suspect records after a failed or timed-out call).",
        ),
    ] {
        let name = format!("sluice_transform_{key}_total");
        family(&mut out, &name, "counter", help);
        for st in &statuses {
            let v = st["counters"][key].as_u64().unwrap_or(0);
            let _ = writeln!(
                out,
                "{name}{{transform=\"{}\"}} {v}",
                st["name"].as_str().unwrap_or("")
            );
        }
    }
    family(
        &mut out,
        "sluice_transform_lag",
        "gauge",
        "Input records not yet processed, per partition.",
    );
    for st in &statuses {
        for p in st["partitions"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "sluice_transform_lag{{transform=\"{}\",partition=\"{}\"}} {}",
                st["name"].as_str().unwrap_or(""),
                p["partition"],
                p["lag"].as_u64().unwrap_or(0)
            );
        }
    }
    family(
        &mut out,
        "sluice_transform_paused",
        "gauge",
        "1 while the transform is paused.",
    );
    for st in &statuses {
        let paused = u8::from(st["status"] == "paused");
        let _ = writeln!(
            out,
            "sluice_transform_paused{{transform=\"{}\"}} {paused}",
            st["name"].as_str().unwrap_or("")
        );
    }
    stateful(&mut out, &statuses);
    groups(&mut out, state);
    connectors(&mut out, state);
    sluice_common::telemetry::telemetry().encode(&mut out);
    process(&mut out);
    out
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

/// The Kafka clients' consumer groups: members and the lag of every committed partition
/// (transforms' own lag is `sluice_transform_lag`).
fn groups(out: &mut String, state: &super::AppState) {
    if state.groups.get().is_none() {
        return;
    }
    let all = super::groups::kafka_lags(state);
    family(
        out,
        "sluice_consumer_group_members",
        "gauge",
        "Members of a Kafka consumer group.",
    );
    for g in &all {
        let _ = writeln!(
            out,
            "sluice_consumer_group_members{{group=\"{}\"}} {}",
            label(&g.group),
            g.members
        );
    }
    family(
        out,
        "sluice_consumer_group_lag",
        "gauge",
        "Records between a consumer group's committed offset and the partition's end.",
    );
    for g in &all {
        for (topic, partition, lag) in &g.partitions {
            let _ = writeln!(
                out,
                "sluice_consumer_group_lag{{group=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {lag}",
                label(&g.group),
                label(topic),
            );
        }
    }
}

/// Per-partition series of stateful transforms (partitions without state are skipped).
fn stateful(out: &mut String, statuses: &[serde_json::Value]) {
    for (key, name, kind, help) in [
        (
            "watermark",
            "sluice_transform_watermark_ms",
            "gauge",
            "Event time (ms) before which records are late.",
        ),
        (
            "max_event_time",
            "sluice_transform_max_event_time_ms",
            "gauge",
            "The largest event time (ms) seen.",
        ),
        (
            "late",
            "sluice_transform_late_total",
            "counter",
            "Records later than the watermark (dead-lettered or sent to the late output).",
        ),
        (
            "state_keys",
            "sluice_transform_state_keys",
            "gauge",
            "Keys held in state.",
        ),
        (
            "state_bytes",
            "sluice_transform_state_bytes",
            "gauge",
            "Bytes of state held (counted against limits.state_bytes).",
        ),
        (
            "timers",
            "sluice_transform_timers",
            "gauge",
            "Pending event-time timers.",
        ),
    ] {
        family(out, name, kind, help);
        for st in statuses {
            for p in st["partitions"].as_array().into_iter().flatten() {
                let Some(v) = p[key].as_i64() else { continue };
                let _ = writeln!(
                    out,
                    "{name}{{transform=\"{}\",partition=\"{}\"}} {v}",
                    st["name"].as_str().unwrap_or(""),
                    p["partition"],
                );
            }
        }
    }
    family(
        out,
        "sluice_transform_state_checkpoint_timestamp_ms",
        "gauge",
        "When the partition's state was last committed with its input position (ms).",
    );
    for st in statuses {
        for p in st["partitions"].as_array().into_iter().flatten() {
            let Some(at) = p["checkpoint"]["at"].as_i64() else {
                continue;
            };
            let _ = writeln!(
                out,
                "sluice_transform_state_checkpoint_timestamp_ms{{transform=\"{}\",partition=\"{}\"}} {at}",
                st["name"].as_str().unwrap_or(""),
                p["partition"],
            );
        }
    }
}
