//! What the client knows of the cluster: brokers, topics and partition leaders (from
//! Metadata), and one pipelined connection per broker, re-established with backoff when it
//! breaks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Mutex as AsyncMutex;
use tracing::debug;
use uuid::Uuid;

use crate::config::ClientConfig;
use crate::connection::BrokerConnection;
use crate::error::ClientError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub id: Uuid,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Default)]
struct State {
    brokers: BTreeMap<i32, String>,
    topics: BTreeMap<String, TopicInfo>,
    controller: Option<i32>,
    cluster_id: Option<String>,
}

struct NodeConnection {
    connection: Option<Arc<BrokerConnection>>,
    failures: u32,
    retry_at: Option<Instant>,
}

pub struct Cluster {
    config: ClientConfig,
    state: std::sync::RwLock<State>,
    /// Connections by node id; bootstrap connections use negative ids (-1 - index).
    connections: AsyncMutex<BTreeMap<i32, NodeConnection>>,
}

/// Metadata versions this client reads.
const METADATA_MAX: i16 = 12;

impl Cluster {
    /// Connects to a bootstrap broker and learns the cluster's brokers.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>, ClientError> {
        if config.bootstrap.is_empty() {
            return Err(ClientError::Config("no bootstrap address".into()));
        }
        let cluster = Arc::new(Cluster {
            config,
            state: std::sync::RwLock::new(State::default()),
            connections: AsyncMutex::new(BTreeMap::new()),
        });
        cluster.refresh(&[]).await?;
        Ok(cluster)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    fn address(&self, node: i32) -> Option<String> {
        if node < 0 {
            return self.config.bootstrap.get((-1 - node) as usize).cloned();
        }
        self.state.read().expect("lock").brokers.get(&node).cloned()
    }

    /// The connection to `node`, opened (again) if needed, honouring the reconnect backoff.
    pub async fn connection(&self, node: i32) -> Result<Arc<BrokerConnection>, ClientError> {
        let addr = self
            .address(node)
            .ok_or_else(|| ClientError::Protocol(format!("no address known for broker {node}")))?;
        let mut connections = self.connections.lock().await;
        let entry = connections.entry(node).or_insert(NodeConnection {
            connection: None,
            failures: 0,
            retry_at: None,
        });
        if let Some(c) = &entry.connection {
            if !c.is_closed() {
                return Ok(Arc::clone(c));
            }
            entry.connection = None;
        }
        if let Some(at) = entry.retry_at {
            let now = Instant::now();
            if at > now {
                tokio::time::sleep(at - now).await;
            }
        }
        match BrokerConnection::connect(&addr, &self.config).await {
            Ok(c) => {
                let c = Arc::new(c);
                entry.connection = Some(Arc::clone(&c));
                entry.failures = 0;
                entry.retry_at = None;
                Ok(c)
            }
            Err(e) => {
                entry.failures += 1;
                let backoff = (self.config.reconnect_backoff_ms << entry.failures.min(16))
                    .min(self.config.reconnect_backoff_max_ms);
                entry.retry_at = Some(Instant::now() + Duration::from_millis(backoff));
                debug!(node, %addr, error = %e, "connect failed");
                Err(e)
            }
        }
    }

