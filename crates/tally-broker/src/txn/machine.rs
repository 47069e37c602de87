//! The transaction coordinator's decisions, as pure functions of a transactional id's current
//! metadata and a request: each returns the metadata to write next (or an error, or nothing to
//! write). The runtime (`coordinator.rs`) writes what they return to `__transaction_state`,
//! applies it in memory once written, answers, and sends the markers; these functions never
//! see a log, a clock or a socket. The rules follow Kafka's `TransactionCoordinator`.

use tally_protocol::ResponseError;

use super::metadata::{TxnMetadata, TxnState};

/// Why the coordinator refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// The producer id is not the transactional id's (or the id is unknown).
    InvalidProducerIdMapping,
    /// An older producer instance: a newer one has bumped the epoch.
    ProducerFenced,
    /// The transaction is being ended (or fenced); retry shortly.
    ConcurrentTransactions,
    InvalidTxnState,
    InvalidTransactionTimeout,
    /// The coordinator's log could not be written.
    CoordinatorNotAvailable,
}

impl TxnError {
    /// The wire code. APIs older than KIP-588's versions get INVALID_PRODUCER_EPOCH instead
    /// of PRODUCER_FENCED, as Kafka answers them.
    pub fn code(self, producer_fenced_supported: bool) -> ResponseError {
        match self {
            TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            TxnError::ProducerFenced if producer_fenced_supported => ResponseError::ProducerFenced,
            TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
            TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
            TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
            TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
            TxnError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        }
    }
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitPlan {
    /// Write this (state Empty, a new epoch or a new producer id), then answer with it.
    Write(TxnMetadata),
    /// A retry of an InitProducerId that already bumped the epoch: answer with this as is.
    Answer(TxnMetadata),
    /// A transaction is open: abort it with a bumped epoch first (this PrepareAbort, then its
    /// markers), and answer CONCURRENT_TRANSACTIONS; the producer retries.
    FenceOpen(TxnMetadata),
}

/// Epochs stop one short of the maximum so a fence can always bump once more.
const MAX_EPOCH: i16 = i16::MAX - 1;

/// Whether InitProducerId will need a fresh producer id (allocated by the runtime first).
pub fn needs_new_producer_id(current: Option<&TxnMetadata>) -> bool {
    current.is_none_or(|m| m.state.is_idle() && m.producer_epoch >= MAX_EPOCH)
}

pub fn init_producer_id(
    current: Option<&TxnMetadata>,
    transactional_id: &str,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    fresh_producer_id: Option<i64>,
    max_timeout_ms: i32,
    now_ms: i64,
) -> Result<InitPlan, TxnError> {
    if timeout_ms <= 0 || timeout_ms > max_timeout_ms {
        return Err(TxnError::InvalidTransactionTimeout);
    }
    let Some(m) = current else {
        let pid = fresh_producer_id.ok_or(TxnError::CoordinatorNotAvailable)?;
        let mut next = TxnMetadata::new(transactional_id, pid, timeout_ms, now_ms);
        next.producer_epoch = 0;
        return Ok(InitPlan::Write(next));
    };
    if m.state.is_prepare() || m.state == TxnState::PrepareEpochFence {
        return Err(TxnError::ConcurrentTransactions);
    }
    if let Some((pid, epoch)) = expected {
        // KIP-360: a producer recovering with its id and epoch must be the current instance,
        // or be retrying the bump it already got.
        let retry =
            (pid == m.producer_id || pid == m.prev_producer_id) && epoch == m.last_producer_epoch;
        if retry && m.state.is_idle() {
            return Ok(InitPlan::Answer(m.clone()));
        }
        if !(pid == m.producer_id && epoch == m.producer_epoch) {
            return Err(TxnError::ProducerFenced);
        }
    }
    if m.state == TxnState::Ongoing {
        return Ok(InitPlan::FenceOpen(fence(m, now_ms)));
    }
    let mut next = m.to_state(TxnState::Empty, now_ms);
    next.timeout_ms = timeout_ms;
    next.partitions.clear();
    next.txn_start_ms = -1;
    if needs_new_producer_id(Some(m)) {
        next.prev_producer_id = m.producer_id;
        next.producer_id = fresh_producer_id.ok_or(TxnError::CoordinatorNotAvailable)?;
        next.producer_epoch = 0;
        next.last_producer_epoch = -1;
    } else {
        next.last_producer_epoch = m.producer_epoch;
        next.producer_epoch = m.producer_epoch + 1;
    }
    Ok(InitPlan::Write(next))
}

/// An open transaction aborted by the coordinator (a new instance, or a timeout): the epoch is
/// bumped so the old instance is fenced everywhere, on the coordinator and, through the
/// markers, on every partition.
pub fn fence(m: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    let mut next = m.to_state(TxnState::PrepareEpochFence, now_ms);
    next.state = TxnState::PrepareAbort;
    if m.producer_epoch < MAX_EPOCH {
        next.last_producer_epoch = m.producer_epoch;
        next.producer_epoch = m.producer_epoch + 1;
    }
    next
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition): the
/// metadata to write, or `None` when every partition is already in the open transaction.
pub fn add_partitions(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TxnMetadata>, TxnError> {
    let m = check_producer(current, producer_id, producer_epoch)?;
    if m.state.is_prepare() || m.state == TxnState::PrepareEpochFence {
        return Err(TxnError::ConcurrentTransactions);
    }
    if m.state == TxnState::Dead {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if m.state == TxnState::Ongoing && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = m.to_state(TxnState::Ongoing, now_ms);
    if m.state.is_idle() {
        next.txn_start_ms = now_ms;
        next.partitions.clear();
    }
    next.partitions.extend(partitions.iter().cloned());
    Ok(Some(next))
}

/// AddPartitionsToTxn with `verify_only` (KIP-890 part 1): for each partition, whether it
/// is in the producer's ongoing transaction. Adds nothing.
pub fn verify_partitions(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    partitions: &[(String, i32)],
) -> Result<Vec<bool>, TxnError> {
    let m = check_producer(current, producer_id, producer_epoch)?;
    if m.state.is_prepare() || m.state == TxnState::PrepareEpochFence {
        return Err(TxnError::ConcurrentTransactions);
    }
    Ok(partitions
        .iter()
        .map(|p| m.state == TxnState::Ongoing && m.partitions.contains(p))
        .collect())
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndPlan {
    /// Write this PrepareCommit or PrepareAbort, answer, then send the markers.
    Prepare(TxnMetadata),
    /// A retry of an EndTxn that completed: answer success.
    AlreadyDone,
}

pub fn end_txn(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndPlan, TxnError> {
    let m = check_producer(current, producer_id, producer_epoch)?;
    use TxnState::*;
    match (m.state, commit) {
        (Ongoing, true) => Ok(EndPlan::Prepare(m.to_state(PrepareCommit, now_ms))),
        (Ongoing, false) => Ok(EndPlan::Prepare(m.to_state(PrepareAbort, now_ms))),
        (CompleteCommit, true) | (CompleteAbort, false) => Ok(EndPlan::AlreadyDone),
        (PrepareCommit, true) | (PrepareAbort, false) | (PrepareEpochFence, _) => {
            Err(TxnError::ConcurrentTransactions)
        }
        _ => Err(TxnError::InvalidTxnState),
    }
}

/// After every marker is written: CompleteCommit or CompleteAbort, no partitions.
pub fn complete(m: &TxnMetadata, now_ms: i64) -> TxnMetadata {
    let state = match m.state {
        TxnState::PrepareCommit => TxnState::CompleteCommit,
        _ => TxnState::CompleteAbort,
    };
    let mut next = m.to_state(state, now_ms);
    next.partitions.clear();
    next.txn_start_ms = -1;
    next
}

/// A transaction open longer than its timeout is aborted by the coordinator, fencing the
/// producer (Kafka's `abortTimedOutTransactions`).
pub fn timeout_abort(m: &TxnMetadata, now_ms: i64) -> Option<TxnMetadata> {
    m.has_timed_out(now_ms).then(|| fence(m, now_ms))
}

/// An idle transactional id unused for `expiration_ms` is forgotten (a tombstone is written).
pub fn is_expired(m: &TxnMetadata, now_ms: i64, expiration_ms: i64) -> bool {
    m.state.is_idle() && now_ms - m.last_update_ms >= expiration_ms
}

fn check_producer(
    current: Option<&TxnMetadata>,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<&TxnMetadata, TxnError> {
    let m = current.ok_or(TxnError::InvalidProducerIdMapping)?;
    if m.producer_id != producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != producer_epoch {
        return Err(TxnError::ProducerFenced);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_TIMEOUT: i32 = 900_000;

    fn fresh() -> TxnMetadata {
        match init_producer_id(None, "t", 60_000, None, Some(7), MAX_TIMEOUT, 0).unwrap() {
            InitPlan::Write(m) => m,
            other => panic!("{other:?}"),
        }
    }

    fn tp(t: &str, p: i32) -> (String, i32) {
        (t.to_string(), p)
    }

    #[test]
    fn a_transaction_from_start_to_commit() {
        let m = fresh();
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (7, 0, TxnState::Empty)
        );
        let m = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 10)
            .unwrap()
            .unwrap();
        assert_eq!((m.state, m.txn_start_ms), (TxnState::Ongoing, 10));
        assert_eq!(add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 11), Ok(None));
        let m = add_partitions(Some(&m), 7, 0, &[tp("b", 1)], 12)
            .unwrap()
            .unwrap();
        assert_eq!(m.partitions.len(), 2);
        assert_eq!(m.txn_start_ms, 10, "the start is the first partition's");
        let EndPlan::Prepare(p) = end_txn(Some(&m), 7, 0, true, 20).unwrap() else {
            panic!()
        };
        assert_eq!(p.state, TxnState::PrepareCommit);
        assert_eq!(
            end_txn(Some(&p), 7, 0, true, 21),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            add_partitions(Some(&p), 7, 0, &[tp("a", 0)], 21),
            Err(TxnError::ConcurrentTransactions)
        );
        let c = complete(&p, 22);
        assert_eq!((c.state, c.partitions.len()), (TxnState::CompleteCommit, 0));
        assert_eq!(end_txn(Some(&c), 7, 0, true, 23), Ok(EndPlan::AlreadyDone));
        assert_eq!(
            end_txn(Some(&c), 7, 0, false, 23),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn wrong_producers_are_refused() {
        let m = fresh();
        let m = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 1)
            .unwrap()
            .unwrap();
        assert_eq!(
            add_partitions(Some(&m), 8, 0, &[], 2),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            end_txn(Some(&m), 7, 1, true, 2),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            end_txn(None, 7, 0, true, 2),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            end_txn(Some(&fresh()), 7, 0, false, 2),
            Err(TxnError::InvalidTxnState)
        );
    }

    #[test]
    fn a_new_instance_fences_the_open_transaction() {
        let m = fresh();
        let m = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 1)
            .unwrap()
            .unwrap();
        let InitPlan::FenceOpen(f) =
            init_producer_id(Some(&m), "t", 60_000, None, None, MAX_TIMEOUT, 5).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (f.state, f.producer_epoch, f.last_producer_epoch),
            (TxnState::PrepareAbort, 1, 0)
        );
        assert_eq!(f.partitions, m.partitions, "markers go to every partition");
        // The old instance is fenced from now on.
        assert_eq!(
            end_txn(Some(&f), 7, 0, true, 6),
            Err(TxnError::ProducerFenced)
        );
        let done = complete(&f, 7);
        let InitPlan::Write(n) =
            init_producer_id(Some(&done), "t", 60_000, None, None, MAX_TIMEOUT, 8).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (n.producer_id, n.producer_epoch, n.state),
            (7, 2, TxnState::Empty)
        );
    }

    #[test]
    fn epochs_roll_over_to_a_new_producer_id_and_timeouts_are_checked() {
        let mut m = fresh();
        m.producer_epoch = MAX_EPOCH;
        assert!(needs_new_producer_id(Some(&m)));
        let InitPlan::Write(n) =
            init_producer_id(Some(&m), "t", 1_000, None, Some(99), MAX_TIMEOUT, 1).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (n.producer_id, n.producer_epoch, n.prev_producer_id),
            (99, 0, 7)
        );
        assert_eq!(
            init_producer_id(Some(&m), "t", MAX_TIMEOUT + 1, None, None, MAX_TIMEOUT, 1),
            Err(TxnError::InvalidTransactionTimeout)
        );
        assert_eq!(
            init_producer_id(Some(&n), "t", 1_000, Some((99, 5)), None, MAX_TIMEOUT, 1),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn a_stale_transaction_is_aborted_with_a_bumped_epoch() {
        let m = fresh();
        let m = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 1_000)
            .unwrap()
            .unwrap();
        assert_eq!(timeout_abort(&m, 61_000), None);
        let a = timeout_abort(&m, 61_001).unwrap();
        assert_eq!((a.state, a.producer_epoch), (TxnState::PrepareAbort, 1));
        assert!(is_expired(&complete(&a, 0), 100, 100));
        assert!(
            !is_expired(&m, i64::MAX / 2, 100),
            "an open transaction never expires"
        );
    }
}
