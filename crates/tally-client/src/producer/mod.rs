//! The producer: idempotent by default, transactional with a `transactional_id` (see
//! `transaction`: begin, send, send offsets, commit or abort). `send` puts a record into a
//! per-partition batch; a background sender (see `sender`) seals, sends, retries and settles
//! batches.

mod accumulator;
mod batch;
mod config;
mod delivery;
mod idempotency_key;
mod sender;
mod transaction;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProducerId};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

pub use config::ProducerConfig;
pub use delivery::DeliveryFuture;
pub use kafka_protocol::records::Compression;

use crate::cluster::Cluster;
use crate::error::{ClientError, ProduceError, TransactionError};
use crate::record::{ProducerRecord, RecordMetadata};
use accumulator::Accumulator;
use batch::PendingRecord;

pub(crate) struct Inner {
    pub config: ProducerConfig,
    pub cluster: Arc<Cluster>,
    pub accumulator: Mutex<Accumulator>,
    /// Wakes the sender: a batch filled, a new batch started lingering, a flush was asked.
    pub wake: Notify,
    /// Records handed to `send` and not yet settled.
    pub outstanding: AtomicU64,
    pub idle: Notify,
    pub flush_requested: AtomicBool,
    pub producer: Mutex<(i64, i16)>,
    memory: Arc<Semaphore>,
    /// Records whose batch failed for good, ever (a transaction that lost one cannot commit).
    pub failed_records: AtomicU64,
    txn: Option<transaction::Transactions>,
    /// Each topic's `idempotency.key`, read once when a record first carries such a key.
    key_sources: idempotency_key::KeySources,
}

/// A Kafka producer. Cheap to share behind an `Arc`; `send` may be called from many tasks.
pub struct Producer {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    sender: Option<JoinHandle<()>>,
}

