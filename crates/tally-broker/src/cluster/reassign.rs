//! AlterPartitionReassignments (API 45) in cluster mode: each partition's new replicas go to
//! the controller as a `ReassignPartition` command; the group's leader then moves the
//! replicas while the partition keeps serving (tally-controller's `replica_move.rs`). The
//! answer comes once the new assignment is recorded, as in Kafka; the move itself is
//! followed with Metadata or `tally cluster status`.
//!
//! A reassignment is in progress while the assignment differs from the voters the group's
//! leader last reported (ListPartitionReassignments, API 46, lists them). Cancelling one (null
//! replicas) assigns the reported voters again; a leader whose new replicas are still catching
//! up then does not change its voters.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tally_controller::{ControllerCommand, Outcome, TopicRecord};
use tally_protocol::ResponseError;

use super::{ClusterMode, CONTROLLER_TIMEOUT};
use crate::handlers::RequestContext;

pub async fn handle(
    cluster: &ClusterMode,
    _ctx: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = request.allow_replication_factor_change;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let result = reassign(
                cluster,
                &name,
                p.partition_index,
                p.replicas,
                allow_rf_change,
            )
            .await;
            let mut answer =
                ReassignablePartitionResponse::default().with_partition_index(p.partition_index);
            if let Err((e, text)) = result {
                answer.error_code = e.code();
                answer.error_message = Some(StrBytes::from_string(text));
            }
            partitions.push(answer);
        }
        responses.push(
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_responses(responses)
}

async fn reassign(
    cluster: &ClusterMode,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<kafka_protocol::messages::BrokerId>>,
    allow_rf_change: bool,
) -> Result<(), (ResponseError, String)> {
    let Some(replicas) = replicas else {
        return cancel(cluster, topic, partition).await;
    };
    let replicas: Vec<u64> = replicas
        .iter()
        .map(|b| u64::try_from(b.0))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            (
                ResponseError::InvalidReplicaAssignment,
                format!("replicas {replicas:?} name a negative broker id"),
            )
        })?;
    let state = cluster.node.controller().cluster();
    let current = state.topic(topic).and_then(|t| {
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .map(Vec::len)
    });
    let Some(current) = current else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("unknown partition {topic}-{partition}"),
        ));
    };
    if !allow_rf_change && current != replicas.len() {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "{} replicas where the partition has {current}, and the request does not allow \
                 a replication factor change",
                replicas.len()
            ),
        ));
    }
    let command = ControllerCommand::ReassignPartition {
        topic: topic.to_string(),
        partition: partition as u32,
        replicas,
    };
    match cluster.node.submit(&command, CONTROLLER_TIMEOUT).await {
        Ok(Outcome::PartitionReassigned) => Ok(()),
        Ok(Outcome::Refused(r)) => Err((r.error_code(), r.to_string())),
        Ok(other) => Err((
            ResponseError::UnknownServerError,
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

/// One partition's reassignment in progress: (assigned replicas, adding, removing).
type Ongoing = (Vec<u64>, Vec<u64>, Vec<u64>);

fn ongoing(record: &TopicRecord, partition: usize) -> Option<Ongoing> {
    let assigned = record.partitions.get(partition)?;
    let voters = record.voters.get(partition).cloned().flatten()?;
    let adding: Vec<u64> = assigned
        .iter()
        .copied()
        .filter(|r| !voters.contains(r))
        .collect();
    let removing: Vec<u64> = voters
        .iter()
        .copied()
        .filter(|v| !assigned.contains(v))
        .collect();
    (!adding.is_empty() || !removing.is_empty()).then(|| (assigned.clone(), adding, removing))
}

/// Cancels `topic`-`partition`'s reassignment: the voters its leader reported are assigned
/// again, its leader first.
async fn cancel(
    cluster: &ClusterMode,
    topic: &str,
    partition: i32,
) -> Result<(), (ResponseError, String)> {
    let state = cluster.node.controller().cluster();
    let record = state.topic(topic);
    let index = usize::try_from(partition).ok();
    let (Some(record), Some(index)) = (record, index) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("unknown partition {topic}-{partition}"),
        ));
    };
    if ongoing(record, index).is_none() {
        return Err((
            ResponseError::NoReassignmentInProgress,
            format!("no reassignment of {topic}-{partition} is in progress"),
        ));
    }
    let mut voters = record.voters[index].clone().unwrap_or_default();
    let leader = record.leaders.get(index).copied().flatten().map(|(l, _)| l);
    voters.sort_by_key(|v| Some(*v) != leader);
    let command = ControllerCommand::ReassignPartition {
        topic: topic.to_string(),
        partition: partition as u32,
        replicas: voters,
    };
    match cluster.node.submit(&command, CONTROLLER_TIMEOUT).await {
        Ok(Outcome::PartitionReassigned) => Ok(()),
        Ok(Outcome::Refused(r)) => Err((r.error_code(), r.to_string())),
        Ok(other) => Err((
            ResponseError::UnknownServerError,
            format!("unexpected outcome {other:?}"),
        )),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

/// ListPartitionReassignments (API 46): the reassignments in progress, of the partitions
/// asked for (all when none are named).
pub fn list(
    cluster: &ClusterMode,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let state = cluster.node.controller().cluster();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), Some(t.partition_indexes)))
            .collect(),
        None => state.topics().keys().map(|n| (n.clone(), None)).collect(),
    };
    let ids = |v: &[u64]| -> Vec<BrokerId> { v.iter().map(|id| BrokerId(*id as i32)).collect() };
    let mut topics = Vec::new();
    for (name, indexes) in wanted {
        let Some(record) = state.topic(&name) else {
            continue;
        };
        let indexes: Vec<usize> = match indexes {
            Some(list) => list
                .into_iter()
                .filter_map(|i| usize::try_from(i).ok())
                .collect(),
            None => (0..record.partitions.len()).collect(),
        };
        let partitions: Vec<OngoingPartitionReassignment> = indexes
            .into_iter()
            .filter_map(|i| {
                let (replicas, adding, removing) = ongoing(record, i)?;
                Some(
                    OngoingPartitionReassignment::default()
                        .with_partition_index(i as i32)
                        .with_replicas(ids(&replicas))
                        .with_adding_replicas(ids(&adding))
                        .with_removing_replicas(ids(&removing)),
                )
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}

/// AlterPartitionReassignments on a broker that runs alone: there are no other replicas.
pub fn not_a_cluster(
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(ResponseError::InvalidRequest.code())
        .with_error_message(Some(StrBytes::from_static_str(
            "this broker runs alone (controller.quorum.voters is empty): replicas cannot move",
        )))
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
}
