//! The Kafka listener's group coordinator as the HTTP API's `/v1/groups` sees it.

use std::sync::Arc;

use sluice_api::groups::{GroupCoordinator, GroupInfo, GroupMember, GroupRefusal};
use sluice_kafka::Broker;
use sluice_kafka::groups::{assigned_partitions, code};

/// The coordinator of a running Kafka listener.
pub struct BrokerGroups(pub Arc<Broker>);

fn refusal(code: i16) -> GroupRefusal {
    match code {
        code::GROUP_ID_NOT_FOUND => GroupRefusal::NotFound,
        code::NON_EMPTY_GROUP => GroupRefusal::Active,
        code::INVALID_GROUP_ID => GroupRefusal::Invalid,
        _ => GroupRefusal::Failed,
    }
}

impl GroupCoordinator for BrokerGroups {
    fn list(&self) -> Vec<GroupInfo> {
        self.0
            .groups()
            .summaries()
            .into_iter()
            .map(|g| GroupInfo {
                id: g.id,
                protocol_type: g.protocol_type,
                protocol: g.protocol,
                state: g.state.to_string(),
                members: g.members,
            })
            .collect()
    }

    fn describe(&self, id: &str) -> Option<(GroupInfo, Vec<GroupMember>)> {
        let (state, protocol_type, protocol, members) = self.0.groups().describe(id)?;
        let consumer = protocol_type == "consumer";
        let members: Vec<GroupMember> = members
            .into_iter()
            .map(|m| GroupMember {
                assignment: if consumer {
                    assigned_partitions(&m.assignment)
                } else {
                    None
                },
                member_id: m.member_id,
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
            })
            .collect();
        Some((
            GroupInfo {
                id: id.to_string(),
                protocol_type,
                protocol,
                state: state.to_string(),
                members: members.len(),
            },
            members,
        ))
    }

    fn committed(&self, id: &str) -> Vec<(String, i32, i64, Option<String>)> {
        self.0.groups().committed_all(id)
    }

    fn delete(&self, id: &str) -> Result<(), GroupRefusal> {
        match self.0.groups().delete_group(id) {
            code::NONE => Ok(()),
            c => Err(refusal(c)),
        }
    }

    fn set_offsets(&self, id: &str, offsets: &[(String, i32, i64)]) -> Result<(), GroupRefusal> {
        self.0.groups().set_offsets(id, offsets).map_err(refusal)
    }
}
