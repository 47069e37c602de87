//! Reaching a group's coordinator and the offset requests sent to it, shared by the group
//! consumer and the admin client. The coordinator gets a connection of its own: a JoinGroup
//! may wait for a whole rebalance, and the broker answers a connection's requests in order, so
//! sharing the fetch connection would stall fetching.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;

use crate::assignor::TopicPartition;
use crate::cluster::Cluster;
use crate::connection::BrokerConnection;
use crate::error::ClientError;

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR: find the
/// coordinator again and retry.
pub fn is_coordinator_error(code: i16) -> bool {
    matches!(code, 14..=16)
}

/// Who is asking: a group member (generation and member id) or, for a group without members,
/// nobody (generation -1, empty member id), as admin tools do.
#[derive(Debug, Clone, Default)]
pub struct Committer {
    pub generation: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl Committer {
    pub fn standalone() -> Committer {
        Committer {
            generation: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// FindCoordinator for a group, retried while the coordinator is not available, then a
/// dedicated connection to it.
pub async fn find_coordinator(
    cluster: &Cluster,
    group_id: &str,
) -> Result<Arc<BrokerConnection>, ClientError> {
    find_coordinator_of(cluster, group_id, 0).await
}

/// FindCoordinator for `key` of `key_type` (0 a group, 1 a transactional id).
pub async fn find_coordinator_of(
    cluster: &Cluster,
    key: &str,
    key_type: i8,
) -> Result<Arc<BrokerConnection>, ClientError> {
    let group_id = key;
    let config = cluster.config();
    let deadline = tokio::time::Instant::now() + config.request_timeout();
    loop {
        let connection = cluster.any_connection().await?;
        let version = connection.version(ApiKey::FindCoordinator, 0, 4)?;
        let mut request = FindCoordinatorRequest::default();
        if key_type != 0 && version < 1 {
            return Err(ClientError::Unsupported(
                "FindCoordinator for transactions".into(),
            ));
        }
        request.key_type = key_type;
        if version >= 4 {
            request.coordinator_keys = vec![str(group_id)];
        } else {
            request.key = str(group_id);
        }
        let response = connection
            .send(&request, version, config.request_timeout())
            .await?;
        let (code, message, host, port) = if version >= 4 {
            let c = response
                .coordinators
                .first()
                .ok_or_else(|| ClientError::Protocol("empty FindCoordinator answer".into()))?;
            (
                c.error_code,
                c.error_message.clone(),
                c.host.clone(),
                c.port,
            )
        } else {
            (
                response.error_code,
                response.error_message.clone(),
                response.host.clone(),
                response.port,
            )
        };
        if code == 0 {
            let addr = format!("{host}:{port}");
            let connection = BrokerConnection::connect(&addr, config).await?;
            return Ok(Arc::new(connection));
        }
        if !is_coordinator_error(code) || tokio::time::Instant::now() >= deadline {
            return Err(ClientError::broker(code, message.as_deref()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// OffsetCommit; the first per-partition error, if any, is the answer.
pub async fn commit_offsets(
    connection: &BrokerConnection,
    group_id: &str,
    committer: &Committer,
    offsets: &[(String, i32, i64)],
    timeout: Duration,
) -> Result<(), ClientError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let version = connection.version(ApiKey::OffsetCommit, 2, 8)?;
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (topic, partition, offset) in offsets {
        topics.entry(topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(StrBytes::default())),
        );
    }
    let mut request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str(group_id)))
        .with_generation_id_or_member_epoch(committer.generation)
        .with_member_id(str(&committer.member_id))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(TopicName(str(t)))
                        .with_partitions(ps)
                })
                .collect(),
        );
    if version >= 7 {
        request.group_instance_id = committer.group_instance_id.as_deref().map(str);
    }
    if version <= 4 {
        request.retention_time_ms = -1;
    }
    let response = connection.send(&request, version, timeout).await?;
    for topic in &response.topics {
        for p in &topic.partitions {
            if p.error_code != 0 {
                return Err(ClientError::broker(
                    p.error_code,
                    Some(&format!(
                        "committing {}-{}",
                        topic.name.0.as_str(),
                        p.partition_index
                    )),
                ));
            }
        }
    }
    Ok(())
}

/// OffsetFetch with RequireStable: the committed offset of each partition that has one;
/// `None` asks for every partition the group committed.
pub async fn fetch_offsets(
    connection: &BrokerConnection,
    group_id: &str,
    partitions: Option<&[TopicPartition]>,
    timeout: Duration,
) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
    // With RequireStable, offsets a transaction is about to commit or abort are not answered
    // until its marker lands (KIP-447): UNSTABLE_OFFSET_COMMIT, retried as Java's consumer does.
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match fetch_offsets_once(connection, group_id, partitions, timeout).await {
            Err(ClientError::Broker(ResponseError::UnstableOffsetCommit, _))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

async fn fetch_offsets_once(
    connection: &BrokerConnection,
    group_id: &str,
    partitions: Option<&[TopicPartition]>,
    timeout: Duration,
) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
    let version = connection.version(ApiKey::OffsetFetch, 1, 7)?;
    let topics = partitions.map(|tps| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (t, p) in tps {
            by_topic.entry(t).or_default().push(*p);
        }
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(str(t)))
                    .with_partition_indexes(ps)
            })
            .collect()
    });
    if topics.is_none() && version < 2 {
        return Err(ClientError::Unsupported(
            "OffsetFetch of all partitions (v2+)".into(),
        ));
    }
    let mut request = OffsetFetchRequest::default()
        .with_group_id(GroupId(str(group_id)))
        .with_topics(topics);
    if version >= 7 {
        request.require_stable = true;
    }
    let response = connection.send(&request, version, timeout).await?;
    if response.error_code != 0 {
        return Err(ClientError::broker(
            response.error_code,
            Some("OffsetFetch"),
        ));
    }
    let mut out = BTreeMap::new();
    for topic in &response.topics {
        for p in &topic.partitions {
            match p.error_code {
                0 if p.committed_offset >= 0 => {
                    out.insert(
                        (topic.name.0.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
                0 => {}
                code if code == ResponseError::UnknownTopicOrPartition.code() => {}
                code => return Err(ClientError::broker(code, Some("OffsetFetch"))),
            }
        }
    }
    Ok(out)
}
