//! Offsets committed inside a transaction (TxnOffsetCommit, KIP-98 and KIP-447): written to
//! `__consumer_offsets` as the producer's transactional batch, held pending until the
//! transaction's marker reaches that partition, then applied (COMMIT) or dropped (ABORT).

use super::consumer_group::Group;
use super::coordinator::{CommitRequest, GroupCoordinator, Inner};
use super::offsets_log::TxnProducer;
use super::store::StoreRecord;

impl GroupCoordinator {
    /// Stores offsets for `txn`'s open transaction; per offset an error code. Answered after
    /// the write; the offsets stay invisible (pending) until the transaction commits.
    pub async fn txn_commit(
        &self,
        request: CommitRequest,
        txn: TxnProducer,
        topic_exists: impl Fn(&str, i32) -> bool,
    ) -> Vec<i16> {
        let super::offsets::Queued {
            results,
            records,
            rx,
            ..
        } = match self.queue_commit(&request, Some(txn), topic_exists) {
            Ok(queued) => queued,
            Err(results) => return results,
        };
        let outcome = match super::offsets::stored(rx, &request.group_id, &results).await {
            Ok(outcome) => outcome,
            Err(answer) => return answer,
        };
        if !records.is_empty() {
            let mut inner = self.inner.lock();
            let pending = inner.pending_txn.entry(txn.producer_id).or_default();
            for (i, r) in records.into_iter().enumerate() {
                pending.push((outcome.base_offset + i as i64, r));
            }
        }
        results
    }

    /// A marker of producer `producer_id`'s transaction reached `__consumer_offsets`.
    pub fn complete_txn(&self, producer_id: i64, commit: bool) {
        let mut inner = self.inner.lock();
        let Some(pending) = inner.pending_txn.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        let now = self.clock.now_ms();
        for (log_offset, record) in pending {
            if let StoreRecord::Offset {
                group,
                topic,
                partition,
                value: Some(v),
            } = record
            {
                inner
                    .groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now))
                    .apply_committed_offset(topic, partition, v, log_offset);
            }
        }
    }

    /// Whether a transaction has offsets pending for this group and partition (OffsetFetch
    /// with RequireStable answers UNSTABLE_OFFSET_COMMIT then, and the client retries).
    pub fn has_pending_txn_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        let inner = self.inner.lock();
        inner.pending_txn.values().flatten().any(|(_, r)| {
            matches!(r, StoreRecord::Offset { group, topic: t, partition: p, .. }
                if group == group_id && t == topic && *p == partition)
        })
    }
}

/// Deletions of the keys of every offset a transaction holds pending for `group_id`.
pub(super) fn pending_tombstones(inner: &Inner, group_id: &str) -> Vec<StoreRecord> {
    let mut out: Vec<StoreRecord> = Vec::new();
    for (_, r) in inner.pending_txn.values().flatten() {
        if let StoreRecord::Offset {
            group,
            topic,
            partition,
            ..
        } = r
        {
            let tombstone = StoreRecord::Offset {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            };
            if group == group_id && !out.contains(&tombstone) {
                out.push(tombstone);
            }
        }
    }
    out
}

/// `records` were written from log offset `base_offset`: a pending transactional offset of
/// the same key written before one of them is superseded (the later record is what the log
/// says, and what a restart reads back), so its transaction's COMMIT must not apply it.
pub(super) fn drop_superseded(inner: &mut Inner, records: &[StoreRecord], base_offset: i64) {
    for (i, record) in records.iter().enumerate() {
        let at = base_offset + i as i64;
        let key = record.key();
        for pending in inner.pending_txn.values_mut() {
            pending.retain(|(offset, r)| *offset > at || r.key() != key);
        }
    }
    inner.pending_txn.retain(|_, pending| !pending.is_empty());
}
