//! The admin requests that tools and client test suites send beyond create/delete:
//! CreatePartitions, AlterConfigs, IncrementalAlterConfigs, DeleteRecords, DeleteGroups,
//! OffsetDelete, DescribeCluster and OffsetForLeaderEpoch (one broker, leader epoch 0).

use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, BrokerId, CreatePartitionsRequest,
    CreatePartitionsResponse, DeleteGroupsRequest, DeleteGroupsResponse, DeleteRecordsRequest,
    DeleteRecordsResponse, DescribeClusterRequest, DescribeClusterResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_log::LogError;

use crate::admin::apply_setting;
use crate::{Broker, blocking, code};

const TOPIC_RESOURCE: i8 = 2;

fn log_code(e: &LogError) -> i16 {
    match e {
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            code::UNKNOWN_TOPIC_OR_PARTITION
        }
        LogError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
        LogError::InvalidConfig(_) => code::INVALID_PARTITIONS,
        LogError::Owned { .. } => code::INVALID_TOPIC_EXCEPTION,
        _ => code::UNKNOWN_SERVER_ERROR,
    }
}

pub async fn create_partitions(
    b: &Arc<Broker>,
    r: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let b = b.clone();
    blocking(move || {
        let results = r.topics.into_iter().map(|t| {
            let res = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let fail = |e: i16, msg: String| {
                res.clone()
                    .with_error_code(e)
                    .with_error_message(Some(StrBytes::from_string(msg)))
            };
            if b.log.owner(&t.name.0).is_some() {
                return fail(
                    code::INVALID_TOPIC_EXCEPTION,
                    format!("topic {} is the server's", &*t.name.0),
                );
            }
            let current = match b.log.topic(&t.name.0) {
                Ok(tp) => tp.partitions.len() as i32,
                Err(e) => return fail(log_code(&e), e.to_string()),
            };
            if t.count <= current {
                return fail(
                    code::INVALID_PARTITIONS,
                    format!(
                        "topic {} has {current} partitions; the count can only grow",
                        &*t.name.0
                    ),
                );
            }
            if r.validate_only {
                return res;
            }
            match b.log.add_partitions(&t.name.0, t.count as u32) {
                Ok(_) => res,
                Err(e) => fail(log_code(&e), e.to_string()),
            }
        });
        CreatePartitionsResponse::default().with_results(results.collect())
    })
    .await
    .unwrap_or_default()
}

/// Applies settings to a topic (`set`: name → value, `None` = back to the default).
fn alter(
    b: &Broker,
    topic: &str,
    set: &[(String, Option<String>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    if b.log.owner(topic).is_some() {
        return (
            code::INVALID_TOPIC_EXCEPTION,
            Some(format!("topic {topic} is the server's")),
        );
    }
    let t = match b.log.topic(topic) {
        Ok(t) => t,
        Err(e) => return (log_code(&e), Some(e.to_string())),
    };
    let mut config = t.config.clone();
    for (k, v) in set {
        if let Err(msg) = apply_setting(&mut config, k, v.as_deref()) {
            return (code::INVALID_CONFIG, Some(msg));
        }
    }
    if let Err(e) = config.validate() {
        return (code::INVALID_CONFIG, Some(e.to_string()));
    }
    if validate_only {
        return (code::NONE, None);
    }
    match b.log.alter_topic(topic, config) {
        Ok(_) => (code::NONE, None),
        Err(e) => (code::INVALID_CONFIG, Some(e.to_string())),
    }
}

/// AlterConfigs: the topic's settings replaced by those given (others back to defaults).
pub async fn alter_configs(b: &Arc<Broker>, r: AlterConfigsRequest) -> AlterConfigsResponse {
    let b = b.clone();
    blocking(move || {
        let responses = r.resources.into_iter().map(|res| {
            let out = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if res.resource_type != TOPIC_RESOURCE {
                return out
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "only topic settings can be altered",
                    )));
            }
            let mut set: Vec<(String, Option<String>)> = [
                "retention.ms",
                "retention.bytes",
                "segment.bytes",
                "segment.ms",
                "cleanup.policy",
            ]
            .iter()
            .map(|k| (k.to_string(), None))
            .collect();
            set.extend(
                res.configs
                    .iter()
                    .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string()))),
            );
            let (e, msg) = alter(&b, &res.resource_name, &set, r.validate_only);
            out.with_error_code(e)
                .with_error_message(msg.map(StrBytes::from_string))
        });
        AlterConfigsResponse::default().with_responses(responses.collect())
    })
    .await
    .unwrap_or_default()
}

