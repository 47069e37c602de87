//! The transactional side of the producer (Java's `TransactionManager`, reduced): the
//! coordinator connection, InitProducerId with the transactional id, the partitions and
//! offsets added to the open transaction, and EndTxn. The sender knows only that its batches
//! are transactional and carry the id.
//!
//! Against a broker that serves transaction version 2 (KIP-890 part 2, as Java's client since
//! 4.0) the producer sends neither AddPartitionsToTxn nor AddOffsetsToTxn: Produce v12 and
//! TxnOffsetCommit v5 add their partition to the transaction. Every EndTxn then bumps the
//! epoch; the producer continues with the id and epoch EndTxn returns, sequences from 0.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;
use tokio::sync::Mutex as AsyncMutex;

use crate::cluster::Cluster;
use crate::connection::BrokerConnection;
use crate::coordinator::{find_coordinator, find_coordinator_of, Committer};
use crate::error::{ClientError, TransactionError};

/// What the open transaction holds.
#[derive(Debug, Default)]
pub(crate) struct Phase {
    pub in_txn: bool,
    pub partitions: BTreeSet<(String, i32)>,
    /// Offsets were added (AddOffsetsToTxn), so EndTxn has something to end.
    pub offsets: bool,
    pub failed: Option<TransactionError>,
    /// The producer's count of undelivered records when the transaction began.
    pub failed_records_at_begin: u64,
}

pub(crate) struct Transactions {
    pub id: String,
    timeout_ms: i32,
    coordinator: AsyncMutex<Option<Arc<BrokerConnection>>>,
    pub phase: std::sync::Mutex<Phase>,
    /// Transaction version 2, decided when the producer initialises (as Java's client does
    /// at `initTransactions`).
    tv2: AtomicBool,
}

fn str(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Coordinator answers worth retrying after a pause (and a new coordinator lookup).
fn retriable(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Broker(
            ResponseError::ConcurrentTransactions
                | ResponseError::CoordinatorLoadInProgress
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::NotCoordinator,
            _
        )
    ) || e.is_retriable()
}

impl Transactions {
    pub fn new(id: String, timeout_ms: i32) -> Transactions {
        Transactions {
            id,
            timeout_ms,
            coordinator: AsyncMutex::new(None),
            phase: std::sync::Mutex::new(Phase::default()),
            tv2: AtomicBool::new(false),
        }
    }

    async fn coordinator(&self, cluster: &Cluster) -> Result<Arc<BrokerConnection>, ClientError> {
        let mut held = self.coordinator.lock().await;
        if let Some(c) = held.as_ref() {
            return Ok(Arc::clone(c));
        }
        let c = find_coordinator_of(cluster, &self.id, 1).await?;
        *held = Some(Arc::clone(&c));
        Ok(c)
    }

