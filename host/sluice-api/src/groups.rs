//! `/v1/groups`: consumer groups — the Kafka clients' groups of the listener's coordinator
//! and the transforms' own positions (`transform:NAME`) — with members, assignments,
//! committed offsets and lag; deleting a group and resetting its offsets, as
//! `kafka-consumer-groups` does.

use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiError, State, blocking, parse_json};

/// The prefix of a transform's own group: its positions in its input.
pub const TRANSFORM_GROUP: &str = "transform:";

/// A group as the coordinator keeps it.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub id: String,
    pub protocol_type: String,
    pub protocol: String,
    pub state: String,
    pub members: usize,
}

/// A member of a group as the coordinator keeps it.
#[derive(Debug, Clone)]
pub struct GroupMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// (topic, partitions) assigned, where the assignment is the consumer protocol's.
    pub assignment: Option<Vec<(String, Vec<i32>)>>,
}

/// Why the coordinator refused a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRefusal {
    NotFound,
    /// The group has members: their commits would race the change.
    Active,
    Invalid,
    Failed,
}

/// The Kafka listener's group coordinator, as the HTTP API reads and changes it.
pub trait GroupCoordinator: Send + Sync {
    fn list(&self) -> Vec<GroupInfo>;
    fn describe(&self, id: &str) -> Option<(GroupInfo, Vec<GroupMember>)>;
    /// (topic, partition, offset, metadata) of every committed partition.
    fn committed(&self, id: &str) -> Vec<(String, i32, i64, Option<String>)>;
    fn delete(&self, id: &str) -> Result<(), GroupRefusal>;
    /// Sets committed offsets; creates the group if it has none.
    fn set_offsets(&self, id: &str, offsets: &[(String, i32, i64)]) -> Result<(), GroupRefusal>;
}

/// A group in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupSummary {
    pub group: String,
    /// `consumer` (a Kafka client's group) or `transform` (a transform's positions).
    pub kind: &'static str,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` (Kafka's names); a
    /// transform's group is `Stable`, `Paused` or `Waiting`.
    pub state: String,
    pub protocol_type: String,
    pub members: usize,
    /// The committed partitions' lag together (records behind the end).
    pub lag: u64,
    pub partitions: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
}

/// A member of a group.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub member_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_instance_id: Option<String>,
    pub client_id: String,
    /// The address its client connected from.
    pub client_host: String,
    /// Its partitions, where its assignment is the consumer protocol's.
    pub assignment: Vec<AssignedTopic>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssignedTopic {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// One partition the group has committed or is assigned.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// The committed offset (none: nothing committed yet).
    pub committed: Option<i64>,
    /// The partition's end offset (high watermark).
    pub end: Option<u64>,
    /// `end - committed` (none when either is unknown).
    pub lag: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// The member the partition is assigned to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_id: Option<String>,
}

/// A group in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    pub group: String,
    pub kind: &'static str,
    pub state: String,
    pub protocol_type: String,
    /// The assignor the members agreed on (`range`, `roundrobin`, …).
    pub protocol: String,
    pub members: Vec<MemberView>,
    pub offsets: Vec<PartitionOffsets>,
    pub lag: u64,
}

/// Where `POST /v1/groups/{group}/reset` moves the group.
#[derive(Debug, Deserialize, Serialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ResetTo {
    /// The first offset still in the log.
    Earliest,
    /// The end: only records produced from now on.
    Latest,
    /// This offset (clamped to the partition's first and end offsets).
    Offset(i64),
    /// The first record at or after this time (ms since the epoch); the end if none is.
    Timestamp(i64),
    /// The committed offset moved by this many (negative: back); partitions with nothing
    /// committed are left alone.
    ShiftBy(i64),
}

