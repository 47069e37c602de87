//! Compaction of the group log, without a cleaner: the latest record of each live key is
//! written again after a point, and what is before that point goes.
//!
//! On one node ([`compact`]): roll the partition, read everything before the roll back from
//! the log, write the live records after it, and drop the old segments only once all of that
//! is written. In cluster mode ([`compact_replicated`]): the same from the replica's high
//! watermark, through the partition's Raft group, and then a log-start entry at that point,
//! proposed only once the rewrite has committed; each replica's retention then deletes its
//! segments below it (`tally_raft::PartitionLeader::propose_log_start`). Both work from the
//! log, not from memory, so writes still in flight are never lost: they land after the point.

use tally_controller::HostedPartition;

use super::offsets_log::{encode, load_replicated, read_records};
use super::store::{latest, StoreRecord};
use crate::partition_handle::PartitionHandle;

/// Records, and bytes of keys and values, per batch when the live state is written again
/// (a batch must stay under the partition's `max.message.bytes`).
const COMPACTION_BATCH: usize = 1000;
const COMPACTION_BATCH_BYTES: usize = 256 * 1024;

/// `records` cut into batches of at most `COMPACTION_BATCH` records and about
/// `COMPACTION_BATCH_BYTES` (a record larger than that goes alone).
fn batches(records: &[StoreRecord]) -> Vec<&[StoreRecord]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in records.iter().enumerate() {
        let size = r.key().len() + r.value().map_or(0, |v| v.len());
        if i > start && (i - start >= COMPACTION_BATCH || bytes + size > COMPACTION_BATCH_BYTES) {
            out.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

/// Roll, rewrite the live records after the roll, then drop what is before it.
pub(super) async fn compact(partition: &PartitionHandle, now_ms: i64) -> Result<usize, String> {
    let rolled = partition
        .run(|p| -> Result<(i64, Vec<StoreRecord>), String> {
            let start = p.start_new_segment().map_err(|e| e.to_string())?;
            let contents = read_records(&**p.reader(), p.log_start_offset(), start)?;
            if !contents.pending.is_empty() {
                // Their records would not be rewritten: wait until their markers are in.
                return Err("transactional offsets are pending".to_string());
            }
            let records = contents.records.into_iter().map(|(_, r)| r).collect();
            Ok((start, records))
        })
        .await
        .map_err(|_| "the writer has stopped".to_string())??;
    let (start, records) = rolled;
    // A key whose latest record is a deletion needs nothing: its older records go too.
    let live: Vec<StoreRecord> = latest(records)
        .into_values()
        .filter(StoreRecord::has_value)
        .collect();
    let mut answers = Vec::new();
    for chunk in batches(&live) {
        let request = encode(chunk, None, now_ms).map_err(|e| e.to_string())?;
        let rx = partition
            .submit(request)
            .await
            .map_err(|_| "the writer has stopped")?;
        answers.push(rx);
    }
    for rx in answers {
        rx.await
            .map_err(|_| "the writer has stopped".to_string())?
            .map_err(|e| e.to_string())?;
    }
    tally_log::failpoint::hit("group_store.compaction.before_delete");
    partition
        .run(move |p| p.delete_segments_before(start))
        .await
        .map_err(|_| "the writer has stopped".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(live.len())
}

/// Rewrites the live records of `[log start, high watermark)` through the partition's Raft
/// group, then proposes a log-start entry at that high watermark once the rewrite has
/// committed. A leadership change in between leaves a rewrite without its entry: duplicate
/// records that the next compaction supersedes, nothing lost.
pub(super) async fn compact_replicated(
    hosted: &HostedPartition,
    now_ms: i64,
) -> Result<usize, String> {
    let start = *hosted.replica.state_machine.high_watermark().borrow();
    let reader = std::sync::Arc::clone(hosted.replica.store.log_reader());
    let contents = hosted
        .replica
        .store
        .io()
        .run(move || load_replicated(&reader, start))
        .await
        .map_err(|e| e.to_string())??;
    if !contents.pending.is_empty() {
        return Err("transactional offsets are pending".to_string());
    }
    let records = contents.records.into_iter().map(|(_, r)| r).collect();
    let live: Vec<StoreRecord> = latest(records)
        .into_values()
        .filter(StoreRecord::has_value)
        .collect();
    let mut answers = Vec::new();
    for chunk in batches(&live) {
        let request = encode(chunk, None, now_ms).map_err(|e| e.to_string())?;
        let answer = hosted
            .leader
            .submit(request.batch)
            .await
            .map_err(|e| e.to_string())?;
        answers.push(answer);
    }
    for answer in answers {
        answer.await.map_err(|e| e.to_string())?;
    }
    tally_log::failpoint::hit("group_store.replicated_compaction.before_log_start");
    hosted
        .leader
        .propose_log_start(start)
        .await
        .map_err(|e| e.to_string())?;
    Ok(live.len())
}
