//! The append decision against the rules of Kafka's ProducerAppendInfo (spec A.3), as
//! examples and as a property test against a small independent model.

use std::collections::HashMap;

use proptest::prelude::*;
use tally_partition::{
    AppendDecision, AppendError, CompletedTxn, ProducerTable, NUM_BATCHES_TO_RETAIN,
};
use tally_protocol::sequence::increment_sequence;
use tally_protocol::{BatchHeader, EndTxnMarker, ResponseError, TxnResult};

fn header(pid: i64, epoch: i16, first_seq: i32, count: i32, base_offset: i64) -> BatchHeader {
    BatchHeader {
        base_offset,
        batch_length: 100,
        partition_leader_epoch: 0,
        magic: 2,
        crc: 0,
        attributes: 0,
        last_offset_delta: count - 1,
        base_timestamp: 1000,
        max_timestamp: 1000 + base_offset,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: first_seq,
        records_count: count,
    }
}

/// Checks and, when new, applies at the next offset; returns the decision.
struct Harness {
    table: ProducerTable,
    next_offset: i64,
}

impl Harness {
    fn new() -> Self {
        Harness {
            table: ProducerTable::new(1000),
            next_offset: 0,
        }
    }
    fn send(
        &mut self,
        pid: i64,
        epoch: i16,
        seq: i32,
        count: i32,
    ) -> Result<AppendDecision, AppendError> {
        let mut h = header(pid, epoch, seq, count, 0);
        let d = self.table.check(&h, false)?;
        if d == AppendDecision::Append {
            h.base_offset = self.next_offset;
            h.max_timestamp = 1000 + self.next_offset;
            self.table.apply_batch(&h, None, 0);
            self.next_offset += i64::from(count);
        }
        Ok(d)
    }
}

fn code(r: Result<AppendDecision, AppendError>) -> i16 {
    match r {
        Ok(_) => 0,
        Err(e) => e.error_code().code(),
    }
}

#[test]
fn retries_of_the_last_five_batches_are_duplicates_with_original_offsets() {
    let mut h = Harness::new();
    let mut offsets = Vec::new();
    for i in 0..8 {
        offsets.push(h.next_offset);
        assert_eq!(h.send(1, 0, i * 3, 3).unwrap(), AppendDecision::Append);
    }
    for i in 3..8 {
        match h.send(1, 0, i * 3, 3).unwrap() {
            AppendDecision::Duplicate(b) => assert_eq!(b.first_offset(), offsets[i as usize]),
            other => panic!("batch {i}: {other:?}"),
        }
    }
    // The sixth-oldest is out of the window: OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    assert_eq!(code(h.send(1, 0, 2 * 3, 3)), 45);
    // Partial overlap is not a duplicate.
    assert_eq!(code(h.send(1, 0, 21, 2)), 45);
    // Gap.
    assert_eq!(code(h.send(1, 0, 25, 1)), 45);
    // Next in order.
    assert_eq!(h.send(1, 0, 24, 1).unwrap(), AppendDecision::Append);
}

#[test]
fn epochs() {
    let mut h = Harness::new();
    h.send(1, 5, 0, 2).unwrap();
    // Lower epoch: INVALID_PRODUCER_EPOCH (47), even at the right sequence.
    assert_eq!(code(h.send(1, 4, 2, 1)), 47);
    // Higher epoch must start at 0.
    assert_eq!(code(h.send(1, 6, 7, 1)), 45);
    assert_eq!(h.send(1, 6, 0, 1).unwrap(), AppendDecision::Append);
    // The old epoch's batches are no longer duplicates: their epoch is now stale.
    assert_eq!(code(h.send(1, 5, 0, 2)), 47);
    assert_eq!(h.table.get(1).unwrap().batch_metadata.len(), 1);
}

#[test]
fn unknown_producers_are_accepted_at_any_sequence() {
    let mut h = Harness::new();
    assert_eq!(h.send(9, 3, 12345, 2).unwrap(), AppendDecision::Append);
    assert_eq!(h.send(9, 3, 12347, 1).unwrap(), AppendDecision::Append);
    assert_eq!(code(h.send(9, 3, 12349, 1)), 45);
}

