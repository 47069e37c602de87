//! The log against real files in a temporary directory: append, read, roll, reopen, recovery
//! of torn and corrupt tails, retention.

use std::fs::{self, OpenOptions};

use tally_log::{Log, LogConfig, LogError};
use tally_protocol::BatchHeader;
use tally_testkit::BatchSpec;

mod common;
use common::*;

#[test]
fn appends_read_back_across_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.log_end_offset, 0);
    let mut bases = Vec::new();
    for i in 0..60 {
        bases.push(append(&mut log, 1 + i % 4, 1000 + i as i64));
    }
    assert!(log.segment_base_offsets().len() > 3, "should have rolled");
    let end = log.log_end_offset();
    let got: Vec<i64> = read_all(&log).iter().map(|h| h.base_offset).collect();
    assert_eq!(got, bases);

    // A read from the middle of a batch returns the whole batch holding the offset.
    let r = log.read(bases[10] + 1, 1, end, true).unwrap();
    assert_eq!(
        headers(&r.records)[0].base_offset,
        bases[10].min(bases[10] + 1)
    );
    // max_bytes smaller than the first batch: nothing, unless min_one_batch.
    assert!(log
        .read(bases[10], 1, end, false)
        .unwrap()
        .records
        .is_empty());
    // Nothing at or past max_offset.
    assert!(log
        .read(bases[5], 1 << 20, bases[5], true)
        .unwrap()
        .records
        .is_empty());
    let r = log.read(bases[5], 1 << 20, bases[7], true).unwrap();
    assert_eq!(headers(&r.records).len(), 2);
    // Out of range.
    assert!(matches!(
        log.read(end + 1, 100, end, true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert!(log.read(end, 100, end, true).unwrap().records.is_empty());

    // Reopen without close (a crash): same contents, only the tail is re-read.
    drop(log);
    let (log, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.log_end_offset, end);
    assert_eq!(report.truncated_bytes, 0);
    assert!(report.scanned_segments < report.segments, "{report:?}");
    let got: Vec<i64> = read_all(&log).iter().map(|h| h.base_offset).collect();
    assert_eq!(got, bases);

    // Reopen after a clean close.
    let mut log = log;
    log.close().unwrap();
    drop(log);
    let (log, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.log_end_offset, end);
    assert_eq!(
        report.scanned_segments, 1,
        "only the active segment is re-read"
    );
    assert_eq!(read_all(&log).len(), bases.len());
}

#[test]
fn after_a_clean_close_only_the_tail_past_the_recovery_point_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    let mut bases = Vec::new();
    // Timestamps rise and then one falls back, so the maximum is not simply the last batch.
    for i in 0..200i64 {
        let ts = if i == 150 { 9_000 } else { 1000 + i * 10 };
        bases.push(append(&mut log, 3, ts));
    }
    let end = log.log_end_offset();
    let path = active_segment_path(dir.path(), &log);
    let size = fs::metadata(&path).unwrap().len();
    log.close().unwrap();
    drop(log);

    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(report.log_end_offset, end);
    assert_eq!(report.truncated_bytes, 0);
    // At most one index interval (256 bytes) plus a batch is read again, not the segment.
    assert!(
        report.scanned_bytes < 512 && size > 10_000,
        "{report:?}, segment of {size} bytes"
    );
    let got: Vec<i64> = read_all(&log).iter().map(|h| h.base_offset).collect();
    assert_eq!(got, bases);
    let (h, _) = log
        .reader()
        .read_batch_with_max_timestamp()
        .unwrap()
        .unwrap();
    assert_eq!(h.base_offset, bases[150]);
    let (h, _) = log.reader().read_batch_by_time(1205).unwrap().unwrap();
    assert_eq!(h.base_offset, bases[21]);

    // Appends continue; then a crash with a torn last batch. The recovery point on disk is
    // still the one from the clean close: everything after it is read and checked.
    let mut log = log;
    for i in 0..20i64 {
        bases.push(append(&mut log, 3, 20_000 + i));
    }
    let end2 = log.log_end_offset();
    drop(log);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x5a;
    fs::write(&path, &bytes).unwrap();
    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(report.log_end_offset, end2 - 3);
    assert!(report.scanned_bytes < (n as u64 - size) + 512, "{report:?}");
    assert!(report.truncation_reason.unwrap().contains("CRC"));
    bases.pop();
    let got: Vec<i64> = read_all(&log).iter().map(|h| h.base_offset).collect();
    assert_eq!(got, bases);
    let mut log = log;
    assert_eq!(append(&mut log, 1, 30_000), end2 - 3);
}

#[test]
fn torn_tail_is_truncated_to_last_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    for i in 0..10 {
        append(&mut log, 3, i);
    }
    let end = log.log_end_offset();
    let path = active_segment_path(dir.path(), &log);
    drop(log);
    // Cut 5 bytes off the last batch.
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(report.log_end_offset, end - 3);
    assert!(report.truncated_bytes > 0);
    assert_eq!(read_all(&log).len(), 9);
    // New appends continue at the recovered end.
    let mut log = log;
    assert_eq!(append(&mut log, 1, 99), end - 3);
}

