//! Data requests: Produce, Fetch (long poll, whole batches), ListOffsets, Metadata and
//! InitProducerId. Each handler takes the decoded request and returns its response; log
//! work runs off the reactor.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, InitProducerIdResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    ProducerId,
};
use kafka_protocol::protocol::StrBytes;

use sluice_log::{LogError, Topic, TopicConfig};

use crate::{Broker, blocking, code, idempotence, name};

impl Broker {
    /// A topic, created with the default settings when auto-creation is on.
    pub(crate) fn topic(&self, t: &str, create: bool) -> Result<Arc<Topic>, LogError> {
        match self.log.topic(t) {
            Err(LogError::UnknownTopic(_)) if create && self.cfg.auto_create => {
                let config = TopicConfig {
                    partitions: self.cfg.default_partitions,
                    ..TopicConfig::default()
                };
                match self.log.create_topic(t, config) {
                    Err(LogError::TopicExists(_)) => self.log.topic(t),
                    other => other,
                }
            }
            other => other,
        }
    }
}

/// InitProducerId: a fresh producer id for an idempotent producer.
pub fn init_producer_id(b: &Broker) -> InitProducerIdResponse {
    let id = b.next_producer_id.fetch_add(1, Ordering::Relaxed);
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(0)
}

/// Metadata: the one broker, and the topics asked (all when none are named), created on
/// first use when auto-creation is on and the request allows it.
pub async fn metadata(b: &Arc<Broker>, r: MetadataRequest, version: i16) -> MetadataResponse {
    let b = b.clone();
    blocking(move || {
        let topics: Vec<(String, Result<Arc<Topic>, LogError>)> = match &r.topics {
            None => b
                .log
                .topics()
                .into_iter()
                .map(|t| (t.name.clone(), Ok(t)))
                .collect(),
            Some(list) => list
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .map(|n| {
                    let t = b.topic(&n, r.allow_auto_topic_creation);
                    (n, t)
                })
                .collect(),
        };
        let broker = MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_string(b.cfg.advertise.0.clone()))
            .with_port(b.cfg.advertise.1);
        let mut resp = MetadataResponse::default().with_brokers(vec![broker]);
        if version >= 1 {
            resp = resp.with_controller_id(BrokerId(0));
        }
        if version >= 2 {
            resp = resp.with_cluster_id(Some(StrBytes::from_static_str("sluice")));
        }
        resp.with_topics(
            topics
                .into_iter()
                .map(|(n, t)| {
                    // Topics the server keeps for itself (transaction state, changelogs)
                    // are internal, as Kafka marks `__consumer_offsets`.
                    let internal = b.log.owner(&n).is_some();
                    metadata_topic(&n, t).with_is_internal(internal)
                })
                .collect(),
        )
    })
    .await
    .unwrap_or_default()
}

fn metadata_topic(n: &str, t: Result<Arc<Topic>, LogError>) -> MetadataResponseTopic {
    let topic = MetadataResponseTopic::default().with_name(Some(name(n)));
    match t {
        Ok(t) => topic.with_partitions(
            (0..t.partitions.len() as i32)
                .map(|p| {
                    MetadataResponsePartition::default()
                        .with_partition_index(p)
                        .with_leader_id(BrokerId(0))
                        .with_replica_nodes(vec![BrokerId(0)])
                        .with_isr_nodes(vec![BrokerId(0)])
                })
                .collect(),
        ),
        Err(LogError::InvalidTopicName { .. }) => {
            topic.with_error_code(code::INVALID_TOPIC_EXCEPTION)
        }
        Err(_) => topic.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
    }
}

/// Produce: each partition's batches validated, checked for idempotent-producer sequence,
/// appended durably per the topic's flush policy, and stored byte for byte.
pub async fn produce(b: &Arc<Broker>, r: ProduceRequest, version: i16) -> ProduceResponse {
    let b = b.clone();
    blocking(move || {
        let responses = r
            .topic_data
            .into_iter()
            .map(|td| produce_topic(&b, td, version))
            .collect();
        ProduceResponse::default().with_responses(responses)
    })
    .await
    .unwrap_or_default()
}

