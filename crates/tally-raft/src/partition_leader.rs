//! The leader's side of a replicated partition's produce path: check, decide, propose, answer.
//!
//! *Check* is the single-node check (`validate_client_batch`). *Decide* runs against the
//! leader's producer table for its term: a copy of the committed table, taken once the state
//! machine has applied an entry of the leader's own term (its blank entry, so everything from
//! earlier terms is applied: Redpanda's "in-sync term"), moved on by every batch the leader
//! proposes. So a pipelined batch n+1 is judged against batch n before n commits. *Propose*
//! hands the batch to openraft in decision order (one lock around decide and submit). The
//! answer comes when the batch is applied, with its offsets in the log.
//!
//! A retry of a batch the table remembers is answered with the committed batch's offsets,
//! once it is committed. Safety does not depend on the leader's table: every replica's state
//! machine checks each committed batch again (see `state_machine.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::impls::ProgressResponder;
use openraft::{Instant as _, ServerState};
use tally_partition::{validate_client_batch, AppendDecision, AppendError, ProducerTable};
use thiserror::Error;
use tokio::sync::Mutex;

use crate::local_network::PartitionRaft;
use crate::log_store::SegmentLogStore;
use crate::state_machine::PartitionStateMachine;
use crate::type_config::RaftBatch;

/// How long a produce waits for the leader to take office or for a retried batch's
/// original to commit, before it answers with a retriable error.
const WAIT_MS: u64 = 5_000;

#[derive(Debug, Error)]
pub enum ProduceError {
    /// NOT_LEADER_OR_FOLLOWER: the client refreshes metadata and retries.
    #[error("not the leader of this partition (leader: {leader:?})")]
    NotLeader { leader: Option<u64> },
    /// NOT_LEADER_OR_FOLLOWER as well: the leader's log refused the batch as it wrote it,
    /// because an earlier batch of its producer never reached the log. Nothing is stored;
    /// the client refreshes its metadata and sends both again with their sequences, which
    /// librdkafka does without bumping its epoch (an OUT_OF_ORDER_SEQUENCE_NUMBER would make
    /// it bump, and resend under the new epoch batches whose outcome it does not know).
    #[error("an earlier batch of this producer did not reach the log: send both again")]
    Superseded,
    /// REQUEST_TIMED_OUT: the outcome is unknown; the client retries the same batch.
    #[error("timed out: {0}")]
    TimedOut(String),
    /// The batch is refused (a gap, a stale epoch, a malformed batch).
    #[error(transparent)]
    Refused(#[from] AppendError),
}

/// Where a produced batch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub base_offset: i64,
    pub last_offset: i64,
    /// A retry of a batch already in the log: nothing was written.
    pub duplicate: bool,
}

/// The answer to a submitted batch.
pub type ProduceAnswer = Pin<Box<dyn Future<Output = Result<Produced, ProduceError>> + Send>>;

/// The leader's producer table for one term.
struct LeaderTerm {
    term: u64,
    table: ProducerTable,
    /// Offsets the leader's table gives the batches it proposed: the log end offset at the
    /// start of the term, moved on by each proposal. They order and key the table's entries;
    /// a retry is always answered with the committed table's offsets, never these.
    next_offset: i64,
}

pub struct PartitionLeader {
    raft: PartitionRaft,
    store: SegmentLogStore,
    state_machine: PartitionStateMachine,
    max_message_bytes: usize,
    /// Test control: decide nothing, so a retried batch is stored again (the control run of
    /// the fault tests, which shows the check can fail).
    idempotence: bool,
    /// Shared with the task that waits for each proposal, which forgets the term's table
    /// when a proposal fails, whether or not its caller still waits.
    term: Arc<Mutex<Option<LeaderTerm>>>,
}

impl PartitionLeader {
    pub fn new(
        raft: PartitionRaft,
        store: SegmentLogStore,
        state_machine: PartitionStateMachine,
        max_message_bytes: usize,
    ) -> PartitionLeader {
        PartitionLeader {
            raft,
            store,
            state_machine,
            max_message_bytes,
            idempotence: true,
            term: Arc::new(Mutex::new(None)),
        }
    }

    /// Turns the duplicate check off (test control only).
    #[doc(hidden)]
    pub fn without_idempotence(mut self) -> PartitionLeader {
        self.idempotence = false;
        self
    }

    /// Produces one client batch: answered once it is committed and applied.
    pub async fn produce(&self, batch: Bytes) -> Result<Produced, ProduceError> {
        self.submit(batch).await?.await
    }

