//! Consumer-group requests, answered through the [`crate::groups::Coordinator`]:
//! FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    RequestHeader, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::{Broker, blocking, code, name};

/// FindCoordinator: this broker, for every group.
pub fn find_coordinator(
    b: &Broker,
    r: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let (host, port) = (
        StrBytes::from_string(b.cfg.advertise.0.clone()),
        b.cfg.advertise.1,
    );
    // Fields exist only in some versions; the codec refuses others that are set.
    if version < 4 {
        return FindCoordinatorResponse::default()
            .with_node_id(BrokerId(0))
            .with_host(host)
            .with_port(port);
    }
    let coordinators = r.coordinator_keys.into_iter().map(|k| {
        Coordinator::default()
            .with_key(k)
            .with_node_id(BrokerId(0))
            .with_host(host.clone())
            .with_port(port)
    });
    FindCoordinatorResponse::default().with_coordinators(coordinators.collect())
}

/// JoinGroup: waits for the group's rebalance and answers with the generation.
pub async fn join_group(
    b: &Broker,
    header: &RequestHeader,
    r: JoinGroupRequest,
    version: i16,
    host: &str,
) -> JoinGroupResponse {
    let client = header
        .client_id
        .as_ref()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "client".into());
    let rebalance = if version >= 1 {
        r.rebalance_timeout_ms
    } else {
        r.session_timeout_ms
    };
    let protocols = r
        .protocols
        .into_iter()
        .map(|p| (p.name.to_string(), p.metadata))
        .collect();
    let res = b
        .groups
        .join(
            &r.group_id.0,
            &r.member_id,
            r.group_instance_id.as_deref(),
            &client,
            host,
            &r.protocol_type,
            protocols,
            Duration::from_millis(u64::try_from(r.session_timeout_ms).unwrap_or(10_000)),
            Duration::from_millis(u64::try_from(rebalance).unwrap_or(10_000)),
        )
        .await;
    let mut body = JoinGroupResponse::default();
    if version >= 7 {
        body = body.with_protocol_type(Some(StrBytes::from_string(res.protocol_type)));
    }
    let members = res.members.into_iter().map(|(id, md)| {
        JoinGroupResponseMember::default()
            .with_member_id(StrBytes::from_string(id))
            .with_metadata(md)
    });
    body.with_error_code(res.error)
        .with_generation_id(res.generation)
        .with_protocol_name(Some(StrBytes::from_string(
            res.protocol.unwrap_or_default(),
        )))
        .with_leader(StrBytes::from_string(res.leader))
        .with_member_id(StrBytes::from_string(res.member_id))
        .with_members(members.collect())
}

/// SyncGroup: the leader's assignments out to every member.
pub async fn sync_group(b: &Broker, r: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let assignments = r
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let res = if b
        .groups
        .fenced(&r.group_id.0, &r.member_id, r.group_instance_id.as_deref())
    {
        crate::groups::SyncResult {
            error: crate::groups::code::FENCED_INSTANCE_ID,
            assignment: bytes::Bytes::new(),
        }
    } else {
        b.groups
            .sync(&r.group_id.0, r.generation_id, &r.member_id, assignments)
            .await
    };
    let body = SyncGroupResponse::default()
        .with_error_code(res.error)
        .with_assignment(res.assignment);
    if version >= 5 {
        body.with_protocol_type(r.protocol_type)
            .with_protocol_name(r.protocol_name)
    } else {
        body
    }
}

pub fn heartbeat(b: &Broker, r: HeartbeatRequest) -> HeartbeatResponse {
    let e = if b
        .groups
        .fenced(&r.group_id.0, &r.member_id, r.group_instance_id.as_deref())
    {
        crate::groups::code::FENCED_INSTANCE_ID
    } else {
        b.groups
            .heartbeat(&r.group_id.0, r.generation_id, &r.member_id)
    };
    HeartbeatResponse::default().with_error_code(e)
}

pub fn leave_group(b: &Broker, r: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    // A static member leaving under an instance id another member now holds is fenced:
    // it must not take the new member out of the group.
    let fenced: Vec<bool> = if version >= 3 {
        r.members
            .iter()
            .map(|m| {
                !m.member_id.is_empty()
                    && b.groups
                        .fenced(&r.group_id.0, &m.member_id, m.group_instance_id.as_deref())
            })
            .collect()
    } else {
        vec![false]
    };
    let ids: Vec<String> = if version >= 3 {
        r.members
            .iter()
            .map(|m| match (&m.group_instance_id, m.member_id.is_empty()) {
                // A static member may leave by its instance id alone.
                (Some(i), true) => b
                    .groups
                    .member_of_instance(&r.group_id.0, i)
                    .unwrap_or_default(),
                _ => m.member_id.to_string(),
            })
            .collect()
    } else {
        vec![r.member_id.to_string()]
    };
    let leaving: Vec<String> = ids
        .iter()
        .zip(&fenced)
        .filter(|(_, f)| !**f)
        .map(|(id, _)| id.clone())
        .collect();
    let mut left = b.groups.leave(&r.group_id.0, &leaving).into_iter();
    let codes: Vec<i16> = fenced
        .iter()
        .map(|f| {
            if *f {
                crate::groups::code::FENCED_INSTANCE_ID
            } else {
                left.next()
                    .unwrap_or(crate::groups::code::UNKNOWN_MEMBER_ID)
            }
        })
        .collect();
    if version < 3 {
        return LeaveGroupResponse::default()
            .with_error_code(codes.first().copied().unwrap_or(code::NONE));
    }
    let members = ids.iter().zip(&codes).map(|(id, c)| {
        MemberResponse::default()
            .with_member_id(StrBytes::from_string(id.clone()))
            .with_error_code(*c)
    });
    LeaveGroupResponse::default().with_members(members.collect())
}

