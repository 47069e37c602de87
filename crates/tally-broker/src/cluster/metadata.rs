//! Metadata in cluster mode: every registered broker, the controller's leader, and each
//! partition's replicas, leader, leader epoch (the Raft term) and in-sync replicas as this
//! node sees them. A partition this node does not host has no known leader here
//! (LEADER_NOT_AVAILABLE): with the replication factor equal to the number of nodes, every
//! node hosts every partition.

use std::collections::BTreeMap;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tally_controller::{ClusterState, ControllerCommand, Outcome, TopicRecord};
use tally_protocol::ResponseError;
use uuid::Uuid;

use super::{broker_id, ClusterMode, CONTROLLER_TIMEOUT};
use crate::broker::Broker;
use crate::handlers::{operations_bitfield, RequestContext, CLUSTER_OPERATIONS, TOPIC_OPERATIONS};

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterMode,
    ctx: &RequestContext,
    request: MetadataRequest,
) -> MetadataResponse {
    let version = ctx.api_version;
    let all_topics = match &request.topics {
        None => true,
        Some(list) => version == 0 && list.is_empty(),
    };
    let with_ops = version >= 8 && request.include_topic_authorized_operations;
    let may_create =
        broker.config.auto_create_topics() && (version < 4 || request.allow_auto_topic_creation);
    let state = cluster.node.controller().cluster();
    let mut topics = Vec::new();
    if all_topics {
        for (name, topic) in state.topics() {
            topics.push(describe(cluster, version, with_ops, name, topic));
        }
    } else {
        for requested in request.topics.unwrap_or_default() {
            let name = requested.name.as_ref().map(|n| n.0.to_string());
            let found = match &name {
                Some(n) => state.topic(n).map(|t| (n.clone(), t)),
                None => state
                    .topics()
                    .iter()
                    .find(|(_, t)| t.topic_id == requested.topic_id)
                    .map(|(n, t)| (n.clone(), t)),
            };
            if let Some((name, topic)) = found {
                topics.push(describe(cluster, version, with_ops, &name, topic));
                continue;
            }
            let mut t = MetadataResponseTopic::default().with_name(requested.name.clone());
            if version >= 10 {
                t.topic_id = requested.topic_id;
            }
            let error = match name {
                Some(name) if requested.topic_id == Uuid::nil() && may_create => {
                    auto_create(broker, cluster, &name).await
                }
                Some(_) if requested.topic_id == Uuid::nil() => {
                    ResponseError::UnknownTopicOrPartition
                }
                _ => ResponseError::UnknownTopicId,
            };
            topics.push(t.with_error_code(error.code()));
        }
    }
    let mut response = MetadataResponse::default()
        .with_brokers(brokers(&state))
        .with_controller_id(broker_id(
            cluster.node.controller().leader_id().unwrap_or(u64::MAX),
        ))
        .with_topics(topics);
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(broker.cluster_id()));
    }
    if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = operations_bitfield(CLUSTER_OPERATIONS);
    }
    response
}

pub fn brokers(state: &ClusterState) -> Vec<MetadataResponseBroker> {
    state
        .brokers()
        .values()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(broker_id(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(i32::from(b.port))
        })
        .collect()
}

fn describe(
    cluster: &ClusterMode,
    version: i16,
    with_ops: bool,
    name: &str,
    topic: &TopicRecord,
) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, replicas)| {
            let view = cluster.view(name, index as u32, topic);
            let mut p = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(broker_id(view.leader.unwrap_or(u64::MAX)))
                .with_leader_epoch(view.leader_epoch)
                .with_replica_nodes(replicas.iter().map(|r| broker_id(*r)).collect())
                .with_isr_nodes(view.isr.iter().map(|r| broker_id(*r)).collect());
            if view.leader.is_none() {
                p.error_code = ResponseError::LeaderNotAvailable.code();
            }
            p
        })
        .collect();
    let mut t = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_partitions(partitions)
        .with_is_internal(crate::topic_registry::is_internal(name));
    if version >= 10 {
        t.topic_id = topic.topic_id;
    }
    if with_ops {
        t.topic_authorized_operations = operations_bitfield(TOPIC_OPERATIONS);
    }
    t
}

/// Creates `name` with the broker's defaults. Its leaders are elected after the answer, so
/// the client is told LEADER_NOT_AVAILABLE and asks again, as Kafka answers a topic it has
/// just auto-created.
async fn auto_create(broker: &Broker, cluster: &ClusterMode, name: &str) -> ResponseError {
    if let Err(e) = crate::topic_error::validate_topic_name(name) {
        return e.error_code();
    }
    // Refused here, without a proposal, while too few brokers have registered: every client
    // asks again, and each refused proposal would stay in the metadata log.
    let replication_factor = broker.config.default_replication_factor();
    let registered = cluster.node.controller().read(|s| s.brokers().len());
    if usize::from(replication_factor) > registered {
        return ResponseError::InvalidReplicationFactor;
    }
    let command = ControllerCommand::CreateTopic {
        name: name.to_string(),
        topic_id: cluster.new_topic_id(),
        partitions: broker.config.num_partitions().max(1) as u32,
        replication_factor,
        configs: BTreeMap::new(),
    };
    match cluster.node.submit(&command, CONTROLLER_TIMEOUT).await {
        Ok(Outcome::TopicCreated { .. }) => ResponseError::LeaderNotAvailable,
        Ok(Outcome::Refused(tally_controller::Refusal::TopicAlreadyExists(_))) => {
            ResponseError::LeaderNotAvailable
        }
        Ok(Outcome::Refused(r)) => r.error_code(),
        Ok(_) | Err(_) => ResponseError::LeaderNotAvailable,
    }
}
