//! Topic administration and the producer table: create, delete, list and describe topics, add
//! partitions, describe producers (DescribeProducers, API 61), read offsets and configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::PartitionResponse;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeProducersRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::cluster::{Cluster, PartitionInfo, TopicInfo};
use crate::config::ClientConfig;
use crate::error::ClientError;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's `num.partitions`.
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }
}

/// A partition's idempotency-key index (topic config `idempotency.key`), from Tally's
/// DescribeProducers extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndexDescription {
    pub partition: i32,
    /// Keys remembered now.
    pub keys: u64,
    /// Records not stored because their key was, since the broker started.
    pub dropped_records: u64,
    /// Keys forgotten at `idempotency.window.max.keys`, since the broker started.
    pub evicted_keys: u64,
}

/// One producer in a partition's producer table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDescription {
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i32,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    pub current_txn_start_offset: i64,
    /// Offset of the producer's last batch, from Tally's tagged-field extension; `None` from
    /// brokers that do not send it.
    pub last_offset: Option<i64>,
}

pub struct Admin {
    cluster: Arc<Cluster>,
}

impl Admin {
    pub async fn new(config: ClientConfig) -> Result<Admin, ClientError> {
        Ok(Admin {
            cluster: Cluster::connect(config).await?,
        })
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub async fn create_topic(&self, topic: NewTopic) -> Result<Uuid, ClientError> {
        let connection = self.cluster.controller_connection().await?;
        let version = connection.version(ApiKey::CreateTopics, 2, 7)?;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(self.cluster.config().request_timeout_ms as i32)
            .with_topics(vec![CreatableTopic::default()
                .with_name(name(&topic.name))
                .with_num_partitions(topic.partitions)
                .with_replication_factor(topic.replication_factor)
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                        })
                        .collect(),
                )]);
        let response = connection
            .send(&request, version, self.cluster.config().request_timeout())
            .await?;
        let result = response
            .topics
            .first()
            .ok_or_else(|| ClientError::Protocol("empty CreateTopics answer".into()))?;
        if result.error_code != 0 {
            return Err(ClientError::broker(
                result.error_code,
                result.error_message.as_deref(),
            ));
        }
        Ok(result.topic_id)
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<(), ClientError> {
        let connection = self.cluster.controller_connection().await?;
        let version = connection.version(ApiKey::DeleteTopics, 1, 5)?;
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(self.cluster.config().request_timeout_ms as i32)
            .with_topic_names(vec![name(topic)]);
        let response = connection
            .send(&request, version, self.cluster.config().request_timeout())
            .await?;
        let result = response
            .responses
            .first()
            .ok_or_else(|| ClientError::Protocol("empty DeleteTopics answer".into()))?;
        match result.error_code {
            0 => Ok(()),
            3 => Err(ClientError::UnknownTopic(topic.to_string())),
            code => Err(ClientError::broker(code, result.error_message.as_deref())),
        }
    }

    /// Every topic, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let response = self.cluster.metadata_all().await?;
        let mut topics: Vec<TopicInfo> = response
            .topics
            .iter()
            .filter_map(|t| t.name.as_ref())
            .filter_map(|n| self.cluster.topic(n.0.as_str()))
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    pub async fn describe_topic(&self, topic: &str) -> Result<TopicInfo, ClientError> {
        let response = self.cluster.metadata(&[topic.to_string()], false).await?;
        if let Some(t) = response.topics.first() {
            match t.error_code {
                0 => {}
                3 => return Err(ClientError::UnknownTopic(topic.to_string())),
                code => return Err(ClientError::broker(code, None)),
            }
        }
        self.cluster
            .topic(topic)
            .ok_or_else(|| ClientError::UnknownTopic(topic.to_string()))
    }

    /// Grows `topic` to `total` partitions.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<(), ClientError> {
        let connection = self.cluster.controller_connection().await?;
        let version = connection.version(ApiKey::CreatePartitions, 0, 3)?;
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(self.cluster.config().request_timeout_ms as i32)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(name(topic))
                .with_count(total)
                .with_assignments(None)]);
        let response = connection
            .send(&request, version, self.cluster.config().request_timeout())
            .await?;
        let result = response
            .results
            .first()
            .ok_or_else(|| ClientError::Protocol("empty CreatePartitions answer".into()))?;
        match result.error_code {
            0 => Ok(()),
            3 => Err(ClientError::UnknownTopic(topic.to_string())),
            code => Err(ClientError::broker(code, result.error_message.as_deref())),
        }
    }

    /// The idempotency-key index of each partition of `topic` that has one.
    pub async fn describe_idempotency_keys(
        &self,
        topic: &str,
    ) -> Result<Vec<KeyIndexDescription>, ClientError> {
        let mut out = Vec::new();
        for p in self.describe_producer_partitions(topic, None).await? {
            let Some(b) = p
                .unknown_tagged_fields
                .get(&tally_protocol::DESCRIBE_PRODUCERS_KEY_INDEX_TAG)
            else {
                continue;
            };
            let n = |i: usize| {
                b.get(i * 8..i * 8 + 8)
                    .and_then(|s| <[u8; 8]>::try_from(s).ok())
                    .map_or(0, u64::from_be_bytes)
            };
            out.push(KeyIndexDescription {
                partition: p.partition_index,
                keys: n(0),
                dropped_records: n(1),
                evicted_keys: n(2),
            });
        }
        out.sort_by_key(|d| d.partition);
        Ok(out)
    }

    /// The producer table of each partition of `topic` (all partitions when `None`).
    pub async fn describe_producers(
        &self,
        topic: &str,
        partitions: Option<Vec<i32>>,
    ) -> Result<Vec<ProducerDescription>, ClientError> {
        let mut out = Vec::new();
        for p in self.describe_producer_partitions(topic, partitions).await? {
            out.extend(p.active_producers.iter().map(|s| {
                ProducerDescription {
                    partition: p.partition_index,
                    producer_id: s.producer_id.0,
                    producer_epoch: s.producer_epoch,
                    last_sequence: s.last_sequence,
                    last_timestamp: s.last_timestamp,
                    coordinator_epoch: s.coordinator_epoch,
                    current_txn_start_offset: s.current_txn_start_offset,
                    last_offset: s
                        .unknown_tagged_fields
                        .get(&tally_protocol::DESCRIBE_PRODUCERS_LAST_OFFSET_TAG)
                        .and_then(|b| <[u8; 8]>::try_from(&b[..]).ok())
                        .map(i64::from_be_bytes),
                }
            }));
        }
        out.sort_by_key(|d| (d.partition, d.producer_id));
        Ok(out)
    }

    /// DescribeProducers for the partitions of `topic`, each asked of its leader.
    async fn describe_producer_partitions(
        &self,
        topic: &str,
        partitions: Option<Vec<i32>>,
    ) -> Result<Vec<PartitionResponse>, ClientError> {
        let info = self.describe_topic(topic).await?;
        let wanted: Vec<&PartitionInfo> = info
            .partitions
            .iter()
            .filter(|p| partitions.as_ref().is_none_or(|w| w.contains(&p.partition)))
            .collect();
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in wanted {
            by_leader.entry(p.leader).or_default().push(p.partition);
        }
        let mut out = Vec::new();
        for (leader, indexes) in by_leader {
            let connection = self.cluster.connection(leader).await?;
            let version = connection.version(ApiKey::DescribeProducers, 0, 0)?;
            let request =
                DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                    .with_name(name(topic))
                    .with_partition_indexes(indexes)]);
            let response = connection
                .send(&request, version, self.cluster.config().request_timeout())
                .await?;
            for t in response.topics {
                for p in t.partitions {
                    if p.error_code != 0 {
                        return Err(ClientError::broker(
                            p.error_code,
                            p.error_message.as_deref(),
                        ));
                    }
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// ListOffsets: -1 latest, -2 earliest, or a timestamp.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        crate::consumer::list_offset(&self.cluster, topic, partition, timestamp, 0).await
    }

    /// The topic's configs: (name, value, is_default).
    pub async fn describe_topic_configs(
        &self,
        topic: &str,
    ) -> Result<Vec<(String, String, bool)>, ClientError> {
        describe_topic_configs(&self.cluster, topic).await
    }
}

/// The topic's configs: (name, value, is_default).
pub(crate) async fn describe_topic_configs(
    cluster: &Cluster,
    topic: &str,
) -> Result<Vec<(String, String, bool)>, ClientError> {
    let connection = cluster.any_connection().await?;
    let version = connection.version(ApiKey::DescribeConfigs, 1, 4)?;
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configuration_keys(None)]);
    let response = connection
        .send(&request, version, cluster.config().request_timeout())
        .await?;
    let result = response
        .results
        .first()
        .ok_or_else(|| ClientError::Protocol("empty DescribeConfigs answer".into()))?;
    match result.error_code {
        0 => {}
        3 => return Err(ClientError::UnknownTopic(topic.to_string())),
        code => return Err(ClientError::broker(code, result.error_message.as_deref())),
    }
    Ok(result
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                c.config_source == 5,
            )
        })
        .collect())
}