#[test]
fn corrupt_tail_bytes_fail_the_crc_and_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    for i in 0..10 {
        append(&mut log, 2, i);
    }
    let end = log.log_end_offset();
    let path = active_segment_path(dir.path(), &log);
    drop(log);
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x5a;
    bytes.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0]);
    fs::write(&path, &bytes).unwrap();
    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(report.log_end_offset, end - 2);
    assert!(report.truncation_reason.unwrap().contains("CRC"));
    assert_eq!(read_all(&log).len(), 9);
}

#[test]
fn corruption_in_an_unflushed_segment_drops_everything_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1024)).unwrap();
    for i in 0..40 {
        append(&mut log, 2, i);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4);
    drop(log);
    // Pretend nothing was ever flushed: every segment is past the recovery point.
    fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let second = dir
        .path()
        .join(tally_log::offset_file_name(bases[1], "log"));
    let mut bytes = fs::read(&second).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&second, &bytes).unwrap();
    let (log, report) = Log::open(dir.path(), config(1024)).unwrap();
    assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
    assert!(report.log_end_offset < bases[2]);
    assert!(report.truncated_bytes > 0);
    read_all(&log);
}

#[test]
fn damaged_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(4096)).unwrap();
    for i in 0..100 {
        append(&mut log, 3, i);
    }
    let end = log.log_end_offset();
    let bases = log.segment_base_offsets();
    drop(log);
    fs::write(
        dir.path()
            .join(tally_log::offset_file_name(bases[0], "index")),
        [9u8; 13],
    )
    .unwrap();
    fs::remove_file(
        dir.path()
            .join(tally_log::offset_file_name(bases[1], "timeindex")),
    )
    .unwrap();
    let (log, report) = Log::open(dir.path(), config(4096)).unwrap();
    assert_eq!(report.log_end_offset, end);
    assert_eq!(read_all(&log).len(), 100);
}

#[test]
fn retention_by_size_and_time_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1024);
    let (mut log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..50 {
        append(&mut log, 2, 10_000 + i);
    }
    let before = log.segment_base_offsets();
    cfg.retention_bytes = 3000;
    log.set_config(cfg.clone());
    let outcome = log.apply_retention(20_000).unwrap();
    assert!(!outcome.roll_needed);
    let deleted = outcome.deleted_segments;
    assert!(!deleted.is_empty());
    assert!(
        log.size_in_bytes() >= 3000,
        "keeps at least retention.bytes"
    );
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert!(log.log_start_offset() > 0);
    assert!(matches!(
        log.read(0, 100, log.log_end_offset(), true),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    for b in &deleted {
        assert!(!dir
            .path()
            .join(tally_log::offset_file_name(*b, "log"))
            .exists());
    }
    assert!(before.len() > log.segment_base_offsets().len());

    // Time: everything is older than retention.ms at now = 1e9 -> the caller rolls the active
    // segment and everything before the new one goes; appends continue at the same offset.
    cfg.retention_bytes = -1;
    cfg.retention_ms = 1000;
    log.set_config(cfg);
    let end = log.log_end_offset();
    let outcome = log.apply_retention(1_000_000_000).unwrap();
    assert!(outcome.roll_needed, "the active segment expired too");
    log.roll().unwrap();
    let outcome = log.apply_retention(1_000_000_000).unwrap();
    assert!(!outcome.roll_needed);
    assert_eq!(outcome.deleted_segments.len(), 1);
    assert_eq!(log.log_start_offset(), end);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(append(&mut log, 1, 5), end);
    drop(log);
    let (log, _) = Log::open(dir.path(), config(1024)).unwrap();
    assert_eq!(log.log_start_offset(), end);
    assert_eq!(log.log_end_offset(), end + 1);
}

#[test]
fn finds_batches_by_timestamp_and_walks_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1500)).unwrap();
    let mut bases = Vec::new();
    for i in 0..40i64 {
        bases.push(append(&mut log, 2, 1000 + i * 10));
    }
    // Batch i has timestamps 1000+10i and 1001+10i.
    let (h, bytes) = log.reader().read_batch_by_time(1205).unwrap().unwrap();
    assert_eq!(h.base_offset, bases[21]);
    assert_eq!(bytes.len(), h.size_in_bytes());
    let (h, _) = log.reader().read_batch_by_time(1201).unwrap().unwrap();
    assert_eq!(h.base_offset, bases[20]);
    assert!(log.reader().read_batch_by_time(5000).unwrap().is_none());
    let (h, _) = log
        .reader()
        .read_batch_with_max_timestamp()
        .unwrap()
        .unwrap();
    assert_eq!(h.base_offset, bases[39]);

    let mut seen = Vec::new();
    log.for_each_batch_header(bases[30] + 1, |h| seen.push(h.base_offset))
        .unwrap();
    assert_eq!(seen, bases[30..].to_vec());
}