/// OffsetCommit: stores the offsets durably (off the reactor); every partition gets the
/// commit's result. (The authorization filter has taken out topics the identity may not
/// read and answers them itself.)
pub async fn offset_commit(b: &Arc<Broker>, r: OffsetCommitRequest) -> OffsetCommitResponse {
    // Like Kafka, offsets of partitions that do not exist are refused.
    let exists = |t: &str, p: i32| {
        b.log
            .topic(t)
            .is_ok_and(|tp| tp.partition(i64::from(p)).is_ok())
    };
    let (mut offsets, epochs) = committed_offsets!(r.topics);
    offsets.retain(|(t, p, _, _)| exists(t, *p));
    let bb = b.clone();
    let (g, generation, member) = (
        r.group_id.0.to_string(),
        r.generation_id_or_member_epoch,
        r.member_id.to_string(),
    );
    let instance = r.group_instance_id.as_ref().map(|i| i.to_string());
    let e = blocking(move || {
        if bb.groups.fenced(&g, &member, instance.as_deref()) {
            return crate::groups::code::FENCED_INSTANCE_ID;
        }
        bb.groups.commit(&g, generation, &member, &offsets, &epochs)
    })
    .await
    .unwrap_or(code::UNKNOWN_SERVER_ERROR);
    let topics = r.topics.iter().map(|t| {
        let parts = t.partitions.iter().map(|p| {
            let e = if exists(&t.name.0, p.partition_index) {
                e
            } else {
                code::UNKNOWN_TOPIC_OR_PARTITION
            };
            OffsetCommitResponsePartition::default()
                .with_partition_index(p.partition_index)
                .with_error_code(e)
        });
        OffsetCommitResponseTopic::default()
            .with_name(t.name.clone())
            .with_partitions(parts.collect())
    });
    OffsetCommitResponse::default().with_topics(topics.collect())
}

/// The topics and partitions asked, or every committed one when none are named.
fn asked(
    b: &Broker,
    gid: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<i32>)> {
    topics.unwrap_or_else(|| {
        let mut m: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
        for (t, p, _, _) in b.groups.committed_all(gid) {
            m.entry(t).or_default().push(p);
        }
        m.into_iter().collect()
    })
}

/// OffsetFetch: committed offsets (-1 when none), by group in v8+, for one group before.
pub fn offset_fetch(b: &Broker, r: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let committed = |g: &str, t: &str, p: i32| {
        let (o, md) = b.groups.committed(g, t, p).unwrap_or((-1, None));
        (
            o,
            md.map(StrBytes::from_string),
            b.groups.committed_epoch(g, t, p),
        )
    };
    // KIP-447: a consumer that asks for stable offsets waits while a transaction holds one.
    let unstable = |g: &str, t: &str, p: i32| {
        if r.require_stable && b.txns.has_pending_offset(g, t, p) {
            code::UNSTABLE_OFFSET_COMMIT
        } else {
            code::NONE
        }
    };
    if version >= 8 {
        let groups = r.groups.into_iter().map(|g| {
            let gid = g.group_id.0.to_string();
            let named = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let topics = asked(b, &gid, named).into_iter().map(|(t, ps)| {
                let parts = ps.into_iter().map(|p| {
                    let (o, md, epoch) = committed(&gid, &t, p);
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p)
                        .with_committed_offset(o)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(md)
                        .with_error_code(unstable(&gid, &t, p))
                });
                OffsetFetchResponseTopics::default()
                    .with_name(name(&t))
                    .with_partitions(parts.collect())
            });
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id)
                .with_topics(topics.collect())
        });
        return OffsetFetchResponse::default().with_groups(groups.collect());
    }
    let gid = r.group_id.0.to_string();
    let named = r.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let topics = asked(b, &gid, named).into_iter().map(|(t, ps)| {
        let parts = ps.into_iter().map(|p| {
            let (o, md, epoch) = committed(&gid, &t, p);
            OffsetFetchResponsePartition::default()
                .with_partition_index(p)
                .with_committed_offset(o)
                .with_committed_leader_epoch(epoch)
                .with_metadata(md)
                .with_error_code(unstable(&gid, &t, p))
        });
        OffsetFetchResponseTopic::default()
            .with_name(name(&t))
            .with_partitions(parts.collect())
    });
    OffsetFetchResponse::default().with_topics(topics.collect())
}

