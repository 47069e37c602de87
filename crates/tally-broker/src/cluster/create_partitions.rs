//! CreatePartitions (API 37) in cluster mode: a `CreatePartitions` command to the controller,
//! which assigns the new partitions' replicas (with the replication factor of the topic's
//! first partition); each node then opens the replicas assigned to it and the first one forms
//! each new group.

use std::collections::HashMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use tally_controller::{ControllerCommand, Outcome};
use tally_protocol::ResponseError;

use super::{ClusterMode, CONTROLLER_TIMEOUT};
use crate::handlers::{message, RequestContext};

pub async fn handle(
    cluster: &ClusterMode,
    _ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name = t.name.0.to_string();
        let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let outcome = if seen[&name] > 1 {
            Err((
                ResponseError::InvalidRequest,
                format!("topic '{name}' appears more than once"),
            ))
        } else if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
            Err((
                ResponseError::InvalidReplicaAssignment,
                "manual replica assignments are not supported in cluster mode".to_string(),
            ))
        } else if crate::topic_registry::is_internal(&name) {
            // More partitions would move groups to other partitions than hold their state.
            Err((
                ResponseError::InvalidTopicException,
                "an internal topic's partitions cannot be changed".to_string(),
            ))
        } else if t.count <= 0 {
            Err((
                ResponseError::InvalidPartitions,
                format!("{} partitions", t.count),
            ))
        } else if request.validate_only {
            validate(cluster, &name, t.count as u32)
        } else {
            let command = ControllerCommand::CreatePartitions {
                name: name.clone(),
                count: t.count as u32,
            };
            match cluster.node.submit(&command, CONTROLLER_TIMEOUT).await {
                Ok(Outcome::PartitionsCreated { .. }) => Ok(()),
                Ok(Outcome::Refused(r)) => Err((r.error_code(), r.to_string())),
                Ok(other) => Err((
                    ResponseError::UnknownServerError,
                    format!("unexpected outcome {other:?}"),
                )),
                Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
            }
        };
        results.push(match outcome {
            Ok(()) => result,
            Err((e, text)) => result
                .with_error_code(e.code())
                .with_error_message(message(text)),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// `validate_only`: what the controller would refuse, from this node's copy of the state.
fn validate(cluster: &ClusterMode, name: &str, count: u32) -> Result<(), (ResponseError, String)> {
    let state = cluster.node.controller().cluster();
    let Some(topic) = state.topic(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("unknown topic {name}"),
        ));
    };
    let current = topic.partitions.len() as u32;
    if count <= current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("topic {name} has {current} partitions, which is not fewer than {count}"),
        ));
    }
    Ok(())
}
