//! Group administration on the admin client: list, describe (members with their decoded
//! assignments), read committed offsets, delete, and reset offsets of a group without members.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::assignor::TopicPartition;
use crate::consumer_protocol::decode_assignment;
use crate::coordinator::{commit_offsets, fetch_offsets, find_coordinator, Committer};
use crate::error::ClientError;

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// Empty when the broker answers ListGroups below v4.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Decoded when the group is a consumer group; empty otherwise.
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead (no such group).
    pub state: String,
    pub protocol_type: String,
    /// The assignor chosen by the group.
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

fn group(id: &str) -> GroupId {
    GroupId(StrBytes::from_string(id.to_string()))
}

impl Admin {
    /// Every group the cluster knows, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>, ClientError> {
        self.cluster().refresh(&[]).await?;
        let mut out = Vec::new();
        let mut nodes: Vec<i32> = self
            .cluster()
            .brokers()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        if nodes.is_empty() {
            nodes.push(-1);
        }
        for node in nodes {
            let connection = self.cluster().connection(node).await?;
            let version = connection.version(ApiKey::ListGroups, 0, 4)?;
            let response = connection
                .send(
                    &ListGroupsRequest::default(),
                    version,
                    self.cluster().config().request_timeout(),
                )
                .await?;
            if response.error_code != 0 {
                return Err(ClientError::broker(response.error_code, Some("ListGroups")));
            }
            out.extend(response.groups.iter().map(|g| GroupListing {
                group_id: g.group_id.0.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription, ClientError> {
        let coordinator = find_coordinator(self.cluster(), group_id).await?;
        let version = coordinator.version(ApiKey::DescribeGroups, 0, 5)?;
        let request = DescribeGroupsRequest::default().with_groups(vec![group(group_id)]);
        let response = coordinator
            .send(&request, version, self.cluster().config().request_timeout())
            .await?;
        let g = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty DescribeGroups answer".into()))?;
        if g.error_code != 0 {
            return Err(ClientError::broker(
                g.error_code,
                g.error_message.as_deref(),
            ));
        }
        let consumer = g.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: g.group_id.0.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .iter()
                .map(|m| GroupMember {
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                    assignment: if consumer {
                        decode_assignment(&m.member_assignment)
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
        })
    }

    /// Every offset the group committed.
    pub async fn group_offsets(
        &self,
        group_id: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let coordinator = find_coordinator(self.cluster(), group_id).await?;
        fetch_offsets(
            &coordinator,
            group_id,
            None,
            self.cluster().config().request_timeout(),
        )
        .await
    }

    /// Deletes a group without members and its offsets (NON_EMPTY_GROUP otherwise).
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ClientError> {
        let coordinator = find_coordinator(self.cluster(), group_id).await?;
        let version = coordinator.version(ApiKey::DeleteGroups, 0, 2)?;
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group(group_id)]);
        let response = coordinator
            .send(&request, version, self.cluster().config().request_timeout())
            .await?;
        let result = response
            .results
            .first()
            .ok_or_else(|| ClientError::Protocol("empty DeleteGroups answer".into()))?;
        match result.error_code {
            0 => Ok(()),
            code => Err(ClientError::broker(
                code,
                Some(&format!("deleting group {group_id}")),
            )),
        }
    }

    /// Commits these offsets for a group that has no members (the coordinator refuses with
    /// UNKNOWN_MEMBER_ID while it has some), as Kafka's reset-offsets tool does.
    pub async fn set_group_offsets(
        &self,
        group_id: &str,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), ClientError> {
        let coordinator = find_coordinator(self.cluster(), group_id).await?;
        commit_offsets(
            &coordinator,
            group_id,
            &Committer::standalone(),
            offsets,
            self.cluster().config().request_timeout(),
        )
        .await
    }
}
