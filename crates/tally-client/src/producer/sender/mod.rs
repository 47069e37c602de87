//! The sender task: takes sealed batches, sends them to partition leaders, and settles every
//! answer. It owns all idempotence state, so the rules are applied in one place, one event at
//! a time (the contract of the design page, section B):
//!
//! - A batch gets its producer id, epoch and sequence when it is first sent, and keeps them
//!   (and its bytes) on every retry.
//! - Per partition, batches go out in sequence order, at most `max_in_flight` at a time; once a
//!   batch has to be retried, the partition sends one batch at a time, lowest sequence first,
//!   until nothing is left to retry. With at most five batches unacknowledged, every retry is
//!   still in the broker's five-batch memory and is answered with its original offset.
//! - A definite gap (the broker rejected a batch for good, or says a batch that should be next
//!   is out of order, or a batch of unknown fate timed out and nothing later proved it landed)
//!   is closed by an epoch bump (KIP-360): stop starting batches, let everything in flight
//!   settle (batches of unknown fate are still retried), then bump the epoch locally (or get a
//!   new producer id), restart every partition's sequence at 0 and restamp the batches that
//!   were certainly not written. A batch that may have been written is never restamped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, ProduceResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::sequence::increment_sequence;
use tally_protocol::ResponseError;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::batch::{Fate, SealedBatch};
use super::Inner;
use crate::error::{ClientError, ProduceError};

mod response;

type TopicPartition = (String, i32);

struct PartitionState {
    /// Sealed, unacknowledged batches in sequence order (stamped ones first).
    batches: VecDeque<SealedBatch>,
    next_sequence: i32,
    /// Stamp index the next stamped batch gets.
    next_stamp_index: u64,
    last_acked_sequence: i32,
    in_flight: usize,
    /// Next sequence expected after a batch of unknown fate expired; cleared when a later
    /// batch is acknowledged (which proves the expired one landed).
    unresolved: bool,
}

impl Default for PartitionState {
    fn default() -> Self {
        PartitionState {
            batches: VecDeque::new(),
            next_sequence: 0,
            next_stamp_index: 0,
            last_acked_sequence: -1,
            in_flight: 0,
            unresolved: false,
        }
    }
}

impl PartitionState {
    /// Some batch came back for a retry: send one at a time until it is settled.
    fn retrying(&self) -> bool {
        self.batches.iter().any(|b| b.attempts > 0 && !b.in_flight)
    }
}

struct ResponseEvent {
    node: i32,
    batches: Vec<(TopicPartition, u64)>,
    result: Result<ProduceResponse, ClientError>,
}

pub(crate) struct Sender {
    inner: Arc<Inner>,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    node_in_flight: BTreeMap<i32, usize>,
    events_tx: mpsc::UnboundedSender<ResponseEvent>,
    events_rx: mpsc::UnboundedReceiver<ResponseEvent>,
    next_batch_id: u64,
    producer_id: i64,
    epoch: i16,
    draining: bool,
    bump_needed: bool,
    new_id_needed: bool,
    metadata_stale: bool,
}

