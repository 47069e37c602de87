//! One partition's counters and gauges, kept by its writer (their only writer: relaxed
//! atomics, no lock) and read by `/metrics` at scrape time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

use tally_partition::{AppendError, EntryOrigin, Partition};
use tally_protocol::BatchHeader;

use crate::partition_handle::{AppendRequest, AppendResult};

#[derive(Debug, Default)]
pub struct PartitionMetrics {
    /// Client batches appended, and their records and bytes.
    pub batches_appended: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Retries answered with their original offset from the producer's five-batch memory.
    pub duplicates: AtomicU64,
    /// OUT_OF_ORDER_SEQUENCE_NUMBER answers.
    pub out_of_order: AtomicU64,
    /// Batches of a stale producer epoch (INVALID_PRODUCER_EPOCH).
    pub fenced: AtomicU64,
    /// Idempotent batches accepted from a producer the partition did not know (new, expired
    /// or evicted: accepted at any sequence, as in Kafka).
    pub unknown_producers: AtomicU64,
    pub producers_expired: AtomicU64,
    /// Records and bytes returned by Fetch answers (every fetching connection writes these).
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub producers_tracked: AtomicI64,
    pub log_start_offset: AtomicI64,
    pub log_end_offset: AtomicI64,
    pub size_bytes: AtomicI64,
    pub segments: AtomicI64,
    /// Idempotency keys (topic config `idempotency.key`): records not stored because their
    /// key was, keys forgotten at `idempotency.window.max.keys`, and keys remembered. Copied
    /// from the partition's key index after each turn of the writer.
    pub key_duplicates_dropped: AtomicU64,
    pub keys_evicted: AtomicU64,
    pub keys_tracked: AtomicI64,
    /// Duplicates absorbed per producer id, for the console (not a metric: per-producer series
    /// would be unbounded). Held in memory only; it starts again at a restart.
    duplicates_by_producer: Mutex<HashMap<i64, u64>>,
}

/// Producers whose absorbed duplicates are counted one by one, per partition; beyond it the
/// partition's total still counts them.
pub const MAX_PRODUCERS_COUNTED: usize = 10_000;

/// A copy of the counters and gauges at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionCounts {
    pub batches_appended: u64,
    pub messages_in: u64,
    pub bytes_in: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub fenced: u64,
    pub unknown_producers: u64,
    pub producers_expired: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub producers_tracked: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub size_bytes: i64,
    pub segments: i64,
    pub key_duplicates_dropped: u64,
    pub keys_evicted: u64,
    pub keys_tracked: i64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl PartitionMetrics {
    /// Counts one client append's outcome; `known` says the producer was in the table before.
    pub(crate) fn record(&self, request: &AppendRequest, known: bool, result: &AppendResult) {
        if request.origin != EntryOrigin::Client {
            return;
        }
        match result {
            Ok(outcome) if outcome.duplicate => {
                add(&self.duplicates, 1);
                self.count_duplicate(request.header.producer_id);
            }
            Ok(_) => {
                add(&self.batches_appended, 1);
                add(
                    &self.messages_in,
                    request.header.records_count.max(0) as u64,
                );
                add(&self.bytes_in, request.batch.len() as u64);
                if request.header.has_producer_id() && !known {
                    add(&self.unknown_producers, 1);
                }
            }
            Err(AppendError::OutOfOrderSequence { .. }) => add(&self.out_of_order, 1),
            Err(AppendError::InvalidProducerEpoch { .. }) => add(&self.fenced, 1),
            Err(_) => {}
        }
    }

    /// The gauges that follow the partition's state (after a turn of its writer).
    pub(crate) fn observe(&self, partition: &Partition, storage: bool) {
        let set = |g: &AtomicI64, v: i64| g.store(v, Ordering::Relaxed);
        set(&self.producers_tracked, partition.producers().len() as i64);
        set(&self.log_start_offset, partition.log_start_offset());
        set(&self.log_end_offset, partition.log_end_offset());
        if let Some(index) = partition.key_index() {
            let stats = index.stats();
            self.key_duplicates_dropped
                .store(stats.dropped_records, Ordering::Relaxed);
            self.keys_evicted
                .store(stats.evicted_keys, Ordering::Relaxed);
            set(&self.keys_tracked, index.len() as i64);
        }
        if storage {
            set(&self.size_bytes, partition.log().size_in_bytes() as i64);
            set(&self.segments, partition.log().segment_count() as i64);
        }
    }

    /// Counts the batches of a Fetch answer's records for this partition.
    pub(crate) fn record_fetched(&self, records: &[u8]) {
        add(&self.bytes_out, records.len() as u64);
        let mut rest = records;
        let mut messages = 0u64;
        while let Ok(header) = BatchHeader::parse(rest) {
            messages += header.records_count.max(0) as u64;
            let size = header.size_in_bytes();
            if size == 0 || size > rest.len() {
                break;
            }
            rest = &rest[size..];
        }
        add(&self.messages_out, messages);
    }

    fn count_duplicate(&self, producer_id: i64) {
        let mut by_producer = self.duplicates_by_producer.lock();
        let full = by_producer.len() >= MAX_PRODUCERS_COUNTED;
        match by_producer.get_mut(&producer_id) {
            Some(n) => *n += 1,
            None if !full => {
                by_producer.insert(producer_id, 1);
            }
            None => {}
        }
    }

    /// Duplicates absorbed per producer id (those counted one by one).
    pub fn duplicates_by_producer(&self) -> HashMap<i64, u64> {
        self.duplicates_by_producer.lock().clone()
    }

    pub fn snapshot(&self) -> PartitionCounts {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = |a: &AtomicI64| a.load(Ordering::Relaxed);
        PartitionCounts {
            batches_appended: c(&self.batches_appended),
            messages_in: c(&self.messages_in),
            bytes_in: c(&self.bytes_in),
            duplicates: c(&self.duplicates),
            out_of_order: c(&self.out_of_order),
            fenced: c(&self.fenced),
            unknown_producers: c(&self.unknown_producers),
            producers_expired: c(&self.producers_expired),
            messages_out: c(&self.messages_out),
            bytes_out: c(&self.bytes_out),
            producers_tracked: g(&self.producers_tracked),
            log_start_offset: g(&self.log_start_offset),
            log_end_offset: g(&self.log_end_offset),
            size_bytes: g(&self.size_bytes),
            segments: g(&self.segments),
            key_duplicates_dropped: c(&self.key_duplicates_dropped),
            keys_evicted: c(&self.keys_evicted),
            keys_tracked: g(&self.keys_tracked),
        }
    }
}
