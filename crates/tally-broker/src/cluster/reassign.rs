//! AlterPartitionReassignments (API 45) in cluster mode: each partition's new replicas go to
//! the controller as a `ReassignPartition` command; the group's leader then moves the
//! replicas while the partition keeps serving (tally-controller's `replica_move.rs`). The
//! answer comes once the new assignment is recorded, as in Kafka; the move itself is
//! followed with Metadata or `tally cluster status`.
//!
//! Cancelling a reassignment (null replicas) is not offered: moving back is another
//! reassignment.

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tally_controller::{ControllerCommand, Outcome};
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
        return Err((
            ResponseError::InvalidRequest,
            "cancelling a reassignment is not supported: reassign the partition back".into(),
        ));
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
