//! `GET /v1/lineage/{topic}/{partition}/{offset}`: a record's history, from the provenance
//! every output and dead letter carries (`sluice-src: TRANSFORM:PARTITION:OFFSET:K`, or
//! `TRANSFORM:PARTITION:~POSITION:WATERMARK:N:K` for what a timer emitted, and
//! `sluice-version`).
//!
//! - Back: hop by hop to the record that entered Sluice (one without provenance), naming
//!   each transform, its plugin and version. A timer's output is an aggregate: its hop is
//!   `via: "timer"` and continues from the input read last before the timer fired.
//! - Forward: every output and dead letter derived from the record, breadth first through
//!   the transforms that read each topic. A transform's outputs of one input partition are
//!   written in input order, so the search of an output partition stops at the first
//!   output of a later input.

use std::collections::VecDeque;

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use serde::Serialize;
use sluice_log::batch::StoredRecord;
use utoipa::ToSchema;

use crate::{ApiError, AppState, State, blocking};

/// How far either way a lineage query goes.
const MAX_HOPS: usize = 32;
/// Derived records listed at most.
const MAX_DERIVED: usize = 1_000;
/// Records one output partition's search reads at most.
const MAX_SCAN: usize = 1_000_000;
/// Records read at a time: a read decodes whole stored batches (a transform writes up to a
/// few thousand records in one), so small reads would decode the same batch again and again.
const SCAN_CHUNK: usize = 4_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RecordRef {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
}

/// The record asked about.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordSummary {
    #[serde(flatten)]
    pub at: RecordRef,
    pub timestamp: i64,
    /// The key and value as text (lossy UTF-8, the first 200 characters).
    pub key: Option<String>,
    pub value: Option<String>,
}

/// One transform between a record and its input.
#[derive(Debug, Serialize, ToSchema)]
pub struct Hop {
    pub transform: String,
    /// The plugin the deployment runs now (none: the deployment is gone).
    pub plugin: Option<String>,
    /// The plugin version that wrote the record.
    pub version: Option<u32>,
    /// `record` (derived from one input), `timer` (emitted by a timer: an aggregate of the
    /// inputs before it) or `dead_letter`.
    pub via: &'static str,
    /// The record this transform wrote.
    pub output: RecordRef,
    /// The input it came from (for a timer: the input read last before it fired).
    pub input: Option<RecordRef>,
    /// A timer's watermark when it fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<i64>,
}

/// A record derived from the one asked about.
#[derive(Debug, Serialize, ToSchema)]
pub struct Derived {
    #[serde(flatten)]
    pub at: RecordRef,
    /// `output`, `dead_letter` or `late` (a stateful transform's late records).
    pub kind: &'static str,
    pub transform: String,
    pub plugin: String,
    pub version: Option<u32>,
    /// The record it was derived from.
    pub from: RecordRef,
    /// A dead letter's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Lineage {
    pub record: RecordSummary,
    /// The record that entered Sluice (none when the chain breaks: a deployment deleted,
    /// an input past retention, or more than 32 hops).
    pub origin: Option<RecordRef>,
    /// From this record back to the origin.
    pub hops: Vec<Hop>,
    /// Everything derived from it, nearest first.
    pub derived: Vec<Derived>,
    /// Some of the forward search was cut short (its limits), or a hop could not be read.
    pub truncated: bool,
}

/// A header's last value: a dead letter keeps its input's headers (with their
/// provenance) and puts its own after them.
fn header<'a>(r: &'a StoredRecord, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.as_deref())
        .and_then(|v| std::str::from_utf8(v).ok())
}

fn text(b: &Option<bytes::Bytes>) -> Option<String> {
    b.as_ref()
        .map(|v| String::from_utf8_lossy(v).chars().take(200).collect())
}

/// Where a record came from, as its `sluice-src` says.
enum Source<'a> {
    Record {
        transform: &'a str,
        partition: u32,
        offset: u64,
    },
    Timer {
        transform: &'a str,
        partition: u32,
        position: u64,
        watermark: i64,
    },
}

fn parse_src(src: &str) -> Option<Source<'_>> {
    // The transform's name has no `:` (names are [a-zA-Z0-9._-]).
    let mut parts = src.split(':');
    let transform = parts.next()?;
    let partition = parts.next()?.parse().ok()?;
    let third = parts.next()?;
    match third.strip_prefix('~') {
        Some(position) => Some(Source::Timer {
            transform,
            partition,
            position: position.parse().ok()?,
            watermark: parts.next()?.parse().ok()?,
        }),
        None => Some(Source::Record {
            transform,
            partition,
            offset: third.parse().ok()?,
        }),
    }
}