fn produce_topic(b: &Broker, td: TopicProduceData, version: i16) -> TopicProduceResponse {
    let topic_name = td.name.0.to_string();
    if b.log.check_writable(&topic_name).is_err() {
        // As Kafka answers a produce to an internal topic.
        let partitions = td
            .partition_data
            .iter()
            .map(|pd| {
                PartitionProduceResponse::default()
                    .with_index(pd.index)
                    .with_error_code(code::INVALID_TOPIC_EXCEPTION)
            })
            .collect();
        return TopicProduceResponse::default()
            .with_name(td.name)
            .with_partition_responses(partitions);
    }
    let topic = b.topic(&topic_name, true);
    let partitions = td
        .partition_data
        .into_iter()
        .map(|pd| {
            let resp = PartitionProduceResponse::default().with_index(pd.index);
            match topic
                .as_ref()
                .ok()
                .and_then(|t| t.partition(i64::from(pd.index)).ok())
            {
                Some(part) => produce_partition(b, &topic_name, part, pd, version, resp),
                None => resp.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION),
            }
        })
        .collect();
    TopicProduceResponse::default()
        .with_name(td.name)
        .with_partition_responses(partitions)
}

fn produce_partition(
    b: &Broker,
    topic: &str,
    part: &Arc<sluice_log::Partition>,
    pd: PartitionProduceData,
    version: i16,
    resp: PartitionProduceResponse,
) -> PartitionProduceResponse {
    let Some(records) = pd.records.filter(|r| !r.is_empty()) else {
        return resp.with_error_code(code::CORRUPT_MESSAGE);
    };
    // Like a Kafka broker, refuse batches whose records do not decode (the CRC only
    // proves the bytes arrived as sent).
    if let Err(e) = validate_records(&records) {
        return resp
            .with_error_code(code::CORRUPT_MESSAGE)
            .with_error_message(Some(StrBytes::from_string(e)));
    }
    // Like Kafka, a compacted topic refuses records without a key (they could never be
    // compacted): the batch fails, with the keyless records named.
    if part.config().cleanup == sluice_log::Cleanup::Compact {
        let keyless = keyless_records(&records);
        if !keyless.is_empty() {
            let errors = keyless
                .iter()
                .map(|i| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(*i)
                        .with_batch_index_error_message(Some(StrBytes::from_static_str(
                            "compacted topic cannot accept message without key",
                        )))
                })
                .collect();
            return resp
                .with_error_code(code::INVALID_RECORD)
                .with_record_errors(errors)
                .with_error_message(Some(StrBytes::from_string(format!(
                    "compacted topic {topic} cannot accept messages without a key"
                ))));
        }
    }
    // Data contracts: on a schema-validated topic every record must carry a registered id
    // of its subject (and decode against it in `decode` mode); a batch with any record
    // that does not is refused whole, each such record named, as Kafka's broker-side
    // validation answers.
    if let (Some(rules), Some(registry)) = (part.config().schema, b.cfg.schemas.as_ref()) {
        let refused = schema_refusals(registry, &rules, &records);
        if !refused.is_empty() {
            let t = sluice_common::telemetry::telemetry();
            for part_name in ["value", "key"] {
                let n = refused.iter().filter(|(_, p, _)| *p == part_name).count() as u64;
                if n > 0 {
                    t.schema_refused(topic, "kafka", part_name, n);
                }
            }
            let first = refused
                .first()
                .map(|(i, p, why)| format!("record {i} ({p}): {why}"))
                .unwrap_or_default();
            let errors = refused
                .into_iter()
                .map(|(i, p, why)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(i)
                        .with_batch_index_error_message(Some(StrBytes::from_string(format!(
                            "{p}: {why}"
                        ))))
                })
                .collect();
            return resp
                .with_error_code(code::INVALID_RECORD)
                .with_record_errors(errors)
                .with_error_message(Some(StrBytes::from_string(format!(
                    "topic {topic} requires records of its schema subjects; nothing of this batch was written: {first}"
                ))));
        }
    }
    // Idempotent producers: one batch per request and partition.
    let header = sluice_log::batch::BatchHeader::parse(&records).ok();
    if let Some(h) = header.filter(|h| h.is_transactional()) {
        if h.is_control() {
            // Markers are the transaction coordinator's to write.
            return resp
                .with_error_code(code::INVALID_RECORD)
                .with_error_message(Some(StrBytes::from_static_str(
                    "control batches are written by the transaction coordinator only",
                )));
        }
        let e = b
            .txns
            .check_produce(h.producer_id, h.producer_epoch, topic, pd.index);
        if e != code::NONE {
            return resp.with_error_code(e);
        }
    }
    let idem = header.filter(|h| h.producer_id >= 0 && h.base_sequence >= 0);
    let slot = idem.map(|h| b.producers.slot(h.producer_id, topic, pd.index));
    let mut guard = slot
        .as_ref()
        .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()));
    if let (Some(h), Some(last)) = (idem, guard.as_deref()) {
        match idempotence::decide(last, h.producer_epoch, h.base_sequence, h.record_count) {
            idempotence::Decision::Append => {}
            idempotence::Decision::Duplicate(base) => {
                return resp.with_base_offset(base).with_log_append_time_ms(-1);
            }
            idempotence::Decision::OutOfOrder { expected, got } => {
                return resp
                    .with_error_code(code::OUT_OF_ORDER_SEQUENCE_NUMBER)
                    .with_error_message(Some(StrBytes::from_string(format!(
                        "expected sequence {expected}, got {got}"
                    ))));
            }
        }
    }
    let appended = part.append(BytesMut::from(&records[..]));
    if let (Some(h), Some(last), Ok(a)) = (idem, guard.as_deref_mut(), &appended) {
        idempotence::record(
            last,
            h.producer_epoch,
            h.base_sequence,
            h.record_count,
            a.base_offset as i64,
        );
    }
    drop(guard);
    match appended {
        Ok(a) if version >= 5 => resp
            .with_base_offset(a.base_offset as i64)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(part.start_offset() as i64),
        Ok(a) => resp
            .with_base_offset(a.base_offset as i64)
            .with_log_append_time_ms(-1),
        Err(LogError::InvalidBatch(e)) => resp
            .with_error_code(code::CORRUPT_MESSAGE)
            .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        // Retriable for clients: they back off and send the batch again.
        Err(e @ LogError::StorageFull { .. }) => resp
            .with_error_code(code::KAFKA_STORAGE_ERROR)
            .with_error_message(Some(StrBytes::from_string(e.to_string()))),
        Err(e) => {
            tracing::error!(topic, error = %e, "kafka produce failed");
            resp.with_error_code(code::UNKNOWN_SERVER_ERROR)
        }
    }
}