/// `POST /v1/groups/{group}/reset`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetOffsets {
    /// `"earliest"`, `"latest"`, `{"offset": N}`, `{"timestamp": MS}` or `{"shift_by": N}`.
    #[schema(value_type = serde_json::Value)]
    pub to: ResetTo,
    /// Every partition of this topic (default: every partition of every topic the group
    /// has committed offsets on).
    #[serde(default)]
    pub topic: Option<String>,
    /// Only these partitions of `topic`.
    #[serde(default)]
    pub partitions: Option<Vec<i32>>,
    /// Answer what would be set, change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetPartition {
    pub topic: String,
    pub partition: i32,
    /// The committed offset before (none: nothing was committed).
    pub previous: Option<i64>,
    pub offset: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResetAnswer {
    pub group: String,
    pub dry_run: bool,
    pub offsets: Vec<ResetPartition>,
}

fn coordinator(state: &crate::AppState) -> Result<&Arc<dyn GroupCoordinator>, ApiError> {
    state.groups.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the Kafka listener is off (consumer groups live there); start the server with --kafka",
        )
    })
}

fn refused(group: &str, why: GroupRefusal) -> ApiError {
    match why {
        GroupRefusal::NotFound => ApiError::not_found(format!("no group `{group}`")),
        GroupRefusal::Active => ApiError::new(
            StatusCode::CONFLICT,
            "group_active",
            format!(
                "group `{group}` has active members; stop its consumers first (their commits would race the change)"
            ),
        ),
        GroupRefusal::Invalid => ApiError::bad_request(format!("`{group}` is not a group id")),
        GroupRefusal::Failed => {
            ApiError::internal(format!("could not store group `{group}`'s offsets"))
        }
    }
}

/// A partition's end offset, where the topic and partition exist.
fn end_of(log: &sluice_log::Log, topic: &str, partition: i32) -> Option<u64> {
    let t = log.topic(topic).ok()?;
    let p = t.partition(i64::from(partition)).ok()?;
    Some(p.high_watermark())
}

fn lag_of(committed: Option<i64>, end: Option<u64>) -> Option<u64> {
    let c = u64::try_from(committed?).ok()?;
    Some(end?.saturating_sub(c))
}

