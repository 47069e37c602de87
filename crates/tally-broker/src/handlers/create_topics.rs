//! CreateTopics, with Kafka's checks: name, partitions, replication factor (one broker: 1),
//! manual assignments, and topic configs (unknown or unsupported ones are INVALID_CONFIG).

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;
use crate::config_def::TOPIC_CONFIGS;
use crate::topic_error::TopicError;
use crate::topic_registry::TopicRegistry;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let version = ctx.api_version;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let mut result = CreatableTopicResult::default().with_name(t.name.clone());
            let fail = |mut result: CreatableTopicResult, e: ResponseError, text: String| {
                result.error_code = e.code();
                if version >= 1 {
                    result.error_message = super::message(text);
                }
                result
            };
            if seen[&name] > 1 {
                return fail(result, ResponseError::InvalidRequest, format!("topic '{name}' appears more than once in the request"));
            }
            let outcome = (|| -> Result<(i32, BTreeMap<String, String>), TopicError> {
                let num_partitions = if t.assignments.is_empty() {
                    match t.num_partitions {
                        -1 => broker.config.num_partitions(),
                        n => n,
                    }
                } else {
                    if t.num_partitions != -1 || t.replication_factor != -1 {
                        return Err(TopicError::InvalidReplicaAssignment(
                            "numPartitions and replicationFactor must be -1 when replica assignments are given".into(),
                        ));
                    }
                    let mut indexes: Vec<i32> = t.assignments.iter().map(|a| a.partition_index).collect();
                    indexes.sort_unstable();
                    if indexes.iter().enumerate().any(|(i, p)| *p != i as i32) {
                        return Err(TopicError::InvalidReplicaAssignment(
                            "replica assignments must cover partitions 0..n-1 exactly once".into(),
                        ));
                    }
                    if t.assignments.iter().any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != broker.node_id) {
                        return Err(TopicError::InvalidReplicaAssignment(format!(
                            "every partition must be assigned to exactly this broker ({})",
                            broker.node_id
                        )));
                    }
                    indexes.len() as i32
                };
                match t.replication_factor {
                    -1 | 1 => {}
                    rf if rf > 1 => {
                        return Err(TopicError::InvalidReplicationFactor(format!(
                            "Replication factor: {rf} larger than available brokers: 1."
                        )))
                    }
                    rf => {
                        return Err(TopicError::InvalidReplicationFactor(format!(
                            "replication factor must be larger than 0, not {rf}"
                        )))
                    }
                }
                let configs = TopicRegistry::check_configs(
                    &t.configs
                        .iter()
                        .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                        .collect::<Vec<_>>(),
                )?;
                Ok((num_partitions, configs))
            })();
            let (num_partitions, configs) = match outcome {
                Ok(ok) => ok,
                Err(e) => return fail(result, e.error_code(), e.to_string()),
            };
            match broker
                .topics
                .create(&name, num_partitions, configs, request.validate_only, broker.clock.now_ms())
            {
                Ok(topic) => {
                    if version >= 7 && !request.validate_only {
                        result.topic_id = topic.id;
                    }
                    if version >= 5 {
                        result.num_partitions = num_partitions;
                        result.replication_factor = 1;
                        result.configs = Some(
                            TOPIC_CONFIGS
                                .iter()
                                .filter_map(|(def, _)| {
                                    let (value, source) = broker.config.topic_value(def.name, &topic.configs)?;
                                    Some(
                                        CreatableTopicConfigs::default()
                                            .with_name(StrBytes::from_static_str(def.name))
                                            .with_value(Some(StrBytes::from_string(value)))
                                            .with_config_source(source as i8),
                                    )
                                })
                                .collect(),
                        );
                    }
                    result
                }
                Err(e) => fail(result, e.error_code(), e.to_string()),
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}
