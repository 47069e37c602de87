//! Transaction administration on the admin client, as `kafka-transactions.sh` offers it: list
//! and describe transactional ids (from their coordinator), and abort a hanging transaction on
//! one partition by writing its ABORT marker directly.

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId, TopicName,
    TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::coordinator::find_coordinator_of;
use crate::error::ClientError;

/// A transactional id as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: String,
    /// Empty, Ongoing, PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort, ...
    pub state: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// When the open transaction began (ms since the epoch), or -1.
    pub start_time_ms: i64,
    pub partitions: Vec<(String, i32)>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Admin {
    /// Every transactional id the cluster's coordinators know: (id, producer id, state).
    pub async fn list_transactions(&self) -> Result<Vec<(String, i64, String)>, ClientError> {
        let connection = self.cluster().any_connection().await?;
        let version = connection.version(ApiKey::ListTransactions, 0, 1)?;
        let r = connection
            .send(
                &ListTransactionsRequest::default().with_duration_filter(-1),
                version,
                self.cluster().config().request_timeout(),
            )
            .await?;
        if r.error_code != 0 {
            return Err(ClientError::broker(r.error_code, Some("ListTransactions")));
        }
        let mut out: Vec<(String, i64, String)> = r
            .transaction_states
            .into_iter()
            .map(|t| {
                (
                    t.transactional_id.0.to_string(),
                    t.producer_id.0,
                    t.transaction_state.to_string(),
                )
            })
            .collect();
        out.sort();
        Ok(out)
    }

    pub async fn describe_transaction(
        &self,
        id: &str,
    ) -> Result<TransactionDescription, ClientError> {
        let coordinator = find_coordinator_of(self.cluster(), id, 1).await?;
        let version = coordinator.version(ApiKey::DescribeTransactions, 0, 0)?;
        let r = coordinator
            .send(
                &DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(s(id))]),
                version,
                self.cluster().config().request_timeout(),
            )
            .await?;
        let t = r
            .transaction_states
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Protocol("empty DescribeTransactions answer".into()))?;
        if t.error_code != 0 {
            return Err(ClientError::broker(t.error_code, Some(id)));
        }
        Ok(TransactionDescription {
            transactional_id: t.transactional_id.0.to_string(),
            state: t.transaction_state.to_string(),
            producer_id: t.producer_id.0,
            producer_epoch: t.producer_epoch,
            timeout_ms: t.transaction_timeout_ms,
            start_time_ms: t.transaction_start_time_ms,
            partitions: t
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.topic.0.to_string();
                    topic.partitions.into_iter().map(move |p| (name.clone(), p))
                })
                .collect(),
        })
    }

    /// Aborts the transaction that began at `start_offset` on a partition (a hanging one):
    /// finds its producer in the partition's producer table and writes an ABORT marker with
    /// that producer's epoch. Returns the producer id.
    pub async fn abort_hanging_transaction(
        &self,
        topic: &str,
        partition: i32,
        start_offset: i64,
    ) -> Result<i64, ClientError> {
        let producers = self
            .describe_producers(topic, Some(vec![partition]))
            .await?;
        let p = producers
            .iter()
            .find(|p| p.current_txn_start_offset == start_offset)
            .ok_or_else(|| {
                ClientError::Config(format!(
                    "no open transaction starts at offset {start_offset} of {topic}-{partition}"
                ))
            })?;
        let leader = self
            .describe_topic(topic)
            .await?
            .partitions
            .iter()
            .find(|i| i.partition == partition)
            .map(|i| i.leader)
            .ok_or_else(|| ClientError::UnknownPartition(topic.to_string(), partition))?;
        let connection = self.cluster().connection(leader).await?;
        let version = connection.version(ApiKey::WriteTxnMarkers, 1, 1)?;
        let marker = WritableTxnMarker::default()
            .with_producer_id(ProducerId(p.producer_id))
            .with_producer_epoch(p.producer_epoch as i16)
            .with_transaction_result(false)
            .with_coordinator_epoch(p.coordinator_epoch.max(0))
            .with_topics(vec![WritableTxnMarkerTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partition_indexes(vec![partition])]);
        let r = connection
            .send(
                &WriteTxnMarkersRequest::default().with_markers(vec![marker]),
                version,
                self.cluster().config().request_timeout(),
            )
            .await?;
        let code = r
            .markers
            .iter()
            .flat_map(|m| m.topics.iter())
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .find(|c| *c != 0)
            .unwrap_or(0);
        if code != 0 {
            return Err(ClientError::broker(code, Some("WriteTxnMarkers")));
        }
        Ok(p.producer_id)
    }
}
