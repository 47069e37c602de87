//! The log's limits, each checked at its exact edge: when a segment rolls (size, relative
//! offset, age, also after a restart), what retention deletes (by time, by size, by the file's
//! time when batches carry no timestamp), and what the configuration accessors report.
//! cargo-mutants found each of these edges unchecked (docs/testing.md §8).

use std::fs::{self, File};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tally_log::{Log, LogConfig};
use tally_protocol::BatchHeader;

mod common;
use common::*;

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn set_mtime(path: &std::path::Path, ms: i64) {
    let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn the_log_reports_its_configuration_and_segment_count() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 12_345,
        retention_ms: 67_890,
        retention_bytes: 4_242,
        ..config(1024)
    };
    let (mut log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.config(), &cfg);
    assert_eq!(log.segment_count(), 1);
    for i in 0..30 {
        append(&mut log, 2, 1000 + i);
    }
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3, "{bases:?}");
    assert_eq!(log.segment_count(), bases.len());
}

#[test]
fn a_segment_rolls_only_past_segment_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let probe = batch_at(0, 2, 1000);
    let batch_bytes = probe.len() as u64;
    // Room for exactly three batches.
    let (mut log, _) = Log::open(dir.path(), config(3 * batch_bytes)).unwrap();
    assert!(
        !log.should_roll(10 * batch_bytes as usize, 1, 1000),
        "an empty segment never rolls, even for a batch larger than segment.bytes"
    );
    append(&mut log, 2, 1000);
    append(&mut log, 2, 1001);
    assert!(
        !log.should_roll(batch_bytes as usize, 5, 1002),
        "a batch that fills the segment exactly still goes in"
    );
    append(&mut log, 2, 1002);
    assert_eq!(log.segment_count(), 1);
    assert!(log.should_roll(1, 6, 1003), "one byte more does not fit");
}

#[test]
fn a_segment_rolls_when_an_offset_is_too_far_from_its_base() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    for i in 0..3 {
        append(&mut log, 2, 1000 + i);
    }
    log.roll().unwrap();
    let base = log.log_end_offset();
    assert_eq!(base, 6);
    append(&mut log, 2, 2000);
    let max = i64::from(i32::MAX);
    assert!(!log.should_roll(100, base + max, 2001), "within i32::MAX");
    assert!(log.should_roll(100, base + max + 1, 2001), "past i32::MAX");
}

#[test]
fn a_segment_rolls_only_past_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1000,
        ..config(1 << 20)
    };
    let (mut log, _) = Log::open(dir.path(), cfg).unwrap();
    append(&mut log, 1, 50_000);
    assert!(!log.should_roll(100, 1, 51_000), "exactly segment.ms old");
    assert!(log.should_roll(100, 1, 51_001));
}

/// After a crash the first append's time is gone; the segment file's time stands in for it.
#[test]
fn after_a_restart_segment_ms_counts_from_the_segment_file_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: HOUR_MS,
        ..config(1 << 20)
    };
    let (mut log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    let now = now_ms();
    append(&mut log, 2, now);
    let path = active_segment_path(dir.path(), &log);
    drop(log);

    set_mtime(&path, now - 2 * HOUR_MS);
    let (log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    assert!(
        log.should_roll(100, 2, now),
        "written two hours ago: older than segment.ms"
    );
    drop(log);

    set_mtime(&path, now - 10 * 60_000);
    let (log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    assert!(
        !log.should_roll(100, 2, now),
        "written ten minutes ago: younger than segment.ms"
    );
    drop(log);

    // An empty segment has no first append yet, whatever its file's time: its age starts
    // with the first batch appended after the restart.
    let empty = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(empty.path(), cfg.clone()).unwrap();
    let path = active_segment_path(empty.path(), &log);
    drop(log);
    set_mtime(&path, now - 2 * HOUR_MS);
    let (mut log, _) = Log::open(empty.path(), cfg).unwrap();
    append(&mut log, 1, now);
    assert!(!log.should_roll(100, 1, now + 1));
}

/// Four full segments and the active one; `(log, sizes of the segments oldest first)`.
fn log_of_segments(dir: &std::path::Path, ts: i64) -> (Log, Vec<u64>) {
    let (mut log, _) = Log::open(dir, config(1024)).unwrap();
    while log.segment_count() < 5 {
        append(&mut log, 2, ts);
    }
    let sizes = log
        .segment_base_offsets()
        .iter()
        .map(|b| fs::metadata(segment_file(dir, *b, "log")).unwrap().len())
        .collect();
    (log, sizes)
}

#[test]
fn retention_bytes_deletes_while_the_log_stays_at_least_that_big() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, sizes) = log_of_segments(dir.path(), 1000);
    let total: u64 = sizes.iter().sum();
    let bases = log.segment_base_offsets();

    // Deleting the oldest leaves exactly retention.bytes: it goes.
    let mut cfg = log.config().clone();
    cfg.retention_bytes = (total - sizes[0]) as i64;
    log.set_config(cfg.clone());
    let outcome = log.apply_retention(2000).unwrap();
    assert_eq!(outcome.deleted_segments, vec![bases[0]]);

    // Two more would leave exactly retention.bytes; a third would leave less.
    cfg.retention_bytes = (total - sizes[0] - sizes[1] - sizes[2]) as i64;
    log.set_config(cfg.clone());
    let outcome = log.apply_retention(2000).unwrap();
    assert_eq!(outcome.deleted_segments, vec![bases[1], bases[2]]);
    assert_eq!(log.size_in_bytes(), cfg.retention_bytes as u64);

    // One byte more than what is left: nothing goes.
    cfg.retention_bytes = log.size_in_bytes() as i64 - sizes[3] as i64 + 1;
    log.set_config(cfg);
    assert!(log
        .apply_retention(2000)
        .unwrap()
        .deleted_segments
        .is_empty());
}

