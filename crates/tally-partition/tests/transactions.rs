//! Transactions on one partition: the last stable offset, the aborted-transaction index, the
//! checks that keep a transaction from hanging or being ended by a stale marker, and what
//! survives a crash and retention.

use std::path::Path;

use tally_log::{AbortedTxn, LogConfig};
use tally_partition::{
    validate_client_batch, AppendError, Decision, Entry, EntryOrigin, Partition, PartitionConfig,
};
use tally_protocol::{EndTxnMarker, ResponseError, TxnResult};
use tally_testkit::batch::{batch, BatchSpec};

const NOW: i64 = 1_700_000_000_000;

fn open(dir: &Path) -> Partition {
    Partition::open(dir, PartitionConfig::default(), NOW)
        .unwrap()
        .0
}

/// A client batch as the broker's writer handles it: check, decide, apply, flush.
fn produce(p: &mut Partition, bytes: &[u8], verified: bool) -> Result<i64, AppendError> {
    let header = validate_client_batch(bytes, usize::MAX)?;
    if let Decision::Duplicate(o) = p.decide(&header, verified)? {
        return Ok(o.base_offset);
    }
    let o = p.apply(Entry {
        origin: EntryOrigin::Client,
        header: &header,
        bytes,
        append_time_ms: NOW,
        keys: None,
    })?;
    p.flush_if_due()?;
    Ok(o.base_offset)
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, count: usize) -> bytes::Bytes {
    let mut spec = BatchSpec::new(pid, epoch, seq, count);
    spec.transactional = true;
    spec.encode()
}

fn end(p: &mut Partition, pid: i64, epoch: i16, result: TxnResult) -> Result<i64, AppendError> {
    let m = EndTxnMarker {
        producer_id: pid,
        producer_epoch: epoch,
        coordinator_epoch: 1,
        result,
    };
    let o = p.write_marker(&m, NOW)?;
    p.flush_if_due()?;
    Ok(o.base_offset)
}

#[test]
fn an_open_transaction_holds_the_lso_until_its_marker() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    produce(&mut p, &batch(-1, -1, -1, 2), false).unwrap(); // 0..2
    assert_eq!(p.last_stable_offset(), 2);
    let first = produce(&mut p, &txn_batch(7, 0, 0, 3), true).unwrap(); // 2..5
    assert_eq!(first, 2);
    // Later records, transactional or not, from others, stay above the LSO.
    produce(&mut p, &batch(8, 0, 0, 2), false).unwrap(); // 5..7
    produce(&mut p, &txn_batch(7, 0, 3, 1), true).unwrap(); // 7
    assert_eq!((p.high_watermark(), p.last_stable_offset()), (8, 2));
    let marker = end(&mut p, 7, 0, TxnResult::Commit).unwrap();
    assert_eq!(marker, 8);
    assert_eq!((p.high_watermark(), p.last_stable_offset()), (9, 9));
    // A commit is not an aborted transaction.
    assert!(p.reader().aborted_txns(0, 9).is_empty());
    assert_eq!(p.producers().get(7).unwrap().current_txn_first_offset, None);
}

