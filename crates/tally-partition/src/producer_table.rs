//! The producer table of one partition (Kafka's `ProducerStateManager` together with
//! `ProducerAppendInfo`): per producer id, its epoch and last five batches, and the partition's
//! open transactions, from which the last stable offset follows.

use std::collections::{BTreeMap, HashMap};

use tally_protocol::sequence::in_sequence;
use tally_protocol::{BatchHeader, EndTxnMarker, TxnResult};

use crate::append_error::AppendError;
use crate::batch_metadata::BatchMetadata;
use crate::producer_state_entry::ProducerStateEntry;

/// What to do with a batch that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendDecision {
    /// A new batch: append it, then [`ProducerTable::apply_batch`].
    Append,
    /// A retry of a batch already in the log: answer with its original offsets, append nothing.
    Duplicate(BatchMetadata),
}

#[derive(Debug, Clone, Default)]
pub struct ProducerTable {
    producers: HashMap<i64, ProducerStateEntry>,
    /// last_offset -> producer id: the least recently appending producer is evicted first.
    by_recency: BTreeMap<i64, i64>,
    max_producers: usize,
    /// Offset up to which the table reflects the log (exclusive).
    map_end_offset: i64,
    /// Open transactions: first offset -> producer id (Kafka's `ongoingTxns`).
    ongoing: BTreeMap<i64, i64>,
    /// Transactions ended by a marker that is not yet below the high watermark: first offset
    /// -> marker offset (Kafka's `unreplicatedTxns`). They hold the LSO until it passes.
    unstable: BTreeMap<i64, i64>,
}

/// A transaction that a marker ended on this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub result: TxnResult,
}

impl ProducerTable {
    pub fn new(max_producers: usize) -> Self {
        ProducerTable {
            max_producers: max_producers.max(1),
            ..ProducerTable::default()
        }
    }

    /// Rebuilds a table from snapshot entries.
    pub fn from_entries(
        entries: Vec<ProducerStateEntry>,
        map_end_offset: i64,
        max_producers: usize,
    ) -> Self {
        let mut table = ProducerTable::new(max_producers);
        let mut entries = entries;
        entries.sort_by_key(|e| e.last_offset);
        for entry in entries {
            if let Some(first) = entry.current_txn_first_offset {
                table.ongoing.insert(first, entry.producer_id);
            }
            table.insert(entry);
        }
        table.map_end_offset = map_end_offset;
        table
    }

    fn insert(&mut self, entry: ProducerStateEntry) {
        if self.producers.len() >= self.max_producers
            && !self.producers.contains_key(&entry.producer_id)
        {
            self.evict_one();
        }
        self.by_recency.insert(entry.last_offset, entry.producer_id);
        self.producers.insert(entry.producer_id, entry);
    }

    /// Forgets the least recently appending producer that has no open transaction (one with
    /// an open transaction holds the LSO and must be ended by its marker).
    fn evict_one(&mut self) {
        let victim = self.by_recency.iter().find(|(_, pid)| {
            self.producers
                .get(pid)
                .is_some_and(|e| e.current_txn_first_offset.is_none())
        });
        if let Some((&offset, &pid)) = victim {
            self.by_recency.remove(&offset);
            self.producers.remove(&pid);
        }
    }