/// The record at `at`, if it is still there.
fn read_one(state: &AppState, at: &RecordRef) -> Result<Option<StoredRecord>, ApiError> {
    let t = state.log.topic(&at.topic)?;
    let p = t.partition(i64::from(at.partition)).map_err(|_| {
        ApiError::bad_request(format!(
            "topic `{}` has no partition {}",
            at.topic, at.partition
        ))
    })?;
    if at.offset < p.start_offset() || at.offset >= p.high_watermark() {
        return Ok(None);
    }
    let (recs, _, _) = p.read_records(at.offset, 1)?;
    Ok(recs.into_iter().find(|r| r.offset as u64 == at.offset))
}

fn version_of(r: &StoredRecord) -> Option<u32> {
    header(r, "sluice-version").and_then(|v| v.parse().ok())
}

/// Back from `at` to the origin.
fn backward(
    state: &AppState,
    at: RecordRef,
    first: &StoredRecord,
) -> Result<(Vec<Hop>, Option<RecordRef>, bool), ApiError> {
    let mut hops = Vec::new();
    let mut cur = at;
    let mut rec = first.clone();
    for _ in 0..MAX_HOPS {
        let Some(src) = header(&rec, "sluice-src") else {
            return Ok((hops, Some(cur), false));
        };
        let Some(parsed) = parse_src(src) else {
            return Ok((hops, None, true));
        };
        let (name, partition) = match &parsed {
            Source::Record {
                transform,
                partition,
                ..
            }
            | Source::Timer {
                transform,
                partition,
                ..
            } => (transform.to_string(), *partition),
        };
        let spec = state.pipelines.get(&name).ok().map(|t| t.spec());
        let dead = header(&rec, sluice_log::dead_letter::SOURCE_TOPIC_HEADER);
        let input_topic = dead
            .map(str::to_string)
            .or_else(|| spec.as_ref().map(|s| s.input.clone()));
        let (via, parent, watermark) = match parsed {
            Source::Record { offset, .. } => (
                if dead.is_some() {
                    "dead_letter"
                } else {
                    "record"
                },
                Some(offset),
                None,
            ),
            Source::Timer {
                position,
                watermark,
                ..
            } => ("timer", position.checked_sub(1), Some(watermark)),
        };
        let input = match (input_topic, parent) {
            (Some(topic), Some(offset)) => Some(RecordRef {
                topic,
                partition,
                offset,
            }),
            _ => None,
        };
        hops.push(Hop {
            transform: name,
            plugin: spec
                .map(|s| s.plugin)
                .or_else(|| header(&rec, "sluice-plugin").map(str::to_string)),
            version: version_of(&rec),
            via,
            output: cur.clone(),
            input: input.clone(),
            watermark,
        });
        let Some(input) = input else {
            return Ok((hops, None, true));
        };
        match read_one(state, &input) {
            Ok(Some(r)) => {
                rec = r;
                cur = input;
            }
            // Past retention, or the topic is gone: the chain ends here.
            _ => return Ok((hops, None, true)),
        }
    }
    Ok((hops, None, true))
}

/// What `transform` derived from input `from` (read from `from.partition`), in one
/// partition of one of its output topics; true when a limit cut the search short.
///
/// The transform's outputs of one input partition are in input order in every output
/// partition, so the batch where `from`'s outputs start is found by bisection over stored
/// batches (each probe decodes one record), and the outputs of `from` follow.
fn search_partition(
    state: &AppState,
    topic: &str,
    partition: u32,
    transform: &str,
    from: &RecordRef,
    found: &mut Vec<(RecordRef, StoredRecord)>,
) -> Result<bool, ApiError> {
    let t = state.log.topic(topic)?;
    let Ok(p) = t.partition(i64::from(partition)) else {
        return Ok(false);
    };
    let prefix = format!("{transform}:{}:", from.partition);
    // The input offset a record was derived from, when it is this transform's output of
    // this input partition (a timer's outputs have none).
    let input_of = |r: &StoredRecord| -> Option<u64> {
        let rest = header(r, "sluice-src")?.strip_prefix(&prefix)?;
        rest.split(':').next()?.parse().ok()
    };
    let mut budget = MAX_SCAN;
    // The first stored batch starting at or after `at` (before `end`) that holds this
    // transform's outputs of this input partition: (its base offset, the input offset of its
    // first record). A transform writes a batch per task and output partition, so one
    // record tells whose a batch is; only that record is decoded.
    let mut next_batch = |at: u64, end: u64| -> Result<Option<(u64, u64)>, ApiError> {
        let mut next = at;
        while next < end && budget > 0 {
            // One batch at a time (a read returns at least one): a probe needs one record.
            let r = p.read_committed(next, 1)?;
            if r.data.is_empty() {
                return Ok(None);
            }
            let batches = sluice_log::batch::split(r.data)
                .map_err(|e| ApiError::internal(format!("reading {topic}/{partition}: {e}")))?;
            for (h, raw) in batches {
                budget = budget.saturating_sub(1);
                let base = h.base_offset as u64;
                if base >= end {
                    return Ok(None);
                }
                if base < at || h.is_control() || p.is_aborted(&h) {
                    continue;
                }
                let first = sluice_log::batch::first_record(&raw)
                    .map_err(|e| ApiError::internal(format!("reading {topic}/{partition}: {e}")))?;
                if let Some(o) = first.as_ref().and_then(&input_of) {
                    return Ok(Some((base, o)));
                }
            }
            next = r.next_offset;
        }
        Ok(None)
    };
    // The last of this input partition's batches whose first input is before `from` may
    // hold `from`'s outputs further in: the scan starts at it (or at the partition's start
    // when none is found).
    let (mut lo, mut hi) = (p.start_offset(), p.high_watermark());
    let mut start = p.start_offset();
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match next_batch(mid, hi)? {
            Some((base, o)) if o < from.offset => {
                start = start.max(base);
                lo = base + 1;
            }
            _ => hi = mid,
        }
    }
    let lo = start;
    let mut next = lo;
    let end = p.high_watermark();
    while next < end && budget > 0 {
        let (recs, after, _) = p.read_records(next, SCAN_CHUNK)?;
        if recs.is_empty() {
            break;
        }
        for r in recs {
            budget = budget.saturating_sub(1);
            match input_of(&r) {
                Some(o) if o > from.offset => return Ok(false),
                Some(o) if o == from.offset => {
                    let at = RecordRef {
                        topic: topic.to_string(),
                        partition,
                        offset: r.offset as u64,
                    };
                    found.push((at, r));
                }
                _ => {}
            }
        }
        next = after;
    }
    Ok(budget == 0)
}

