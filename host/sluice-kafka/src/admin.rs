//! Admin requests: ApiVersions, CreateTopics, DeleteTopics, DescribeConfigs.

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use sluice_log::{Cleanup, LogError, TopicConfig};

use crate::{Broker, KafkaError, SUPPORTED, blocking, code};

/// ApiVersions: exactly the versions served.
pub fn api_versions(error: i16) -> ApiVersionsResponse {
    let keys = SUPPORTED.iter().map(|(k, lo, hi)| {
        ApiVersion::default()
            .with_api_key(*k as i16)
            .with_min_version(*lo)
            .with_max_version(*hi)
    });
    ApiVersionsResponse::default()
        .with_error_code(error)
        .with_api_keys(keys.collect())
}

/// The topics a DeleteTopics request names (by name before v6, in `topics` since).
pub fn deleted_names(r: DeleteTopicsRequest, version: i16) -> Vec<TopicName> {
    if version >= 6 {
        r.topics.into_iter().filter_map(|t| t.name).collect()
    } else {
        r.topic_names
    }
}

/// CreateTopics: each topic with its Kafka settings mapped to ours (others ignored).
pub async fn create_topics(
    b: &Arc<Broker>,
    r: CreateTopicsRequest,
    version: i16,
) -> Result<CreateTopicsResponse, KafkaError> {
    let b = b.clone();
    blocking(move || {
        let validate_only = r.validate_only;
        let topics = r
            .topics
            .into_iter()
            .map(|t| create_topic(&b, t, validate_only, version))
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    })
    .await
}

/// A topic's settings from Kafka's names; a message for an invalid value.
fn topic_config(b: &Broker, t: &CreatableTopic) -> Result<TopicConfig, String> {
    let mut config = TopicConfig {
        // -1: the replica assignments give the count, or the broker default.
        partitions: if t.num_partitions < 0 && !t.assignments.is_empty() {
            t.assignments.len() as u32
        } else if t.num_partitions < 0 {
            b.cfg.default_partitions
        } else {
            t.num_partitions as u32
        },
        ..TopicConfig::default()
    };
    for c in &t.configs {
        let v = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        apply_setting(&mut config, &c.name, Some(&v))?;
    }
    Ok(config)
}

/// Kafka topic settings that mean nothing in Sluice (one broker, its own storage): accepted
/// and ignored, so tools that set them work. Any other name is refused, as Kafka does.
pub const IGNORED_SETTINGS: &[&str] = &[
    "compression.type",
    "file.delete.delay.ms",
    "flush.messages",
    "flush.ms",
    "follower.replication.throttled.replicas",
    "index.interval.bytes",
    "leader.replication.throttled.replicas",
    "local.retention.bytes",
    "local.retention.ms",
    "max.compaction.lag.ms",
    "max.message.bytes",
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.after.max.ms",
    "message.timestamp.before.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "min.insync.replicas",
    "preallocate",
    "remote.storage.enable",
    "remote.log.copy.disable",
    "remote.log.delete.on.disable",
    "segment.index.bytes",
    "segment.jitter.ms",
    "unclean.leader.election.enable",
];

/// Sets one of Kafka's topic settings (`None`: back to the default). Those with a
/// meaning here change the topic; the others in [`IGNORED_SETTINGS`] are accepted and
/// change nothing; unknown names are refused.
pub fn apply_setting(
    config: &mut TopicConfig,
    name: &str,
    value: Option<&str>,
) -> Result<(), String> {
    let default = TopicConfig::default();
    let Some(v) = value else {
        match name {
            "retention.ms" => config.retention_ms = default.retention_ms,
            "retention.bytes" => config.retention_bytes = default.retention_bytes,
            "segment.bytes" => config.segment_bytes = default.segment_bytes,
            "segment.ms" => config.segment_ms = default.segment_ms,
            "cleanup.policy" => config.cleanup = default.cleanup,
            "delete.retention.ms" => config.tombstone_retention_ms = default.tombstone_retention_ms,
            n if IGNORED_SETTINGS.contains(&n) => {}
            n => return Err(format!("unknown topic config {n}")),
        }
        return Ok(());
    };
    let bad = || format!("invalid value {v:?} for {name}");
    match name {
        "retention.ms" => match v.parse::<i64>() {
            Ok(-1) => config.retention_ms = None,
            Ok(n) => config.retention_ms = Some(n),
            Err(_) => return Err(bad()),
        },
        "retention.bytes" => match v.parse::<i64>() {
            Ok(-1) => config.retention_bytes = None,
            Ok(n) if n > 0 => config.retention_bytes = Some(n as u64),
            _ => return Err(bad()),
        },
        "segment.bytes" => config.segment_bytes = v.parse().map_err(|_| bad())?,
        "segment.ms" => config.segment_ms = v.parse().map_err(|_| bad())?,
        "cleanup.policy" => {
            config.cleanup = match v {
                "delete" => Cleanup::Delete,
                "compact" => Cleanup::Compact,
                _ => return Err(bad()),
            }
        }
        "delete.retention.ms" => config.tombstone_retention_ms = v.parse().map_err(|_| bad())?,
        n if IGNORED_SETTINGS.contains(&n) => {}
        n => return Err(format!("unknown topic config {n}")),
    }
    Ok(())
}