    /// Any working connection: a known broker, else a bootstrap address.
    pub async fn any_connection(&self) -> Result<Arc<BrokerConnection>, ClientError> {
        let mut nodes: Vec<i32> = self
            .state
            .read()
            .expect("lock")
            .brokers
            .keys()
            .copied()
            .collect();
        nodes.sort_unstable();
        nodes.extend((0..self.config.bootstrap.len() as i32).map(|i| -1 - i));
        let mut last = None;
        for node in nodes {
            match self.connection(node).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(ClientError::Network { reason, .. }) => {
                ClientError::Unreachable(format!("{} ({reason})", self.config.bootstrap.join(",")))
            }
            Some(e) => e,
            None => ClientError::Unreachable(self.config.bootstrap.join(",")),
        })
    }

    /// The controller (for admin requests), or any broker.
    pub async fn controller_connection(&self) -> Result<Arc<BrokerConnection>, ClientError> {
        let controller = self.state.read().expect("lock").controller;
        if let Some(node) = controller {
            if let Ok(c) = self.connection(node).await {
                return Ok(c);
            }
        }
        self.any_connection().await
    }

    /// Refreshes brokers and the given topics (none: brokers only). Does not create topics.
    pub async fn refresh(&self, topics: &[String]) -> Result<(), ClientError> {
        self.metadata(topics, false).await.map(|_| ())
    }

    /// Sends Metadata for `topics` and records what comes back.
    pub async fn metadata(
        &self,
        topics: &[String],
        allow_auto_create: bool,
    ) -> Result<MetadataResponse, ClientError> {
        let connection = self.any_connection().await?;
        let version = connection.version(ApiKey::Metadata, 1, METADATA_MAX)?;
        let mut request = MetadataRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                })
                .collect(),
        ));
        if version >= 4 {
            request.allow_auto_topic_creation = allow_auto_create;
        }
        let response = connection
            .send(&request, version, self.config.request_timeout())
            .await?;
        self.apply(&response);
        Ok(response)
    }

    /// Metadata for every topic.
    pub async fn metadata_all(&self) -> Result<MetadataResponse, ClientError> {
        let connection = self.any_connection().await?;
        let version = connection.version(ApiKey::Metadata, 1, METADATA_MAX)?;
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_allow_auto_topic_creation(false);
        let response = connection
            .send(&request, version, self.config.request_timeout())
            .await?;
        self.apply(&response);
        Ok(response)
    }

    fn apply(&self, response: &MetadataResponse) {
        let mut state = self.state.write().expect("lock");
        state.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        state.controller = (response.controller_id.0 >= 0).then_some(response.controller_id.0);
        if let Some(id) = &response.cluster_id {
            state.cluster_id = Some(id.to_string());
        }
        for topic in &response.topics {
            let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            if topic.error_code != 0 {
                state.topics.remove(&name);
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = topic
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                    isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            state.topics.insert(
                name.clone(),
                TopicInfo {
                    name,
                    id: topic.topic_id,
                    partitions,
                },
            );
        }
    }

    pub fn topic(&self, name: &str) -> Option<TopicInfo> {
        self.state.read().expect("lock").topics.get(name).cloned()
    }

    /// How many partitions a known topic has, without copying its metadata (the producer asks
    /// once per record).
    pub fn partition_count(&self, name: &str) -> Option<usize> {
        self.state
            .read()
            .expect("lock")
            .topics
            .get(name)
            .map(|t| t.partitions.len())
    }

    /// The topic's metadata, fetched if not known yet; `auto_create` asks the broker to
    /// create it (as producers do).
    pub async fn topic_or_fetch(
        &self,
        name: &str,
        auto_create: bool,
    ) -> Result<TopicInfo, ClientError> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        let response = self.metadata(&[name.to_string()], auto_create).await?;
        if let Some(t) = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == name))
        {
            if t.error_code != 0 {
                return Err(match t.error_code {
                    3 => ClientError::UnknownTopic(name.to_string()),
                    code => ClientError::broker(code, None),
                });
            }
        }
        self.topic(name)
            .ok_or_else(|| ClientError::UnknownTopic(name.to_string()))
    }

    /// The leader of a partition as last known; `None` when unknown or leaderless.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let state = self.state.read().expect("lock");
        let p = state
            .topics
            .get(topic)?
            .partitions
            .iter()
            .find(|p| p.partition == partition)?;
        (p.leader >= 0).then_some(p.leader)
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.state.read().expect("lock").cluster_id.clone()
    }

    /// Known brokers: node id and address.
    pub fn brokers(&self) -> Vec<(i32, String)> {
        let mut v: Vec<(i32, String)> = self
            .state
            .read()
            .expect("lock")
            .brokers
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        v.sort();
        v
    }
}
