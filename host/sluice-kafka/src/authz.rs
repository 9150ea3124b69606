//! The one authorization filter of the Kafka listener. Every request passes here before its
//! handler: group and admin requests of identities without the right are refused whole
//! with the API's own error; topics an identity may not use are taken out of data requests
//! and put back into the response with `TOPIC_AUTHORIZATION_FAILED`; Metadata hides (or
//! marks) topics the identity may not describe and creates topics only for identities
//! that may produce to every name asked.

use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::list_offsets_request::ListOffsetsTopic;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
use kafka_protocol::messages::produce_request::TopicProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, CreateTopicsResponse, DeleteGroupsResponse, DeleteTopicsResponse,
    DescribeGroupsResponse, FindCoordinatorResponse, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, ListGroupsResponse, OffsetCommitResponse, OffsetDeleteResponse,
    OffsetFetchResponse, RequestKind, ResponseKind, SyncGroupResponse, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;

use sluice_auth::{Action, OwnedTopics, Principal};

use crate::admin::deleted_names;
use crate::code;

/// What a connection's identity may do.
#[derive(Clone)]
pub struct Access {
    auth_on: bool,
    who: Option<Arc<Principal>>,
    /// The topics the server keeps for itself: read with the state permission.
    owned: Option<OwnedTopics>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("auth_on", &self.auth_on)
            .field("who", &self.who)
            .finish_non_exhaustive()
    }
}

impl Access {
    pub fn new(auth_on: bool, who: Option<Arc<Principal>>) -> Access {
        Access {
            auth_on,
            who,
            owned: None,
        }
    }

    /// The same access, with the server's own topics known (see [`Action::refine`]).
    pub fn with_owned(mut self, owned: OwnedTopics) -> Access {
        self.owned = Some(owned);
        self
    }

    /// Everything allowed (auth off).
    pub fn open() -> Access {
        Access::new(false, None)
    }

    /// May this connection do `action`? Always when auth is off.
    pub fn allows(&self, action: &Action) -> bool {
        match (&self.who, self.auth_on) {
            (_, false) => true,
            (Some(p), true) => match &self.owned {
                Some(owned) => p.allows(&action.clone().refine(&**owned)),
                None => p.allows(action),
            },
            (None, true) => false,
        }
    }
}

/// The filter's verdict on a request.
#[derive(Debug)]
pub enum Authorized {
    /// Serve this request (what may not be touched taken out), then let `Denied` put the
    /// refused parts into the response.
    Serve(RequestKind, Denied),
    /// Refused whole: this is the answer.
    Refused(ResponseKind),
}

/// Parts of a request taken out by the filter, answered in the response.
#[derive(Debug, Default)]
pub enum Denied {
    #[default]
    Nothing,
    Produce(Vec<TopicProduceData>),
    Fetch(Vec<FetchTopic>),
    ListOffsets(Vec<ListOffsetsTopic>),
    OffsetCommit(Vec<OffsetCommitRequestTopic>),
    /// Topics the identity may not describe are marked (or dropped, when all were asked).
    Metadata {
        access: Access,
        asked_all: bool,
    },
}

fn denied_topic() -> i16 {
    code::TOPIC_AUTHORIZATION_FAILED
}

impl Denied {
    /// Puts the refused parts into the handler's response.
    pub fn apply(self, resp: &mut ResponseKind) {
        match (self, resp) {
            (Denied::Produce(topics), ResponseKind::Produce(r)) => {
                r.responses.extend(topics.into_iter().map(|td| {
                    let parts = td.partition_data.iter().map(|pd| {
                        PartitionProduceResponse::default()
                            .with_index(pd.index)
                            .with_error_code(denied_topic())
                    });
                    TopicProduceResponse::default()
                        .with_name(td.name)
                        .with_partition_responses(parts.collect())
                }));
            }
            (Denied::Fetch(topics), ResponseKind::Fetch(r)) => {
                r.responses.extend(topics.into_iter().map(|t| {
                    let parts = t.partitions.iter().map(|p| {
                        // As Kafka answers a partition in error: no offsets (a high
                        // watermark of 0 reads as "the end" to librdkafka).
                        PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_error_code(denied_topic())
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                    });
                    FetchableTopicResponse::default()
                        .with_topic(t.topic)
                        .with_partitions(parts.collect())
                }));
            }
            (Denied::ListOffsets(topics), ResponseKind::ListOffsets(r)) => {
                r.topics.extend(topics.into_iter().map(|t| {
                    let parts = t.partitions.iter().map(|p| {
                        ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(denied_topic())
                    });
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(parts.collect())
                }));
            }
            (Denied::OffsetCommit(topics), ResponseKind::OffsetCommit(r)) => {
                r.topics.extend(topics.into_iter().map(commit_refused));
            }
            (Denied::Metadata { access, asked_all }, ResponseKind::Metadata(r)) => {
                r.topics.retain_mut(|t| {
                    let n = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                    if access.allows(&Action::Describe(n)) {
                        return true;
                    }
                    t.error_code = denied_topic();
                    t.partitions.clear();
                    !asked_all
                });
            }
            _ => {}
        }
    }
}

