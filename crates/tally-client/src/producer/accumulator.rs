//! Open batches per partition, filled by `send` and taken by the sender when full, lingered
//! long enough, or flushed. Records without key or partition stick to one partition per batch
//! (Kafka's sticky partitioning), so batches fill up.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;

use super::batch::{OpenBatch, PendingRecord};
use crate::partitioner::partition_for_key;

#[derive(Default)]
pub(crate) struct Accumulator {
    open: HashMap<(String, i32), OpenBatch>,
    ready: Vec<OpenBatch>,
    sticky: HashMap<String, i32>,
}

impl Accumulator {
    /// Adds a record; returns whether the sender should be woken (a batch is ready, or a new
    /// one started and its linger clock runs).
    pub fn append(
        &mut self,
        record: PendingRecord,
        size: usize,
        partitions: i32,
        batch_size: usize,
    ) -> bool {
        let topic = record.record.topic.clone();
        let partition = match (record.record.partition, &record.record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => *self
                .sticky
                .entry(topic.clone())
                .or_insert_with(|| rand::rng().random_range(0..partitions)),
        };
        let key = (topic.clone(), partition);
        let mut wake = false;
        if let Some(batch) = self.open.get(&key) {
            if batch.bytes + size > batch_size && !batch.records.is_empty() {
                let full = self.open.remove(&key).expect("batch");
                self.close(full, partitions);
                wake = true;
            }
        }
        let batch = self.open.entry(key.clone()).or_insert_with(|| {
            wake = true;
            OpenBatch {
                topic: topic.clone(),
                partition,
                records: Vec::new(),
                bytes: 0,
                created: Instant::now(),
            }
        });
        batch.records.push(record);
        batch.bytes += size;
        if batch.bytes >= batch_size {
            let full = self.open.remove(&key).expect("batch");
            self.close(full, partitions);
            wake = true;
        }
        wake
    }

    /// Moves a batch to the ready list; keyless records move on to another partition.
    fn close(&mut self, batch: OpenBatch, partitions: i32) {
        if self.sticky.get(&batch.topic) == Some(&batch.partition) && partitions > 1 {
            let next = (batch.partition + rand::rng().random_range(1..partitions)) % partitions;
            self.sticky.insert(batch.topic.clone(), next);
        }
        self.ready.push(batch);
    }

    /// Batches to seal: all full ones, and open ones older than `linger` (all when flushing).
    pub fn take_ready(&mut self, now: Instant, linger: Duration, flushing: bool) -> Vec<OpenBatch> {
        let mut out = std::mem::take(&mut self.ready);
        let due: Vec<(String, i32)> = self
            .open
            .iter()
            .filter(|(_, b)| flushing || now.duration_since(b.created) >= linger)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let batch = self.open.remove(&key).expect("batch");
            if self.sticky.get(&batch.topic) == Some(&batch.partition) {
                self.sticky.remove(&batch.topic);
            }
            out.push(batch);
        }
        out
    }

    pub fn oldest_open(&self) -> Option<Instant> {
        self.open.values().map(|b| b.created).min()
    }
}
