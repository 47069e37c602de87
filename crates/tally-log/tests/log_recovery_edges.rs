//! What recovery accepts, trusts and cuts, at the edges cargo-mutants found unchecked
//! (docs/testing.md §8): offsets that jump or go back in a segment file, relative offsets at
//! the limit of the index, segments larger than the scanner's read chunk, index files that do
//! not match their segment, a recovery point inside a segment, and the files recovery leaves.

use std::fs::{self, OpenOptions};

use tally_log::Log;

mod common;
use common::*;

/// Writes `batches` (base offset, record count) as the segment file with base `base`.
fn write_segment(dir: &std::path::Path, base: i64, batches: &[(i64, usize)]) -> Vec<u64> {
    let mut bytes = Vec::new();
    let mut sizes = Vec::new();
    for &(offset, count) in batches {
        let b = batch_at(offset, count, 1000 + offset);
        sizes.push(b.len() as u64);
        bytes.extend_from_slice(&b);
    }
    fs::write(segment_file(dir, base, "log"), bytes).unwrap();
    sizes
}

fn base_offsets(log: &Log) -> Vec<i64> {
    read_all(log).iter().map(|h| h.base_offset).collect()
}

/// Kafka's logs may have offset gaps (compaction leaves them); an offset that goes back
/// cannot be a log's and ends what recovery keeps.
#[test]
fn recovery_keeps_offset_gaps_and_cuts_at_an_offset_that_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = write_segment(dir.path(), 100, &[(100, 3), (110, 2), (105, 1), (120, 1)]);
    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(base_offsets(&log), vec![100, 110]);
    assert_eq!(report.log_end_offset, 112);
    assert_eq!(report.truncated_bytes, sizes[2] + sizes[3]);
    let reason = report.truncation_reason.unwrap();
    assert!(
        reason.contains("offset 105 but 112 was expected"),
        "{reason}"
    );
}

/// A segment's batches must stay within `u32::MAX` of its base (the index stores relative
/// offsets in 4 bytes).
#[test]
fn recovery_cuts_a_batch_beyond_the_relative_offset_range() {
    let dir = tempfile::tempdir().unwrap();
    let max = i64::from(u32::MAX);
    // The second batch's last offset is exactly u32::MAX past the base: kept. The third's is
    // one more: cut.
    let sizes = write_segment(
        dir.path(),
        100,
        &[(100, 1), (100 + max - 2, 3), (101 + max, 1)],
    );
    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(report.log_end_offset, 101 + max);
    assert_eq!(report.truncated_bytes, sizes[2]);
    assert_eq!(base_offsets(&log), vec![100, 100 + max - 2]);
}

/// The scanner reads a segment in 1 MiB chunks; a segment several chunks long is read whole
/// and in order.
#[test]
fn recovery_reads_a_segment_longer_than_the_read_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(64 << 20)).unwrap();
    let mut bases = Vec::new();
    while log.size_in_bytes() < 3 << 20 {
        bases.push(append(&mut log, 200, 1000));
    }
    let size = log.size_in_bytes();
    drop(log);
    let (log, report) = Log::open(dir.path(), config(64 << 20)).unwrap();
    assert_eq!(report.scanned_bytes, size);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(base_offsets(&log), bases);
}

/// A torn tail is cut from the file itself, not only from what the log reads.
#[test]
fn a_torn_tail_is_cut_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    for i in 0..5 {
        append(&mut log, 2, 1000 + i);
    }
    let path = active_segment_path(dir.path(), &log);
    drop(log);
    let full = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(full - 7)
        .unwrap();
    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        full - 7 - report.truncated_bytes
    );
    assert_eq!(log.size_in_bytes(), fs::metadata(&path).unwrap().len());
}

/// Corruption in one segment removes every later segment; the report counts their bytes.
#[test]
fn the_report_counts_the_bytes_of_every_segment_dropped_after_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1024)).unwrap();
    while log.segment_count() < 4 {
        append(&mut log, 2, 1000);
    }
    let bases = log.segment_base_offsets();
    drop(log);
    fs::remove_file(dir.path().join("recovery-point")).unwrap();
    let sizes: Vec<u64> = bases
        .iter()
        .map(|b| {
            fs::metadata(segment_file(dir.path(), *b, "log"))
                .unwrap()
                .len()
        })
        .collect();
    // Corrupt the last byte of the first segment: its last batch fails its CRC.
    let first = segment_file(dir.path(), bases[0], "log");
    let mut bytes = fs::read(&first).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    fs::write(&first, &bytes).unwrap();
    let (log, report) = Log::open(dir.path(), config(1024)).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![bases[0]]);
    let first_cut = sizes[0] - log.size_in_bytes();
    assert!(first_cut > 0);
    assert_eq!(
        report.truncated_bytes,
        first_cut + sizes[1..].iter().sum::<u64>()
    );
}

