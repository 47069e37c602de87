//! Open batches per partition, filled by `send` and taken by the sender when full, lingered
//! long enough, or flushed. Records without key or partition stick to one partition per batch
//! (Kafka's sticky partitioning), so batches fill up.
//!
//! `append` runs once per record under a lock, so it looks topics up by `&str` and allocates
//! nothing but the record's slot in its batch.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use rand::Rng;
use tokio::sync::OwnedSemaphorePermit;

use super::batch::{OpenBatch, PendingRecord};
use super::delivery::{Completion, DeliveryFuture};
use crate::partitioner::partition_for_key;

#[derive(Default)]
struct TopicBatches {
    open: BTreeMap<i32, OpenBatch>,
    /// The partition keyless records go to until its batch closes.
    sticky: Option<i32>,
}

#[derive(Default)]
pub(crate) struct Accumulator {
    topics: BTreeMap<String, TopicBatches>,
    ready: Vec<OpenBatch>,
}

impl Accumulator {
    /// Adds a record holding `permit` (its share of buffer memory); returns the record's
    /// delivery future and whether the sender should be woken (a batch is ready, or a new one
    /// started and its linger clock runs).
    pub fn append(
        &mut self,
        record: PendingRecord,
        permit: OwnedSemaphorePermit,
        size: usize,
        partitions: i32,
        batch_size: usize,
    ) -> (DeliveryFuture, bool) {
        if !self.topics.contains_key(record.record.topic.as_str()) {
            self.topics
                .insert(record.record.topic.clone(), TopicBatches::default());
        }
        let topic = self
            .topics
            .get_mut(record.record.topic.as_str())
            .expect("topic");
        let partition = match (record.record.partition, &record.record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, partitions),
            (None, None) => *topic
                .sticky
                .get_or_insert_with(|| rand::rng().random_range(0..partitions)),
        };
        let mut wake = false;
        if let Some(batch) = topic.open.get(&partition) {
            if batch.bytes + size > batch_size && !batch.records.is_empty() {
                let full = topic.open.remove(&partition).expect("batch");
                Self::close(topic, &mut self.ready, full, partitions);
                wake = true;
            }
        }
        let batch = topic.open.entry(partition).or_insert_with(|| {
            wake = true;
            OpenBatch {
                topic: record.record.topic.clone(),
                partition,
                records: Vec::new(),
                bytes: 0,
                created: Instant::now(),
                completion: Completion::new(),
                permit: None,
            }
        });
        let delivery = batch
            .completion
            .future(batch.records.len(), partition, record.timestamp_ms);
        match &mut batch.permit {
            Some(held) => held.merge(permit),
            None => batch.permit = Some(permit),
        }
        batch.records.push(record);
        batch.bytes += size;
        if batch.bytes >= batch_size {
            let full = topic.open.remove(&partition).expect("batch");
            Self::close(topic, &mut self.ready, full, partitions);
            wake = true;
        }
        (delivery, wake)
    }

    /// Moves a batch to the ready list; keyless records move on to another partition.
    fn close(
        topic: &mut TopicBatches,
        ready: &mut Vec<OpenBatch>,
        batch: OpenBatch,
        partitions: i32,
    ) {
        if topic.sticky == Some(batch.partition) && partitions > 1 {
            let next = (batch.partition + rand::rng().random_range(1..partitions)) % partitions;
            topic.sticky = Some(next);
        }
        ready.push(batch);
    }

    /// Batches to seal: all full ones, and open ones older than `linger` (all when flushing)
    /// whose partition `may_seal` says could send them now.
    pub fn take_ready(
        &mut self,
        now: Instant,
        linger: Duration,
        flushing: bool,
        may_seal: impl Fn(&str, i32) -> bool,
    ) -> Vec<OpenBatch> {
        let mut out = std::mem::take(&mut self.ready);
        for (name, topic) in self.topics.iter_mut() {
            let due: Vec<i32> = topic
                .open
                .iter()
                .filter(|(_, b)| flushing || now.duration_since(b.created) >= linger)
                .map(|(p, _)| *p)
                .filter(|p| may_seal(name, *p))
                .collect();
            for partition in due {
                let batch = topic.open.remove(&partition).expect("batch");
                if topic.sticky == Some(partition) {
                    topic.sticky = None;
                }
                out.push(batch);
            }
        }
        out
    }

    /// The next moment an open batch finishes lingering, after `now`. (Batches already past
    /// it and still open are waiting for their partition to be able to send: an answer, not a
    /// timer, wakes the sender for them.)
    pub fn next_linger_deadline(&self, now: Instant, linger: Duration) -> Option<Instant> {
        self.topics
            .values()
            .flat_map(|t| t.open.values().map(|b| b.created + linger))
            .filter(|due| *due > now)
            .min()
    }
}