pub fn list_groups(b: &Broker, version: i16) -> ListGroupsResponse {
    let groups = b.groups.list().into_iter().map(|(g, pt, st)| {
        let l = ListedGroup::default()
            .with_group_id(GroupId(StrBytes::from_string(g)))
            .with_protocol_type(StrBytes::from_string(pt));
        if version >= 4 {
            l.with_group_state(StrBytes::from_static_str(st))
        } else {
            l
        }
    });
    ListGroupsResponse::default().with_groups(groups.collect())
}

pub fn describe_groups(b: &Broker, r: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = r.groups.into_iter().map(|g| match b.groups.describe(&g.0) {
        None => DescribedGroup::default()
            .with_group_id(g)
            .with_group_state(StrBytes::from_static_str("Dead")),
        Some((state, pt, proto, members)) => {
            let members = members.into_iter().map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id))
                    .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                    .with_client_id(StrBytes::from_string(m.client_id))
                    .with_client_host(StrBytes::from_string(format!("/{}", m.client_host)))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            });
            DescribedGroup::default()
                .with_group_id(g)
                .with_group_state(StrBytes::from_static_str(state))
                .with_protocol_type(StrBytes::from_string(pt))
                .with_protocol_data(StrBytes::from_string(proto))
                .with_members(members.collect())
        }
    });
    DescribeGroupsResponse::default().with_groups(groups.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::broker;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;

    fn gid(g: &str) -> GroupId {
        GroupId(StrBytes::from_string(g.into()))
    }

    #[tokio::test]
    async fn one_member_joins_syncs_commits_and_fetches_its_offsets() {
        let t = broker();
        t.b.log
            .create_topic(
                "t",
                sluice_log::TopicConfig {
                    partitions: 2,
                    ..Default::default()
                },
            )
            .unwrap();
        let join = JoinGroupRequest::default()
            .with_group_id(gid("g"))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(100)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(bytes::Bytes::from_static(b"md")),
            ]);
        let header = RequestHeader::default();
        // A new member first learns its id (MEMBER_ID_REQUIRED), then joins with it.
        let mut j = join_group(&t.b, &header, join.clone(), 7, "127.0.0.1").await;
        if j.error_code != code::NONE {
            j = join_group(
                &t.b,
                &header,
                join.with_member_id(j.member_id.clone()),
                7,
                "127.0.0.1",
            )
            .await;
        }
        assert_eq!(j.error_code, code::NONE, "{j:?}");
        assert_eq!(j.leader, j.member_id);
        let s = sync_group(
            &t.b,
            SyncGroupRequest::default()
                .with_group_id(gid("g"))
                .with_generation_id(j.generation_id)
                .with_member_id(j.member_id.clone()),
            5,
        )
        .await;
        assert_eq!(s.error_code, code::NONE);
        let hb = heartbeat(
            &t.b,
            HeartbeatRequest::default()
                .with_group_id(gid("g"))
                .with_generation_id(j.generation_id)
                .with_member_id(j.member_id.clone()),
        );
        assert_eq!(hb.error_code, code::NONE);
        let commit = OffsetCommitRequest::default()
            .with_group_id(gid("g"))
            .with_generation_id_or_member_epoch(j.generation_id)
            .with_member_id(j.member_id.clone())
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(1)
                            .with_committed_offset(42),
                    ]),
            ]);
        let c = offset_commit(&t.b, commit.clone()).await;
        assert_eq!(c.topics[0].partitions[0].error_code, code::NONE);
        let mut missing = commit;
        missing.topics[0].name = name("nope");
        let c = offset_commit(&t.b, missing).await;
        assert_eq!(
            c.topics[0].partitions[0].error_code,
            code::UNKNOWN_TOPIC_OR_PARTITION,
            "offsets of partitions that do not exist are refused"
        );
        let f = offset_fetch(
            &t.b,
            OffsetFetchRequest::default()
                .with_group_id(gid("g"))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopic::default()
                        .with_name(name("t"))
                        .with_partition_indexes(vec![1, 2]),
                ])),
            7,
        );
        let parts = &f.topics[0].partitions;
        assert_eq!(
            (parts[0].committed_offset, parts[1].committed_offset),
            (42, -1)
        );
        let listed = list_groups(&t.b, 4);
        assert_eq!(&*listed.groups[0].group_id.0, "g");
        let d = describe_groups(
            &t.b,
            DescribeGroupsRequest::default().with_groups(vec![gid("g"), gid("none")]),
        );
        assert_eq!(d.groups[0].members.len(), 1);
        assert_eq!(&*d.groups[1].group_state, "Dead");
    }

    #[test]
    fn find_coordinator_names_this_broker_in_both_shapes() {
        let t = broker();
        let old = find_coordinator(&t.b, FindCoordinatorRequest::default(), 3);
        assert_eq!((old.node_id, old.port), (BrokerId(0), 9092));
        let new = find_coordinator(
            &t.b,
            FindCoordinatorRequest::default()
                .with_coordinator_keys(vec![StrBytes::from_static_str("g")]),
            4,
        );
        assert_eq!(&*new.coordinators[0].key, "g");
        assert_eq!(&*new.coordinators[0].host, "127.0.0.1");
    }
}
