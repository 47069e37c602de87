use std::collections::VecDeque;

use crate::batch_metadata::BatchMetadata;

/// How many recent batches per producer and partition are remembered for duplicate detection.
/// With at most 5 requests in flight, any retry is one of these.
pub const NUM_BATCHES_TO_RETAIN: usize = 5;

/// One producer's state on one partition (Kafka's `ProducerStateEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    pub producer_id: i64,
    /// Last epoch seen; -1 when unknown.
    pub producer_epoch: i16,
    /// The last batches of the current epoch, oldest first; cleared when the epoch changes.
    pub batch_metadata: VecDeque<BatchMetadata>,
    /// Epoch of the transaction coordinator whose marker was applied last; -1 if none.
    pub coordinator_epoch: i32,
    /// Max timestamp of the last batch (the client's clock for CreateTime topics).
    pub last_timestamp: i64,
    /// Broker clock when this producer last appended (or when its state was replayed);
    /// expiry uses the later of this and `last_timestamp`, so a producer with a slow clock is
    /// not forgotten early.
    pub last_append_ms: i64,
    /// Offset of the last batch appended: the deterministic order of eviction.
    pub last_offset: i64,
    /// First offset of the producer's open transaction on this partition, if any.
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerStateEntry {
    pub fn empty(producer_id: i64) -> Self {
        ProducerStateEntry {
            producer_id,
            producer_epoch: -1,
            batch_metadata: VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN),
            coordinator_epoch: -1,
            last_timestamp: -1,
            last_append_ms: -1,
            last_offset: -1,
            current_txn_first_offset: None,
        }
    }

    /// Last sequence of the newest cached batch, or -1.
    pub fn last_seq(&self) -> i32 {
        self.batch_metadata.back().map_or(-1, |b| b.last_seq)
    }

    /// The cached batch with exactly this sequence range, if the epoch matches.
    pub fn find_duplicate(
        &self,
        epoch: i16,
        first_seq: i32,
        last_seq: i32,
    ) -> Option<BatchMetadata> {
        if epoch != self.producer_epoch {
            return None;
        }
        self.batch_metadata
            .iter()
            .find(|b| b.first_seq() == first_seq && b.last_seq == last_seq)
            .copied()
    }

    /// Records a batch: clears the cache on an epoch change, keeps the newest five.
    pub fn add_batch(&mut self, epoch: i16, batch: BatchMetadata, append_ms: i64) {
        if epoch != self.producer_epoch {
            self.batch_metadata.clear();
            self.producer_epoch = epoch;
        }
        if self.batch_metadata.len() == NUM_BATCHES_TO_RETAIN {
            self.batch_metadata.pop_front();
        }
        self.batch_metadata.push_back(batch);
        self.last_timestamp = batch.timestamp;
        self.last_append_ms = self.last_append_ms.max(append_ms);
        self.last_offset = batch.last_offset;
    }

    /// Whether the producer has been idle for `expiration_ms` at `now_ms`.
    pub fn is_expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.current_txn_first_offset.is_none()
            && now_ms - self.last_timestamp.max(self.last_append_ms) >= expiration_ms
    }
}