    /// Checks, decides and proposes one client batch, and returns once it is handed to Raft
    /// (so batches submitted one after another are proposed in that order, as a connection's
    /// pipelined requests must be), with the future of its answer.
    pub async fn submit(&self, batch: Bytes) -> Result<ProduceAnswer, ProduceError> {
        let header = validate_client_batch(&batch, self.max_message_bytes)?;
        // Before the lock: the round trip an idle group's first write pays does not hold up
        // other connections' writes to the partition behind it.
        self.renew_lease().await?;
        let mut guard = self.term.lock().await;
        let term = self.sync_term(&mut guard).await?;
        let leader_term = guard.as_mut().expect("synced");
        let decision = if self.idempotence {
            leader_term.table.check(&header, false).inspect_err(|e| {
                // Rare and worth seeing: a gap or a stale epoch makes librdkafka bump its
                // epoch or fail, so each one is logged with what the table held.
                let entry = leader_term.table.get(header.producer_id);
                tracing::info!(
                    term,
                    producer_id = header.producer_id,
                    epoch = header.producer_epoch,
                    base_sequence = header.base_sequence,
                    table_epoch = entry.map(|e| e.producer_epoch),
                    table_last_seq = entry.map(|e| e.last_seq()),
                    error = %e,
                    "refused a batch"
                );
            })?
        } else {
            AppendDecision::Append
        };
        if let AppendDecision::Duplicate(original) = decision {
            drop(guard);
            let sm = self.state_machine.clone();
            let (producer_id, epoch) = (header.producer_id, header.producer_epoch);
            return Ok(Box::pin(async move {
                answer_retry(&sm, producer_id, epoch, original.last_seq).await
            }));
        }
        let mut proposed = header;
        proposed.base_offset = leader_term.next_offset;
        leader_term
            .table
            .apply_batch(&proposed, None, header.max_timestamp);
        leader_term.next_offset = proposed.last_offset() + 1;
        let (responder, done) = ProgressResponder::complete_only();
        if let Err(e) = self
            .raft
            .client_write_ff(RaftBatch(batch), Some(responder))
            .await
        {
            *guard = None;
            return Err(ProduceError::TimedOut(e.to_string()));
        }
        drop(guard);
        // The outcome is handled on a task of its own, so a failed proposal is forgotten even
        // when the caller gave up waiting (a timed-out request): otherwise the table would
        // keep a batch that never commits and answer every retry of it as a duplicate.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let shared = Arc::clone(&self.term);
        tokio::spawn(async move {
            let outcome = match done.await {
                Ok(Ok(resp)) if resp.data.base_offset < 0 => {
                    // The leader's log wrote a refused-batch entry in its place (see
                    // `leader_log.rs`): a batch before it never reached the log, and this
                    // term's table still counts it.
                    forget_term(&shared, term).await;
                    Err(ProduceError::Superseded)
                }
                Ok(Ok(resp)) => Ok(Produced {
                    base_offset: resp.data.base_offset,
                    last_offset: resp.data.last_offset,
                    duplicate: false,
                }),
                Ok(Err(e)) => {
                    forget_term(&shared, term).await;
                    Err(match e {
                        // The core refused the entry before appending it (not the leader, a
                        // lapsed lease, a leadership transfer): it is in no log.
                        ClientWriteError::ForwardToLeader(f) => ProduceError::NotLeader {
                            leader: f.leader_id,
                        },
                        // Discarded from this replica's log (truncated by a new leader): the
                        // outcome is unknown until the client retries.
                        other => ProduceError::TimedOut(other.to_string()),
                    })
                }
                Err(e) => {
                    forget_term(&shared, term).await;
                    Err(ProduceError::TimedOut(e.to_string()))
                }
            };
            let _ = tx.send(outcome);
        });
        Ok(Box::pin(async move {
            rx.await
                .map_err(|e| ProduceError::TimedOut(e.to_string()))?
        }))
    }