    /// Decides what to do with a client batch, in Kafka's order: duplicate, then
    /// verification, epoch, sequence and transaction consistency. `verified` says the
    /// transaction coordinator has this partition in the producer's open transaction (KIP-890
    /// part 1): without it, a transactional batch may not start a transaction here. Pure:
    /// reads the table, changes nothing.
    pub fn check(
        &self,
        batch: &BatchHeader,
        verified: bool,
    ) -> Result<AppendDecision, AppendError> {
        if !batch.has_producer_id() {
            return Ok(AppendDecision::Append);
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Unknown (new or expired) producers are accepted at any sequence, as in Kafka
            // since 2.5 (KIP-360): refusing them makes librdkafka fail fatally.
            check_txn_start(batch, None, verified)?;
            return Ok(AppendDecision::Append);
        };
        let epoch = batch.producer_epoch;
        let first_seq = batch.base_sequence;
        let last_seq = batch.last_sequence();
        if let Some(original) = entry.find_duplicate(epoch, first_seq, last_seq) {
            return Ok(AppendDecision::Duplicate(original));
        }
        check_txn_start(batch, entry.current_txn_first_offset, verified)?;
        if epoch < entry.producer_epoch {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id: batch.producer_id,
                batch_epoch: epoch,
                current_epoch: entry.producer_epoch,
            });
        }
        if epoch != entry.producer_epoch {
            // A bumped epoch restarts the sequence at 0.
            if first_seq != 0 && entry.producer_epoch != -1 {
                return Err(AppendError::OutOfOrderSequence {
                    producer_id: batch.producer_id,
                    epoch,
                    first_seq,
                    expected_seq: 0,
                });
            }
        } else if entry.producer_epoch != -1 && !in_sequence(entry.last_seq(), first_seq) {
            return Err(AppendError::OutOfOrderSequence {
                producer_id: batch.producer_id,
                epoch,
                first_seq,
                expected_seq: match entry.last_seq() {
                    s if s < 0 => 0,
                    s => tally_protocol::sequence::increment_sequence(s, 1),
                },
            });
        }
        if entry.current_txn_first_offset.is_some() && !batch.is_transactional() {
            return Err(AppendError::InvalidTxnState(format!(
                "producer {} has an open transaction on this partition and sent a \
                 non-transactional batch",
                batch.producer_id
            )));
        }
        Ok(AppendDecision::Append)
    }

    /// Decides whether a marker may end `marker.producer_id`'s transaction here: not from an
    /// older producer epoch, not from an older coordinator. Pure.
    pub fn check_marker(&self, marker: &EndTxnMarker) -> Result<(), AppendError> {
        let Some(entry) = self.producers.get(&marker.producer_id) else {
            return Ok(());
        };
        if marker.producer_epoch < entry.producer_epoch {
            return Err(AppendError::InvalidProducerEpoch {
                producer_id: marker.producer_id,
                batch_epoch: marker.producer_epoch,
                current_epoch: entry.producer_epoch,
            });
        }
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return Err(AppendError::TransactionCoordinatorFenced {
                producer_id: marker.producer_id,
                coordinator_epoch: marker.coordinator_epoch,
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Records a batch that is in the log, with its final offsets (`marker` is the control
    /// record of a control batch). The one way the table changes on append, and the same one
    /// replay uses, so the table is a function of the log. Returns the transaction a marker
    /// ended, if one was open.
    pub fn apply_batch(
        &mut self,
        batch: &BatchHeader,
        marker: Option<&EndTxnMarker>,
        append_ms: i64,
    ) -> Option<CompletedTxn> {
        debug_assert!(batch.base_offset >= self.map_end_offset || self.map_end_offset == 0);
        self.map_end_offset = batch.last_offset() + 1;
        if !batch.has_producer_id() || (batch.is_control() && marker.is_none()) {
            // A control batch of a type nobody knows changes nothing (Kafka skips them).
            return None;
        }
        let mut entry = match self.producers.remove(&batch.producer_id) {
            Some(e) => {
                self.by_recency.remove(&e.last_offset);
                e
            }
            None => ProducerStateEntry::empty(batch.producer_id),
        };
        let completed = match marker {
            Some(marker) => self.end_txn(&mut entry, batch, marker, append_ms),
            None => {
                if batch.is_transactional() && entry.current_txn_first_offset.is_none() {
                    entry.current_txn_first_offset = Some(batch.base_offset);
                    self.ongoing.insert(batch.base_offset, batch.producer_id);
                }
                entry.add_batch(
                    batch.producer_epoch,
                    BatchMetadata {
                        last_seq: batch.last_sequence(),
                        last_offset: batch.last_offset(),
                        offset_delta: batch.last_offset_delta,
                        timestamp: batch.max_timestamp,
                    },
                    append_ms,
                );
                None
            }
        };
        self.insert(entry);
        completed
    }

    /// A marker: the epoch and coordinator epoch move to the marker's, the open transaction
    /// (if any) ends, and stays unstable until its marker is below the high watermark.
    fn end_txn(
        &mut self,
        entry: &mut ProducerStateEntry,
        batch: &BatchHeader,
        marker: &EndTxnMarker,
        append_ms: i64,
    ) -> Option<CompletedTxn> {
        if marker.producer_epoch != entry.producer_epoch {
            entry.batch_metadata.clear();
            entry.producer_epoch = marker.producer_epoch;
        }
        entry.coordinator_epoch = marker.coordinator_epoch;
        entry.last_timestamp = batch.max_timestamp;
        entry.last_append_ms = entry.last_append_ms.max(append_ms);
        entry.last_offset = batch.base_offset;
        let first_offset = entry.current_txn_first_offset.take()?;
        self.ongoing.remove(&first_offset);
        self.unstable.insert(first_offset, batch.base_offset);
        Some(CompletedTxn {
            producer_id: batch.producer_id,
            first_offset,
            last_offset: batch.base_offset,
            result: marker.result,
        })
    }

    /// The first offset a read_committed reader may not pass: the start of the oldest open or
    /// not yet stable transaction, if any.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unstable = self.unstable.keys().next().copied();
        ongoing.into_iter().chain(unstable).min()
    }

    /// The LSO recorded with an aborted transaction just ended: the start of the oldest other
    /// open transaction, or the offset after the marker.
    pub fn last_stable_offset_after(&self, completed: &CompletedTxn) -> i64 {
        self.ongoing
            .keys()
            .next()
            .copied()
            .unwrap_or(completed.last_offset + 1)
            .min(completed.last_offset + 1)
    }

    /// Transactions whose marker is now below the high watermark no longer hold the LSO.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.unstable.retain(|_, marker| *marker >= high_watermark);
    }

    /// Open transactions, oldest first: (first offset, producer id).
    pub fn ongoing_txns(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing.iter().map(|(o, p)| (*o, *p))
    }

    /// Drops producers idle for `expiration_ms` (`producer.id.expiration.ms`).
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let expired: Vec<(i64, i64)> = self
            .producers
            .values()
            .filter(|e| e.is_expired(now_ms, expiration_ms))
            .map(|e| (e.producer_id, e.last_offset))
            .collect();
        for (pid, last_offset) in &expired {
            self.producers.remove(pid);
            self.by_recency.remove(last_offset);
        }
        expired.len()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    /// Entries ordered by producer id (stable output for snapshots and DescribeProducers).
    pub fn entries(&self) -> Vec<&ProducerStateEntry> {
        let mut v: Vec<&ProducerStateEntry> = self.producers.values().collect();
        v.sort_by_key(|e| e.producer_id);
        v
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn map_end_offset(&self) -> i64 {
        self.map_end_offset
    }

    pub fn set_map_end_offset(&mut self, offset: i64) {
        self.map_end_offset = offset;
    }
}

/// KIP-890 part 1: a transactional batch may start a transaction on a partition only once the
/// coordinator has added the partition to it; otherwise a late or retried batch after an
/// abort would open a transaction nobody will ever end (a hanging transaction).
fn check_txn_start(
    batch: &BatchHeader,
    open_txn: Option<i64>,
    verified: bool,
) -> Result<(), AppendError> {
    if batch.is_transactional() && open_txn.is_none() && !verified {
        return Err(AppendError::InvalidTxnState(format!(
            "producer {}: this partition is not part of its transaction (not verified with the \
             transaction coordinator)",
            batch.producer_id
        )));
    }
    Ok(())
}