impl Sender {
    pub fn new(inner: Arc<Inner>, producer_id: i64, epoch: i16) -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Sender {
            inner,
            partitions: BTreeMap::new(),
            node_in_flight: BTreeMap::new(),
            events_tx,
            events_rx,
            next_batch_id: 0,
            producer_id,
            epoch,
            draining: false,
            bump_needed: false,
            new_id_needed: false,
            metadata_stale: false,
        }
    }

    fn idempotent(&self) -> bool {
        self.inner.config.enable_idempotence
    }

    /// Whether a sequence gap or an unknown producer is repaired here, by bumping the epoch
    /// (KIP-360). Not under transaction version 2: the coordinator owns the epoch, the
    /// failed batch makes the transaction abortable, and the abort's new epoch restarts the
    /// sequences.
    fn recovers_locally(&self) -> bool {
        self.idempotent() && self.inner.txn.as_ref().is_none_or(|t| !t.uses_v2())
    }

    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let now = Instant::now();
            self.collect(now);
            self.expire(now);
            self.finish_drain().await;
            if self.metadata_stale {
                self.refresh_metadata().await;
            }
            self.send(now).await;
            self.settle_idle();
            let stopping = *shutdown.borrow();
            if stopping && self.is_idle() {
                return;
            }
            let deadline = self.next_deadline(now);
            tokio::select! {
                Some(event) = self.events_rx.recv() => self.handle(event),
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                changed = shutdown.changed(), if !stopping => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            // Settle everything that is already waiting before sending more.
            while let Ok(event) = self.events_rx.try_recv() {
                self.handle(event);
            }
        }
    }

    fn is_idle(&self) -> bool {
        self.inner.outstanding.load(Ordering::SeqCst) == 0
    }

    fn settle_idle(&self) {
        if self.is_idle() {
            self.inner.flush_requested.store(false, Ordering::SeqCst);
            self.inner.idle.notify_waiters();
        }
    }

    fn done(&self, records: usize) {
        self.inner
            .outstanding
            .fetch_sub(records as u64, Ordering::SeqCst);
    }

    /// Seals batches that are full, have lingered long enough, or are wanted by a flush.
    fn collect(&mut self, now: Instant) {
        let linger = Duration::from_millis(self.inner.config.linger_ms);
        let flushing = self.inner.flush_requested.load(Ordering::SeqCst);
        let taken = self.inner.accumulator.lock().expect("lock").take_ready(
            now,
            linger,
            flushing,
            |topic, partition| self.may_seal(topic, partition),
        );
        for open in taken {
            self.next_batch_id += 1;
            let tp = (open.topic.clone(), open.partition);
            let transactional = self.inner.config.transactional_id.is_some();
            let compression = self.inner.config.compression;
            match SealedBatch::seal(self.next_batch_id, open, compression, transactional) {
                Ok(batch) => self
                    .partitions
                    .entry(tp)
                    .or_default()
                    .batches
                    .push_back(batch),
                Err(failed) => self.done(failed),
            }
        }
    }

    /// Whether a lingered batch should be sealed now: only when it could go out at once. While
    /// its partition still has a sealed batch waiting, or its leader already has
    /// `max_in_flight` requests out, the open batch keeps filling, as in Kafka's accumulator:
    /// under load batches grow instead of the queue of small ones getting longer. (Full batches
    /// are always sealed; they cannot grow.)
    fn may_seal(&self, topic: &str, partition: i32) -> bool {
        let tp = (topic.to_string(), partition);
        if let Some(state) = self.partitions.get(&tp) {
            if state.batches.iter().any(|b| !b.in_flight) {
                return false;
            }
        }
        let max = self.inner.config.max_in_flight_requests_per_connection;
        match self.inner.cluster.leader(topic, partition) {
            Some(node) => *self.node_in_flight.get(&node).unwrap_or(&0) < max,
            None => true,
        }
    }

    /// Fails batches past `delivery_timeout_ms` (never one in flight: its answer is awaited).
    fn expire(&mut self, now: Instant) {
        let timeout = Duration::from_millis(self.inner.config.delivery_timeout_ms);
        let idempotent = self.idempotent();
        let recovers_locally = self.recovers_locally();
        let mut expired_records = 0;
        let mut bump = false;
        let mut drain = false;
        for state in self.partitions.values_mut() {
            let mut kept = VecDeque::with_capacity(state.batches.len());
            while let Some(batch) = state.batches.pop_front() {
                if batch.in_flight || now.duration_since(batch.created) < timeout {
                    kept.push_back(batch);
                    continue;
                }
                let fate = batch.fate;
                if idempotent && batch.stamp.is_some() {
                    match fate {
                        // Sent and maybe written: only a later acknowledgement can tell.
                        Fate::Unknown => {
                            state.unresolved = true;
                            drain = true;
                        }
                        // Stamped but not written: its sequence is now a gap.
                        _ => bump = recovers_locally,
                    }
                }
                expired_records += batch.record_count as usize;
                let error = ProduceError::TimedOut {
                    possibly_persisted: fate == Fate::Unknown,
                    last_error: batch.last_error.clone(),
                };
                debug!(topic = %batch.topic, partition = batch.partition, ?fate, "batch expired");
                self.inner.failed_records.fetch_add(1, Ordering::SeqCst);
                batch.fail(error);
            }
            state.batches = kept;
        }
        if expired_records > 0 {
            self.done(expired_records);
        }
        if bump {
            self.bump_needed = true;
        }
        if bump || drain {
            self.draining = true;
        }
    }

    /// Transaction version 2 ends every transaction with a new epoch (or producer id), which
    /// the producer sets once the transaction's batches are all answered: take it before
    /// stamping another batch, with every sequence from 0.
    fn adopt_transaction_epoch(&mut self) {
        if self.inner.txn.is_none() {
            // Only the transactional path changes the producer's epoch outside this task.
            return;
        }
        let current = *self.inner.producer.lock().expect("lock");
        let stamped = || {
            self.partitions
                .values()
                .any(|p| p.batches.iter().any(|b| b.stamp.is_some()))
        };
        // A batch stamped with the old epoch (sent while the transaction ended, against the
        // rules) settles first.
        if current == (self.producer_id, self.epoch) || stamped() {
            return;
        }
        (self.producer_id, self.epoch) = current;
        for state in self.partitions.values_mut() {
            state.next_sequence = 0;
            state.last_acked_sequence = -1;
            state.unresolved = false;
        }
    }

    /// Once nothing is in flight and no batch is of unknown fate, bump the epoch if a gap
    /// needs closing, restart sequences and restamp what was certainly not written.
    async fn finish_drain(&mut self) {
        if !self.draining {
            return;
        }
        let settled = self
            .partitions
            .values()
            .all(|p| p.in_flight == 0 && p.batches.iter().all(|b| b.fate != Fate::Unknown));
        if !settled {
            return;
        }
        let unresolved = self.partitions.values().any(|p| p.unresolved);
        if (self.bump_needed || self.new_id_needed || unresolved) && self.recovers_locally() {
            if self.new_id_needed || self.epoch >= i16::MAX - 1 {
                match super::init_producer_id(&self.inner).await {
                    Ok((id, epoch)) => {
                        self.producer_id = id;
                        self.epoch = epoch;
                    }
                    Err(e) => {
                        warn!(error = %e, "InitProducerId failed; will retry");
                        return;
                    }
                }
            } else {
                self.epoch += 1;
            }
            *self.inner.producer.lock().expect("lock") = (self.producer_id, self.epoch);
            warn!(
                producer_id = self.producer_id,
                epoch = self.epoch,
                "producer epoch bumped to close a sequence gap"
            );
            for state in self.partitions.values_mut() {
                state.next_sequence = 0;
                state.last_acked_sequence = -1;
                state.unresolved = false;
                for batch in &mut state.batches {
                    batch.stamp = None;
                    batch.fate = Fate::NeverSent;
                    batch.attempts = 0;
                    batch.retry_at = None;
                }
            }
        }
        self.draining = false;
        self.bump_needed = false;
        self.new_id_needed = false;
    }

    async fn refresh_metadata(&mut self) {
        let topics: Vec<String> = {
            let mut t: Vec<String> = self.partitions.keys().map(|(t, _)| t.clone()).collect();
            t.sort();
            t.dedup();
            t
        };
        if self.inner.cluster.refresh(&topics).await.is_ok() {
            self.metadata_stale = false;
        }
    }

    fn next_deadline(&self, now: Instant) -> Instant {
        let mut next = now + Duration::from_millis(200);
        let linger = Duration::from_millis(self.inner.config.linger_ms);
        if let Some(due) = self
            .inner
            .accumulator
            .lock()
            .expect("lock")
            .next_linger_deadline(now, linger)
        {
            next = next.min(due);
        }
        // Only times still ahead: a batch whose retry time has passed and that is still
        // waiting is held by something an answer ends (the in-flight limit, a drain), and a
        // deadline at `now` would spin this loop until that answer comes.
        let timeout = Duration::from_millis(self.inner.config.delivery_timeout_ms);
        for state in self.partitions.values() {
            for b in state.batches.iter().filter(|b| !b.in_flight) {
                let times = [b.retry_at, Some(b.created + timeout)];
                for at in times.into_iter().flatten().filter(|at| *at > now) {
                    next = next.min(at);
                }
            }
        }
        next
    }

    /// Index of the batch the partition may send next, if any.
    fn sendable(&self, state: &PartitionState, now: Instant) -> Option<usize> {
        let max = self.inner.config.max_in_flight_requests_per_connection;
        if state.in_flight >= max {
            return None;
        }
        if self.draining {
            // Only batches that may be written are resent while draining, one at a time, with
            // their old stamp, to learn their fate: a duplicate answer says written, an
            // OUT_OF_ORDER_SEQUENCE_NUMBER not. A batch the broker refused may stand before
            // them; waiting for it would never end the drain (the soak's stalled producer).
            if state.in_flight > 0 {
                return None;
            }
            let index = state
                .batches
                .iter()
                .position(|b| !b.in_flight && b.fate == Fate::Unknown)?;
            let batch = &state.batches[index];
            return match batch.retry_at {
                Some(at) if at > now => None,
                _ => Some(index),
            };
        }
        let index = state.batches.iter().position(|b| !b.in_flight)?;
        let batch = &state.batches[index];
        if batch.retry_at.is_some_and(|at| at > now) {
            return None;
        }
        if self.idempotent() {
            if state.retrying() && (index != 0 || state.in_flight > 0) {
                return None;
            }
            // The broker remembers a producer's last five batches. A batch that may have been
            // written (sent, no answer yet) must stay among them for its retry to be recognised:
            // counting from the oldest such batch, at most `max` batches may ever be stamped,
            // acknowledged ones included (they too occupy the broker's memory).
            if batch.stamp.is_none() {
                if let Some(oldest) = state.batches.iter().find(|b| b.fate == Fate::Unknown) {
                    if state.next_stamp_index - oldest.stamp_index >= max as u64 {
                        return None;
                    }
                }
            }
        }
        Some(index)
    }

    async fn send(&mut self, now: Instant) {
        self.adopt_transaction_epoch();
        // Group partitions with something to send by leader.
        let mut by_node: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for (tp, state) in &self.partitions {
            if self.sendable(state, now).is_none() {
                continue;
            }
            match self.inner.cluster.leader(&tp.0, tp.1) {
                Some(node) => by_node.entry(node).or_default().push(tp.clone()),
                None => self.metadata_stale = true,
            }
        }
        let max = self.inner.config.max_in_flight_requests_per_connection;
        for (node, tps) in by_node {
            let connection = match self.inner.cluster.connection(node).await {
                Ok(c) => c,
                Err(e) => {
                    debug!(node, error = %e, "no connection to the leader");
                    self.metadata_stale = true;
                    continue;
                }
            };
            let version = match connection.version(ApiKey::Produce, 3, 12) {
                Ok(v) => v,
                Err(e) => {
                    self.fail_all_for_node(&tps, e);
                    continue;
                }
            };
            loop {
                if *self.node_in_flight.get(&node).unwrap_or(&0) >= max {
                    break;
                }
                let mut picked: Vec<(TopicPartition, u64)> = Vec::new();
                let mut topics: BTreeMap<String, Vec<PartitionProduceData>> = BTreeMap::new();
                for tp in &tps {
                    let state = self.partitions.get(tp).expect("partition state");
                    let Some(index) = self.sendable(state, now) else {
                        continue;
                    };
                    let (producer_id, epoch, idempotent) =
                        (self.producer_id, self.epoch, self.idempotent());
                    let state = self.partitions.get_mut(tp).expect("partition state");
                    let next_sequence = state.next_sequence;
                    let batch = &mut state.batches[index];
                    if idempotent && batch.stamp.is_none() {
                        batch.stamp(producer_id, epoch, next_sequence);
                        batch.stamp_index = state.next_stamp_index;
                        state.next_stamp_index += 1;
                        state.next_sequence = increment_sequence(next_sequence, batch.record_count);
                    }
                    let batch = &mut state.batches[index];
                    batch.in_flight = true;
                    batch.attempts += 1;
                    batch.fate = Fate::Unknown;
                    state.in_flight += 1;
                    picked.push((tp.clone(), batch.id));
                    topics.entry(tp.0.clone()).or_default().push(
                        PartitionProduceData::default()
                            .with_index(tp.1)
                            .with_records(Some(state.batches[index].payload())),
                    );
                }
                if picked.is_empty() {
                    break;
                }
                let request = ProduceRequest::default()
                    .with_transactional_id(
                        self.inner
                            .config
                            .transactional_id
                            .clone()
                            .map(|id| TransactionalId(StrBytes::from_string(id))),
                    )
                    .with_acks(self.inner.config.acks)
                    .with_timeout_ms(
                        self.inner
                            .config
                            .client
                            .request_timeout_ms
                            .min(i32::MAX as u64) as i32,
                    )
                    .with_topic_data(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                TopicProduceData::default()
                                    .with_name(TopicName(StrBytes::from_string(name)))
                                    .with_partition_data(partitions)
                            })
                            .collect(),
                    );
                *self.node_in_flight.entry(node).or_default() += 1;
                let events = self.events_tx.clone();
                if self.inner.config.acks == 0 {
                    let result = connection
                        .submit_without_answer(&request, version)
                        .map(|_| ProduceResponse::default());
                    let _ = events.send(ResponseEvent {
                        node,
                        batches: picked,
                        result,
                    });
                    continue;
                }
                match connection.submit(&request, version) {
                    Ok(rx) => {
                        let connection = Arc::clone(&connection);
                        let timeout = self.inner.config.client.request_timeout();
                        tokio::spawn(async move {
                            let result = connection
                                .wait::<ProduceRequest>(rx, version, timeout)
                                .await;
                            let _ = events.send(ResponseEvent {
                                node,
                                batches: picked,
                                result,
                            });
                        });
                    }
                    Err(e) => {
                        let _ = events.send(ResponseEvent {
                            node,
                            batches: picked,
                            result: Err(e),
                        });
                        break;
                    }
                }
            }
        }
    }

    /// The broker cannot take Produce at any version we speak: nothing sent there can succeed.
    fn fail_all_for_node(&mut self, tps: &[TopicPartition], error: ClientError) {
        let mut n = 0;
        for tp in tps {
            if let Some(state) = self.partitions.get_mut(tp) {
                for batch in state.batches.drain(..) {
                    n += batch.record_count as usize;
                    self.inner.failed_records.fetch_add(1, Ordering::SeqCst);
                    batch.fail(ProduceError::Client(error.clone()));
                }
            }
        }
        self.done(n);
    }
}