fn commit_refused(t: OffsetCommitRequestTopic) -> OffsetCommitResponseTopic {
    let parts = t.partitions.iter().map(|p| {
        OffsetCommitResponsePartition::default()
            .with_partition_index(p.partition_index)
            .with_error_code(denied_topic())
    });
    OffsetCommitResponseTopic::default()
        .with_name(t.name)
        .with_partitions(parts.collect())
}

/// Splits `items` into those whose topic `access` allows `action` on, and the rest.
fn split<T>(
    items: Vec<T>,
    topic: impl Fn(&T) -> String,
    action: fn(String) -> Action,
    access: &Access,
) -> (Vec<T>, Vec<T>) {
    items
        .into_iter()
        .partition(|i| access.allows(&action(topic(i))))
}

/// Runs the filter over one request.
pub fn authorize(access: &Access, request: RequestKind, version: i16) -> Authorized {
    use RequestKind as R;
    let serve = |r: RequestKind, d: Denied| Authorized::Serve(r, d);
    match request {
        R::Produce(mut r) => {
            let (ok, no) = split(
                r.topic_data,
                |t| t.name.0.to_string(),
                Action::Produce,
                access,
            );
            r.topic_data = ok;
            serve(R::Produce(r), Denied::Produce(no))
        }
        R::Fetch(mut r) => {
            let (ok, no) = split(r.topics, |t| t.topic.0.to_string(), Action::Consume, access);
            r.topics = ok;
            serve(R::Fetch(r), Denied::Fetch(no))
        }
        R::ListOffsets(mut r) => {
            let (ok, no) = split(r.topics, |t| t.name.0.to_string(), Action::Describe, access);
            r.topics = ok;
            serve(R::ListOffsets(r), Denied::ListOffsets(no))
        }
        R::Metadata(mut r) => {
            let asked_all = r.topics.is_none();
            if let Some(list) = &r.topics {
                // Auto-creation is for identities that may produce to every name asked.
                let may_create = list.iter().all(|t| {
                    t.name
                        .as_ref()
                        .is_some_and(|n| access.allows(&Action::Produce(n.0.to_string())))
                });
                r.allow_auto_topic_creation &= may_create;
            }
            let d = Denied::Metadata {
                access: access.clone(),
                asked_all,
            };
            serve(R::Metadata(r), d)
        }
        request if is_group_request(&request) && !access.allows(&Action::Group) => {
            Authorized::Refused(group_refused(request, version))
        }
        R::AddPartitionsToTxn(r)
            if r.v3_and_below_topics
                .iter()
                .any(|t| !access.allows(&Action::Produce(t.name.0.to_string()))) =>
        {
            // All or nothing: the topics the identity may not write are refused, the
            // others not attempted.
            let answers = r
                .v3_and_below_topics
                .iter()
                .flat_map(|t| {
                    let name = t.name.0.to_string();
                    let e = if access.allows(&Action::Produce(name.clone())) {
                        code::OPERATION_NOT_ATTEMPTED
                    } else {
                        denied_topic()
                    };
                    t.partitions.iter().map(move |p| (name.clone(), *p, e))
                })
                .collect();
            Authorized::Refused(crate::txn_api::partitions_response(answers).into())
        }
        R::OffsetCommit(mut r) => {
            // Like Kafka: partitions of topics the identity may not read are refused, the
            // others are committed.
            let (ok, no) = split(r.topics, |t| t.name.0.to_string(), Action::Consume, access);
            r.topics = ok;
            serve(R::OffsetCommit(r), Denied::OffsetCommit(no))
        }
        R::CreateTopics(r) if !access.allows(&Action::Admin) => {
            let topics = r.topics.into_iter().map(|t| {
                let res = CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(denied_topic());
                if version >= 1 {
                    res.with_error_message(Some(StrBytes::from_static_str(
                        "creating topics needs the admin role",
                    )))
                } else {
                    res
                }
            });
            Authorized::Refused(
                CreateTopicsResponse::default()
                    .with_topics(topics.collect())
                    .into(),
            )
        }
        R::CreatePartitions(_)
        | R::AlterConfigs(_)
        | R::IncrementalAlterConfigs(_)
        | R::DeleteRecords(_)
            if !access.allows(&Action::Admin) =>
        {
            match crate::admin_ext::refused_admin(request) {
                Some(resp) => Authorized::Refused(resp),
                // Not reached: every kind above has its refusal. Refuse anyway.
                None => Authorized::Refused(
                    FindCoordinatorResponse::default()
                        .with_error_code(denied_topic())
                        .into(),
                ),
            }
        }
        R::DeleteTopics(r) if !access.allows(&Action::Admin) => {
            let responses = deleted_names(r, version).into_iter().map(|n| {
                DeletableTopicResult::default()
                    .with_name(Some(n))
                    .with_error_code(denied_topic())
            });
            Authorized::Refused(
                DeleteTopicsResponse::default()
                    .with_responses(responses.collect())
                    .into(),
            )
        }
        other => serve(other, Denied::Nothing),
    }
}

