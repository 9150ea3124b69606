//! Transaction requests (KIP-98), answered by the coordinator in [`crate::txn`]:
//! InitProducerId with a transactional id, AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit and EndTxn. Log work runs off the reactor; offsets a committed
//! transaction carries are stored in the groups before EndTxn is answered.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use crate::txn::GroupOffsets;
use crate::{Broker, blocking, code};

/// InitProducerId: a transactional producer gets its id's producer id with a new epoch
/// (fencing older ones); an idempotent one a fresh id.
pub async fn init_producer_id(b: &Arc<Broker>, r: InitProducerIdRequest) -> InitProducerIdResponse {
    let Some(tid) = r.transactional_id.map(|t| t.0.to_string()) else {
        return crate::data::init_producer_id(b);
    };
    let bb = b.clone();
    let result = blocking(move || {
        let next = || {
            bb.next_producer_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        };
        bb.txns
            .init(&tid, r.transaction_timeout_ms, next, &|g, o, e| {
                apply(&bb, g, o, e)
            })
    })
    .await
    .unwrap_or(Err(code::UNKNOWN_SERVER_ERROR));
    match result {
        Ok((pid, epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch),
        Err(e) => InitProducerIdResponse::default()
            .with_error_code(e)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}

pub async fn add_partitions(
    b: &Arc<Broker>,
    r: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version >= 4 {
        // Version 4 is the brokers' batched form (KIP-890), not sent by clients.
        return AddPartitionsToTxnResponse::default().with_error_code(code::UNSUPPORTED_VERSION);
    }
    let tid = r.v3_and_below_transactional_id.0.to_string();
    let (pid, epoch) = (r.v3_and_below_producer_id.0, r.v3_and_below_producer_epoch);
    let asked: Vec<(String, i32)> = r
        .v3_and_below_topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    let bb = b.clone();
    let list = asked.clone();
    let result = blocking(move || bb.txns.add_partitions(&tid, pid, epoch, &list))
        .await
        .unwrap_or(Err(code::UNKNOWN_SERVER_ERROR));
    let answers: Vec<(String, i32, i16)> = match result {
        Ok(a) => a,
        Err(e) => asked.into_iter().map(|(t, p)| (t, p, e)).collect(),
    };
    partitions_response(answers)
}

/// Per-partition results, grouped by topic in the order asked.
pub fn partitions_response(answers: Vec<(String, i32, i16)>) -> AddPartitionsToTxnResponse {
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (t, p, e) in answers {
        let res = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(p)
            .with_partition_error_code(e);
        match topics.iter_mut().find(|x| x.name.0.as_str() == t) {
            Some(x) => x.results_by_partition.push(res),
            None => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(crate::name(&t))
                    .with_results_by_partition(vec![res]),
            ),
        }
    }
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

pub async fn add_offsets(b: &Arc<Broker>, r: AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse {
    let bb = b.clone();
    let e = blocking(move || {
        bb.txns.add_offsets(
            &r.transactional_id.0,
            r.producer_id.0,
            r.producer_epoch,
            &r.group_id.0,
        )
    })
    .await
    .unwrap_or(code::UNKNOWN_SERVER_ERROR);
    AddOffsetsToTxnResponse::default().with_error_code(e)
}

pub async fn txn_offset_commit(
    b: &Arc<Broker>,
    r: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let (offsets, epochs) = committed_offsets!(r.topics);
    let bb = b.clone();
    let (tid, group, pid, epoch) = (
        r.transactional_id.0.to_string(),
        r.group_id.0.to_string(),
        r.producer_id.0,
        r.producer_epoch,
    );
    let (generation, member) = (r.generation_id, r.member_id.to_string());
    let instance = r.group_instance_id.as_ref().map(|i| i.to_string());
    let e = blocking(move || {
        if bb.groups.fenced(&group, &member, instance.as_deref()) {
            return crate::groups::code::FENCED_INSTANCE_ID;
        }
        // A consumer that lost its partitions in a rebalance may not commit them (KIP-447).
        match bb.groups.check_generation(&group, generation, &member) {
            code::NONE => bb
                .txns
                .commit_offsets(&tid, pid, epoch, &group, offsets, epochs),
            e => e,
        }
    })
    .await
    .unwrap_or(code::UNKNOWN_SERVER_ERROR);
    let topics = r.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| {
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(e)
        });
        TxnOffsetCommitResponseTopic::default()
            .with_name(t.name.clone())
            .with_partitions(parts.collect())
    });
    TxnOffsetCommitResponse::default().with_topics(topics.collect())
}

/// Stores a committed transaction's offsets in its group.
pub fn apply(b: &Broker, group: &str, offsets: &GroupOffsets, epochs: &[(String, i32, i32)]) {
    let e = b.groups.commit(group, -1, "", offsets, epochs);
    if e != code::NONE {
        tracing::error!(group, error = e, "storing a transaction's offsets failed");
    }
}

pub async fn end_txn(b: &Arc<Broker>, r: EndTxnRequest) -> EndTxnResponse {
    let bb = b.clone();
    let e = blocking(move || {
        bb.txns.end_txn(
            &r.transactional_id.0,
            r.producer_id.0,
            r.producer_epoch,
            r.committed,
            &|g, o, e| apply(&bb, g, o, e),
        )
    })
    .await
    .unwrap_or(code::UNKNOWN_SERVER_ERROR);
    EndTxnResponse::default().with_error_code(e)
}