    /// Runs `call` on the coordinator, retrying what passes, until `timeout`.
    async fn with_retries<T, F, Fut>(
        &self,
        cluster: &Cluster,
        timeout: Duration,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Arc<BrokerConnection>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let result = match self.coordinator(cluster).await {
                Ok(c) => call(c).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if retriable(&e) && Instant::now() < deadline => {
                    *self.coordinator.lock().await = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    /// InitProducerId with the transactional id: fences older instances (aborting their open
    /// transaction) and returns this instance's producer id and epoch.
    pub async fn init(
        &self,
        cluster: &Cluster,
        timeout: Duration,
    ) -> Result<(i64, i16), ClientError> {
        let request_timeout = cluster.config().request_timeout();
        self.with_retries(cluster, timeout, |c| async move {
            let version = c.version(ApiKey::InitProducerId, 0, 4)?;
            let request = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(str(&self.id))))
                .with_transaction_timeout_ms(self.timeout_ms)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            let r = c.send(&request, version, request_timeout).await?;
            if r.error_code != 0 {
                return Err(ClientError::broker(r.error_code, Some("InitProducerId")));
            }
            self.tv2
                .store(c.supports_transaction_v2(), Ordering::SeqCst);
            Ok((r.producer_id.0, r.producer_epoch))
        })
        .await
    }

    /// Whether this producer uses transaction version 2.
    pub fn uses_v2(&self) -> bool {
        self.tv2.load(Ordering::SeqCst)
    }

    /// AddPartitionsToTxn for a partition not yet in the open transaction (under transaction
    /// version 2 only noted: the Produce request adds it).
    pub async fn add_partition(
        &self,
        cluster: &Cluster,
        producer: (i64, i16),
        topic: &str,
        partition: i32,
    ) -> Result<(), ClientError> {
        let key = (topic.to_string(), partition);
        if self.phase.lock().expect("lock").partitions.contains(&key) {
            return Ok(());
        }
        if self.uses_v2() {
            self.phase.lock().expect("lock").partitions.insert(key);
            return Ok(());
        }
        let request_timeout = cluster.config().request_timeout();
        self.with_retries(cluster, request_timeout, |c| async move {
            let version = c.version(ApiKey::AddPartitionsToTxn, 0, 3)?;
            let mut request = AddPartitionsToTxnRequest::default();
            request.v3_and_below_transactional_id = TransactionalId(str(&self.id));
            request.v3_and_below_producer_id = ProducerId(producer.0);
            request.v3_and_below_producer_epoch = producer.1;
            request.v3_and_below_topics = vec![AddPartitionsToTxnTopic::default()
                .with_name(TopicName(str(topic)))
                .with_partitions(vec![partition])];
            let r = c.send(&request, version, request_timeout).await?;
            let code = r
                .results_by_topic_v3_and_below
                .iter()
                .flat_map(|t| t.results_by_partition.iter())
                .map(|p| p.partition_error_code)
                .find(|c| *c != 0)
                .unwrap_or(0);
            if code != 0 {
                return Err(ClientError::broker(code, Some("AddPartitionsToTxn")));
            }
            Ok(())
        })
        .await?;
        self.phase.lock().expect("lock").partitions.insert(key);
        Ok(())
    }

    /// AddOffsetsToTxn, then TxnOffsetCommit to the group's coordinator.
    pub async fn send_offsets(
        &self,
        cluster: &Cluster,
        producer: (i64, i16),
        group_id: &str,
        committer: &Committer,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), ClientError> {
        let request_timeout = cluster.config().request_timeout();
        let tv2 = self.uses_v2();
        if !tv2 {
            self.add_offsets(cluster, producer, group_id).await?;
        }
        self.phase.lock().expect("lock").offsets = true;
        let group = find_coordinator(cluster, group_id).await?;
        // v5 adds the offsets partition to the transaction (transaction version 2).
        let version = if tv2 {
            group.version(ApiKey::TxnOffsetCommit, 5, 5)?
        } else {
            group.version(ApiKey::TxnOffsetCommit, 0, 3)?
        };
        let mut topics: std::collections::BTreeMap<&str, Vec<TxnOffsetCommitRequestPartition>> =
            Default::default();
        for (topic, partition, offset) in offsets {
            topics.entry(topic).or_default().push(
                TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(*partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(str(&self.id)))
            .with_group_id(GroupId(str(group_id)))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_generation_id(committer.generation)
            .with_member_id(str(&committer.member_id))
            .with_group_instance_id(committer.group_instance_id.as_deref().map(str))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        TxnOffsetCommitRequestTopic::default()
                            .with_name(TopicName(str(t)))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let r = group.send(&request, version, request_timeout).await?;
        let code = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .find(|c| *c != 0)
            .unwrap_or(0);
        if code != 0 {
            return Err(ClientError::broker(code, Some("TxnOffsetCommit")));
        }
        Ok(())
    }

    /// AddOffsetsToTxn: the group's offsets partition joins the transaction.
    async fn add_offsets(
        &self,
        cluster: &Cluster,
        producer: (i64, i16),
        group_id: &str,
    ) -> Result<(), ClientError> {
        let request_timeout = cluster.config().request_timeout();
        self.with_retries(cluster, request_timeout, |c| async move {
            let version = c.version(ApiKey::AddOffsetsToTxn, 0, 3)?;
            let request = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(str(&self.id)))
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_group_id(GroupId(str(group_id)));
            let r = c.send(&request, version, request_timeout).await?;
            if r.error_code != 0 {
                return Err(ClientError::broker(r.error_code, Some("AddOffsetsToTxn")));
            }
            Ok(())
        })
        .await
    }

    /// EndTxn; answered once the coordinator has the decision in its log. Under transaction
    /// version 2 it returns the producer id and epoch of the next transaction (a bumped
    /// epoch), which a retry after a lost answer gets too.
    pub async fn end(
        &self,
        cluster: &Cluster,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<Option<(i64, i16)>, ClientError> {
        let request_timeout = cluster.config().request_timeout();
        let tv2 = self.uses_v2();
        self.with_retries(cluster, request_timeout * 3, |c| async move {
            let version = if tv2 {
                c.version(ApiKey::EndTxn, 5, 5)?
            } else {
                c.version(ApiKey::EndTxn, 0, 3)?
            };
            let request = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(str(&self.id)))
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_committed(commit);
            let r = c.send(&request, version, request_timeout).await?;
            if r.error_code != 0 {
                return Err(ClientError::broker(r.error_code, Some("EndTxn")));
            }
            Ok((version >= 5).then_some((r.producer_id.0, r.producer_epoch)))
        })
        .await
    }

    /// Moves to a new transaction.
    pub fn begin(&self, failed_records: u64) -> Result<(), TransactionError> {
        let mut phase = self.phase.lock().expect("lock");
        if let Some(TransactionError::Fatal(e)) = &phase.failed {
            return Err(TransactionError::Fatal(e.clone()));
        }
        if phase.in_txn {
            return Err(TransactionError::State(
                "a transaction is already open".into(),
            ));
        }
        *phase = Phase {
            in_txn: true,
            failed_records_at_begin: failed_records,
            ..Phase::default()
        };
        Ok(())
    }

    /// Fails the open transaction with `e` (fatal errors stick to the producer).
    pub fn fail(&self, e: TransactionError) -> TransactionError {
        let mut phase = self.phase.lock().expect("lock");
        if !matches!(phase.failed, Some(TransactionError::Fatal(_))) {
            phase.failed = Some(e.clone());
        }
        e
    }

    pub fn check_open(&self) -> Result<(), TransactionError> {
        let phase = self.phase.lock().expect("lock");
        match &phase.failed {
            Some(e @ TransactionError::Fatal(_)) => Err(e.clone()),
            _ if !phase.in_txn => Err(TransactionError::State(
                "no transaction is open: call begin_transaction first".into(),
            )),
            _ => Ok(()),
        }
    }

    pub fn finish(&self) {
        let mut phase = self.phase.lock().expect("lock");
        phase.in_txn = false;
        phase.partitions.clear();
        phase.offsets = false;
        if !matches!(phase.failed, Some(TransactionError::Fatal(_))) {
            phase.failed = None;
        }
    }
}