#[test]
fn retention_ms_keeps_segments_with_recent_batches() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let (mut log, _) = log_of_segments(dir.path(), now - 1000);
    let mut cfg = log.config().clone();
    cfg.retention_ms = HOUR_MS;
    log.set_config(cfg);
    let outcome = log.apply_retention(now).unwrap();
    assert!(outcome.deleted_segments.is_empty(), "{outcome:?}");
    assert!(!outcome.roll_needed);
    let outcome = log.apply_retention(now + HOUR_MS).unwrap();
    assert_eq!(outcome.deleted_segments.len(), 4, "{outcome:?}");
    assert!(outcome.roll_needed);
}

/// Batches without timestamps (-1) give a segment no max timestamp; retention then goes by the
/// segment file's modification time, as Kafka does.
#[test]
fn retention_ms_without_timestamps_goes_by_the_file_time() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1024)).unwrap();
    while log.segment_count() < 3 {
        let base = log.log_end_offset();
        let bytes = batch_at(base, 1, -1);
        let header = BatchHeader::parse_whole(&bytes).unwrap();
        assert_eq!(header.max_timestamp, -1);
        if log.should_roll(bytes.len(), header.last_offset(), 1) {
            log.roll().unwrap();
        }
        log.append(&bytes, &header, 1).unwrap();
    }
    let bases = log.segment_base_offsets();
    let now = now_ms();
    set_mtime(
        &segment_file(dir.path(), bases[0], "log"),
        now - 2 * HOUR_MS,
    );
    set_mtime(
        &segment_file(dir.path(), bases[1], "log"),
        now - 10 * 60_000,
    );
    let mut cfg = log.config().clone();
    cfg.retention_ms = HOUR_MS;
    log.set_config(cfg);
    let outcome = log.apply_retention(now).unwrap();
    assert_eq!(outcome.deleted_segments, vec![bases[0]]);
    assert!(!outcome.roll_needed);
}

/// Offsets missing between two segments (as compaction leaves them): a read at an offset in
/// the gap returns the next segment's first batch, and the read side knows the log's end.
#[test]
fn a_read_in_a_gap_between_segments_returns_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = batch_at(0, 5, 1000);
    first.extend(batch_at(5, 5, 1001));
    fs::write(segment_file(dir.path(), 0, "log"), first).unwrap();
    fs::write(segment_file(dir.path(), 20, "log"), batch_at(20, 5, 1002)).unwrap();
    let (log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 20]);
    assert_eq!(log.reader().log_end_offset(), 25);
    assert_eq!(log.reader().log_start_offset(), 0);
    let r = log.read(15, 1 << 20, 25, true).unwrap();
    assert_eq!(r.first_batch_offset, Some(20));
    let r = log.read(10, 1 << 20, 25, true).unwrap();
    assert_eq!(r.first_batch_offset, Some(20));
    // Walking the headers from inside the gap starts at the next batch too.
    for from in [10, 15] {
        let mut seen = Vec::new();
        log.for_each_batch_header(from, |h| seen.push(h.base_offset))
            .unwrap();
        assert_eq!(seen, vec![20], "from {from}");
    }
    // Nothing at or past the high watermark, even across the gap.
    let r = log.read(15, 1 << 20, 20, true).unwrap();
    assert_eq!(r.first_batch_offset, None);
}

/// `max_bytes` exactly the first batch's size: that batch is returned, even without
/// `min_one_batch`; one byte less returns nothing.
#[test]
fn a_read_of_exactly_one_batch_s_size_returns_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    let size = batch_at(0, 3, 1000).len();
    append(&mut log, 3, 1000);
    append(&mut log, 3, 1001);
    let end = log.log_end_offset();
    let r = log.read(0, size, end, false).unwrap();
    assert_eq!((r.records.len(), r.first_batch_offset), (size, Some(0)));
    let r = log.read(0, size - 1, end, false).unwrap();
    assert_eq!((r.records.len(), r.first_batch_offset), (0, None));
}