/// Indexes (within their batch) of the records without a key.
pub fn keyless_records(data: &Bytes) -> Vec<i32> {
    let mut out = Vec::new();
    for (h, b) in sluice_log::batch::split(data.clone()).unwrap_or_default() {
        if h.is_control() {
            continue;
        }
        for (i, r) in sluice_log::batch::decode(&b)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if r.key.is_none() {
                out.push(i as i32);
            }
        }
    }
    out
}

/// The records of a produced batch that break its topic's schema rules: (index in its
/// batch, `value` or `key`, why). Null values and keys pass.
fn schema_refusals(
    registry: &sluice_schema::Registry,
    rules: &sluice_log::TopicSchema,
    data: &Bytes,
) -> Vec<(i32, &'static str, String)> {
    let mode = |v: sluice_log::Validation| match v {
        sluice_log::Validation::Id => sluice_schema::ValidationMode::Id,
        sluice_log::Validation::Decode => sluice_schema::ValidationMode::Decode,
    };
    let mut out = Vec::new();
    for (h, b) in sluice_log::batch::split(data.clone()).unwrap_or_default() {
        if h.is_control() {
            continue;
        }
        for (i, r) in sluice_log::batch::decode(&b)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            for (part, rule, bytes) in [
                ("value", &rules.value, &r.value),
                ("key", &rules.key, &r.key),
            ] {
                if let (Some(rule), Some(bytes)) = (rule, bytes)
                    && let Err(e) = registry.validate(&rule.subject, bytes, mode(rule.validation))
                {
                    out.push((i as i32, part, e.to_string()));
                    break;
                }
            }
        }
    }
    out
}

/// Checks that every record of every batch decodes and fits its batch's offset span.
pub fn validate_records(data: &Bytes) -> Result<(), String> {
    for (h, b) in sluice_log::batch::split(data.clone()).map_err(|e| e.to_string())? {
        let recs = sluice_log::batch::decode(&b).map_err(|e| e.to_string())?;
        if !h.is_control() && recs.len() != h.record_count as usize {
            return Err(format!(
                "batch claims {} records, holds {}",
                h.record_count,
                recs.len()
            ));
        }
        if recs
            .iter()
            .any(|r| r.offset < h.base_offset || r.offset > h.last_offset())
        {
            return Err("record offset outside its batch".into());
        }
    }
    Ok(())
}