/// Index files whose segment is gone (a crash while deleting it) are removed at open.
#[test]
fn index_files_without_their_segment_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1024)).unwrap();
    while log.segment_count() < 2 {
        append(&mut log, 2, 1000);
    }
    let bases = log.segment_base_offsets();
    drop(log);
    for suffix in ["index", "timeindex", "txnindex"] {
        fs::write(segment_file(dir.path(), 999_999, suffix), b"").unwrap();
    }
    Log::open(dir.path(), config(1024)).unwrap();
    for suffix in ["index", "timeindex", "txnindex"] {
        assert!(
            !segment_file(dir.path(), 999_999, suffix).exists(),
            "{suffix}"
        );
    }
    assert!(segment_file(dir.path(), bases[0], "index").exists());
    assert!(segment_file(dir.path(), bases[0], "timeindex").exists());
}

/// Three segments, closed cleanly: the first two below the recovery point.
fn closed_log(dir: &std::path::Path) -> Vec<i64> {
    let (mut log, _) = Log::open(dir, config(2048)).unwrap();
    for i in 0..60i64 {
        append(&mut log, 3, 1000 + i);
    }
    while log.segment_count() < 3 {
        append(&mut log, 3, 2000);
    }
    log.close().unwrap();
    log.segment_base_offsets()
}

fn time_index_entry(ts: i64, relative: u32) -> Vec<u8> {
    let mut e = ts.to_be_bytes().to_vec();
    e.extend_from_slice(&relative.to_be_bytes());
    e
}

/// An inactive segment's time index is trusted only if it points inside the segment; else
/// the segment is scanned and its indexes rebuilt.
#[test]
fn a_time_index_pointing_past_its_segment_makes_recovery_scan_it() {
    let dir = tempfile::tempdir().unwrap();
    let bases = closed_log(dir.path());
    let (b1, b2) = (bases[1], bases[2]);
    assert!(b1 > 0);
    let time_index = segment_file(dir.path(), b1, "timeindex");
    let last_rel = (b2 - b1 - 1) as u32;

    // Its last offset: sane, trusted; only the active segment is read again.
    fs::write(&time_index, time_index_entry(1500, last_rel)).unwrap();
    let (_, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.scanned_segments, 1, "{report:?}");

    // One past it: not sane.
    fs::write(&time_index, time_index_entry(1500, last_rel + 1)).unwrap();
    let (log, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.scanned_segments, 2, "{report:?}");
    drop(log);
    // The scan saved rebuilt indexes, which are trusted next time.
    let (_, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.scanned_segments, 1, "{report:?}");
}

/// An inactive segment whose file is empty is not trusted through its indexes: it is scanned.
#[test]
fn an_empty_segment_below_the_recovery_point_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let bases = closed_log(dir.path());
    fs::write(segment_file(dir.path(), bases[1], "log"), b"").unwrap();
    fs::write(segment_file(dir.path(), bases[1], "index"), b"").unwrap();
    fs::write(segment_file(dir.path(), bases[1], "timeindex"), b"").unwrap();
    let (_, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.scanned_segments, 2, "{report:?}");
}

/// A recovery point inside an older segment (a crash between a roll's steps): that segment
/// is read whole, even where its saved indexes would allow starting later.
#[test]
fn a_recovery_point_inside_an_older_segment_reads_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let bases = closed_log(dir.path());
    let sizes: Vec<u64> = bases
        .iter()
        .map(|b| {
            fs::metadata(segment_file(dir.path(), *b, "log"))
                .unwrap()
                .len()
        })
        .collect();
    // The first segment's last offset: every entry of its saved indexes is below it.
    fs::write(
        dir.path().join("recovery-point"),
        format!("{}\n", bases[1] - 1),
    )
    .unwrap();
    let (_, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.scanned_segments, bases.len(), "{report:?}");
    assert_eq!(report.scanned_bytes, sizes.iter().sum::<u64>());
}

/// The active segment of a rolled log (base above 0), its recovery point inside it: reading
/// starts at the offset index's last entry below the recovery point. A corrupt batch there
/// is cut, and the log ends at that batch's base offset.
#[test]
fn recovery_inside_the_active_segment_starts_at_the_index_entry_below_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    for i in 0..10 {
        append(&mut log, 3, 1000 + i);
    }
    let base = log.roll().unwrap();
    assert_eq!(base, 30);
    // The first batch carries the segment's largest timestamp, so the saved time index
    // points at it only and stays sane below any recovery point.
    for i in 0..100 {
        append(&mut log, 3, if i == 0 { 9_000_000 } else { 2000 + i });
    }
    let end = log.log_end_offset();
    log.close().unwrap();
    drop(log);

    let entries: Vec<(u32, u32)> = fs::read(segment_file(dir.path(), base, "index"))
        .unwrap()
        .chunks_exact(8)
        .map(|c| {
            (
                u32::from_be_bytes(c[..4].try_into().unwrap()),
                u32::from_be_bytes(c[4..].try_into().unwrap()),
            )
        })
        .collect();
    assert!(entries.len() > 4, "{entries:?}");
    // The recovery point just past the third entry's offset: reading starts at that entry.
    let (rel, position) = entries[2];
    fs::write(
        dir.path().join("recovery-point"),
        format!("{}\n", base + i64::from(rel) + 1),
    )
    .unwrap();
    let path = segment_file(dir.path(), base, "log");
    let len = fs::metadata(&path).unwrap().len();
    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(
        report.scanned_bytes,
        len - u64::from(position),
        "{report:?}"
    );
    assert_eq!(log.log_end_offset(), end);
    drop(log);

    // Corrupt the batch at that entry (a byte inside its CRC-covered part).
    let mut bytes = fs::read(&path).unwrap();
    bytes[position as usize + 70] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let (log, report) = Log::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(log.log_end_offset(), base + i64::from(rel), "{report:?}");
    assert_eq!(report.truncated_bytes, len - u64::from(position));
}