/// IncrementalAlterConfigs: SET (0) and DELETE (1); APPEND/SUBTRACT apply to list
/// settings, which Sluice's topics do not have.
pub async fn incremental_alter_configs(
    b: &Arc<Broker>,
    r: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let b = b.clone();
    blocking(move || {
        let responses = r.resources.into_iter().map(|res| {
            let out = IncrementalResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            if res.resource_type != TOPIC_RESOURCE {
                return out
                    .with_error_code(code::INVALID_REQUEST)
                    .with_error_message(Some(StrBytes::from_static_str(
                        "only topic settings can be altered",
                    )));
            }
            let current = b
                .log
                .topic(&res.resource_name)
                .map(|t| t.config.cleanup)
                .unwrap_or_default();
            let mut set = Vec::new();
            for c in &res.configs {
                let value = c.value.as_ref().map(|v| v.to_string());
                match (c.config_operation, &*c.name) {
                    (0, _) => set.push((c.name.to_string(), value)),
                    (1, _) => set.push((c.name.to_string(), None)),
                    // cleanup.policy is a list in Kafka ("delete", "compact" or both):
                    // compacting is what Sluice's single policy says; deleting by
                    // retention applies to both.
                    (2, "cleanup.policy") => {
                        let compact = value.as_deref().is_some_and(|v| v.contains("compact"));
                        let to = if compact || current == sluice_log::Cleanup::Compact {
                            "compact"
                        } else {
                            "delete"
                        };
                        set.push((c.name.to_string(), Some(to.to_string())));
                    }
                    (3, "cleanup.policy") => {
                        let compact = value.as_deref().is_some_and(|v| v.contains("compact"));
                        let to = if compact || current == sluice_log::Cleanup::Delete {
                            "delete"
                        } else {
                            "compact"
                        };
                        set.push((c.name.to_string(), Some(to.to_string())));
                    }
                    (2 | 3, n) if crate::admin::IGNORED_SETTINGS.contains(&n) => {}
                    _ => {
                        return out
                            .with_error_code(code::INVALID_CONFIG)
                            .with_error_message(Some(StrBytes::from_string(format!(
                                "{}: APPEND and SUBTRACT apply to list settings only",
                                &*c.name
                            ))));
                    }
                }
            }
            let (e, msg) = alter(&b, &res.resource_name, &set, r.validate_only);
            out.with_error_code(e)
                .with_error_message(msg.map(StrBytes::from_string))
        });
        IncrementalAlterConfigsResponse::default().with_responses(responses.collect())
    })
    .await
    .unwrap_or_default()
}

/// DeleteRecords: each partition's start moves to the offset given (-1: the end).
pub async fn delete_records(b: &Arc<Broker>, r: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let b = b.clone();
    blocking(move || {
        let topics = r.topics.into_iter().map(|t| {
            let topic = b.log.topic(&t.name.0);
            let owned = b.log.owner(&t.name.0).is_some();
            let parts = t.partitions.iter().map(|p| {
                let res = DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1);
                if owned {
                    return res.with_error_code(code::INVALID_TOPIC_EXCEPTION);
                }
                let part = match topic.as_ref().map_err(log_code).and_then(|tp| {
                    tp.partition(i64::from(p.partition_index))
                        .cloned()
                        .map_err(|e| log_code(&e))
                }) {
                    Ok(part) => part,
                    Err(e) => return res.with_error_code(e),
                };
                let before = if p.offset == -1 {
                    part.high_watermark()
                } else {
                    match u64::try_from(p.offset) {
                        Ok(o) => o,
                        Err(_) => return res.with_error_code(code::OFFSET_OUT_OF_RANGE),
                    }
                };
                match part.delete_records(before) {
                    Ok(start) => res.with_low_watermark(start as i64),
                    Err(e) => res.with_error_code(log_code(&e)),
                }
            });
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts.collect())
        });
        DeleteRecordsResponse::default().with_topics(topics.collect())
    })
    .await
    .unwrap_or_default()
}