/// A Kafka group's committed partitions with their lag, and the partitions assigned but
/// not committed yet.
fn kafka_offsets(
    log: &sluice_log::Log,
    committed: Vec<(String, i32, i64, Option<String>)>,
    members: &[GroupMember],
) -> Vec<PartitionOffsets> {
    let owner = |t: &str, p: i32| {
        members.iter().find_map(|m| {
            m.assignment
                .as_ref()?
                .iter()
                .any(|(at, ps)| at == t && ps.contains(&p))
                .then(|| m.member_id.clone())
        })
    };
    let mut rows: Vec<PartitionOffsets> = committed
        .into_iter()
        .map(|(topic, partition, offset, metadata)| {
            let end = end_of(log, &topic, partition);
            PartitionOffsets {
                member_id: owner(&topic, partition),
                lag: lag_of(Some(offset), end),
                committed: (offset >= 0).then_some(offset),
                end,
                metadata: metadata.filter(|m| !m.is_empty()),
                topic,
                partition,
            }
        })
        .collect();
    for m in members {
        for (topic, parts) in m.assignment.iter().flatten() {
            for &partition in parts {
                if rows
                    .iter()
                    .any(|r| r.topic == *topic && r.partition == partition)
                {
                    continue;
                }
                rows.push(PartitionOffsets {
                    topic: topic.clone(),
                    partition,
                    committed: None,
                    end: end_of(log, topic, partition),
                    lag: None,
                    metadata: None,
                    member_id: Some(m.member_id.clone()),
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    rows
}

fn member_view(m: GroupMember) -> MemberView {
    MemberView {
        member_id: m.member_id,
        group_instance_id: m.instance_id,
        client_id: m.client_id,
        client_host: m.client_host,
        assignment: m
            .assignment
            .unwrap_or_default()
            .into_iter()
            .map(|(topic, partitions)| AssignedTopic { topic, partitions })
            .collect(),
    }
}

/// A transform's positions as a group.
fn transform_group(state: &crate::AppState, name: &str) -> Option<GroupView> {
    let t = state.pipelines.get(name).ok()?;
    let status = state.pipelines.status(&t);
    let offsets: Vec<PartitionOffsets> = status
        .partitions
        .iter()
        .map(|p| {
            let end = end_of(&state.log, &status.input, p.partition as i32);
            let committed = p.position.and_then(|o| i64::try_from(o).ok());
            PartitionOffsets {
                topic: status.input.clone(),
                partition: p.partition as i32,
                committed,
                end,
                lag: lag_of(committed, end),
                metadata: None,
                member_id: None,
            }
        })
        .collect();
    Some(GroupView {
        group: format!("{TRANSFORM_GROUP}{name}"),
        kind: "transform",
        state: transform_state(status.status),
        protocol_type: String::new(),
        protocol: String::new(),
        members: Vec::new(),
        lag: offsets.iter().filter_map(|o| o.lag).sum(),
        offsets,
    })
}

fn transform_state(s: sluice_pipeline::RunState) -> String {
    use sluice_pipeline::RunState;
    match s {
        RunState::Running => "Stable",
        RunState::Paused => "Paused",
        RunState::Waiting => "Waiting",
        RunState::Failed => "Failed",
    }
    .into()
}

/// A Kafka group's members and the lag of each committed partition still in the log.
#[derive(Debug)]
pub struct GroupLag {
    pub group: String,
    pub members: usize,
    /// (topic, partition, lag).
    pub partitions: Vec<(String, i32, u64)>,
}

impl GroupLag {
    pub fn total(&self) -> u64 {
        self.partitions.iter().map(|p| p.2).sum()
    }
}

/// Every Kafka group's members and lag per committed partition (for metrics and alerts).
pub fn kafka_lags(state: &crate::AppState) -> Vec<GroupLag> {
    let Some(c) = state.groups.get() else {
        return Vec::new();
    };
    c.list()
        .into_iter()
        .map(|g| GroupLag {
            partitions: c
                .committed(&g.id)
                .into_iter()
                .filter_map(|(t, p, o, _)| {
                    let lag = lag_of(Some(o), end_of(&state.log, &t, p))?;
                    Some((t, p, lag))
                })
                .collect(),
            group: g.id,
            members: g.members,
        })
        .collect()
}

/// Every group: the Kafka clients' and the transforms'.
pub fn all_groups(state: &crate::AppState) -> Vec<GroupView> {
    let mut out = Vec::new();
    if let Some(c) = state.groups.get() {
        for info in c.list() {
            if let Some(v) = kafka_group(state, c.as_ref(), &info.id) {
                out.push(v);
            }
        }
    }
    for t in state.pipelines.list() {
        if let Some(v) = transform_group(state, &t.name) {
            out.push(v);
        }
    }
    out
}

fn kafka_group(state: &crate::AppState, c: &dyn GroupCoordinator, id: &str) -> Option<GroupView> {
    let (info, members) = c.describe(id)?;
    let offsets = kafka_offsets(&state.log, c.committed(id), &members);
    Some(GroupView {
        group: info.id,
        kind: "consumer",
        state: info.state,
        protocol_type: info.protocol_type,
        protocol: info.protocol,
        members: members.into_iter().map(member_view).collect(),
        lag: offsets.iter().filter_map(|o| o.lag).sum(),
        offsets,
    })
}

#[utoipa::path(
    get,
    path = "/v1/groups",
    tag = "groups",
    responses((status = 200, description = "every consumer group (Kafka clients' and transforms')", body = GroupList))
)]
pub async fn list(state: State) -> Result<Json<GroupList>, ApiError> {
    let s = state.0.clone();
    let groups = blocking(move || Ok::<_, ApiError>(all_groups(&s))).await?;
    let mut groups: Vec<GroupSummary> = groups
        .into_iter()
        .map(|g| GroupSummary {
            partitions: g.offsets.len(),
            members: g.members.len(),
            group: g.group,
            kind: g.kind,
            state: g.state,
            protocol_type: g.protocol_type,
            lag: g.lag,
        })
        .collect();
    groups.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(Json(GroupList { groups }))
}

fn find(state: &crate::AppState, id: &str) -> Result<GroupView, ApiError> {
    if let Some(c) = state.groups.get()
        && let Some(v) = kafka_group(state, c.as_ref(), id)
    {
        return Ok(v);
    }
    if let Some(name) = id.strip_prefix(TRANSFORM_GROUP)
        && let Some(v) = transform_group(state, name)
    {
        return Ok(v);
    }
    Err(ApiError::not_found(format!("no group `{id}`")))
}

#[utoipa::path(
    get,
    path = "/v1/groups/{group}",
    tag = "groups",
    params(("group" = String, Path, description = "group id (`transform:NAME` for a transform's positions)")),
    responses(
        (status = 200, description = "state, members, assignments, committed offsets and lag", body = GroupView),
        (status = 404, description = "unknown group", body = crate::error::ErrorBody)
    )
)]
pub async fn describe(
    state: State,
    group: Result<Path<String>, PathRejection>,
) -> Result<Json<GroupView>, ApiError> {
    let id = group?.0;
    let s = state.0.clone();
    Ok(Json(blocking(move || find(&s, &id)).await?))
}

fn transform_refusal(id: &str) -> Option<ApiError> {
    let name = id.strip_prefix(TRANSFORM_GROUP)?;
    Some(ApiError::new(
        StatusCode::CONFLICT,
        "transform_group",
        format!(
            "`{id}` is transform `{name}`'s position, which moves with its outputs and state: \
             delete or redeploy the transform instead"
        ),
    ))
}

#[utoipa::path(
    delete,
    path = "/v1/groups/{group}",
    tag = "groups",
    params(("group" = String, Path, description = "group id")),
    responses(
        (status = 204, description = "deleted with its committed offsets"),
        (status = 404, description = "unknown group", body = crate::error::ErrorBody),
        (status = 409, description = "the group has active members, or is a transform's", body = crate::error::ErrorBody)
    )
)]
pub async fn delete(
    state: State,
    group: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = group?.0;
    let c = coordinator(&state.0);
    let known = c.as_ref().is_ok_and(|c| c.describe(&id).is_some());
    if !known && let Some(e) = transform_refusal(&id) {
        return Err(e);
    }
    let c = c?.clone();
    blocking(move || c.delete(&id).map_err(|why| refused(&id, why))).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The offset `to` gives a partition with `previous` committed, in `[start, end]`.
fn target(
    log: &sluice_log::Log,
    topic: &str,
    partition: i32,
    previous: Option<i64>,
    to: ResetTo,
) -> Result<i64, ApiError> {
    let t = log.topic(topic)?;
    let p = t.partition(i64::from(partition)).map_err(|_| {
        ApiError::bad_request(format!("topic `{topic}` has no partition {partition}"))
    })?;
    let (start, end) = (p.start_offset() as i64, p.high_watermark() as i64);
    let o = match to {
        ResetTo::Earliest => start,
        ResetTo::Latest => end,
        ResetTo::Offset(o) => o,
        ResetTo::Timestamp(ts) => match p.offset_for_timestamp(ts)? {
            Some(o) => o as i64,
            None => end,
        },
        ResetTo::ShiftBy(n) => previous
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{topic}/{partition} has no committed offset to shift"
                ))
            })?
            .saturating_add(n),
    };
    Ok(o.clamp(start, end))
}