#[test]
fn sequences_wrap_at_i32_max() {
    let mut h = Harness::new();
    h.send(1, 0, i32::MAX - 2, 3).unwrap();
    assert_eq!(h.send(1, 0, 0, 2).unwrap(), AppendDecision::Append);
    // A batch that itself wraps: first MAX-1, last 1.
    let mut h = Harness::new();
    h.send(2, 0, i32::MAX - 5, 4).unwrap();
    assert_eq!(
        h.send(2, 0, i32::MAX - 1, 4).unwrap(),
        AppendDecision::Append
    );
    assert!(matches!(
        h.send(2, 0, i32::MAX - 1, 4).unwrap(),
        AppendDecision::Duplicate(_)
    ));
    assert_eq!(h.send(2, 0, 2, 1).unwrap(), AppendDecision::Append);
}

/// The error says which sequence the broker expected next (the mutation run found nothing
/// checked it).
#[test]
fn an_out_of_order_answer_names_the_expected_sequence() {
    let expected = |r: Result<AppendDecision, AppendError>| match r {
        Err(AppendError::OutOfOrderSequence { expected_seq, .. }) => expected_seq,
        other => panic!("{other:?}"),
    };
    let mut h = Harness::new();
    h.send(1, 0, 0, 1).unwrap();
    assert_eq!(expected(h.send(1, 0, 5, 1)), 1);
    h.send(1, 0, 1, 4).unwrap();
    assert_eq!(expected(h.send(1, 0, 9, 1)), 5);
}

const TRANSACTIONAL: i16 = 0x10;
const CONTROL: i16 = 0x20;

fn marker(pid: i64, epoch: i16, coordinator_epoch: i32) -> EndTxnMarker {
    EndTxnMarker {
        producer_id: pid,
        producer_epoch: epoch,
        coordinator_epoch,
        result: TxnResult::Abort,
    }
}

impl Harness {
    /// A transactional batch, verified by the coordinator, applied if new.
    fn send_txn(&mut self, pid: i64, epoch: i16, seq: i32) -> Result<AppendDecision, AppendError> {
        let mut h = header(pid, epoch, seq, 1, self.next_offset);
        h.attributes = TRANSACTIONAL;
        let d = self.table.check(&h, true)?;
        if d == AppendDecision::Append {
            self.table.apply_batch(&h, None, 0);
            self.next_offset += 1;
        }
        Ok(d)
    }

    /// A marker, checked and applied; the transaction it ended, if one was open.
    fn end(&mut self, m: &EndTxnMarker) -> Result<Option<CompletedTxn>, AppendError> {
        self.table.check_marker(m)?;
        let mut h = header(m.producer_id, m.producer_epoch, -1, 1, self.next_offset);
        h.attributes = TRANSACTIONAL | CONTROL;
        let completed = self.table.apply_batch(&h, Some(m), 0);
        self.next_offset += 1;
        Ok(completed)
    }
}

/// Open transactions are listed oldest first, and an abort records as its last stable offset
/// the start of the oldest transaction still open, or the offset after its marker.
#[test]
fn open_transactions_and_the_stable_offset_an_abort_records() {
    let mut h = Harness::new();
    assert!(h.table.is_empty());
    h.send_txn(1, 0, 0).unwrap();
    h.send_txn(2, 0, 0).unwrap();
    assert_eq!((h.table.len(), h.table.is_empty()), (2, false));
    assert_eq!(
        h.table.ongoing_txns().collect::<Vec<_>>(),
        vec![(0, 1), (1, 2)]
    );
    let second = h
        .end(&marker(2, 0, 0))
        .unwrap()
        .expect("an open transaction");
    assert_eq!((second.first_offset, second.last_offset), (1, 2));
    assert_eq!(
        h.table.last_stable_offset_after(&second),
        0,
        "producer 1's is open"
    );
    let first = h
        .end(&marker(1, 0, 0))
        .unwrap()
        .expect("an open transaction");
    assert_eq!(first.last_offset, 3);
    assert_eq!(h.table.last_stable_offset_after(&first), 4, "none open");
    assert_eq!(h.table.ongoing_txns().count(), 0);
    assert_eq!(h.table.remove_expired(i64::MAX, 1), 2);
    assert!(h.table.is_empty());
}

