//! Committed offsets: OffsetCommit (answered after the write, applied in log order) and
//! OffsetFetch. (OffsetDelete is with the other deletions in `housekeeping.rs`.)

use std::collections::BTreeMap;

use tally_partition::AppendError;
use tally_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::warn;

use super::consumer_group::Group;
use super::coordinator::{code, store_error, CommitRequest, GroupCoordinator, GroupOffsets};
use super::machine;
use super::offsets_log::TxnProducer;
use super::store::{CommittedOffset, StoreRecord};
use crate::partition_handle::AppendResult;

/// A commit checked and queued: the answers so far, the records, where the write's answer
/// will come, and whether the group existed when they were queued.
pub(super) struct Queued {
    pub results: Vec<i16>,
    pub records: Vec<StoreRecord>,
    pub rx: oneshot::Receiver<AppendResult>,
    pub group_existed: bool,
}

impl GroupCoordinator {
    /// Stores offsets; per offset an error code (0 on success). Answers only after the
    /// offsets are in the log; memory changes only then, and only to what the log says.
    pub async fn commit(
        &self,
        request: CommitRequest,
        topic_exists: impl Fn(&str, i32) -> bool,
    ) -> Vec<i16> {
        let Queued {
            results,
            records,
            rx,
            group_existed,
        } = match self.queue_commit(&request, None, topic_exists) {
            Ok(queued) => queued,
            Err(results) => return results,
        };
        let outcome = match stored(rx, &request.group_id, &results).await {
            Ok(outcome) => outcome,
            Err(answer) => return answer,
        };
        let mut inner = self.inner.lock();
        let now = self.clock.now_ms();
        if group_existed && !inner.groups.contains_key(&request.group_id) {
            // Deleted while this write was in flight: its tombstones follow these records in
            // the log, so the offsets are gone there, and stay gone here.
            return results;
        }
        let group = inner
            .groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(request.group_id.clone(), now));
        for (i, r) in records.into_iter().enumerate() {
            if let StoreRecord::Offset {
                topic,
                partition,
                value: Some(v),
                ..
            } = r
            {
                // Completions can arrive out of log order: the later record in the log wins.
                group.apply_committed_offset(topic, partition, v, outcome.base_offset + i as i64);
            }
        }
        results
    }

    /// Checks a commit and queues its records under the lock (which orders the log). `Err`:
    /// the answer, with nothing written.
    pub(super) fn queue_commit(
        &self,
        request: &CommitRequest,
        txn: Option<TxnProducer>,
        topic_exists: impl Fn(&str, i32) -> bool,
    ) -> Result<Queued, Vec<i16>> {
        let mut inner = self.inner.lock();
        let now = self.clock.now_ms();
        let group = inner.groups.get_mut(&request.group_id);
        let group_existed = group.is_some();
        if let Err(e) = machine::check_commit(group, request, txn.is_some(), Instant::now()) {
            return Err(vec![e.code(); request.offsets.len()]);
        }
        let mut results = Vec::with_capacity(request.offsets.len());
        let mut records = Vec::new();
        for (topic, partition, offset, epoch, metadata) in &request.offsets {
            if !topic_exists(topic, *partition) {
                results.push(code(ResponseError::UnknownTopicOrPartition));
            } else if metadata
                .as_ref()
                .is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes)
            {
                results.push(code(ResponseError::OffsetMetadataTooLarge));
            } else {
                results.push(0);
                records.push(StoreRecord::Offset {
                    group: request.group_id.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: Some(CommittedOffset {
                        offset: *offset,
                        leader_epoch: *epoch,
                        metadata: metadata.clone(),
                        commit_timestamp_ms: now,
                    }),
                });
            }
        }
        let rx = inner.store.write_as(&records, txn, now);
        Ok(Queued {
            results,
            records,
            rx,
            group_existed,
        })
    }

    /// Committed offsets of `group_id` for the given partitions (all when `None`).
    pub fn fetch(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> GroupOffsets {
        let inner = self.inner.lock();
        let group = inner.groups.get(group_id);
        match partitions {
            Some(list) => list
                .into_iter()
                .map(|(topic, ps)| {
                    let found = ps
                        .into_iter()
                        .map(|p| {
                            (
                                p,
                                group.and_then(|g| g.offsets.get(&(topic.clone(), p)).cloned()),
                            )
                        })
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                if let Some(g) = group {
                    for ((t, p), v) in &g.offsets {
                        by_topic
                            .entry(t.clone())
                            .or_default()
                            .push((*p, Some(v.clone())));
                    }
                }
                by_topic.into_iter().collect()
            }
        }
    }
}

/// Waits for a commit's write. `Err`: the answer when it failed (every offset that passed the
/// checks gets the store's error; Kafka maps a storage failure to NOT_COORDINATOR).
pub(super) async fn stored(
    rx: oneshot::Receiver<AppendResult>,
    group_id: &str,
    results: &[i16],
) -> Result<tally_partition::AppendOutcome, Vec<i16>> {
    let result = rx
        .await
        .unwrap_or_else(|_| Err(AppendError::Offline("the group store has stopped".into())));
    result.map_err(|e| {
        warn!(group = %group_id, error = %e, "could not store committed offsets");
        let error = store_error(&e, true);
        results
            .iter()
            .map(|c| if *c == 0 { error } else { *c })
            .collect()
    })
}