fn create_topic(
    b: &Broker,
    t: CreatableTopic,
    validate_only: bool,
    version: i16,
) -> CreatableTopicResult {
    let res = CreatableTopicResult::default().with_name(t.name.clone());
    let fail = |code: i16, msg: String| {
        let res = res.clone().with_error_code(code);
        if version >= 1 {
            res.with_error_message(Some(StrBytes::from_string(msg)))
        } else {
            res
        }
    };
    let config = match topic_config(b, &t) {
        Ok(c) => c,
        Err(msg) => return fail(code::INVALID_CONFIG, msg),
    };
    if let Err(e) = sluice_log::validate_topic_name(&t.name.0) {
        return fail(code::INVALID_TOPIC_EXCEPTION, e.to_string());
    }
    if let Err(e) = config.validate() {
        return fail(code::INVALID_PARTITIONS, e.to_string());
    }
    let exists = |n: &str| {
        fail(
            code::TOPIC_ALREADY_EXISTS,
            format!("topic {n} already exists"),
        )
    };
    if validate_only {
        return if b.log.topic(&t.name.0).is_ok() {
            exists(&t.name.0)
        } else {
            res
        };
    }
    match b.log.create_topic(&t.name.0, config) {
        Ok(_) => res,
        Err(LogError::TopicExists(n)) => exists(&n),
        Err(e) => fail(code::INVALID_CONFIG, e.to_string()),
    }
}

pub async fn delete_topics(
    b: &Arc<Broker>,
    r: DeleteTopicsRequest,
    version: i16,
) -> Result<DeleteTopicsResponse, KafkaError> {
    let b = b.clone();
    blocking(move || {
        let responses = deleted_names(r, version).into_iter().map(|n| {
            let res = DeletableTopicResult::default().with_name(Some(n.clone()));
            match b.log.delete_topic(&n.0) {
                Ok(()) => res,
                Err(e @ LogError::Owned { .. }) => res
                    .with_error_code(code::INVALID_TOPIC_EXCEPTION)
                    .with_error_message(Some(e.to_string().into())),
                Err(_) => res.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
            }
        });
        DeleteTopicsResponse::default().with_responses(responses.collect())
    })
    .await
}

/// DescribeConfigs: a topic's settings under Kafka's names.
pub fn describe_configs(b: &Broker, r: DescribeConfigsRequest) -> DescribeConfigsResponse {
    const TOPIC: i8 = 2;
    let results = r.resources.into_iter().map(|res| {
        let out = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        if res.resource_type != TOPIC {
            return out;
        }
        let Ok(t) = b.log.topic(&res.resource_name) else {
            return out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
        };
        let c = &t.config;
        let entries = [
            (
                "cleanup.policy",
                match c.cleanup {
                    Cleanup::Delete => "delete".to_string(),
                    Cleanup::Compact => "compact".to_string(),
                },
            ),
            (
                "retention.ms",
                c.retention_ms.map_or("-1".into(), |v| v.to_string()),
            ),
            (
                "retention.bytes",
                c.retention_bytes.map_or("-1".into(), |v| v.to_string()),
            ),
            ("segment.bytes", c.segment_bytes.to_string()),
            ("segment.ms", c.segment_ms.to_string()),
        ];
        let wanted = res.configuration_keys.as_ref();
        let configs = entries
            .into_iter()
            .filter(|(k, _)| wanted.is_none_or(|w| w.iter().any(|x| &**x == *k)))
            .map(|(k, v)| {
                DescribeConfigsResourceResult::default()
                    .with_name(StrBytes::from_static_str(k))
                    .with_value(Some(StrBytes::from_string(v)))
                    .with_config_source(1)
            });
        out.with_configs(configs.collect())
    });
    DescribeConfigsResponse::default().with_results(results.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name;
    use crate::testing::broker;
    use kafka_protocol::messages::ApiKey;
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;

    #[test]
    fn api_versions_lists_exactly_what_is_served() {
        let r = api_versions(code::NONE);
        assert_eq!(r.api_keys.len(), SUPPORTED.len());
        let produce = r
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .unwrap();
        assert_eq!((produce.min_version, produce.max_version), (3, 9));
    }

    #[tokio::test]
    async fn topics_are_created_with_kafka_settings_described_and_deleted() {
        let t = broker();
        let cfg = |k: &str, v: &str| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(k.into()))
                .with_value(Some(StrBytes::from_string(v.into())))
        };
        let req = CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(name("a"))
                .with_num_partitions(3)
                .with_configs(vec![
                    cfg("cleanup.policy", "compact"),
                    cfg("retention.ms", "60000"),
                ]),
            CreatableTopic::default()
                .with_name(name("b"))
                .with_num_partitions(1)
                .with_configs(vec![cfg("retention.bytes", "lots")]),
            CreatableTopic::default()
                .with_name(name("a"))
                .with_num_partitions(1),
        ]);
        let r = create_topics(&t.b, req, 5).await.unwrap();
        let codes: Vec<i16> = r.topics.iter().map(|t| t.error_code).collect();
        assert_eq!(
            codes,
            [code::NONE, code::INVALID_CONFIG, code::TOPIC_ALREADY_EXISTS]
        );
        assert_eq!(t.b.log.topic("a").unwrap().partitions.len(), 3);
        let d = describe_configs(
            &t.b,
            DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("a"))
                    .with_configuration_keys(None),
            ]),
        );
        let cfgs: Vec<(String, String)> = d.results[0]
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().unwrap().to_string()))
            .collect();
        assert!(cfgs.contains(&("cleanup.policy".into(), "compact".into())));
        assert!(cfgs.contains(&("retention.ms".into(), "60000".into())));
        let del = delete_topics(
            &t.b,
            DeleteTopicsRequest::default().with_topic_names(vec![name("a"), name("zzz")]),
            5,
        )
        .await
        .unwrap();
        let codes: Vec<i16> = del.responses.iter().map(|r| r.error_code).collect();
        assert_eq!(codes, [code::NONE, code::UNKNOWN_TOPIC_OR_PARTITION]);
    }
}
