//! DescribeConfigs for topics (resource type 2) and this broker (4), with sources, synonyms
//! and documentation as Kafka reports them.

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;
use crate::broker_config::ConfigSource;
use crate::config_def::{ConfigDef, ConfigType, BROKER_CONFIGS, TOPIC_CONFIGS};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

struct Entry {
    def: &'static ConfigDef,
    value: String,
    source: ConfigSource,
    read_only: bool,
    synonyms: Vec<(&'static str, String, ConfigSource)>,
}

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let version = ctx.api_version;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let mut result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let name = resource.resource_name.to_string();
            let entries: Vec<Entry> = match resource.resource_type {
                TOPIC => match topic_configs(broker, &name) {
                    None => {
                        result.error_code = ResponseError::UnknownTopicOrPartition.code();
                        result.error_message =
                            super::message(format!("topic '{name}' does not exist"));
                        return result;
                    }
                    Some(configs) => TOPIC_CONFIGS
                        .iter()
                        .map(|(def, broker_key)| {
                            let (value, source) = broker
                                .config
                                .topic_value(def.name, &configs)
                                .expect("topic key");
                            let mut synonyms = Vec::new();
                            if source == ConfigSource::DynamicTopic {
                                synonyms.push((def.name, value.clone(), source));
                            }
                            let (bv, bs) = broker.config.get(broker_key);
                            synonyms.push((*broker_key, bv, bs));
                            Entry {
                                def,
                                value,
                                source,
                                read_only: false,
                                synonyms,
                            }
                        })
                        .collect(),
                },
                BROKER => {
                    if !name.is_empty() && name != broker.node_id.to_string() {
                        result.error_code = ResponseError::InvalidRequest.code();
                        result.error_message = super::message(format!(
                            "this is broker {}, not '{name}'",
                            broker.node_id
                        ));
                        return result;
                    }
                    BROKER_CONFIGS
                        .iter()
                        .map(|def| {
                            let (value, source) = broker.config.get(def.name);
                            Entry {
                                def,
                                value,
                                source,
                                read_only: true,
                                synonyms: vec![(def.name, String::new(), source)],
                            }
                        })
                        .map(|mut e| {
                            e.synonyms[0].1 = e.value.clone();
                            e
                        })
                        .collect()
                }
                other => {
                    result.error_code = ResponseError::InvalidRequest.code();
                    result.error_message =
                        super::message(format!("resource type {other} is not supported"));
                    return result;
                }
            };
            // Null or empty asks for every key, as in Kafka.
            let wanted = |n: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| k.as_str() == n))
            };
            result.configs = entries
                .into_iter()
                .filter(|e| wanted(e.def.name))
                .map(|e| {
                    // A password is never shown, as in Kafka: sensitive, and no value.
                    let secret = e.def.ty == ConfigType::Password;
                    let shown = |v: String| (!secret).then(|| StrBytes::from_string(v));
                    let mut c = DescribeConfigsResourceResult::default()
                        .with_name(StrBytes::from_static_str(e.def.name))
                        .with_value(shown(e.value))
                        .with_is_sensitive(secret)
                        .with_read_only(e.read_only)
                        .with_config_source(e.source as i8);
                    if request.include_synonyms {
                        c.synonyms = e
                            .synonyms
                            .into_iter()
                            .map(|(n, v, s)| {
                                DescribeConfigsSynonym::default()
                                    .with_name(StrBytes::from_static_str(n))
                                    .with_value(shown(v))
                                    .with_source(s as i8)
                            })
                            .collect();
                    }
                    if version >= 3 {
                        c.config_type = e.def.ty as i8;
                        if request.include_documentation {
                            c.documentation = Some(StrBytes::from_static_str(e.def.doc));
                        }
                    }
                    c
                })
                .collect();
            result
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A topic's own config overrides: from the registry, or in cluster mode from the
/// controller's metadata.
fn topic_configs(
    broker: &Broker,
    name: &str,
) -> Option<std::collections::BTreeMap<String, String>> {
    match &broker.cluster {
        Some(cluster) => cluster
            .node
            .controller()
            .read(|s| s.topic(name).map(|t| t.configs.clone())),
        None => broker.topics.get(name).map(|t| t.configs.clone()),
    }
}