/// A rolled segment's saved time index ends with its max timestamp, which a time look-up
/// needs after a restart.
#[test]
fn a_rolled_segment_s_max_timestamp_is_found_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tally_log::LogConfig {
        index_interval_bytes: 1 << 20,
        ..config(1 << 20)
    };
    let (mut log, _) = Log::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..5 {
        append(&mut log, 2, 1000 + i * 10);
    }
    let newest = append(&mut log, 2, 5000);
    log.roll().unwrap();
    append(&mut log, 2, 100);
    drop(log);
    let (log, report) = Log::open(dir.path(), cfg).unwrap();
    assert_eq!(report.scanned_segments, 1, "the first segment is trusted");
    let (h, _) = log.reader().read_batch_by_time(5001).unwrap().unwrap();
    assert_eq!(h.base_offset, newest);
    let (h, _) = log
        .reader()
        .read_batch_with_max_timestamp()
        .unwrap()
        .unwrap();
    assert_eq!(h.base_offset, newest);
}

/// The offset index of an inactive segment is trusted only if its offsets and positions both
/// rise; positions going back make recovery scan the segment.
#[test]
fn an_offset_index_whose_positions_go_back_makes_recovery_scan_it() {
    let dir = tempfile::tempdir().unwrap();
    let bases = closed_log(dir.path());
    let index = segment_file(dir.path(), bases[1], "index");
    let entry = |r: u32, p: u32| [r.to_be_bytes(), p.to_be_bytes()].concat();
    fs::write(&index, [entry(3, 200), entry(6, 100)].concat()).unwrap();
    let (_, report) = Log::open(dir.path(), config(2048)).unwrap();
    assert_eq!(report.scanned_segments, 2, "{report:?}");
}

/// After a clean close the active segment is read from the offset index's last entry. When
/// the batch there turns out corrupt, the log ends before it, and the saved time index
/// forgets its entries from there on: the largest timestamp is one still in the log.
#[test]
fn a_tail_cut_after_a_clean_close_takes_its_time_index_entries_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    for i in 0..5 {
        append(&mut log, 3, 1000 + i);
    }
    let base = log.roll().unwrap();
    for i in 0..100 {
        append(&mut log, 3, 2000 + i);
    }
    log.close().unwrap();
    drop(log);
    let index = fs::read(segment_file(dir.path(), base, "index")).unwrap();
    let last = index.len() - 8;
    let rel = u32::from_be_bytes(index[last..last + 4].try_into().unwrap());
    let position = u32::from_be_bytes(index[last + 4..].try_into().unwrap()) as usize;
    let path = segment_file(dir.path(), base, "log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[position + 70] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    let (log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    let end = base + i64::from(rel);
    assert_eq!(log.log_end_offset(), end);
    let (newest, _) = log
        .reader()
        .read_batch_with_max_timestamp()
        .unwrap()
        .expect("the largest timestamp still in the log");
    // Batch i of the segment holds offsets base + 3i.. and timestamps 2000 + i ..= 2002 + i.
    let last_kept = i64::from(rel) / 3 - 1;
    assert_eq!(newest.base_offset, base + 3 * last_kept, "{newest:?}");
    assert_eq!(newest.max_timestamp, 2002 + last_kept);
    // The last batch's timestamp went with it.
    assert!(log.reader().read_batch_by_time(2101).unwrap().is_none());
}

/// An aborted-transaction index that cannot be read (here: a directory in its place) stops the
/// open; taking it as empty would show aborted records to read_committed consumers.
#[test]
fn an_unreadable_aborted_transaction_index_stops_the_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), config(1 << 20)).unwrap();
    append(&mut log, 2, 1000);
    drop(log);
    let txn_index = segment_file(dir.path(), 0, "txnindex");
    fs::create_dir(&txn_index).unwrap();
    let err = Log::open(dir.path(), config(1 << 20))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("txnindex"), "{err}");
}
