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
    /// A retry of an EndTxn that completed: answer success, with the producer id and epoch to
    /// use next (transaction version 2; the request's own under version 0).
    AlreadyDone(i64, i16),
}

/// An EndTxn request: `tv2` is transaction version 2 (EndTxn v5+, KIP-890 part 2), where
/// every commit and abort bumps the producer's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequest {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub tv2: bool,
}

/// Whether EndTxn will need a fresh producer id (transaction version 2 on an exhausted epoch:
/// the completion moves the producer to a new id).
pub fn end_needs_new_producer_id(current: Option<&TxnMetadata>, request: &EndRequest) -> bool {
    request.tv2 && current.is_some_and(|m| m.producer_epoch >= MAX_EPOCH)
}

/// The producer id and epoch a client uses once `m`'s transaction is complete: what EndTxn v5
/// answers.
pub fn producer_after(m: &TxnMetadata) -> (i64, i16) {
    if m.next_producer_id >= 0 {
        (m.next_producer_id, 0)
    } else {
        (m.producer_id, m.producer_epoch)
    }
}

pub fn end_txn(
    current: Option<&TxnMetadata>,
    request: EndRequest,
    fresh_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<EndPlan, TxnError> {
    if request.tv2 {
        let m = current.ok_or(TxnError::InvalidProducerIdMapping)?;
        return end_txn_v2(m, request, fresh_producer_id, now_ms);
    }
    let EndRequest {
        producer_id,
        producer_epoch,
        commit,
        ..
    } = request;
    let m = check_producer(current, producer_id, producer_epoch)?;
    use TxnState::*;
    match (m.state, commit) {
        (Ongoing, true) => Ok(EndPlan::Prepare(m.to_state(PrepareCommit, now_ms))),
        (Ongoing, false) => Ok(EndPlan::Prepare(m.to_state(PrepareAbort, now_ms))),
        (CompleteCommit, true) | (CompleteAbort, false) => {
            Ok(EndPlan::AlreadyDone(producer_id, producer_epoch))
        }
        (PrepareCommit, true) | (PrepareAbort, false) | (PrepareEpochFence, _) => {
            Err(TxnError::ConcurrentTransactions)
        }
        _ => Err(TxnError::InvalidTxnState),
    }
}

/// Transaction version 2 (Kafka's `TransactionCoordinator.endTransaction`, TV2 branch): the
/// Prepare record carries the bumped epoch, so the markers fence every batch of the ended
/// transaction that arrives late. A retry is recognised by its epoch being one below the
/// stored one (or, after a roll-over, by the previous producer id).
fn end_txn_v2(
    m: &TxnMetadata,
    request: EndRequest,
    fresh_producer_id: Option<i64>,
    now_ms: i64,
) -> Result<EndPlan, TxnError> {
    use TxnState::*;
    let (pid, epoch) = (request.producer_id, request.producer_epoch);
    let rolled_over_retry = pid != m.producer_id
        && pid == m.prev_producer_id
        && epoch >= MAX_EPOCH
        && m.producer_epoch == 0;
    if pid != m.producer_id && !rolled_over_retry {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if m.state.is_prepare() || m.state == PrepareEpochFence {
        return Err(TxnError::ConcurrentTransactions);
    }
    let retry = rolled_over_retry || i32::from(epoch) + 1 == i32::from(m.producer_epoch);
    let current = !rolled_over_retry && epoch == m.producer_epoch;
    let prepare = |state| -> Result<EndPlan, TxnError> {
        let mut next = m.to_state(state, now_ms);
        next.producer_epoch = m
            .producer_epoch
            .checked_add(1)
            .ok_or(TxnError::ProducerFenced)?;
        // The bump is not an InitProducerId's: nothing to recognise a retry of any more.
        next.last_producer_epoch = -1;
        next.client_txn_version = 2;
        if m.producer_epoch >= MAX_EPOCH {
            next.next_producer_id = fresh_producer_id.ok_or(TxnError::CoordinatorNotAvailable)?;
        }
        if m.state.is_idle() {
            // An abort with nothing open: no markers, only the bump.
            next.partitions.clear();
            next.txn_start_ms = now_ms;
        }
        Ok(EndPlan::Prepare(next))
    };
    match (m.state, request.commit) {
        (Ongoing, true) if current => prepare(PrepareCommit),
        (Ongoing | Empty | CompleteCommit | CompleteAbort, false) if current => {
            prepare(PrepareAbort)
        }
        (CompleteCommit, true) | (CompleteAbort, false) if retry => {
            Ok(EndPlan::AlreadyDone(m.producer_id, m.producer_epoch))
        }
        (CompleteCommit | CompleteAbort, _) if retry => Err(TxnError::InvalidTxnState),
        (Empty | CompleteCommit | CompleteAbort, true) if current => Err(TxnError::InvalidTxnState),
        (Dead, _) => Err(TxnError::InvalidProducerIdMapping),
        _ => Err(TxnError::ProducerFenced),
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
    if m.next_producer_id >= 0 {
        // Transaction version 2 exhausted the epoch: the producer goes on with a new id.
        next.prev_producer_id = m.producer_id;
        next.producer_id = m.next_producer_id;
        next.producer_epoch = 0;
        next.next_producer_id = -1;
    }
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

    fn end_v1(
        m: Option<&TxnMetadata>,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndPlan, TxnError> {
        let request = EndRequest {
            producer_id,
            producer_epoch,
            commit,
            tv2: false,
        };
        end_txn(m, request, None, now_ms)
    }

    fn end_v2(m: &TxnMetadata, epoch: i16, commit: bool) -> Result<EndPlan, TxnError> {
        let request = EndRequest {
            producer_id: m.producer_id,
            producer_epoch: epoch,
            commit,
            tv2: true,
        };
        end_txn(Some(m), request, Some(1_000), 50)
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
        let EndPlan::Prepare(p) = end_v1(Some(&m), 7, 0, true, 20).unwrap() else {
            panic!()
        };
        assert_eq!(p.state, TxnState::PrepareCommit);
        assert_eq!(
            end_v1(Some(&p), 7, 0, true, 21),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(
            add_partitions(Some(&p), 7, 0, &[tp("a", 0)], 21),
            Err(TxnError::ConcurrentTransactions)
        );
        let c = complete(&p, 22);
        assert_eq!((c.state, c.partitions.len()), (TxnState::CompleteCommit, 0));
        assert_eq!(
            end_v1(Some(&c), 7, 0, true, 23),
            Ok(EndPlan::AlreadyDone(7, 0))
        );
        assert_eq!(
            end_v1(Some(&c), 7, 0, false, 23),
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
            end_v1(Some(&m), 7, 1, true, 2),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(
            end_v1(None, 7, 0, true, 2),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            end_v1(Some(&fresh()), 7, 0, false, 2),
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
            end_v1(Some(&f), 7, 0, true, 6),
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

    #[test]
    fn version_2_bumps_the_epoch_on_every_commit_and_abort() {
        let m = fresh();
        let m = add_partitions(Some(&m), 7, 0, &[tp("a", 0)], 1)
            .unwrap()
            .unwrap();
        let EndPlan::Prepare(p) = end_v2(&m, 0, true).unwrap() else {
            panic!()
        };
        assert_eq!(
            (p.state, p.producer_epoch, p.client_txn_version),
            (TxnState::PrepareCommit, 1, 2),
            "the markers carry the bumped epoch"
        );
        assert_eq!(producer_after(&p), (7, 1));
        assert_eq!(end_v2(&p, 0, true), Err(TxnError::ConcurrentTransactions));
        let c = complete(&p, 2);
        // The retry of the commit (old epoch) succeeds with the new epoch; a commit after an
        // abort or at the new epoch with nothing open does not.
        assert_eq!(end_v2(&c, 0, true), Ok(EndPlan::AlreadyDone(7, 1)));
        assert_eq!(end_v2(&c, 0, false), Err(TxnError::InvalidTxnState));
        assert_eq!(end_v2(&c, 1, true), Err(TxnError::InvalidTxnState));
        // The old epoch may not start anything.
        assert_eq!(
            add_partitions(Some(&c), 7, 0, &[tp("a", 0)], 3),
            Err(TxnError::ProducerFenced)
        );
        // An abort with nothing open bumps the epoch, without markers.
        let EndPlan::Prepare(a) = end_v2(&c, 1, false).unwrap() else {
            panic!()
        };
        assert_eq!(
            (a.state, a.producer_epoch, a.partitions.len()),
            (TxnState::PrepareAbort, 2, 0)
        );
        let a = complete(&a, 4);
        assert_eq!(end_v2(&a, 1, false), Ok(EndPlan::AlreadyDone(7, 2)));
        assert_eq!(end_v2(&a, 0, false), Err(TxnError::ProducerFenced));
        assert_eq!(end_v2(&fresh(), 0, true), Err(TxnError::InvalidTxnState));
    }

    #[test]
    fn version_2_rolls_over_to_a_new_producer_id_at_the_last_epoch() {
        let mut m = fresh();
        m.producer_epoch = MAX_EPOCH;
        let m = add_partitions(Some(&m), 7, MAX_EPOCH, &[tp("a", 0)], 1)
            .unwrap()
            .unwrap();
        let request = EndRequest {
            producer_id: 7,
            producer_epoch: MAX_EPOCH,
            commit: true,
            tv2: true,
        };
        assert!(end_needs_new_producer_id(Some(&m), &request));
        assert_eq!(
            end_txn(Some(&m), request, None, 2),
            Err(TxnError::CoordinatorNotAvailable)
        );
        let EndPlan::Prepare(p) = end_txn(Some(&m), request, Some(1_000), 2).unwrap() else {
            panic!()
        };
        assert_eq!((p.producer_id, p.producer_epoch), (7, i16::MAX));
        assert_eq!(producer_after(&p), (1_000, 0));
        let c = complete(&p, 3);
        assert_eq!(
            (c.producer_id, c.producer_epoch, c.prev_producer_id),
            (1_000, 0, 7)
        );
        assert_eq!(
            end_txn(Some(&c), request, None, 4),
            Ok(EndPlan::AlreadyDone(1_000, 0)),
            "the retry under the old id is recognised"
        );
    }
}