#[test]
fn the_oldest_of_two_open_transactions_sets_the_lso_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    produce(&mut p, &txn_batch(1, 0, 0, 2), true).unwrap(); // 0..2
    produce(&mut p, &txn_batch(2, 0, 0, 2), true).unwrap(); // 2..4
    assert_eq!(p.last_stable_offset(), 0);
    let m1 = end(&mut p, 1, 0, TxnResult::Abort).unwrap(); // 4
                                                           // Producer 2's transaction, open from offset 2, still holds the LSO.
    assert_eq!(p.last_stable_offset(), 2);
    let aborted = p.reader().aborted_txns(0, 2);
    let one = AbortedTxn {
        producer_id: 1,
        first_offset: 0,
        last_offset: m1,
        last_stable_offset: 2,
    };
    assert_eq!(aborted, vec![one]);
    end(&mut p, 2, 0, TxnResult::Abort).unwrap(); // 5
    assert_eq!(p.last_stable_offset(), 6);
    let both = p.reader().aborted_txns(0, 6);
    assert_eq!(
        both.iter().map(|a| a.producer_id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // A fetch from offset 5 on needs neither (both ended before it).
    assert!(p.reader().aborted_txns(6, 6).is_empty());
}

#[test]
fn unverified_and_inconsistent_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    // KIP-890 part 1: no transaction may start here without the coordinator's word.
    let e = produce(&mut p, &txn_batch(3, 0, 0, 1), false).unwrap_err();
    assert_eq!(e.error_code(), ResponseError::InvalidTxnState);
    assert_eq!(p.log_end_offset(), 0);
    produce(&mut p, &txn_batch(3, 0, 0, 1), true).unwrap();
    // Once open, later batches of the transaction need no new verification...
    produce(&mut p, &txn_batch(3, 0, 1, 1), false).unwrap();
    // ...but a non-transactional batch in the middle of it is refused.
    let e = produce(&mut p, &batch(3, 0, 2, 1), false).unwrap_err();
    assert_eq!(e.error_code(), ResponseError::InvalidTxnState);
    assert_eq!(p.log_end_offset(), 2);
}

#[test]
fn stale_markers_are_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    produce(&mut p, &txn_batch(4, 2, 0, 1), true).unwrap();
    let old_epoch = end(&mut p, 4, 1, TxnResult::Commit).unwrap_err();
    assert_eq!(old_epoch.error_code(), ResponseError::InvalidProducerEpoch);
    end(&mut p, 4, 2, TxnResult::Abort).unwrap(); // coordinator epoch 1
    let older_coordinator = EndTxnMarker {
        producer_id: 4,
        producer_epoch: 2,
        coordinator_epoch: 0,
        result: TxnResult::Commit,
    };
    let e = p.write_marker(&older_coordinator, NOW).unwrap_err();
    assert_eq!(e.error_code(), ResponseError::TransactionCoordinatorFenced);
    assert_eq!(p.log_end_offset(), 2);
}

#[test]
fn a_crash_keeps_open_transactions_and_the_index_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path());
    produce(&mut p, &txn_batch(1, 0, 0, 2), true).unwrap(); // 0..2
    end(&mut p, 1, 0, TxnResult::Abort).unwrap(); // 2
    produce(&mut p, &txn_batch(2, 0, 0, 1), true).unwrap(); // 3
    let before = (p.last_stable_offset(), p.reader().aborted_txns(0, 4));
    drop(p); // no close: a crash that keeps the page cache
    let p = open(dir.path());
    assert_eq!(
        (p.last_stable_offset(), p.reader().aborted_txns(0, 4)),
        before
    );
    assert_eq!(before.0, 3);
    assert_eq!(before.1.len(), 1);
    drop(p);
    let mut p = open(dir.path());
    assert_eq!(p.reader().aborted_txns(0, 4).len(), 1);
    p.close().unwrap();
    let p = open(dir.path());
    assert_eq!(
        (p.last_stable_offset(), p.reader().aborted_txns(0, 4)),
        before
    );
}

#[test]
fn retention_deletes_a_segments_index_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = PartitionConfig {
        log: LogConfig {
            retention_bytes: 0,
            ..LogConfig::default()
        },
        ..PartitionConfig::default()
    };
    let mut p = Partition::open(dir.path(), config.clone(), NOW).unwrap().0;
    produce(&mut p, &txn_batch(1, 0, 0, 2), true).unwrap();
    end(&mut p, 1, 0, TxnResult::Abort).unwrap();
    let index = dir.path().join("00000000000000000000.txnindex");
    assert!(index.exists());
    p.start_new_segment().unwrap();
    produce(&mut p, &batch(-1, -1, -1, 1), false).unwrap();
    p.apply_retention(NOW).unwrap();
    assert!(p.log_start_offset() >= 3, "the marker's segment is gone");
    assert!(!index.exists());
    let start = p.log_start_offset();
    assert!(p
        .reader()
        .aborted_txns(start, p.high_watermark())
        .is_empty());
}
