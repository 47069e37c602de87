//! DescribeQuorum (API 55) in cluster mode: a Raft group's leader, epoch, high watermark, and
//! each voter's log end offset and when the leader last heard from it.
//!
//! KRaft answers it for its metadata partition alone (`__cluster_metadata`, partition 0);
//! here every partition is a Raft group, so it answers for any partition whose group this
//! node leads, and for `__cluster_metadata`-0, the controller's group. A node that does not
//! lead the group answers NOT_LEADER_OR_FOLLOWER with the leader it knows of, so a client
//! asks that one. `tally cluster status` is built on it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;
use tally_raft::{Liveness, MemberStatus, QuorumStatus, Replica};

use super::{broker_id, ClusterMode};
use crate::handlers::RequestContext;

const NO_LEADER: BrokerId = BrokerId(-1);

/// The controller group's name in DescribeQuorum, as in KRaft.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

pub fn handle(
    cluster: &ClusterMode,
    ctx: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let version = ctx.api_version;
    let state = cluster.node.controller().cluster();
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic_name.0.to_string();
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let index = p.partition_index;
                    let answer = PartitionData::default()
                        .with_partition_index(index)
                        .with_leader_id(NO_LEADER)
                        .with_leader_epoch(-1)
                        .with_high_watermark(-1);
                    if name == METADATA_TOPIC && index == 0 {
                        let replica = cluster.node.controller().replica();
                        return describe(version, replica, None, answer);
                    }
                    let record = state.topic(&name);
                    let known = record.is_some_and(|t| {
                        usize::try_from(index).is_ok_and(|i| i < t.partitions.len())
                    });
                    let Some(record) = record.filter(|_| known) else {
                        return error(version, answer, ResponseError::UnknownTopicOrPartition);
                    };
                    let view = cluster.view(&name, index as u32, record);
                    match (&view.hosted, view.is_leader) {
                        (Some(hosted), true) => {
                            let liveness = Some(cluster.node.liveness());
                            describe(version, &hosted.replica, liveness, answer)
                        }
                        _ => {
                            let leader = view.leader.map_or(NO_LEADER, broker_id);
                            error(
                                version,
                                answer
                                    .with_leader_id(leader)
                                    .with_leader_epoch(view.leader_epoch),
                                ResponseError::NotLeaderOrFollower,
                            )
                        }
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    let mut response = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 {
        response.nodes = state
            .brokers()
            .values()
            .map(|b| {
                Node::default()
                    .with_node_id(broker_id(b.node_id))
                    .with_listeners(vec![Listener::default()
                        .with_name(StrBytes::from_static_str("PLAINTEXT"))
                        .with_host(StrBytes::from_string(b.host.clone()))
                        .with_port(b.port)])
            })
            .collect();
    }
    response
}

/// DescribeQuorum on a broker that runs alone: there is no quorum to describe.
pub fn not_a_cluster(ctx: &RequestContext) -> DescribeQuorumResponse {
    let mut response =
        DescribeQuorumResponse::default().with_error_code(ResponseError::InvalidRequest.code());
    if ctx.api_version >= 2 {
        response.error_message = Some(StrBytes::from_static_str(
            "this broker runs alone (controller.quorum.voters is empty): there is no quorum",
        ));
    }
    response
}

fn error(version: i16, mut answer: PartitionData, e: ResponseError) -> PartitionData {
    answer.error_code = e.code();
    if version >= 2 {
        answer.error_message = Some(StrBytes::from_string(e.to_string()));
    }
    answer
}

/// `liveness`: for a partition group, whose members' nodes answer pings in place of the
/// group's own heartbeats (an idle group sends none): a member was last heard from when its
/// group or its node last answered.
fn describe(
    version: i16,
    replica: &Replica,
    liveness: Option<&Liveness>,
    answer: PartitionData,
) -> PartitionData {
    let mut status = replica.quorum_status();
    if let Some(liveness) = liveness {
        for member in status.voters.iter_mut().chain(status.learners.iter_mut()) {
            if member.node_id != replica.id {
                let pinged = liveness.last_heard(member.node_id);
                member.last_heard = match (member.last_heard, pinged) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    if !status.is_leader {
        let leader = status.leader.map_or(NO_LEADER, broker_id);
        return error(
            version,
            answer.with_leader_id(leader),
            ResponseError::NotLeaderOrFollower,
        );
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let replica_state = |m: &MemberStatus| replica_state(&status, m, now_ms);
    answer
        .with_leader_id(broker_id(replica.id))
        .with_leader_epoch(i32::try_from(status.term).unwrap_or(i32::MAX))
        .with_high_watermark(status.high_watermark)
        .with_current_voters(status.voters.iter().map(replica_state).collect())
        .with_observers(status.learners.iter().map(replica_state).collect())
}

/// A member's progress in Kafka's terms. `last_caught_up_timestamp` is when the leader last
/// heard from it if its log then reached the leader's end, else unknown (-1): the leader keeps
/// no history of when each member was last caught up.
fn replica_state(status: &QuorumStatus, member: &MemberStatus, now_ms: i64) -> ReplicaState {
    let heard_ms = member
        .last_heard
        .map(|d| now_ms - d.min(Duration::from_secs(u32::MAX as u64)).as_millis() as i64);
    let caught_up = member.log_end_offset == Some(status.log_end_offset);
    ReplicaState::default()
        .with_replica_id(broker_id(member.node_id))
        .with_log_end_offset(member.log_end_offset.unwrap_or(-1))
        .with_last_fetch_timestamp(heard_ms.unwrap_or(-1))
        .with_last_caught_up_timestamp(heard_ms.filter(|_| caught_up).unwrap_or(-1))
}
