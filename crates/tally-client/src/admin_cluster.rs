//! A cluster's Raft groups: DescribeQuorum (API 55) for the controller's group
//! (`__cluster_metadata`-0, as in KRaft) and for each partition's, asked of each group's
//! leader; AlterPartitionReassignments (API 45) to move a partition's replicas.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ApiKey, BrokerId, DescribeQuorumRequest,
    ListPartitionReassignmentsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::ClientError;

/// The controller group's name in DescribeQuorum.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// NOT_LEADER_OR_FOLLOWER: ask the leader the answer names.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
/// How many leaders a group's question is passed on to before giving up (a leader that
/// changes while we ask).
const MAX_HOPS: usize = 3;

/// One member of a Raft group, as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumMember {
    pub node_id: i32,
    /// -1: the leader does not know it yet.
    pub log_end_offset: i64,
    /// When the leader last heard from it, in ms since the epoch; -1 unknown.
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

/// A partition's Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    pub topic: String,
    pub partition: i32,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<QuorumMember>,
    pub observers: Vec<QuorumMember>,
}

impl QuorumDescription {
    /// How many records `member` lacks of the leader's log; None when unknown.
    pub fn lag(&self, member: &QuorumMember) -> Option<i64> {
        let leader = self.voters.iter().find(|v| v.node_id == self.leader_id)?;
        (member.log_end_offset >= 0 && leader.log_end_offset >= 0)
            .then(|| (leader.log_end_offset - member.log_end_offset).max(0))
    }
}

fn members(states: Vec<ReplicaState>) -> Vec<QuorumMember> {
    states
        .into_iter()
        .map(|s| QuorumMember {
            node_id: s.replica_id.0,
            log_end_offset: s.log_end_offset,
            last_fetch_timestamp: s.last_fetch_timestamp,
            last_caught_up_timestamp: s.last_caught_up_timestamp,
        })
        .collect()
}

impl Admin {
    /// Asks for `topic`-`partition`'s replicas to become `replicas`, preferred leader first
    /// (AlterPartitionReassignments). Answered once the controller has recorded it; the move
    /// itself follows (see `describe_quorum`).
    pub async fn reassign_partition(
        &self,
        topic: &str,
        partition: i32,
        replicas: &[i32],
    ) -> Result<(), ClientError> {
        self.alter_reassignment(topic, partition, Some(replicas))
            .await
    }

