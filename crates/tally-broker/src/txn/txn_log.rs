//! `__transaction_state` as the coordinator uses it: one write per state change (answered
//! after its group commit), the whole state read back at start, and compaction.
//!
//! Compaction without a cleaner, as the group store does it: when the log holds many times
//! more records than there are transactional ids, each partition is rolled, its latest record
//! per id (read back from the log, not from memory) is written again after the roll, and the
//! segments before it are deleted. Writes wait while a partition compacts (a gate they share
//! and compaction takes alone), so nothing newer can land before the rewritten records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::RwLock;
use tracing::{info, warn};

use super::coordinator::log_partition;
use super::metadata::TxnMetadata;
use super::store;
use crate::partition_handle::PartitionHandle;

/// Compact when the log holds this many times more records than live ids...
const COMPACTION_RATIO: u64 = 4;

pub struct TxnLog {
    partitions: Vec<Arc<PartitionHandle>>,
    gate: RwLock<()>,
    /// Records in the log since it was last read or compacted.
    records: AtomicU64,
    compacting: AtomicBool,
    /// ... and at least this many (`transaction.state.log.compaction.min.records`).
    min_records: u64,
}

impl TxnLog {
    /// Reads every partition back (blocking reads: call off the async workers).
    pub fn open(
        partitions: Vec<Arc<PartitionHandle>>,
        min_records: u64,
    ) -> Result<(TxnLog, HashMap<String, TxnMetadata>), String> {
        let mut state = HashMap::new();
        let mut records = 0;
        for p in &partitions {
            let (latest, read) = store::load(p.reader())?;
            records += read;
            state.extend(latest);
        }
        let log = TxnLog {
            partitions,
            gate: RwLock::new(()),
            records: AtomicU64::new(records),
            compacting: AtomicBool::new(false),
            min_records,
        };
        Ok((log, state))
    }

    /// Writes `m` (or a tombstone) for `id` and waits for its commit.
    pub async fn write(
        &self,
        id: &str,
        m: Option<&TxnMetadata>,
        now_ms: i64,
    ) -> Result<(), String> {
        let _gate = self.gate.read().await;
        let log = &self.partitions[log_partition(id, self.partitions.len())];
        let rx = log
            .submit(store::record(id, m, now_ms))
            .await
            .map_err(|_| "the transaction log's writer has stopped".to_string())?;
        let answer = rx
            .await
            .map_err(|_| "the transaction log's writer has stopped".to_string())?;
        answer.map_err(|e| e.to_string())?;
        self.records.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a compaction is due with `live` transactional ids; if so, marks it started.
    pub fn compaction_due(&self, live: u64) -> bool {
        let records = self.records.load(Ordering::Relaxed);
        records > self.min_records
            && records > live.max(1) * COMPACTION_RATIO
            && !self.compacting.swap(true, Ordering::AcqRel)
    }

    /// Rewrites each partition's live records after a roll and drops what came before.
    pub async fn compact(&self, now_ms: i64) {
        let mut live = 0u64;
        for (i, partition) in self.partitions.iter().enumerate() {
            let _alone = self.gate.write().await;
            match compact_partition(partition, now_ms).await {
                Ok(n) => live += n,
                Err(e) => {
                    warn!(partition = i, error = %e, "could not compact the transaction log");
                    self.compacting.store(false, Ordering::Release);
                    return;
                }
            }
        }
        self.records.store(live, Ordering::Relaxed);
        self.compacting.store(false, Ordering::Release);
        info!(records = live, "compacted the transaction log");
    }
}

async fn compact_partition(partition: &PartitionHandle, now_ms: i64) -> Result<u64, String> {
    let stopped = || "the transaction log's writer has stopped".to_string();
    let (start, latest) = partition
        .run(|p| -> Result<(i64, HashMap<String, TxnMetadata>), String> {
            let start = p.start_new_segment().map_err(|e| e.to_string())?;
            let (latest, _) = store::load(p.reader())?;
            Ok((start, latest))
        })
        .await
        .map_err(|_| stopped())??;
    let mut answers = Vec::with_capacity(latest.len());
    for (id, m) in &latest {
        let rx = partition
            .submit(store::record(id, Some(m), now_ms))
            .await
            .map_err(|_| stopped())?;
        answers.push(rx);
    }
    for rx in answers {
        rx.await
            .map_err(|_| stopped())?
            .map_err(|e| e.to_string())?;
    }
    partition
        .run(move |p| p.delete_segments_before(start))
        .await
        .map_err(|_| stopped())?
        .map_err(|e| e.to_string())?;
    Ok(latest.len() as u64)
}