/// InitProducerId for an idempotent producer, retrying what the broker says to retry.
pub(crate) async fn init_producer_id(inner: &Inner) -> Result<(i64, i16), ClientError> {
    let deadline = Instant::now() + Duration::from_millis(inner.config.delivery_timeout_ms);
    loop {
        let attempt = async {
            let connection = inner.cluster.any_connection().await?;
            let version = connection.version(ApiKey::InitProducerId, 0, 4)?;
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
            let response = connection
                .send(&request, version, inner.config.client.request_timeout())
                .await?;
            if response.error_code != 0 {
                return Err(ClientError::broker(
                    response.error_code,
                    Some("InitProducerId"),
                ));
            }
            Ok((response.producer_id.0, response.producer_epoch))
        };
        match attempt.await {
            Ok(ids) => return Ok(ids),
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(inner.config.retry_backoff_ms)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

impl Producer {
    /// Connects, gets a producer id when idempotent, and starts the sender.
    pub async fn new(config: ProducerConfig) -> Result<Producer, ClientError> {
        config.validate()?;
        let cluster = Cluster::connect(config.client.clone()).await?;
        let memory = Arc::new(Semaphore::new(config.buffer_memory));
        let inner = Arc::new(Inner {
            cluster,
            accumulator: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            outstanding: AtomicU64::new(0),
            idle: Notify::new(),
            flush_requested: AtomicBool::new(false),
            producer: Mutex::new((-1, -1)),
            memory,
            failed_records: AtomicU64::new(0),
            key_sources: idempotency_key::KeySources::default(),
            txn: config
                .transactional_id
                .clone()
                .map(|id| transaction::Transactions::new(id, config.transaction_timeout_ms)),
            config,
        });
        let (producer_id, epoch) = match &inner.txn {
            Some(txn) => {
                let timeout = Duration::from_millis(inner.config.delivery_timeout_ms);
                txn.init(&inner.cluster, timeout).await?
            }
            None if inner.config.enable_idempotence => init_producer_id(&inner).await?,
            None => (-1, -1),
        };
        *inner.producer.lock().expect("lock") = (producer_id, epoch);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let sender = tokio::spawn(
            sender::Sender::new(Arc::clone(&inner), producer_id, epoch).run(shutdown_rx),
        );
        Ok(Producer {
            inner,
            shutdown,
            sender: Some(sender),
        })
    }

    /// The producer id and epoch in use (-1, -1 without idempotence).
    pub fn producer_id_and_epoch(&self) -> (i64, i16) {
        *self.inner.producer.lock().expect("lock")
    }

    /// Queues a record. Fails at once for an unknown topic or partition; otherwise the returned
    /// future settles when the broker has answered (or the delivery timeout passed).
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture, ClientError> {
        if *self.shutdown.borrow() {
            return Err(ClientError::Closed);
        }
        let size = record.estimated_size();
        if size > self.inner.config.max_request_size {
            return Ok(DeliveryFuture::ready(Err(ProduceError::RecordTooLarge {
                size,
                max: self.inner.config.max_request_size,
            })));
        }
        let partitions = match self.inner.cluster.partition_count(&record.topic) {
            Some(n) => n as i32,
            None => self
                .inner
                .cluster
                .topic_or_fetch(&record.topic, true)
                .await?
                .partitions
                .len() as i32,
        };
        if partitions == 0 {
            return Err(ClientError::UnknownTopic(record.topic.clone()));
        }
        if let Some(p) = record.partition {
            if !(0..partitions).contains(&p) {
                return Err(ClientError::UnknownPartition(record.topic.clone(), p));
            }
        }
        let mut record = record;
        self.inner
            .key_sources
            .place(&self.inner.cluster, &mut record)
            .await?;
        if let Some(txn) = &self.inner.txn {
            txn.check_open()
                .map_err(|e| ClientError::Config(e.to_string()))?;
            // The partition must be in the transaction before its first batch: choose it now.
            let partition = match (record.partition, &record.key) {
                (Some(p), _) => p,
                (None, Some(key)) => crate::partitioner::partition_for_key(key, partitions),
                (None, None) => rand::Rng::random_range(&mut rand::rng(), 0..partitions),
            };
            let producer = self.producer_id_and_epoch();
            if let Err(e) = txn
                .add_partition(&self.inner.cluster, producer, &record.topic, partition)
                .await
            {
                txn.fail(TransactionError::from_client(e.clone()));
                return Err(e);
            }
            record.partition = Some(partition);
        }
        let permit = Arc::clone(&self.inner.memory)
            .acquire_many_owned(size as u32)
            .await
            .map_err(|_| ClientError::Closed)?;
        let timestamp_ms = record.timestamp_ms.unwrap_or_else(now_ms);
        self.inner.outstanding.fetch_add(1, Ordering::SeqCst);
        let (delivery, wake) = self.inner.accumulator.lock().expect("lock").append(
            PendingRecord {
                record,
                timestamp_ms,
            },
            permit,
            size,
            partitions,
            self.inner.config.batch_size,
        );
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(delivery)
    }

    /// Sends and waits for the outcome.
    pub async fn send_and_wait(
        &self,
        record: ProducerRecord,
    ) -> Result<RecordMetadata, ProduceError> {
        self.send(record).await.map_err(ProduceError::Client)?.await
    }

    /// Sends everything queued now and waits until every record has an outcome.
    pub async fn flush(&self) {
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.outstanding.load(Ordering::SeqCst) == 0 {
                return;
            }
            self.inner.flush_requested.store(true, Ordering::SeqCst);
            self.inner.wake.notify_one();
            idle.await;
        }
    }

    fn transactions(&self) -> Result<&transaction::Transactions, TransactionError> {
        self.inner.txn.as_ref().ok_or_else(|| {
            TransactionError::State("not a transactional producer (no transactional_id)".into())
        })
    }

    /// Starts a transaction: every record sent until `commit_transaction` or
    /// `abort_transaction` is part of it.
    pub fn begin_transaction(&self) -> Result<(), TransactionError> {
        let failed = self.inner.failed_records.load(Ordering::SeqCst);
        self.transactions()?.begin(failed)
    }

    /// Makes consumed offsets part of the transaction (exactly-once read-process-write): they
    /// are committed for `group_id` if and only if the transaction commits.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(String, i32, i64)],
        group_id: &str,
        committer: &crate::coordinator::Committer,
    ) -> Result<(), TransactionError> {
        let txn = self.transactions()?;
        txn.check_open()?;
        let producer = self.producer_id_and_epoch();
        txn.send_offsets(&self.inner.cluster, producer, group_id, committer, offsets)
            .await
            .map_err(|e| txn.fail(TransactionError::from_client(e)))
    }

    /// Sends what is queued, then commits. An abortable error leaves the transaction open to
    /// `abort_transaction`; a fatal one (fenced) ends the producer's usefulness.
    pub async fn commit_transaction(&self) -> Result<(), TransactionError> {
        let txn = self.transactions()?;
        txn.check_open()?;
        self.flush().await;
        let (failed, at_begin, empty) = {
            let phase = txn.phase.lock().expect("lock");
            (
                phase.failed.clone(),
                phase.failed_records_at_begin,
                phase.partitions.is_empty() && !phase.offsets,
            )
        };
        if let Some(e) = failed {
            return Err(e);
        }
        if self.inner.failed_records.load(Ordering::SeqCst) > at_begin {
            return Err(txn.fail(TransactionError::Abortable(ClientError::Protocol(
                "a record of the transaction was not delivered".into(),
            ))));
        }
        if !empty {
            let producer = self.producer_id_and_epoch();
            let next = txn
                .end(&self.inner.cluster, producer, true)
                .await
                .map_err(|e| txn.fail(TransactionError::from_client(e)))?;
            self.adopt(next);
        }
        txn.finish();
        Ok(())
    }

    /// Waits for what was sent, then aborts: nothing of the transaction is ever visible to
    /// read_committed consumers.
    pub async fn abort_transaction(&self) -> Result<(), TransactionError> {
        let txn = self.transactions()?;
        {
            let phase = txn.phase.lock().expect("lock");
            if let Some(e @ TransactionError::Fatal(_)) = &phase.failed {
                return Err(e.clone());
            }
            if !phase.in_txn {
                return Err(TransactionError::State("no transaction is open".into()));
            }
        }
        self.flush().await;
        let empty = {
            let phase = txn.phase.lock().expect("lock");
            phase.partitions.is_empty() && !phase.offsets
        };
        if !empty {
            let producer = self.producer_id_and_epoch();
            let next = txn
                .end(&self.inner.cluster, producer, false)
                .await
                .map_err(|e| txn.fail(TransactionError::from_client(e)))?;
            self.adopt(next);
        }
        txn.finish();
        Ok(())
    }

    /// Transaction version 2: EndTxn returned the producer id and epoch of the next
    /// transaction. Nothing is in flight (the transaction was flushed); the sender restarts
    /// its sequences at 0 when it sees the change, before it stamps another batch.
    fn adopt(&self, next: Option<(i64, i16)>) {
        if let Some(next) = next {
            *self.inner.producer.lock().expect("lock") = next;
            self.inner.wake.notify_one();
        }
    }

    /// Flushes, then stops the sender.
    pub async fn close(mut self) {
        self.flush().await;
        let _ = self.shutdown.send(true);
        if let Some(sender) = self.sender.take() {
            let _ = sender.await;
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(sender) = self.sender.take() {
            sender.abort();
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