pub async fn delete_groups(b: &Arc<Broker>, r: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let b = b.clone();
    blocking(move || {
        let results = r.groups_names.into_iter().map(|g| {
            let e = b.groups.delete_group(&g.0);
            DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(e)
        });
        DeleteGroupsResponse::default().with_results(results.collect())
    })
    .await
    .unwrap_or_default()
}

pub async fn offset_delete(b: &Arc<Broker>, r: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let b = b.clone();
    blocking(move || {
        let asked: Vec<(String, i32)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.0.to_string(), p.partition_index))
            })
            .collect();
        let codes = match b.groups.delete_offsets(&r.group_id.0, &asked) {
            Ok(c) => c,
            Err(e) => return OffsetDeleteResponse::default().with_error_code(e),
        };
        let mut codes = codes.into_iter();
        let topics = r.topics.into_iter().map(|t| {
            let parts = t.partitions.iter().map(|p| {
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(codes.next().unwrap_or(code::NONE))
            });
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(parts.collect())
        });
        OffsetDeleteResponse::default().with_topics(topics.collect())
    })
    .await
    .unwrap_or_default()
}

/// DescribeCluster: this one broker, which is also the controller.
pub fn describe_cluster(b: &Broker, _r: DescribeClusterRequest) -> DescribeClusterResponse {
    let broker = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(0))
        .with_host(StrBytes::from_string(b.cfg.advertise.0.clone()))
        .with_port(b.cfg.advertise.1);
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_static_str("sluice"))
        .with_controller_id(BrokerId(0))
        .with_brokers(vec![broker])
}

/// OffsetForLeaderEpoch: there is one leader epoch (0), which ends at the high watermark.
pub fn offset_for_leader_epoch(
    b: &Broker,
    r: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = r.topics.into_iter().map(|t| {
        let topic = b.log.topic(&t.topic.0);
        let parts = t.partitions.iter().map(|p| {
            let res = EpochEndOffset::default().with_partition(p.partition);
            match topic
                .as_ref()
                .ok()
                .and_then(|tp| tp.partition(i64::from(p.partition)).ok())
            {
                None => res
                    .with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION)
                    .with_leader_epoch(-1)
                    .with_end_offset(-1),
                Some(part) => res
                    .with_leader_epoch(0)
                    .with_end_offset(part.high_watermark() as i64),
            }
        });
        OffsetForLeaderTopicResult::default()
            .with_topic(t.topic)
            .with_partitions(parts.collect())
    });
    OffsetForLeaderEpochResponse::default().with_topics(topics.collect())
}

/// Answers for identities without the admin role: every topic or resource refused
/// (`None`: not one of these requests).
pub fn refused_admin(
    request: kafka_protocol::messages::RequestKind,
) -> Option<kafka_protocol::messages::ResponseKind> {
    use kafka_protocol::messages::RequestKind as R;
    let no = code::TOPIC_AUTHORIZATION_FAILED;
    let msg = || Some(StrBytes::from_static_str("this needs the admin role"));
    Some(match request {
        R::CreatePartitions(r) => CreatePartitionsResponse::default()
            .with_results(
                r.topics
                    .into_iter()
                    .map(|t| {
                        CreatePartitionsTopicResult::default()
                            .with_name(t.name)
                            .with_error_code(no)
                            .with_error_message(msg())
                    })
                    .collect(),
            )
            .into(),
        R::AlterConfigs(r) => AlterConfigsResponse::default()
            .with_responses(
                r.resources
                    .into_iter()
                    .map(|res| {
                        AlterConfigsResourceResponse::default()
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name)
                            .with_error_code(no)
                            .with_error_message(msg())
                    })
                    .collect(),
            )
            .into(),
        R::IncrementalAlterConfigs(r) => IncrementalAlterConfigsResponse::default()
            .with_responses(
                r.resources
                    .into_iter()
                    .map(|res| {
                        IncrementalResult::default()
                            .with_resource_type(res.resource_type)
                            .with_resource_name(res.resource_name)
                            .with_error_code(no)
                            .with_error_message(msg())
                    })
                    .collect(),
            )
            .into(),
        R::DeleteRecords(r) => DeleteRecordsResponse::default()
            .with_topics(
                r.topics
                    .into_iter()
                    .map(|t| {
                        let parts = t.partitions.iter().map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(no)
                        });
                        DeleteRecordsTopicResult::default()
                            .with_name(t.name)
                            .with_partitions(parts.collect())
                    })
                    .collect(),
            )
            .into(),
        _ => return None,
    })
}