#[test]
fn segment_ms_is_measured_on_the_broker_clock() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1000,
        ..config(1 << 20)
    };
    let (mut log, _) = Log::open(dir.path(), cfg).unwrap();
    // A batch stamped in 1970 by its producer, appended at broker time 50_000.
    let mut spec = BatchSpec::new(-1, -1, -1, 1);
    spec.timestamp_ms = 1;
    let bytes = spec.encode().to_vec();
    let header = BatchHeader::parse_whole(&bytes).unwrap();
    assert!(
        !log.should_roll(bytes.len(), 0, 50_000),
        "an empty segment never rolls"
    );
    log.append(&bytes, &header, 50_000).unwrap();
    assert!(
        !log.should_roll(bytes.len(), 1, 50_500),
        "old record timestamps do not age a segment"
    );
    assert!(log.should_roll(bytes.len(), 1, 51_001));
    // A batch whose offsets do not fit the segment's relative index rolls as well.
    assert!(log.should_roll(bytes.len(), i64::from(i32::MAX) + 1, 50_500));
}

/// What recovery reads, counted exactly (the mutation run found the trust decisions and the
/// report unchecked): after a crash only the active segment; with the recovery point inside an
/// older segment (a crash before a roll moved it), that segment and every later one, whole; a
/// torn last batch cut to the byte.
#[test]
fn recovery_reads_exactly_what_follows_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(2048)).unwrap();
    let mut last_base = 0;
    for i in 0..60i64 {
        last_base = append(&mut log, 3, 1000 + i);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3, "{bases:?}");
    let size = |base: i64| {
        fs::metadata(dir.path().join(tally_log::offset_file_name(base, "log")))
            .unwrap()
            .len()
    };
    let sizes: Vec<u64> = bases.iter().map(|b| size(*b)).collect();
    let end = log.log_end_offset();
    drop(log);

    let (log, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.segments, bases.len());
    assert_eq!(report.scanned_segments, 1, "{report:?}");
    assert_eq!(report.scanned_bytes, *sizes.last().unwrap());
    assert_eq!((report.truncated_bytes, report.log_end_offset), (0, end));
    assert_eq!(log.recovery_point(), *bases.last().unwrap());
    drop(log);

    // The recovery point at the last batch of the first segment.
    fs::write(
        dir.path().join("recovery-point"),
        format!("{}\n", bases[1] - 3),
    )
    .unwrap();
    let (log, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.scanned_segments, bases.len(), "{report:?}");
    assert_eq!(report.scanned_bytes, sizes.iter().sum::<u64>());
    assert_eq!(log.log_end_offset(), end);
    let batch_bytes = last_batch_bytes(&log, last_base);
    drop(log);

    // A torn last batch: exactly its bytes go; everything before it was read again (the
    // recovery point is still inside the first segment).
    let path = dir
        .path()
        .join(tally_log::offset_file_name(*bases.last().unwrap(), "log"));
    let full = size(*bases.last().unwrap());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full - 5)
        .unwrap();
    let (log, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.truncated_bytes, batch_bytes - 5, "{report:?}");
    assert_eq!(
        report.scanned_bytes,
        sizes.iter().sum::<u64>() - batch_bytes
    );
    assert_eq!(log.log_end_offset(), last_base);
}

/// Bytes of the batch at `base`.
fn last_batch_bytes(log: &Log, base: i64) -> u64 {
    let r = log.read(base, 1 << 20, log.log_end_offset(), true).unwrap();
    headers(&r.records)
        .iter()
        .find(|h| h.base_offset == base)
        .map(|h| h.size_in_bytes() as u64)
        .unwrap()
}