/// Markers from the coordinator's first epoch (0) end a transaction whose producer the table
/// first met through a data batch, and a later marker of the same coordinator epoch is not
/// fenced; an older coordinator epoch is.
#[test]
fn coordinator_epochs_fence_only_older_coordinators() {
    let mut h = Harness::new();
    h.send_txn(7, 0, 0).unwrap();
    h.end(&marker(7, 0, 0)).unwrap();
    h.send_txn(7, 0, 1).unwrap();
    h.end(&marker(7, 0, 3)).unwrap();
    h.send_txn(7, 0, 2).unwrap();
    h.end(&marker(7, 0, 3)).unwrap();
    h.send_txn(7, 0, 3).unwrap();
    assert_eq!(
        h.end(&marker(7, 0, 2)).unwrap_err().error_code(),
        ResponseError::TransactionCoordinatorFenced
    );
}

/// A marker with a newer producer epoch (an abort that bumps it, or transaction version 2's
/// end) moves the producer to that epoch: the old epoch's batches are fenced, retries of
/// them included, and the new epoch starts at sequence 0.
#[test]
fn a_marker_with_a_new_epoch_moves_the_producer_to_it() {
    let mut h = Harness::new();
    h.send_txn(8, 0, 0).unwrap();
    h.send_txn(8, 0, 1).unwrap();
    h.end(&marker(8, 1, 0)).unwrap();
    assert_eq!(code(h.send_txn(8, 0, 1)), 47, "a retry of the old epoch");
    assert_eq!(code(h.send_txn(8, 0, 2)), 47, "the old epoch's next batch");
    assert_eq!(code(h.send_txn(8, 1, 1)), 45, "the new epoch starts at 0");
    assert_eq!(h.send_txn(8, 1, 0).unwrap(), AppendDecision::Append);
    assert_eq!(h.send_txn(8, 1, 1).unwrap(), AppendDecision::Append);
}

#[test]
fn batches_without_producer_id_always_append() {
    let mut h = Harness::new();
    assert_eq!(h.send(-1, -1, -1, 3).unwrap(), AppendDecision::Append);
    assert_eq!(h.send(-1, -1, -1, 3).unwrap(), AppendDecision::Append);
    assert!(h.table.is_empty());
}

#[test]
fn eviction_is_by_least_recent_append_and_deterministic() {
    let mut t = ProducerTable::new(3);
    for (offset, (pid, seq)) in [(1, 0), (2, 0), (3, 0), (1, 1), (4, 0)]
        .into_iter()
        .enumerate()
    {
        let h = header(pid, 0, seq, 1, offset as i64);
        if t.check(&h, false).unwrap() == AppendDecision::Append {
            t.apply_batch(&h, None, 0);
        }
    }
    // 2 was the least recently appending producer when 4 arrived.
    let mut pids: Vec<i64> = t.entries().iter().map(|e| e.producer_id).collect();
    pids.sort();
    assert_eq!(pids, vec![1, 3, 4]);
}

#[test]
fn expiry_uses_the_later_of_batch_time_and_append_time() {
    let mut t = ProducerTable::new(10);
    let mut h = header(1, 0, 0, 1, 0);
    h.max_timestamp = 10; // a client clock far in the past
    t.apply_batch(&h, None, 1_000_000);
    assert_eq!(t.remove_expired(1_000_500, 1000), 0, "appended 500 ms ago");
    assert_eq!(t.remove_expired(1_001_000, 1000), 1);
    assert!(t.is_empty());
}

/// (first sequence, last sequence, base offset) of a stored batch.
type StoredBatch = (i32, i32, i64);

/// An independent model: keeps every batch of the current epoch, not only five.
#[derive(Default)]
struct Model {
    producers: HashMap<i64, (i16, Vec<StoredBatch>)>,
}

/// What a simulated producer has sent: epoch, next sequence, (first, count) per batch.
type Sent = (i16, i32, Vec<(i32, i32)>);

impl Model {
    fn decide(&self, pid: i64, epoch: i16, first: i32, last: i32) -> Result<Option<i64>, i16> {
        let Some((cur, batches)) = self.producers.get(&pid) else {
            return Ok(None);
        };
        if epoch == *cur {
            let recent = &batches[batches.len().saturating_sub(NUM_BATCHES_TO_RETAIN)..];
            if let Some(b) = recent.iter().find(|b| b.0 == first && b.1 == last) {
                return Ok(Some(b.2));
            }
        }
        if epoch < *cur {
            return Err(47);
        }
        if epoch > *cur {
            return if first == 0 { Ok(None) } else { Err(45) };
        }
        let expected = batches.last().map_or(0, |b| increment_sequence(b.1, 1));
        if first == expected {
            Ok(None)
        } else {
            Err(45)
        }
    }

