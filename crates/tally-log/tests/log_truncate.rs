//! `Log::truncate_to`: a replica's uncommitted tail cut back to a batch boundary, across
//! segments, surviving a reopen, and refused inside a batch or below the log start.

mod common;

use common::{append, config, read_all, segment_file};
use tally_log::{Log, LogError};

/// Small segments: a few batches each.
const SEGMENT_BYTES: u64 = 400;

/// A log of `batches` batches of 3 records each.
fn filled(dir: &std::path::Path, batches: usize) -> Log {
    let (mut log, _) = Log::open(dir, config(SEGMENT_BYTES)).unwrap();
    for i in 0..batches {
        append(&mut log, 3, 1_000 + i as i64);
    }
    log
}

fn bases(log: &Log) -> Vec<i64> {
    read_all(log).iter().map(|h| h.base_offset).collect()
}

#[test]
fn cuts_inside_the_active_segment_and_appends_continue_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 3);
    assert_eq!(log.segment_count(), 1);
    log.truncate_to(3).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(bases(&log), vec![0]);
    assert_eq!(append(&mut log, 2, 5_000), 3);
    assert_eq!(bases(&log), vec![0, 3]);
}

#[test]
fn cuts_across_segments_and_deletes_the_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 20);
    let segments = log.segment_base_offsets();
    assert!(segments.len() >= 4, "{segments:?}");
    let cut = segments[1] + 3; // the second batch of the second segment
    log.truncate_to(cut).unwrap();
    assert_eq!(log.log_end_offset(), cut);
    assert_eq!(log.segment_base_offsets(), segments[..2].to_vec());
    for base in &segments[2..] {
        assert!(
            !segment_file(dir.path(), *base, "log").exists(),
            "{base} left behind"
        );
    }
    let expected: Vec<i64> = (0..cut).step_by(3).collect();
    assert_eq!(bases(&log), expected);
    // The log goes on from the cut, in the cut segment.
    assert_eq!(append(&mut log, 1, 9_000), cut);
    assert_eq!(log.segment_base_offsets().len(), 2);
}

#[test]
fn a_cut_at_a_segment_base_leaves_that_segment_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 12);
    let segments = log.segment_base_offsets();
    log.truncate_to(segments[1]).unwrap();
    assert_eq!(log.log_end_offset(), segments[1]);
    assert_eq!(log.segment_base_offsets(), segments[..2].to_vec());
    // Everything, down to an empty first segment.
    log.truncate_to(0).unwrap();
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.segment_base_offsets(), vec![0]);
    assert!(read_all(&log).is_empty());
    assert_eq!(append(&mut log, 3, 1), 0);
}

#[test]
fn the_cut_survives_a_reopen_after_a_clean_close_and_after_a_crash() {
    for clean in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), 20);
        // A clean close first: the recovery point and saved indexes cover the whole log, and
        // must not make the reopened log trust the cut bytes.
        log.close().unwrap();
        let cut = log.segment_base_offsets()[2] + 6;
        log.truncate_to(cut).unwrap();
        if clean {
            log.close().unwrap();
        }
        drop(log);
        let (log, report) = Log::open(dir.path(), config(SEGMENT_BYTES)).unwrap();
        assert_eq!(log.log_end_offset(), cut, "clean={clean}");
        assert_eq!(report.truncated_bytes, 0, "clean={clean}");
        let expected: Vec<i64> = (0..cut).step_by(3).collect();
        assert_eq!(bases(&log), expected, "clean={clean}");
    }
}

#[test]
fn refuses_an_offset_inside_a_batch_or_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 12);
    let end = log.log_end_offset();
    match log.truncate_to(4) {
        Err(LogError::NotABatchBoundary {
            offset: 4,
            batch_base_offset: 3,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(log.log_end_offset(), end, "nothing cut");
    // At or past the end: nothing to do.
    log.truncate_to(end).unwrap();
    log.truncate_to(end + 10).unwrap();
    assert_eq!(log.log_end_offset(), end);
    let first_kept = log.segment_base_offsets()[1];
    log.delete_segments_before(first_kept).unwrap();
    assert!(matches!(
        log.truncate_to(0),
        Err(LogError::OffsetOutOfRange { offset: 0, .. })
    ));
}

#[test]
fn aborted_transactions_at_or_after_the_cut_are_forgotten() {
    use tally_log::AbortedTxn;
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), 4);
    for (first, last) in [(0, 2), (6, 8)] {
        log.append_aborted_txn(AbortedTxn {
            producer_id: 7,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last,
        })
        .unwrap();
    }
    log.truncate_to(6).unwrap();
    let kept = log.reader().collect_aborted_txns(0, i64::MAX);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].last_offset, 2);
    // Still forgotten once the log grows past the old marker again and is reopened: the
    // entry is gone from the index file, not only from memory.
    for i in 0..4 {
        append(&mut log, 3, 2_000 + i);
    }
    log.close().unwrap();
    drop(log);
    let (log, _) = Log::open(dir.path(), config(SEGMENT_BYTES)).unwrap();
    let kept = log.reader().collect_aborted_txns(0, i64::MAX);
    assert_eq!(kept.len(), 1, "after reopen: {kept:?}");
}

/// `truncate_fully_and_start_at`: a replica that is sent the leader's retained log starts
/// again, empty, at the leader's log start, whether that is past its own end or inside it.
#[test]
fn a_full_truncation_starts_an_empty_log_at_the_offset_and_survives_a_reopen() {
    for start in [500, 6] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = filled(dir.path(), 12);
        let old = log.segment_base_offsets();
        assert!(old.len() >= 3, "{old:?}");
        log.truncate_fully_and_start_at(start).unwrap();
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.log_end_offset(), start);
        assert_eq!(log.segment_base_offsets(), vec![start]);
        assert!(read_all(&log).is_empty());
        for base in old.iter().filter(|b| **b != start) {
            assert!(
                !segment_file(dir.path(), *base, "log").exists(),
                "{base} left"
            );
        }
        // Done again (an install redone after a crash): the same empty log.
        log.truncate_fully_and_start_at(start).unwrap();
        assert_eq!(append(&mut log, 2, 7_000), start);
        log.close().unwrap();
        drop(log);
        let (log, _) = Log::open(dir.path(), config(SEGMENT_BYTES)).unwrap();
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.log_end_offset(), start + 2);
        assert_eq!(bases(&log), vec![start]);
    }
}