    async fn alter_reassignment(
        &self,
        topic: &str,
        partition: i32,
        replicas: Option<&[i32]>,
    ) -> Result<(), ClientError> {
        let cluster = self.cluster();
        let connection = cluster.any_connection().await?;
        let version = connection.version(ApiKey::AlterPartitionReassignments, 0, 1)?;
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(cluster.config().request_timeout().as_millis() as i32)
            .with_allow_replication_factor_change(true)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(partition)
                    .with_replicas(
                        replicas.map(|r| r.iter().map(|b| BrokerId(*b)).collect()),
                    )])]);
        let response = connection
            .send(&request, version, cluster.config().request_timeout())
            .await?;
        if response.error_code != 0 {
            return Err(ClientError::broker(
                response.error_code,
                response.error_message.as_deref(),
            ));
        }
        let failed = response
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .find(|p| p.error_code != 0);
        match failed {
            Some(p) => Err(ClientError::broker(
                p.error_code,
                p.error_message.as_deref(),
            )),
            None => Ok(()),
        }
    }

    /// Cancels `topic`-`partition`'s reassignment in progress: its current voters are
    /// assigned again (AlterPartitionReassignments with no replicas).
    pub async fn cancel_reassignment(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(), ClientError> {
        self.alter_reassignment(topic, partition, None).await
    }

    /// The reassignments in progress: (topic, partition, replicas, adding, removing), from
    /// ListPartitionReassignments.
    #[allow(clippy::type_complexity)]
    pub async fn list_reassignments(
        &self,
    ) -> Result<Vec<(String, i32, Vec<i32>, Vec<i32>, Vec<i32>)>, ClientError> {
        let cluster = self.cluster();
        let connection = cluster.any_connection().await?;
        let version = connection.version(ApiKey::ListPartitionReassignments, 0, 0)?;
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(cluster.config().request_timeout().as_millis() as i32);
        let response = connection
            .send(&request, version, cluster.config().request_timeout())
            .await?;
        if response.error_code != 0 {
            return Err(ClientError::broker(
                response.error_code,
                response.error_message.as_deref(),
            ));
        }
        let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
        let mut out = Vec::new();
        for t in response.topics {
            for p in t.partitions {
                out.push((
                    t.name.0.to_string(),
                    p.partition_index,
                    ids(&p.replicas),
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                ));
            }
        }
        Ok(out)
    }

    /// Describes the Raft group of each `(topic, partition)`, asking each group's leader. A
    /// group without a leader at the moment (or whose leader kept moving while it was asked)
    /// is left out of the answer.
    pub async fn describe_quorum(
        &self,
        partitions: &[(String, i32)],
    ) -> Result<Vec<QuorumDescription>, ClientError> {
        let mut out = Vec::new();
        // None: any node; Some(n): node n, named as the leader by an earlier answer.
        let mut ask: BTreeMap<Option<i32>, Vec<(String, i32)>> = BTreeMap::new();
        ask.insert(None, partitions.to_vec());
        for _ in 0..=MAX_HOPS {
            if ask.is_empty() {
                break;
            }
            let mut next: BTreeMap<Option<i32>, Vec<(String, i32)>> = BTreeMap::new();
            for (node, wanted) in std::mem::take(&mut ask) {
                for answer in self.describe_quorum_at(node, &wanted).await? {
                    match answer {
                        Ok(description) => out.push(description),
                        Err((topic, partition, leader)) if leader >= 0 => {
                            next.entry(Some(leader))
                                .or_default()
                                .push((topic, partition));
                        }
                        // No leader right now (an election): left out of the answer.
                        Err(_) => {}
                    }
                }
            }
            ask = next;
        }
        // Groups whose leader kept moving while they were asked are left out too.
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    /// One DescribeQuorum: each partition's description, or (topic, partition, leader to ask
    /// instead) when the node answered NOT_LEADER_OR_FOLLOWER.
    #[allow(clippy::type_complexity)]
    async fn describe_quorum_at(
        &self,
        node: Option<i32>,
        wanted: &[(String, i32)],
    ) -> Result<Vec<Result<QuorumDescription, (String, i32, i32)>>, ClientError> {
        let cluster = self.cluster();
        let connection = match node {
            Some(n) => cluster.connection(n).await?,
            None => cluster.any_connection().await?,
        };
        let version = connection.version(ApiKey::DescribeQuorum, 0, 2)?;
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in wanted {
            by_topic.entry(topic).or_default().push(*partition);
        }
        let request = DescribeQuorumRequest::default().with_topics(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicData::default()
                        .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(
                            partitions
                                .into_iter()
                                .map(|p| PartitionData::default().with_partition_index(p))
                                .collect(),
                        )
                })
                .collect(),
        );
        let response = connection
            .send(&request, version, cluster.config().request_timeout())
            .await?;
        if response.error_code != 0 {
            return Err(ClientError::broker(
                response.error_code,
                response.error_message.as_deref(),
            ));
        }
        let mut out = Vec::new();
        for t in response.topics {
            let topic = t.topic_name.0.to_string();
            for p in t.partitions {
                match p.error_code {
                    0 => out.push(Ok(QuorumDescription {
                        topic: topic.clone(),
                        partition: p.partition_index,
                        leader_id: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        high_watermark: p.high_watermark,
                        voters: members(p.current_voters),
                        observers: members(p.observers),
                    })),
                    NOT_LEADER_OR_FOLLOWER if Some(p.leader_id.0) != node => {
                        out.push(Err((topic.clone(), p.partition_index, p.leader_id.0)));
                    }
                    code => {
                        return Err(ClientError::broker(code, p.error_message.as_deref()));
                    }
                }
            }
        }
        Ok(out)
    }
}