    /// Makes sure this leader's lease (a quorum acknowledged it within the election timeout)
    /// holds, renewing it with one round of heartbeats if it lapsed or is about to.
    ///
    /// Why: openraft takes a write, and Tally answers ListOffsets, only under a lease. A busy
    /// group renews it with every replicated batch; an idle one sends no heartbeats of its own
    /// (they are shared per pair of nodes, see `group_driver.rs`), so the first request after
    /// a pause pays one round trip here, as a linearizable read would.
    pub async fn renew_lease(&self) -> Result<(), ProduceError> {
        if self.raft.config().enable_tick {
            // openraft heartbeats this group itself: a lapsed lease means its followers do
            // not answer, and the write is refused at once, as before.
            return Ok(());
        }
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let (fresh, leader) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let single = m.membership_config.membership().voter_ids().count() <= 1;
            let acked = m
                .last_quorum_acked
                .as_ref()
                .is_some_and(|t| t.elapsed() < lease / 2);
            (single || acked, m.current_leader)
        };
        if fresh {
            return Ok(());
        }
        match tokio::time::timeout(
            lease,
            self.raft
                .ensure_linearizable(openraft::ReadPolicy::ReadIndex),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the leader's lease could not be renewed");
                Err(ProduceError::NotLeader { leader })
            }
            Err(_) => Err(ProduceError::NotLeader { leader }),
        }
    }

    /// Waits until this replica leads with every entry of its log applied (its term's blank
    /// entry included, so everything committed in earlier terms), and returns the term. A
    /// coordinator that keeps its state in the partition (consumer groups) reads the log back
    /// then: nothing committed before the term is missing from it.
    pub async fn take_office(&self) -> Result<u64, ProduceError> {
        self.renew_lease().await?;
        let mut guard = self.term.lock().await;
        self.sync_term(&mut guard).await
    }

    /// Proposes a log-start entry at `offset` (see `entry_codec.rs`) and returns once it is
    /// committed and applied: every replica may then delete its records below `offset`, as
    /// its retention passes come. For a writer that has rewritten whatever it still needs
    /// from below `offset` (the consumer groups' store, compacting).
    pub async fn propose_log_start(&self, offset: i64) -> Result<(), ProduceError> {
        self.renew_lease().await?;
        let mut guard = self.term.lock().await;
        self.sync_term(&mut guard).await?;
        // The entry takes one offset, as any one-record batch: the term's next offset moves
        // past it, so the table keys the following batches where the log will put them.
        guard.as_mut().expect("synced").next_offset += 1;
        let (responder, done) = ProgressResponder::complete_only();
        let batch = crate::entry_codec::log_start_batch(offset);
        if let Err(e) = self
            .raft
            .client_write_ff(RaftBatch(batch), Some(responder))
            .await
        {
            *guard = None;
            return Err(ProduceError::TimedOut(e.to_string()));
        }
        drop(guard);
        match done.await {
            Ok(Ok(resp)) if resp.data.base_offset >= 0 => Ok(()),
            Ok(Ok(_)) => Err(ProduceError::Superseded),
            Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(ProduceError::NotLeader {
                leader: f.leader_id,
            }),
            Ok(Err(e)) => Err(ProduceError::TimedOut(e.to_string())),
            Err(e) => Err(ProduceError::TimedOut(e.to_string())),
        }
    }

    /// Makes `guard` this replica's table for its current term, if it leads. A new table is
    /// taken from the state machine once it has applied everything in the log (at the start of
    /// a term: the leader's blank entry, so every entry of earlier terms is applied).
    async fn sync_term(&self, guard: &mut Option<LeaderTerm>) -> Result<u64, ProduceError> {
        let m = self.raft.metrics().borrow_watched().clone();
        if m.state != ServerState::Leader {
            *guard = None;
            return Err(ProduceError::NotLeader {
                leader: m.current_leader,
            });
        }
        let term = m.current_term;
        if guard.as_ref().is_some_and(|t| t.term == term) {
            return Ok(term);
        }
        *guard = None;
        let synced = self
            .raft
            .wait(Some(Duration::from_millis(WAIT_MS)))
            .metrics(
                |m| {
                    m.current_term != term
                        || (m.last_applied.is_some_and(|l| l.leader_id.term == term)
                            && m.last_applied.map(|l| l.index) >= m.last_log_index)
                },
                "the leader's state machine caught up with its log",
            )
            .await
            .map_err(|e| ProduceError::TimedOut(e.to_string()))?;
        if synced.current_term != term || synced.state != ServerState::Leader {
            return Err(ProduceError::NotLeader {
                leader: synced.current_leader,
            });
        }
        let table = self.state_machine.producers();
        if self.idempotence {
            self.store.lead_term(term, table.clone());
        }
        *guard = Some(LeaderTerm {
            term,
            table,
            next_offset: self.store.log_reader().log_end_offset(),
        });
        Ok(term)
    }
}

/// The answer to a retry: the committed batch's offsets, once it is committed.
async fn answer_retry(
    state_machine: &PartitionStateMachine,
    producer_id: i64,
    epoch: i16,
    last_seq: i32,
) -> Result<Produced, ProduceError> {
    let mut high_watermark = state_machine.high_watermark();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(WAIT_MS);
    loop {
        if let Some(b) = state_machine.committed_batch(producer_id, epoch, last_seq) {
            return Ok(Produced {
                base_offset: b.first_offset(),
                last_offset: b.last_offset,
                duplicate: true,
            });
        }
        let changed = tokio::time::timeout_at(deadline, high_watermark.changed()).await;
        if !matches!(changed, Ok(Ok(()))) {
            return Err(ProduceError::TimedOut(format!(
                "the original of producer {producer_id}'s batch ending at sequence {last_seq} did not commit"
            )));
        }
    }
}

/// After a failed proposal the term's table may hold a batch that never commits: the next
/// produce rebuilds it from the committed table, once everything in the log is applied.
async fn forget_term(shared: &Mutex<Option<LeaderTerm>>, term: u64) {
    let mut guard = shared.lock().await;
    if guard.as_ref().is_some_and(|t| t.term == term) {
        *guard = None;
    }
}