#[utoipa::path(
    post,
    path = "/v1/groups/{group}/reset",
    tag = "groups",
    params(("group" = String, Path, description = "group id")),
    request_body = ResetOffsets,
    responses(
        (status = 200, description = "the offsets set (or that would be, with dry_run)", body = ResetAnswer),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "unknown topic", body = crate::error::ErrorBody),
        (status = 409, description = "the group has active members, or is a transform's", body = crate::error::ErrorBody)
    )
)]
pub async fn reset_offsets(
    state: State,
    group: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ResetAnswer>, ApiError> {
    let id = group?.0;
    let req: ResetOffsets = parse_json(&body?)?;
    let c = coordinator(&state.0);
    let known = c.as_ref().is_ok_and(|c| c.describe(&id).is_some());
    if !known && let Some(e) = transform_refusal(&id) {
        return Err(e);
    }
    let c = c?.clone();
    if req.partitions.is_some() && req.topic.is_none() {
        return Err(ApiError::bad_request("`partitions` needs a `topic`"));
    }
    let s = state.0.clone();
    blocking(move || {
        if let Some((info, _)) = c.describe(&id)
            && info.members > 0
        {
            return Err(refused(&id, GroupRefusal::Active));
        }
        let committed = c.committed(&id);
        let previous = |t: &str, p: i32| {
            committed
                .iter()
                .find(|(ct, cp, _, _)| ct == t && *cp == p)
                .map(|c| c.2)
                .filter(|o| *o >= 0)
        };
        let parts: Vec<(String, i32)> = match &req.topic {
            Some(topic) => {
                let t = s.log.topic(topic)?;
                let all: Vec<i32> = (0..t.partitions.len() as i32).collect();
                match &req.partitions {
                    Some(ps) => {
                        if let Some(bad) = ps.iter().find(|p| !all.contains(p)) {
                            return Err(ApiError::bad_request(format!(
                                "topic `{topic}` has no partition {bad}"
                            )));
                        }
                        ps.iter().map(|p| (topic.clone(), *p)).collect()
                    }
                    None => all.into_iter().map(|p| (topic.clone(), p)).collect(),
                }
            }
            // Every partition of the topics the group has committed on: one it has not
            // committed yet would otherwise start where the client's reset policy says.
            None => {
                let mut topics: Vec<&String> = committed.iter().map(|c| &c.0).collect();
                topics.sort();
                topics.dedup();
                let mut parts = Vec::new();
                for topic in topics {
                    match s.log.topic(topic) {
                        Ok(t) => {
                            parts.extend((0..t.partitions.len() as i32).map(|p| (topic.clone(), p)))
                        }
                        // A deleted topic's offsets stay as they are.
                        Err(_) => continue,
                    }
                }
                parts
            }
        };
        if parts.is_empty() {
            return Err(ApiError::bad_request(format!(
                "group `{id}` has no committed offsets: name a `topic` to reset"
            )));
        }
        let mut offsets = Vec::with_capacity(parts.len());
        for (topic, partition) in parts {
            let prev = previous(&topic, partition);
            // Only committed offsets shift; the others stay where the client's reset
            // policy puts them.
            if prev.is_none() && matches!(req.to, ResetTo::ShiftBy(_)) {
                continue;
            }
            let offset = target(&s.log, &topic, partition, prev, req.to)?;
            offsets.push(ResetPartition {
                topic,
                partition,
                previous: prev,
                offset,
            });
        }
        if offsets.is_empty() {
            return Err(ApiError::bad_request(format!(
                "group `{id}` has no committed offset there to shift"
            )));
        }
        if !req.dry_run {
            let set: Vec<(String, i32, i64)> = offsets
                .iter()
                .map(|o| (o.topic.clone(), o.partition, o.offset))
                .collect();
            c.set_offsets(&id, &set).map_err(|why| refused(&id, why))?;
        }
        Ok(ResetAnswer {
            group: id,
            dry_run: req.dry_run,
            offsets,
        })
    })
    .await
    .map(Json)
}
