//! The transaction coordinator's runtime: it asks `machine.rs` what to do, writes the result
//! to `__transaction_state`, applies it in memory once written, then answers; it sends the
//! markers of a transaction being ended and records its completion.
//!
//! One transactional id is worked on by one operation at a time (a busy set, like Kafka's
//! pending state): another request for it meanwhile gets CONCURRENT_TRANSACTIONS. The lock on
//! the map is held only to read or swap an entry, never across a write. Each operation runs as
//! a task of its own, so a client that disconnects cannot leave a written record unapplied.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tally_partition::AppendError;
use tally_protocol::{EndTxnMarker, TxnResult};
use tracing::{info, warn};

use super::machine::{self, EndPlan, InitPlan, TxnError};
use super::metadata::{TxnMetadata, TxnState};
use super::txn_log::TxnLog;
use crate::clock::Clock;
use crate::group::store::OFFSETS_TOPIC;
use crate::partition_handle::{AppendRequest, PartitionHandle, WriterMode};
use crate::producer_id_manager::ProducerIdManager;
use crate::topic_registry::TopicRegistry;

/// The coordinator's settings (Kafka's keys).
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`
    pub abort_check_interval_ms: u64,
    /// `transaction.state.log.compaction.min.records` (Tally only).
    pub compaction_min_records: u64,
}

/// The coordinator epoch written into markers. One broker that never hands its partitions to
/// another: no older coordinator can exist, so the epoch never needs to move.
const COORDINATOR_EPOCH: i32 = 0;
/// Pause between attempts to write a marker that failed for a reason that may pass.
const MARKER_RETRY_MS: u64 = 100;
/// How long a request that meets a transaction being ended (or another request for the same
/// id) waits for it inside the broker before CONCURRENT_TRANSACTIONS is answered. Kafka
/// answers at once and the client backs off (tens of milliseconds); the markers of one
/// transaction take about a millisecond here.
const CONCURRENT_WAIT_MS: u64 = 1_000;

/// Called when a marker reached `__consumer_offsets`: (producer id, committed).
pub type OffsetsMarkerHook = Arc<dyn Fn(i64, bool) + Send + Sync>;

#[derive(Default)]
struct State {
    entries: HashMap<String, TxnMetadata>,
    busy: HashSet<String>,
}

pub struct TxnCoordinator {
    state: Mutex<State>,
    log: TxnLog,
    topics: Arc<TopicRegistry>,
    producer_ids: Arc<ProducerIdManager>,
    clock: Arc<dyn Clock>,
    pub config: TxnConfig,
    writer_mode: WriterMode,
    on_offsets_marker: OffsetsMarkerHook,
    /// Woken whenever an operation on any transactional id ends.
    changed: tokio::sync::Notify,
}

/// Holds a transactional id for one operation; lets it go when dropped.
struct Busy<'a> {
    coordinator: &'a TxnCoordinator,
    id: String,
}

impl Busy<'_> {
    /// Applies metadata that is now in the log.
    fn apply(&self, m: Option<TxnMetadata>) {
        let mut state = self.coordinator.state.lock();
        match m {
            Some(m) => state.entries.insert(self.id.clone(), m),
            None => state.entries.remove(&self.id),
        };
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.coordinator.state.lock().busy.remove(&self.id);
        self.coordinator.changed.notify_waiters();
    }
}

impl TxnCoordinator {
    /// Loads every transactional id's latest state from `logs` (blocking reads: call off the
    /// async workers). Call [`TxnCoordinator::resume`] next, on the runtime.
    pub fn open(
        logs: Vec<Arc<PartitionHandle>>,
        topics: Arc<TopicRegistry>,
        producer_ids: Arc<ProducerIdManager>,
        clock: Arc<dyn Clock>,
        config: TxnConfig,
        writer_mode: WriterMode,
        on_offsets_marker: OffsetsMarkerHook,
    ) -> Result<TxnCoordinator, String> {
        let mut state = State::default();
        let (log, entries) = TxnLog::open(logs, config.compaction_min_records)?;
        state.entries = entries;
        info!(
            transactional_ids = state.entries.len(),
            "loaded transaction state"
        );
        Ok(TxnCoordinator {
            state: Mutex::new(state),
            log,
            topics,
            producer_ids,
            clock,
            config,
            writer_mode,
            on_offsets_marker,
            changed: tokio::sync::Notify::new(),
        })
    }

    /// Finishes what a crash interrupted: every transaction in PrepareCommit or PrepareAbort
    /// gets its markers written and its completion recorded.
    pub fn resume(self: &Arc<Self>) {
        let prepared: Vec<TxnMetadata> = self
            .state
            .lock()
            .entries
            .values()
            .filter(|m| m.state.is_prepare())
            .cloned()
            .collect();
        for m in prepared {
            info!(transactional_id = %m.transactional_id, state = m.state.name(), "completing a transaction after restart");
            tokio::spawn(Arc::clone(self).complete(m));
        }
    }

    fn acquire(&self, id: &str) -> Result<(Busy<'_>, Option<TxnMetadata>), TxnError> {
        let mut state = self.state.lock();
        if !state.busy.insert(id.to_string()) {
            return Err(TxnError::ConcurrentTransactions);
        }
        let current = state.entries.get(id).cloned();
        Ok((
            Busy {
                coordinator: self,
                id: id.to_string(),
            },
            current,
        ))
    }

    /// Writes `m` (or a tombstone) to the id's log partition and waits for its commit.
    async fn write(&self, id: &str, m: Option<&TxnMetadata>) -> Result<(), TxnError> {
        self.log
            .write(id, m, self.clock.now_ms())
            .await
            .map_err(|e| {
                warn!(transactional_id = id, error = %e, "cannot write transaction state");
                TxnError::CoordinatorNotAvailable
            })
    }

    async fn allocate_producer_id(&self) -> Result<i64, TxnError> {
        let ids = Arc::clone(&self.producer_ids);
        let allocated = match self.writer_mode {
            WriterMode::Thread => tokio::task::spawn_blocking(move || ids.next_producer_id())
                .await
                .map_err(|_| TxnError::CoordinatorNotAvailable)?,
            WriterMode::Task => ids.next_producer_id(),
        };
        allocated.map_err(|_| TxnError::CoordinatorNotAvailable)
    }

    /// Runs `attempt` until it is not CONCURRENT_TRANSACTIONS, waiting for other operations
    /// to end in between, for at most `CONCURRENT_WAIT_MS`.
    async fn patiently<T, F, Fut>(&self, mut attempt: F) -> Result<T, TxnError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, TxnError>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CONCURRENT_WAIT_MS);
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match attempt().await {
                Err(TxnError::ConcurrentTransactions) if tokio::time::Instant::now() < deadline => {
                    let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
                }
                other => return other,
            }
        }
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        self.patiently(|| self.init_once(id.clone(), timeout_ms, expected))
            .await
    }

    async fn init_once(
        self: &Arc<Self>,
        id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), TxnError> {
        let this = Arc::clone(self);
        detached(async move {
            let (busy, current) = this.acquire(&id)?;
            let fresh = if machine::needs_new_producer_id(current.as_ref()) {
                Some(this.allocate_producer_id().await?)
            } else {
                None
            };
            let now = this.clock.now_ms();
            let max = this.config.max_timeout_ms;
            match machine::init_producer_id(current.as_ref(), &id, timeout_ms, expected, fresh, max, now)? {
                InitPlan::Answer(m) => Ok((m.producer_id, m.producer_epoch)),
                InitPlan::Write(m) => {
                    this.write(&id, Some(&m)).await?;
                    busy.apply(Some(m.clone()));
                    Ok((m.producer_id, m.producer_epoch))
                }
                InitPlan::FenceOpen(m) => {
                    this.write(&id, Some(&m)).await?;
                    busy.apply(Some(m.clone()));
                    drop(busy);
                    info!(transactional_id = %id, epoch = m.producer_epoch, "fenced a producer: aborting its open transaction");
                    tokio::spawn(Arc::clone(&this).complete(m));
                    Err(TxnError::ConcurrentTransactions)
                }
            }
        })
        .await
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn.
    pub async fn add_partitions(
        self: &Arc<Self>,
        id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), TxnError> {
        self.patiently(|| {
            self.add_partitions_once(id.clone(), producer_id, producer_epoch, partitions.clone())
        })
        .await
    }

    async fn add_partitions_once(
        self: &Arc<Self>,
        id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<(String, i32)>,
    ) -> Result<(), TxnError> {
        let this = Arc::clone(self);
        detached(async move {
            let (busy, current) = this.acquire(&id)?;
            let now = this.clock.now_ms();
            let next = machine::add_partitions(
                current.as_ref(),
                producer_id,
                producer_epoch,
                &partitions,
                now,
            )?;
            if let Some(m) = next {
                this.write(&id, Some(&m)).await?;
                busy.apply(Some(m));
            }
            Ok(())
        })
        .await
    }

    /// EndTxn: answered once PrepareCommit or PrepareAbort is in the log; the markers and the
    /// completion follow. Returns the producer id and epoch to use next (bumped under
    /// transaction version 2).
    pub async fn end_txn(
        self: &Arc<Self>,
        id: String,
        request: machine::EndRequest,
    ) -> Result<(i64, i16), TxnError> {
        self.patiently(|| self.end_txn_once(id.clone(), request))
            .await
    }

    async fn end_txn_once(
        self: &Arc<Self>,
        id: String,
        request: machine::EndRequest,
    ) -> Result<(i64, i16), TxnError> {
        let this = Arc::clone(self);
        detached(async move {
            let (busy, current) = this.acquire(&id)?;
            let fresh = if machine::end_needs_new_producer_id(current.as_ref(), &request) {
                Some(this.allocate_producer_id().await?)
            } else {
                None
            };
            let now = this.clock.now_ms();
            match machine::end_txn(current.as_ref(), request, fresh, now)? {
                EndPlan::AlreadyDone(producer_id, epoch) => Ok((producer_id, epoch)),
                EndPlan::Prepare(m) => {
                    this.write(&id, Some(&m)).await?;
                    busy.apply(Some(m.clone()));
                    drop(busy);
                    let next = machine::producer_after(&m);
                    tokio::spawn(Arc::clone(&this).complete(m));
                    Ok(next)
                }
            }
        })
        .await
    }

    /// Writes the markers of a prepared transaction to every partition in it, then records
    /// CompleteCommit or CompleteAbort.
    async fn complete(self: Arc<Self>, prepared: TxnMetadata) {
        let marker = EndTxnMarker {
            producer_id: prepared.producer_id,
            producer_epoch: prepared.producer_epoch,
            coordinator_epoch: COORDINATOR_EPOCH,
            result: TxnResult::from_committed(prepared.state == TxnState::PrepareCommit),
        };
        tally_log::failpoint::hit("txn.complete.before_markers");
        for (topic, index) in &prepared.partitions {
            self.write_marker(topic, *index, &marker).await;
            tally_log::failpoint::hit("txn.complete.after_marker");
        }
        tally_log::failpoint::hit("txn.complete.before_record");
        let id = prepared.transactional_id.clone();
        loop {
            let (busy, current) = match self.acquire(&id) {
                Ok(held) => held,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if current.as_ref() != Some(&prepared) {
                return; // completed meanwhile (cannot happen while prepared; defensive)
            }
            let done = machine::complete(&prepared, self.clock.now_ms());
            match self.write(&id, Some(&done)).await {
                Ok(()) => {
                    busy.apply(Some(done));
                    return;
                }
                Err(_) => {
                    drop(busy);
                    tokio::time::sleep(Duration::from_millis(MARKER_RETRY_MS)).await;
                }
            }
        }
    }

    /// Writes one marker, retrying while the failure may pass. A partition that no longer
    /// exists is skipped (its topic was deleted), as Kafka skips it.
    async fn write_marker(&self, topic: &str, index: i32, marker: &EndTxnMarker) {
        loop {
            let Some(handle) = self.topics.partition(topic, index) else {
                return;
            };
            let now = self.clock.now_ms();
            let answer = match handle.submit(AppendRequest::marker(marker, now)).await {
                Ok(rx) => rx.await.ok(),
                Err(_) => None,
            };
            match answer {
                Some(Ok(_)) => {
                    if topic == OFFSETS_TOPIC {
                        (self.on_offsets_marker)(
                            marker.producer_id,
                            marker.result == TxnResult::Commit,
                        );
                    }
                    return;
                }
                Some(Err(e @ AppendError::InvalidProducerEpoch { .. }))
                | Some(Err(e @ AppendError::TransactionCoordinatorFenced { .. })) => {
                    // The partition has seen a newer producer or coordinator: this marker is
                    // moot there.
                    warn!(topic, partition = index, error = %e, "marker refused; skipped");
                    return;
                }
                Some(Err(e)) => {
                    warn!(topic, partition = index, error = %e, "marker failed; retrying");
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(MARKER_RETRY_MS)).await;
        }
    }

    /// TxnOffsetCommit's check: the producer is the transactional id's current one and the
    /// group's offsets partition is in its open transaction. `Err(fenced)`: fenced when the
    /// coordinator knows a newer epoch of the same producer.
    pub fn verify_offsets(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(), bool> {
        if self.verify(id, producer_id, producer_epoch, OFFSETS_TOPIC, 0) {
            return Ok(());
        }
        let state = self.state.lock();
        Err(state
            .entries
            .get(id)
            .is_some_and(|m| m.producer_id == producer_id && m.producer_epoch > producer_epoch))
    }

    /// AddPartitionsToTxn's verify-only form (see `machine::verify_partitions`).
    pub fn verify_partitions(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<Vec<bool>, TxnError> {
        let state = self.state.lock();
        machine::verify_partitions(
            state.entries.get(id),
            producer_id,
            producer_epoch,
            partitions,
        )
    }

    /// KIP-890 part 1: whether `(topic, partition)` is in the open transaction of producer
    /// (`producer_id`, `producer_epoch`) with this transactional id.
    pub fn verify(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> bool {
        let state = self.state.lock();
        state.entries.get(id).is_some_and(|m| {
            m.state == TxnState::Ongoing
                && m.producer_id == producer_id
                && m.producer_epoch == producer_epoch
                && m.partitions.contains(&(topic.to_string(), partition))
        })
    }

    /// Aborts transactions open past their timeout (fencing their producers), forgets
    /// transactional ids idle past `transactional.id.expiration.ms`, and compacts the log when
    /// it holds far more records than ids.
    pub fn tick(self: &Arc<Self>) {
        let now = self.clock.now_ms();
        let live = self.state.lock().entries.len() as u64;
        if self.log.compaction_due(live) {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.log.compact(now).await });
        }
        let (timed_out, expired): (Vec<String>, Vec<String>) = {
            let state = self.state.lock();
            let idle = |id: &String| !state.busy.contains(id);
            (
                state
                    .entries
                    .values()
                    .filter(|m| m.has_timed_out(now) && idle(&m.transactional_id))
                    .map(|m| m.transactional_id.clone())
                    .collect(),
                state
                    .entries
                    .values()
                    .filter(|m| machine::is_expired(m, now, self.config.id_expiration_ms))
                    .map(|m| m.transactional_id.clone())
                    .collect(),
            )
        };
        for id in timed_out {
            tokio::spawn(Arc::clone(self).abort_timed_out(id));
        }
        for id in expired {
            tokio::spawn(Arc::clone(self).expire(id));
        }
    }

    async fn abort_timed_out(self: Arc<Self>, id: String) {
        let Ok((busy, Some(current))) = self.acquire(&id) else {
            return;
        };
        let Some(m) = machine::timeout_abort(&current, self.clock.now_ms()) else {
            return;
        };
        if self.write(&id, Some(&m)).await.is_ok() {
            busy.apply(Some(m.clone()));
            drop(busy);
            info!(transactional_id = %id, "aborting a transaction past its timeout");
            self.complete(m).await;
        }
    }

    async fn expire(self: Arc<Self>, id: String) {
        let Ok((busy, Some(current))) = self.acquire(&id) else {
            return;
        };
        if machine::is_expired(&current, self.clock.now_ms(), self.config.id_expiration_ms)
            && self.write(&id, None).await.is_ok()
        {
            busy.apply(None);
        }
    }

    pub fn describe(&self, id: &str) -> Option<TxnMetadata> {
        self.state.lock().entries.get(id).cloned()
    }

    pub fn list(&self) -> Vec<TxnMetadata> {
        let mut all: Vec<TxnMetadata> = self.state.lock().entries.values().cloned().collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }
}

/// Runs `f` as a task of its own and waits for it: if the caller goes away (a client
/// disconnects), the operation still finishes, so what is in the log is also in memory.
async fn detached<T: Send + 'static>(
    f: impl std::future::Future<Output = Result<T, TxnError>> + Send + 'static,
) -> Result<T, TxnError> {
    tokio::spawn(f)
        .await
        .unwrap_or(Err(TxnError::CoordinatorNotAvailable))
}

/// The `__transaction_state` partition of a transactional id: Kafka's
/// `abs(id.hashCode) % partitions`, with Java's `String.hashCode` over UTF-16 code units.
pub fn log_partition(id: &str, partitions: usize) -> usize {
    let hash = id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs as usize % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::log_partition;

    #[test]
    fn partitions_as_kafka_does() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(log_partition("hello", 50), 99_162_322 % 50);
        assert_eq!(log_partition("anything", 1), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE; Kafka's abs maps it to 0.
        assert_eq!(log_partition("polygenelubricants", 50), 0);
    }
}
