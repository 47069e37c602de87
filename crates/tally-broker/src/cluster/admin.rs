//! CreateTopics, DeleteTopics and idempotent InitProducerId in cluster mode: each is a
//! command to the controller group, proposed through its leader wherever it is.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tally_controller::{ControllerCommand, Outcome};
use tally_protocol::ResponseError;
use uuid::Uuid;

use super::{ClusterMode, CONTROLLER_TIMEOUT};
use crate::broker::Broker;
use crate::handlers::{message, RequestContext};
use crate::topic_registry::TopicRegistry;

/// What a refused or failed command is answered with.
fn outcome_error(
    outcome: Result<Outcome, tally_controller::ControllerError>,
) -> Result<Outcome, (ResponseError, String)> {
    match outcome {
        Ok(Outcome::Refused(r)) => Err((r.error_code(), r.to_string())),
        Ok(o) => Ok(o),
        Err(e) => Err((ResponseError::RequestTimedOut, e.to_string())),
    }
}

pub async fn create_topics(
    broker: &Broker,
    cluster: &ClusterMode,
    ctx: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let version = ctx.api_version;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let name = t.name.0.to_string();
        let mut result = CreatableTopicResult::default().with_name(t.name.clone());
        let checked = check_new_topic(broker, &name, seen[&name], &t);
        let (partitions, replication_factor, configs) = match checked {
            Ok(ok) => ok,
            Err((e, text)) => {
                results.push(failed(version, result, e, text));
                continue;
            }
        };
        if version >= 5 {
            result.num_partitions = partitions as i32;
            result.replication_factor = replication_factor as i16;
        }
        if request.validate_only {
            results.push(result);
            continue;
        }
        let command = ControllerCommand::CreateTopic {
            name: name.clone(),
            topic_id: cluster.new_topic_id(),
            partitions,
            replication_factor,
            configs,
        };
        match outcome_error(cluster.node.submit(&command, CONTROLLER_TIMEOUT).await) {
            Ok(Outcome::TopicCreated { topic_id, .. }) => {
                if version >= 7 {
                    result.topic_id = topic_id;
                }
                results.push(result);
            }
            Ok(other) => results.push(failed(
                version,
                result,
                ResponseError::UnknownServerError,
                format!("unexpected outcome {other:?}"),
            )),
            Err((e, text)) => results.push(failed(version, result, e, text)),
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

type NewTopic = (u32, u16, BTreeMap<String, String>);

fn check_new_topic(
    broker: &Broker,
    name: &str,
    times_named: usize,
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<NewTopic, (ResponseError, String)> {
    if times_named > 1 {
        return Err((
            ResponseError::InvalidRequest,
            format!("topic '{name}' appears more than once in the request"),
        ));
    }
    crate::topic_error::validate_topic_name(name).map_err(|e| (e.error_code(), e.to_string()))?;
    if crate::topic_registry::is_internal(name) {
        return Err((
            ResponseError::InvalidTopicException,
            "an internal topic's name".into(),
        ));
    }
    if !t.assignments.is_empty() {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "manual replica assignments are not supported in cluster mode".into(),
        ));
    }
    let partitions = match t.num_partitions {
        -1 => broker.config.num_partitions(),
        n if n > 0 => n,
        n => {
            return Err((
                ResponseError::InvalidPartitions,
                format!("number of partitions must be larger than 0, not {n}"),
            ))
        }
    };
    let replication_factor = match t.replication_factor {
        -1 => broker.config.default_replication_factor(),
        rf if rf > 0 => rf as u16,
        rf => {
            return Err((
                ResponseError::InvalidReplicationFactor,
                format!("replication factor must be larger than 0, not {rf}"),
            ))
        }
    };
    let configs = TopicRegistry::check_configs(
        &t.configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect::<Vec<_>>(),
    )
    .map_err(|e| (e.error_code(), e.to_string()))?;
    if configs.get("idempotency.key").is_some_and(|v| v != "none") {
        // The filter runs in the single broker's writer only (see the README).
        return Err((
            ResponseError::InvalidConfig,
            "idempotency.key is not supported in cluster mode yet".into(),
        ));
    }
    if configs
        .get("cleanup.policy")
        .is_some_and(|p| p.split(',').any(|p| p.trim() == "compact"))
    {
        // Replicas apply retention each on its own; compaction would rewrite the log under
        // Raft's entries.
        return Err((
            ResponseError::InvalidConfig,
            "cleanup.policy=compact is not supported in cluster mode yet".into(),
        ));
    }
    Ok((partitions as u32, replication_factor, configs))
}

fn failed(
    version: i16,
    mut result: CreatableTopicResult,
    e: ResponseError,
    text: String,
) -> CreatableTopicResult {
    result.error_code = e.code();
    if version >= 1 {
        result.error_message = message(text);
    }
    result
}

pub async fn delete_topics(
    cluster: &ClusterMode,
    ctx: &RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let version = ctx.api_version;
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let mut result = DeletableTopicResult::default().with_name(name.clone());
        if version >= 6 {
            result.topic_id = id;
        }
        let fail = |mut result: DeletableTopicResult, e: ResponseError, text: String| {
            result.error_code = e.code();
            if version >= 5 {
                result.error_message = message(text);
            }
            result
        };
        let state = cluster.node.controller().cluster();
        let topic_name = match (&name, id.is_nil()) {
            (Some(n), true) => n.0.to_string(),
            (None, false) => match state.topics().iter().find(|(_, t)| t.topic_id == id) {
                Some((n, _)) => {
                    result.name = Some(TopicName(StrBytes::from_string(n.clone())));
                    n.clone()
                }
                None => {
                    responses.push(fail(
                        result,
                        ResponseError::UnknownTopicId,
                        format!("no topic has id {id}"),
                    ));
                    continue;
                }
            },
            _ => {
                responses.push(fail(
                    result,
                    ResponseError::InvalidRequest,
                    "give either a topic name or a topic id".into(),
                ));
                continue;
            }
        };
        if version >= 6 {
            result.topic_id = state.topic(&topic_name).map_or(id, |t| t.topic_id);
        }
        if crate::topic_registry::is_internal(&topic_name) {
            responses.push(fail(
                result,
                ResponseError::InvalidTopicException,
                "internal topics cannot be deleted".into(),
            ));
            continue;
        }
        let command = ControllerCommand::DeleteTopic { name: topic_name };
        match outcome_error(cluster.node.submit(&command, CONTROLLER_TIMEOUT).await) {
            Ok(_) => responses.push(result),
            Err((e, text)) => responses.push(fail(result, e, text)),
        }
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// An idempotent producer's id, from this node's block of the cluster's ids. Transactional
/// producers are refused: transactions do not run in cluster mode yet.
pub async fn init_producer_id(
    cluster: &ClusterMode,
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if ctx.api_version >= 3 && ((request.producer_id.0 == -1) != (request.producer_epoch == -1)) {
        return fail(ResponseError::InvalidRequest);
    }
    if request.transactional_id.is_some() {
        return fail(ResponseError::UnsupportedForMessageFormat);
    }
    match cluster.next_producer_id().await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => fail(e),
    }
}
