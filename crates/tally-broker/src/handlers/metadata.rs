//! Metadata: this broker, the cluster id, and the requested topics (all of them when the
//! request says so), auto-creating unknown topics when allowed.

use std::collections::BTreeMap;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;
use uuid::Uuid;

use super::{
    operations_bitfield, RequestContext, CLUSTER_OPERATIONS, LEADER_EPOCH, TOPIC_OPERATIONS,
};
use crate::broker::Broker;
use crate::topic_error::TopicError;
use crate::topic_registry::Topic;

/// Whether answering may create a topic (auto-creation of a named topic that does not exist):
/// such a request creates directories and files, so it is handled off the async workers.
pub fn may_create_topics(broker: &Broker, version: i16, request: &MetadataRequest) -> bool {
    broker.config.auto_create_topics()
        && (version < 4 || request.allow_auto_topic_creation)
        && request.topics.iter().flatten().any(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| broker.topics.get(n.0.as_str()).is_none())
        })
}

pub fn handle(broker: &Broker, ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let version = ctx.api_version;
    let node = BrokerId(broker.node_id);
    let all_topics = match &request.topics {
        None => true,
        // v0 has no null: an empty list means all topics.
        Some(list) => version == 0 && list.is_empty(),
    };
    let with_ops = version >= 8 && request.include_topic_authorized_operations;
    let describe = |topic: &Topic| {
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                MetadataResponsePartition::default()
                    .with_partition_index(p.index)
                    .with_leader_id(node)
                    .with_leader_epoch(LEADER_EPOCH)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
            })
            .collect();
        let mut t = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
            .with_partitions(partitions);
        if version >= 10 {
            t.topic_id = topic.id;
        }
        t.is_internal = crate::topic_registry::is_internal(&topic.name);
        if with_ops {
            t.topic_authorized_operations = operations_bitfield(TOPIC_OPERATIONS);
        }
        t
    };
    let topics = if all_topics {
        broker.topics.list().iter().map(|t| describe(t)).collect()
    } else {
        let may_create = broker.config.auto_create_topics()
            && (version < 4 || request.allow_auto_topic_creation);
        request
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|requested| {
                let name = requested.name.as_ref().map(|n| n.0.to_string());
                let found = match &name {
                    Some(n) => broker.topics.get(n),
                    None => broker.topics.get_by_id(requested.topic_id),
                };
                if let Some(topic) = found {
                    return describe(&topic);
                }
                let error_topic = |e: ResponseError| {
                    let mut t = MetadataResponseTopic::default()
                        .with_error_code(e.code())
                        .with_name(requested.name.clone());
                    if version >= 10 {
                        t.topic_id = requested.topic_id;
                    }
                    t
                };
                let Some(name) = name else {
                    return error_topic(ResponseError::UnknownTopicId);
                };
                if requested.topic_id != Uuid::nil() {
                    return error_topic(ResponseError::UnknownTopicId);
                }
                if !may_create {
                    return error_topic(ResponseError::UnknownTopicOrPartition);
                }
                match broker.topics.create(
                    &name,
                    broker.config.num_partitions(),
                    BTreeMap::new(),
                    false,
                    broker.clock.now_ms(),
                ) {
                    Ok(topic) => describe(&topic),
                    // Created meanwhile by another connection.
                    Err(TopicError::AlreadyExists(_)) => broker
                        .topics
                        .get(&name)
                        .map(|t| describe(&t))
                        .unwrap_or_else(|| error_topic(ResponseError::LeaderNotAvailable)),
                    Err(e) => error_topic(e.error_code()),
                }
            })
            .collect()
    };
    let mut response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(StrBytes::from_string(
                broker.advertised_for(&ctx.listener).host.clone(),
            ))
            .with_port(i32::from(broker.advertised_for(&ctx.listener).port))])
        .with_controller_id(node)
        .with_topics(topics);
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(broker.cluster_id.clone()));
    }
    if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = operations_bitfield(CLUSTER_OPERATIONS);
    }
    response
}