    fn apply(&mut self, pid: i64, epoch: i16, first: i32, last: i32, offset: i64) {
        let e = self.producers.entry(pid).or_insert((epoch, Vec::new()));
        if e.0 != epoch {
            *e = (epoch, Vec::new());
        }
        e.1.push((first, last, offset));
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Next batch in order for a producer (`count` records).
    Next { pid: i64, count: i32 },
    /// Resend one of the producer's earlier batches, `back` batches ago.
    Retry { pid: i64, back: usize },
    /// A batch at an arbitrary sequence / epoch delta.
    Wild {
        pid: i64,
        epoch_delta: i16,
        seq: i32,
        count: i32,
    },
    /// Epoch bump and restart at sequence 0.
    Bump { pid: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0i64..3, 1i32..4).prop_map(|(pid, count)| Op::Next { pid, count }),
        3 => (0i64..3, 0usize..8).prop_map(|(pid, back)| Op::Retry { pid, back }),
        1 => (0i64..3, -1i16..2, 0i32..40, 1i32..4).prop_map(|(pid, epoch_delta, seq, count)| Op::Wild { pid, epoch_delta, seq, count }),
        1 => (0i64..3).prop_map(|pid| Op::Bump { pid }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    /// Same decisions as the model, and the log never holds a sequence range twice within an
    /// epoch. (Replay is tested through the real `Partition::open` in `replay.rs`.)
    #[test]
    fn matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let mut table = ProducerTable::new(1000);
        let mut model = Model::default();
        let mut log: Vec<BatchHeader> = Vec::new();
        // What each producer "sent": (epoch, first, count) per batch, and its next sequence.
        let mut sent: HashMap<i64, Sent> = HashMap::new();
        for op in ops {
            let (pid, epoch, first, count) = match op {
                Op::Next { pid, count } => {
                    let s = sent.entry(pid).or_insert((0, 0, Vec::new()));
                    let first = s.1;
                    s.1 = increment_sequence(first, count);
                    s.2.push((first, count));
                    (pid, s.0, first, count)
                }
                Op::Retry { pid, back } => {
                    let Some(s) = sent.get(&pid) else { continue };
                    if s.2.is_empty() { continue; }
                    let (first, count) = s.2[s.2.len() - 1 - back.min(s.2.len() - 1)];
                    (pid, s.0, first, count)
                }
                Op::Wild { pid, epoch_delta, seq, count } => {
                    let epoch = sent.get(&pid).map_or(0, |s| s.0).saturating_add(epoch_delta).max(0);
                    (pid, epoch, seq, count)
                }
                Op::Bump { pid } => {
                    let s = sent.entry(pid).or_insert((0, 0, Vec::new()));
                    s.0 += 1;
                    s.1 = 0;
                    s.2.clear();
                    continue;
                }
            };
            let mut h = header(pid, epoch, first, count, 0);
            let expected = model.decide(pid, epoch, first, h.last_sequence());
            let got = table.check(&h, false);
            match (&expected, &got) {
                (Ok(None), Ok(AppendDecision::Append)) => {
                    h.base_offset = log.last().map_or(0, |l| l.last_offset() + 1);
                    table.apply_batch(&h, None, 0);
                    model.apply(pid, epoch, first, h.last_sequence(), h.base_offset);
                    log.push(h);
                }
                (Ok(Some(off)), Ok(AppendDecision::Duplicate(b))) => prop_assert_eq!(*off, b.first_offset()),
                (Err(c), Err(e)) => prop_assert_eq!(*c, e.error_code().code()),
                _ => prop_assert!(false, "model {:?} vs table {:?}", expected, got),
            }
        }
        // No (pid, epoch, first, last) stored twice.
        let mut seen = std::collections::HashSet::new();
        for h in &log {
            prop_assert!(seen.insert((h.producer_id, h.producer_epoch, h.base_sequence, h.last_sequence())),
                "stored twice: {:?}", h);
        }
    }
}