/// One pass over the partitions asked: the response, the bytes in it, and a watch per
/// partition to wait on.
fn fetch_once(
    b: &Broker,
    r: &FetchRequest,
    version: i16,
) -> (FetchResponse, usize, Vec<tokio::sync::watch::Receiver<u64>>) {
    let mut total = 0usize;
    let mut watches = Vec::new();
    let max_total = usize::try_from(r.max_bytes).unwrap_or(usize::MAX).max(1);
    let committed = r.isolation_level == 1;
    let responses = r
        .topics
        .iter()
        .map(|ft| {
            let topic = b.log.topic(&ft.topic.0);
            let partitions = ft
                .partitions
                .iter()
                .map(|fp| {
                    let resp = PartitionData::default().with_partition_index(fp.partition);
                    let part = topic
                        .as_ref()
                        .ok()
                        .and_then(|t| t.partition(i64::from(fp.partition)).ok());
                    let Some(part) = part else {
                        return resp.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    watches.push(part.subscribe());
                    let hw = part.high_watermark() as i64;
                    let lso = part.last_stable_offset() as i64;
                    let mut resp = resp
                        .with_high_watermark(hw)
                        .with_last_stable_offset(lso)
                        .with_aborted_transactions(Some(Vec::new()));
                    if version >= 5 {
                        resp = resp.with_log_start_offset(part.start_offset() as i64);
                    }
                    let room = max_total.saturating_sub(total);
                    let max = usize::try_from(fp.partition_max_bytes)
                        .unwrap_or(0)
                        .min(room)
                        .max(1);
                    let read = |o: u64| {
                        if committed {
                            part.read_committed(o, max)
                        } else {
                            part.read(o, max)
                        }
                    };
                    // Only an offset outside the log is OFFSET_OUT_OF_RANGE (clients reset
                    // their position on it); data that cannot be read now is a retriable
                    // storage error, so no consumer skips it.
                    match u64::try_from(fp.fetch_offset)
                        .map_err(|_| code::OFFSET_OUT_OF_RANGE)
                        .and_then(|o| {
                            read(o).map_err(|e| match e {
                                LogError::OffsetOutOfRange { .. } => code::OFFSET_OUT_OF_RANGE,
                                LogError::UnknownTopic(_)
                                | LogError::UnknownPartition { .. }
                                | LogError::TopicDeleted(_) => code::UNKNOWN_TOPIC_OR_PARTITION,
                                _ => code::KAFKA_STORAGE_ERROR,
                            })
                        }) {
                        Ok(read) => {
                            total += read.data.len();
                            if committed && !read.data.is_empty() {
                                // The aborted transactions among these batches, so the
                                // client skips their records.
                                let from = u64::try_from(fp.fetch_offset).unwrap_or(0);
                                let aborted = part
                                    .aborted_between(from, read.next_offset.saturating_sub(1))
                                    .into_iter()
                                    .map(|a| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(a.producer_id))
                                            .with_first_offset(a.first as i64)
                                    })
                                    .collect();
                                resp = resp.with_aborted_transactions(Some(aborted));
                            }
                            resp.with_records(Some(read.data))
                        }
                        Err(c) => resp.with_error_code(c),
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(ft.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    (
        FetchResponse::default().with_responses(responses),
        total,
        watches,
    )
}

/// Fetch: whole batches from each partition's offset; waits up to `max_wait_ms` (at most
/// 30 s) for `min_bytes`, woken by appends.
pub async fn fetch(b: &Arc<Broker>, r: FetchRequest, version: i16) -> FetchResponse {
    let deadline = Instant::now()
        + Duration::from_millis(u64::try_from(r.max_wait_ms).unwrap_or(0).min(30_000));
    let r = Arc::new(r);
    loop {
        let (bb, req) = (b.clone(), r.clone());
        let Ok((resp, total, mut watches)) = blocking(move || fetch_once(&bb, &req, version)).await
        else {
            return FetchResponse::default().with_error_code(code::UNKNOWN_SERVER_ERROR);
        };
        let now = Instant::now();
        if total >= usize::try_from(r.min_bytes).unwrap_or(1).max(1)
            || now >= deadline
            || watches.is_empty()
        {
            return resp;
        }
        // The receivers were made before the read (an append since then is unseen and
        // wakes this at once): marking them seen here would lose that append's wake-up
        // and sleep until `max_wait_ms`.
        let changed =
            futures::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = tokio::time::sleep(deadline - now) => {}
            _ = changed => {}
            _ = b.shutdown.cancelled() => return resp,
        }
    }
}

/// ListOffsets: the earliest (-2), latest (-1) or first offset at or after a timestamp.
pub async fn list_offsets(b: &Arc<Broker>, r: ListOffsetsRequest) -> ListOffsetsResponse {
    let b = b.clone();
    let committed = r.isolation_level == 1;
    blocking(move || {
        let topics = r
            .topics
            .iter()
            .map(|t| {
                let topic = b.log.topic(&t.name.0);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let resp = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index);
                        let part = topic
                            .as_ref()
                            .ok()
                            .and_then(|tp| tp.partition(i64::from(p.partition_index)).ok());
                        let Some(part) = part else {
                            return resp.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION);
                        };
                        let offset = match p.timestamp {
                            -2 => Some(part.start_offset()),
                            -1 if committed => Some(part.last_stable_offset()),
                            -1 => Some(part.high_watermark()),
                            ts => match part.offset_for_timestamp(ts) {
                                Ok(o) => o,
                                Err(_) => return resp.with_error_code(code::UNKNOWN_SERVER_ERROR),
                            },
                        };
                        match offset {
                            Some(o) => resp.with_offset(o as i64).with_timestamp(-1),
                            None => resp.with_offset(-1).with_timestamp(-1),
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::broker;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use sluice_log::batch::{NewRecord, build};

    fn batch(values: &[&str]) -> Bytes {
        let recs: Vec<NewRecord> = values
            .iter()
            .map(|v| NewRecord {
                value: Some(Bytes::from(v.to_string())),
                ..Default::default()
            })
            .collect();
        build(&recs, 1_700_000_000_000).freeze()
    }

    fn produce_req(topic: &str, p: i32, data: Bytes) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(-1)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(name(topic))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(data)),
                    ]),
            ])
    }

    #[tokio::test]
    async fn produce_then_fetch_returns_the_batch_as_stored() {
        let t = broker();
        let r = produce(&t.b, produce_req("t", 1, batch(&["a", "b"])), 9).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (code::NONE, 0));
        let r = produce(&t.b, produce_req("t", 1, batch(&["c"])), 9).await;
        assert_eq!(r.responses[0].partition_responses[0].base_offset, 2);
        let req = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(1)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        let r = fetch(&t.b, req, 12).await;
        let p = &r.responses[0].partitions[0];
        assert_eq!(
            (p.error_code, p.high_watermark, p.last_stable_offset),
            (0, 3, 3)
        );
        let got = sluice_log::batch::split(p.records.clone().unwrap()).unwrap();
        let values: Vec<_> = got
            .iter()
            .flat_map(|(_, b)| sluice_log::batch::decode(b).unwrap())
            .map(|r| r.value.unwrap())
            .collect();
        assert_eq!(values, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn garbage_records_and_unknown_partitions_get_error_codes() {
        let t = broker();
        let r = produce(&t.b, produce_req("t", 0, Bytes::from_static(&[0u8; 70])), 9).await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code,
            code::CORRUPT_MESSAGE
        );
        let r = produce(&t.b, produce_req("t", 7, batch(&["a"])), 9).await;
        assert_eq!(
            r.responses[0].partition_responses[0].error_code,
            code::UNKNOWN_TOPIC_OR_PARTITION
        );
    }

    #[tokio::test]
    async fn metadata_creates_asked_topics_with_the_default_partitions() {
        let t = broker();
        let req = MetadataRequest::default()
            .with_allow_auto_topic_creation(true)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(name("new"))),
                MetadataRequestTopic::default().with_name(Some(name("bad/name"))),
            ]));
        let r = metadata(&t.b, req, 12).await;
        assert_eq!(r.brokers[0].port, 9092);
        assert_eq!(r.topics[0].partitions.len(), 2);
        assert_eq!(r.topics[1].error_code, code::INVALID_TOPIC_EXCEPTION);
        let all = metadata(&t.b, MetadataRequest::default().with_topics(None), 12).await;
        assert_eq!(all.topics.len(), 1);
    }

    #[tokio::test]
    async fn list_offsets_answers_earliest_and_latest() {
        let t = broker();
        produce(&t.b, produce_req("t", 0, batch(&["a", "b", "c"])), 9).await;
        let req = ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-2),
                    ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(-1),
                    ListOffsetsPartition::default()
                        .with_partition_index(5)
                        .with_timestamp(-1),
                ]),
        ]);
        let r = list_offsets(&t.b, req).await;
        let p = &r.topics[0].partitions;
        assert_eq!((p[0].offset, p[1].offset), (0, 3));
        assert_eq!(p[2].error_code, code::UNKNOWN_TOPIC_OR_PARTITION);
    }
}