fn is_group_request(r: &RequestKind) -> bool {
    use RequestKind as R;
    matches!(
        r,
        R::AddOffsetsToTxn(_)
            | R::TxnOffsetCommit(_)
            | R::DeleteGroups(_)
            | R::OffsetDelete(_)
            | R::FindCoordinator(_)
            | R::JoinGroup(_)
            | R::SyncGroup(_)
            | R::Heartbeat(_)
            | R::LeaveGroup(_)
            | R::OffsetCommit(_)
            | R::OffsetFetch(_)
            | R::ListGroups(_)
            | R::DescribeGroups(_)
    )
}

/// A group request of an identity without group rights: the API's own error.
fn group_refused(request: RequestKind, version: i16) -> ResponseKind {
    use RequestKind as R;
    let no = code::GROUP_AUTHORIZATION_FAILED;
    match request {
        R::AddOffsetsToTxn(_) => AddOffsetsToTxnResponse::default()
            .with_error_code(no)
            .into(),
        R::DeleteGroups(r) => DeleteGroupsResponse::default()
            .with_results(
                r.groups_names
                    .into_iter()
                    .map(|g| {
                        DeletableGroupResult::default()
                            .with_group_id(g)
                            .with_error_code(no)
                    })
                    .collect(),
            )
            .into(),
        R::OffsetDelete(_) => OffsetDeleteResponse::default().with_error_code(no).into(),
        R::TxnOffsetCommit(r) => {
            let topics = r.topics.into_iter().map(|t| {
                let parts = t.partitions.iter().map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(no)
                });
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(parts.collect())
            });
            TxnOffsetCommitResponse::default()
                .with_topics(topics.collect())
                .into()
        }
        R::SyncGroup(_) => SyncGroupResponse::default().with_error_code(no).into(),
        R::Heartbeat(_) => HeartbeatResponse::default().with_error_code(no).into(),
        R::LeaveGroup(_) => LeaveGroupResponse::default().with_error_code(no).into(),
        R::ListGroups(_) => ListGroupsResponse::default().with_error_code(no).into(),
        R::JoinGroup(_) => JoinGroupResponse::default().with_error_code(no).into(),
        R::DescribeGroups(r) => {
            let groups = r.groups.into_iter().map(|g| {
                DescribedGroup::default()
                    .with_group_id(g)
                    .with_error_code(no)
            });
            DescribeGroupsResponse::default()
                .with_groups(groups.collect())
                .into()
        }
        R::OffsetFetch(r) if version >= 8 => {
            let groups = r.groups.into_iter().map(|g| {
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(no)
            });
            OffsetFetchResponse::default()
                .with_groups(groups.collect())
                .into()
        }
        R::OffsetFetch(_) => OffsetFetchResponse::default().with_error_code(no).into(),
        R::OffsetCommit(r) => {
            let topics = r.topics.into_iter().map(|t| {
                let mut refused = commit_refused(t);
                for p in &mut refused.partitions {
                    p.error_code = no;
                }
                refused
            });
            OffsetCommitResponse::default()
                .with_topics(topics.collect())
                .into()
        }
        R::FindCoordinator(r) if version >= 4 => {
            let coordinators = r
                .coordinator_keys
                .into_iter()
                .map(|k| Coordinator::default().with_key(k).with_error_code(no));
            FindCoordinatorResponse::default()
                .with_coordinators(coordinators.collect())
                .into()
        }
        _ => FindCoordinatorResponse::default()
            .with_error_code(no)
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::PartitionProduceData;
    use kafka_protocol::messages::{
        FindCoordinatorRequest, GroupId, HeartbeatRequest, ProduceRequest, ProduceResponse,
        TopicName,
    };
    use sluice_auth::{Auth, AuthConfig, hash_token};

    fn identity(role: &str, topics: &[&str]) -> Access {
        let cfg: AuthConfig = toml::from_str(&format!(
            "[[identities]]\nname = \"x\"\nrole = \"{role}\"\ntopics = {topics:?}\ntoken_sha256 = \"{}\"\n",
            hash_token("t")
        ))
        .unwrap();
        let auth = Auth::from_config(&cfg).unwrap().unwrap();
        Access::new(true, auth.authenticate("t"))
    }

    fn topic(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.into()))
    }

    #[test]
    fn produce_to_topics_outside_the_patterns_is_answered_per_partition() {
        let access = identity("producer", &["ok*"]);
        let data = |n: &str| {
            TopicProduceData::default()
                .with_name(topic(n))
                .with_partition_data(vec![PartitionProduceData::default().with_index(3)])
        };
        let req = ProduceRequest::default().with_topic_data(vec![data("ok1"), data("secret")]);
        let Authorized::Serve(RequestKind::Produce(served), denied) =
            authorize(&access, RequestKind::Produce(req), 9)
        else {
            panic!("produce is served")
        };
        assert_eq!(served.topic_data.len(), 1);
        assert_eq!(&*served.topic_data[0].name.0, "ok1");
        let mut resp: ResponseKind = ProduceResponse::default().into();
        denied.apply(&mut resp);
        let ResponseKind::Produce(r) = resp else {
            unreachable!()
        };
        assert_eq!(&*r.responses[0].name.0, "secret");
        assert_eq!(
            r.responses[0].partition_responses[0].error_code,
            code::TOPIC_AUTHORIZATION_FAILED
        );
        assert_eq!(r.responses[0].partition_responses[0].index, 3);
    }

    #[test]
    fn group_requests_without_group_rights_get_the_apis_own_error() {
        let producer = identity("producer", &["*"]);
        let hb = HeartbeatRequest::default().with_group_id(GroupId(StrBytes::from_static_str("g")));
        let Authorized::Refused(ResponseKind::Heartbeat(r)) =
            authorize(&producer, RequestKind::Heartbeat(hb.clone()), 4)
        else {
            panic!("refused")
        };
        assert_eq!(r.error_code, code::GROUP_AUTHORIZATION_FAILED);
        let fc = FindCoordinatorRequest::default()
            .with_coordinator_keys(vec![StrBytes::from_static_str("g")]);
        let Authorized::Refused(ResponseKind::FindCoordinator(r)) =
            authorize(&producer, RequestKind::FindCoordinator(fc), 4)
        else {
            panic!("refused")
        };
        assert_eq!(
            r.coordinators[0].error_code,
            code::GROUP_AUTHORIZATION_FAILED
        );
        // A consumer may, and so may anyone when auth is off.
        for ok in [identity("consumer", &["*"]), Access::open()] {
            assert!(matches!(
                authorize(&ok, RequestKind::Heartbeat(hb.clone()), 4),
                Authorized::Serve(..)
            ));
        }
    }
}
