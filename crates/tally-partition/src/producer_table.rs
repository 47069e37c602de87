//! The producer table of one partition (Kafka's `ProducerStateManager` together with
//! `ProducerAppendInfo`): per producer id, its epoch and last five batches.

use std::collections::{BTreeMap, HashMap};

use tally_protocol::sequence::in_sequence;
use tally_protocol::BatchHeader;

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

    fn evict_one(&mut self) {
        if let Some((_, pid)) = self.by_recency.pop_first() {
            self.producers.remove(&pid);
        }
    }

    /// Decides what to do with a client batch, in Kafka's order: duplicate, then epoch, then
    /// sequence. Pure: reads the table, changes nothing.
    pub fn check(&self, batch: &BatchHeader) -> Result<AppendDecision, AppendError> {
        if !batch.has_producer_id() {
            return Ok(AppendDecision::Append);
        }
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            // Unknown (new or expired) producers are accepted at any sequence, as in Kafka
            // since 2.5 (KIP-360): refusing them makes librdkafka fail fatally.
            return Ok(AppendDecision::Append);
        };
        let epoch = batch.producer_epoch;
        let first_seq = batch.base_sequence;
        let last_seq = batch.last_sequence();
        if let Some(original) = entry.find_duplicate(epoch, first_seq, last_seq) {
            return Ok(AppendDecision::Duplicate(original));
        }
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
        Ok(AppendDecision::Append)
    }

    /// Records a batch that is in the log, with its final offsets. The one way the table
    /// changes on append, and the same one replay uses, so the table is a function of the log.
    pub fn apply_batch(&mut self, batch: &BatchHeader, append_ms: i64) {
        debug_assert!(batch.base_offset >= self.map_end_offset || self.map_end_offset == 0);
        self.map_end_offset = batch.last_offset() + 1;
        if !batch.has_producer_id() || batch.is_control() {
            // Control batches (transaction markers) arrive with transactions; none are
            // accepted from clients.
            return;
        }
        let mut entry = match self.producers.remove(&batch.producer_id) {
            Some(e) => {
                self.by_recency.remove(&e.last_offset);
                e
            }
            None => ProducerStateEntry::empty(batch.producer_id),
        };
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
        self.insert(entry);
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