/// Everything derived from `root`, breadth first.
fn forward(state: &AppState, root: RecordRef) -> Result<(Vec<Derived>, bool), ApiError> {
    let mut out = Vec::new();
    let mut truncated = false;
    let mut queue = VecDeque::from([(root, 0usize)]);
    let transforms = state.pipelines.statuses();
    while let Some((from, depth)) = queue.pop_front() {
        if depth >= MAX_HOPS || out.len() >= MAX_DERIVED {
            truncated |= !queue.is_empty() || depth >= MAX_HOPS;
            break;
        }
        for st in transforms.iter().filter(|st| st.input == from.topic) {
            let mut sinks: Vec<(&str, &'static str)> =
                st.outputs.iter().map(|o| (o.as_str(), "output")).collect();
            sinks.push((st.dead_letter.as_str(), "dead_letter"));
            if let Some(late) = &st.late_output {
                sinks.push((late.as_str(), "late"));
            }
            sinks.sort();
            sinks.dedup_by(|a, b| a.0 == b.0);
            for (topic, kind) in sinks {
                let Ok(t) = state.log.topic(topic) else {
                    continue;
                };
                let mut found = Vec::new();
                for q in 0..t.partitions.len() as u32 {
                    truncated |= search_partition(state, topic, q, &st.name, &from, &mut found)?;
                }
                for (at, r) in found {
                    let reason =
                        header(&r, sluice_log::dead_letter::ERROR_HEADER).map(str::to_string);
                    let kind = if reason.is_some() && kind == "output" {
                        "dead_letter"
                    } else {
                        kind
                    };
                    queue.push_back((at.clone(), depth + 1));
                    out.push(Derived {
                        at,
                        kind,
                        transform: st.name.clone(),
                        plugin: st.plugin.clone(),
                        version: version_of(&r),
                        from: from.clone(),
                        reason,
                    });
                }
            }
        }
    }
    Ok((out, truncated))
}

#[utoipa::path(
    get,
    path = "/v1/lineage/{topic}/{partition}/{offset}",
    tag = "topics",
    params(
        ("topic" = String, Path, description = "topic name"),
        ("partition" = u32, Path, description = "partition"),
        ("offset" = u64, Path, description = "the record's offset")
    ),
    responses(
        (status = 200, description = "the record's chain back to where it entered Sluice and everything derived from it", body = Lineage),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "no such topic or record", body = crate::error::ErrorBody)
    )
)]
pub async fn lineage(
    state: State,
    at: Result<Path<(String, u32, u64)>, PathRejection>,
) -> Result<Json<Lineage>, ApiError> {
    let (topic, partition, offset) = at?.0;
    let s = state.0.clone();
    blocking(move || {
        let at = RecordRef {
            topic,
            partition,
            offset,
        };
        let Some(rec) = read_one(&s, &at)? else {
            return Err(ApiError::not_found(format!(
                "no record at {}/{}/{} (past the end, removed by retention or compaction, or a transaction's marker)",
                at.topic, at.partition, at.offset
            )));
        };
        let (hops, origin, broken) = backward(&s, at.clone(), &rec)?;
        let (derived, cut) = forward(&s, at.clone())?;
        Ok(Lineage {
            record: RecordSummary {
                at,
                timestamp: rec.timestamp,
                key: text(&rec.key),
                value: text(&rec.value),
            },
            origin,
            hops,
            derived,
            truncated: broken || cut,
        })
    })
    .await
    .map(Json)
}
