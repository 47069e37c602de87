//! The group coordinator's writes to `__consumer_offsets`, in the order the coordinator made
//! them. The coordinator queues records under its lock without waiting ([`GroupStore::write`]
//! returns where the answer will come); one task hands them to the partition's writer in that
//! order, so the log's order is the coordinator's order. The coordinator answers a request
//! that depends on a write only after the write's answer (after its group commit).
//!
//! Transactional offset commits (TxnOffsetCommit) are written as a transactional batch of the
//! producer's id and epoch; they take effect when the transaction's COMMIT marker reaches
//! this partition and never after an ABORT. Reading the log back applies the same rule.
//!
//! When the log holds far more records than live keys, the task compacts it
//! (`offsets_compaction.rs`).
//!
//! In cluster mode the log is one partition of the replicated `__consumer_offsets` topic
//! ([`GroupLog::Replicated`]): each write is proposed to the partition's Raft group and
//! answered once the group has committed it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tally_partition::{AppendError, AppendOutcome, EntryOrigin, PartitionReader};
use tally_protocol::BatchHeader;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::offsets_compaction::{compact, compact_replicated};
use super::store::StoreRecord;
use crate::partition_handle::{AppendRequest, AppendResult, PartitionHandle};
use tally_controller::HostedPartition;
use tally_raft::ProduceError;

/// Where the coordinator's records go.
#[derive(Clone)]
pub enum GroupLog {
    /// The node's own `__consumer_offsets` partition (one node).
    Local(Arc<PartitionHandle>),
    /// A partition of the replicated `__consumer_offsets` topic this node leads (a cluster).
    Replicated(Arc<HostedPartition>),
}

/// Compact when the log holds this many times more records than there are live keys.
const COMPACTION_RATIO: u64 = 4;

/// A transactional batch's producer: its offsets wait for the transaction's marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// What the log holds: records in effect (in log order, each with its log offset), and the
/// records of transactions with no marker yet, by producer id.
#[derive(Debug, Default)]
pub struct LogContents {
    pub records: Vec<(i64, StoreRecord)>,
    pub pending: HashMap<i64, Vec<(i64, StoreRecord)>>,
}

enum Command {
    Write(AppendRequest, oneshot::Sender<AppendResult>),
    Compact { now_ms: i64 },
}

/// The coordinator's handle on its log.
pub struct GroupStore {
    commands: mpsc::UnboundedSender<Command>,
    /// Records in the log since it was last compacted (or read).
    records_in_log: Arc<AtomicU64>,
    compacting: Arc<AtomicBool>,
    /// Compact only once the log holds more records than this
    /// (`offsets.topic.compaction.min.records`).
    min_records: u64,
}

impl GroupStore {
    /// The store and the task that performs its writes (the caller spawns it).
    pub fn new(
        log: GroupLog,
        records_in_log: u64,
        min_records: u64,
    ) -> (
        GroupStore,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (commands, rx) = mpsc::unbounded_channel();
        let store = GroupStore {
            commands,
            records_in_log: Arc::new(AtomicU64::new(records_in_log)),
            compacting: Arc::new(AtomicBool::new(false)),
            min_records,
        };
        let task = run(
            log,
            rx,
            Arc::clone(&store.records_in_log),
            Arc::clone(&store.compacting),
        );
        (store, task)
    }

    /// Queues records and returns where their answer will come. Never waits, so it can be
    /// called under the coordinator's lock, which is what orders the log.
    pub fn write(&self, records: &[StoreRecord], now_ms: i64) -> oneshot::Receiver<AppendResult> {
        self.write_as(records, None, now_ms)
    }

    /// [`GroupStore::write`], as a transactional batch of `txn`'s producer when given.
    pub fn write_as(
        &self,
        records: &[StoreRecord],
        txn: Option<TxnProducer>,
        now_ms: i64,
    ) -> oneshot::Receiver<AppendResult> {
        let (tx, rx) = oneshot::channel();
        if records.is_empty() {
            let _ = tx.send(Ok(tally_partition::AppendOutcome {
                base_offset: -1,
                log_append_time_ms: -1,
                log_start_offset: -1,
                duplicate: false,
            }));
            return rx;
        }
        match encode(records, txn, now_ms) {
            Ok(request) => {
                self.records_in_log
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                if let Err(mpsc::error::SendError(Command::Write(_, tx))) =
                    self.commands.send(Command::Write(request, tx))
                {
                    let _ = tx.send(Err(AppendError::Offline(
                        "the group store has stopped".into(),
                    )));
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
        rx
    }

    /// Starts a compaction when the log holds far more records than `live` keys.
    pub fn maybe_compact(&self, live: u64, now_ms: i64) {
        let records = self.records_in_log.load(Ordering::Relaxed);
        if records > self.min_records
            && records > live.max(1) * COMPACTION_RATIO
            && !self.compacting.swap(true, Ordering::AcqRel)
        {
            let _ = self.commands.send(Command::Compact { now_ms });
        }
    }
}

/// Everything in the log below the high watermark.
pub fn load(reader: &PartitionReader) -> Result<LogContents, String> {
    read_records(reader, reader.log_start_offset(), reader.high_watermark())
}

/// Everything in a replica's log below `to` (its high watermark when it took office).
pub fn load_replicated(reader: &tally_log::LogReader, to: i64) -> Result<LogContents, String> {
    read_records(reader, reader.log_start_offset(), to)
}

pub(super) fn read_records(
    source: &impl crate::internal_log::RecordSource,
    from: i64,
    to: i64,
) -> Result<LogContents, String> {
    let mut out = LogContents::default();
    crate::internal_log::for_each_record(source, from, to, |r| {
        if r.control {
            // A marker: the producer's pending offsets take effect or are dropped.
            let pending = out.pending.remove(&r.producer_id).unwrap_or_default();
            if r.key.as_deref().is_some_and(|k| k.len() >= 4 && k[3] == 1) {
                out.records.extend(pending);
            }
            return Ok(());
        }
        let Some(record) = r
            .key
            .as_ref()
            .and_then(|key| StoreRecord::decode(key, r.value.as_deref()))
        else {
            return Ok(());
        };
        if r.transactional {
            out.pending
                .entry(r.producer_id)
                .or_default()
                .push((r.offset, record));
        } else {
            out.records.push((r.offset, record));
        }
        Ok(())
    })?;
    // Committed transactional records count from where they were written, like the others.
    out.records.sort_by_key(|(offset, _)| *offset);
    Ok(out)
}

/// One batch of the broker's own records (no producer id: they take the trusted path).
pub(super) fn encode(
    records: &[StoreRecord],
    txn: Option<TxnProducer>,
    now_ms: i64,
) -> Result<AppendRequest, AppendError> {
    let encoded: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: txn.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: txn.map_or(-1, |t| t.producer_id),
            producer_epoch: txn.map_or(-1, |t| t.producer_epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: Some(r.key()),
            value: r.value(),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &encoded,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
    let batch = buf.freeze();
    let header =
        BatchHeader::parse(&batch).map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
    Ok(AppendRequest {
        origin: EntryOrigin::Broker,
        header,
        batch,
        append_time_ms: now_ms,
        txn_verified: false,
    })
}

async fn run(
    log: GroupLog,
    mut rx: mpsc::UnboundedReceiver<Command>,
    records_in_log: Arc<AtomicU64>,
    compacting: Arc<AtomicBool>,
) {
    while let Some(command) = rx.recv().await {
        match command {
            Command::Write(request, reply) => match &log {
                GroupLog::Local(partition) => {
                    if let Err(e) = partition.submit_with_reply(request, reply).await {
                        warn!(error = ?e, "the consumer offsets partition's writer has stopped");
                    }
                }
                GroupLog::Replicated(hosted) => propose(hosted, request, reply).await,
            },
            Command::Compact { now_ms } => {
                let compacted = match &log {
                    GroupLog::Local(partition) => compact(partition, now_ms).await,
                    GroupLog::Replicated(hosted) => compact_replicated(hosted, now_ms).await,
                };
                match compacted {
                    Ok(live) => {
                        records_in_log.store(live as u64, Ordering::Relaxed);
                        info!(records = live, "compacted the consumer offsets log");
                    }
                    Err(e) => warn!(error = %e, "could not compact the consumer offsets log"),
                }
                compacting.store(false, Ordering::Release);
            }
        }
    }
}

/// Proposes one write to the partition's Raft group, in the order of the queue (the proposal
/// is made before the next command is taken), and answers once the group has committed it.
/// A write that does not commit (this node lost the partition's leadership) is an error the
/// coordinator turns into NOT_COORDINATOR: the client finds the new coordinator, which loads
/// the state from the log.
async fn propose(
    hosted: &HostedPartition,
    request: AppendRequest,
    reply: oneshot::Sender<AppendResult>,
) {
    let failed = |e: ProduceError| match e {
        ProduceError::Refused(e) => e,
        other => AppendError::NotLeader(other.to_string()),
    };
    match hosted.leader.submit(request.batch).await {
        Ok(answer) => {
            tokio::spawn(async move {
                let outcome = answer.await.map_err(failed).map(|p| AppendOutcome {
                    base_offset: p.base_offset,
                    log_append_time_ms: -1,
                    log_start_offset: -1,
                    duplicate: p.duplicate,
                });
                let _ = reply.send(outcome);
            });
        }
        Err(e) => {
            let _ = reply.send(Err(failed(e)));
        }
    }
}
