//! A partition on real files: the append path, duplicates across crash and clean restarts,
//! snapshots at roll, retention keeping producer state, bad batches leaving state untouched.

use std::fs;

use tally_log::LogConfig;
use tally_partition::{list_snapshots, AppendOutcome, Partition, PartitionConfig};
use tally_testkit::batch;

fn config(segment_bytes: u64) -> PartitionConfig {
    PartitionConfig {
        log: LogConfig {
            segment_bytes,
            index_interval_bytes: 512,
            ..LogConfig::default()
        },
        ..PartitionConfig::default()
    }
}

fn send(
    p: &mut Partition,
    pid: i64,
    epoch: i16,
    seq: i32,
    count: usize,
) -> Result<AppendOutcome, i16> {
    let b = batch(pid, epoch, seq, count).to_vec();
    p.append_client_batch(&b, 1_000)
        .map_err(|e| e.error_code().code())
}

fn entries(p: &Partition) -> Vec<tally_partition::ProducerStateEntry> {
    p.producers()
        .entries()
        .into_iter()
        .cloned()
        .map(|mut e| {
            e.last_append_ms = 0;
            e
        })
        .collect()
}

#[test]
fn duplicates_are_recognised_after_crash_and_after_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    for clean in [false, true] {
        let dir = dir.path().join(if clean { "clean" } else { "crash" });
        let (mut p, _) = Partition::open(&dir, config(1 << 20), 0).unwrap();
        let mut offsets = Vec::new();
        for i in 0..10 {
            let out = send(&mut p, 7, 0, i * 4, 4).unwrap();
            assert!(!out.duplicate);
            offsets.push(out.base_offset);
        }
        let end = p.log_end_offset();
        let before = entries(&p);
        if clean {
            p.close().unwrap();
        }
        drop(p);
        let (mut p, report) = Partition::open(&dir, config(1 << 20), 0).unwrap();
        if clean {
            assert_eq!(report.snapshot_offset, Some(end));
            assert_eq!(report.replayed_batches, 0);
        } else {
            assert_eq!(report.snapshot_offset, None);
            assert_eq!(report.replayed_batches, 10);
        }
        assert_eq!(entries(&p), before);
        for i in 5..10 {
            let out = send(&mut p, 7, 0, i * 4, 4).unwrap();
            assert!(out.duplicate, "batch {i} after restart (clean: {clean})");
            assert_eq!(out.base_offset, offsets[i as usize]);
        }
        assert_eq!(send(&mut p, 7, 0, 4 * 4, 4), Err(45));
        assert_eq!(p.log_end_offset(), end, "nothing appended by retries");
        assert_eq!(send(&mut p, 7, 0, 40, 1).unwrap().base_offset, end);
    }
}

#[test]
fn roll_snapshots_and_crash_replays_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(2000), 0).unwrap();
    let mut seqs = [0i32; 4];
    for i in 0..200 {
        let pid = (i % 4) as i64;
        send(&mut p, pid, 0, seqs[pid as usize], 2).unwrap();
        seqs[pid as usize] += 2;
    }
    let segments = p.log().segment_base_offsets();
    assert!(segments.len() > 5);
    let snaps = list_snapshots(dir.path());
    assert!(!snaps.is_empty() && snaps.len() <= 2, "{snaps:?}");
    assert_eq!(snaps.last().unwrap().0, *segments.last().unwrap());
    let before = entries(&p);
    drop(p);
    let (p, report) = Partition::open(dir.path(), config(2000), 0).unwrap();
    assert_eq!(report.snapshot_offset, Some(*segments.last().unwrap()));
    assert!(report.replayed_batches < 20, "{report:?}");
    assert_eq!(entries(&p), before);
}

#[test]
fn unreadable_or_future_snapshots_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(1 << 20), 0).unwrap();
    for i in 0..6 {
        send(&mut p, 3, 0, i, 1).unwrap();
    }
    p.close().unwrap();
    let before = entries(&p);
    drop(p);
    let (offset, path) = list_snapshots(dir.path()).pop().unwrap();
    fs::write(&path, b"garbage").unwrap();
    // A snapshot past the log end (as after a truncated tail) must be ignored too.
    fs::write(
        dir.path().join(format!("{:020}.snapshot", offset + 100)),
        b"x",
    )
    .unwrap();
    let (p, report) = Partition::open(dir.path(), config(1 << 20), 0).unwrap();
    assert_eq!(report.snapshot_offset, None);
    assert_eq!(report.replayed_batches, 6);
    assert_eq!(entries(&p), before);
}

#[test]
fn retention_keeps_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1000);
    let (mut p, _) = Partition::open(dir.path(), cfg.clone(), 0).unwrap();
    for i in 0..30 {
        send(&mut p, 11, 2, i, 1).unwrap();
    }
    cfg.log.retention_ms = 10;
    p.set_config(cfg.clone(), 0).unwrap();
    // Batches carry timestamps around 1.7e12: all expired at now = 2e12.
    p.apply_retention(2_000_000_000_000).unwrap();
    assert_eq!(p.log_start_offset(), p.log_end_offset());
    let e = p
        .producers()
        .get(11)
        .expect("state kept after its batches were deleted");
    assert_eq!(e.last_seq(), 29);
    assert_eq!(send(&mut p, 11, 2, 29, 1).map(|o| o.duplicate), Ok(true));
    assert_eq!(send(&mut p, 11, 2, 31, 1), Err(45));
    drop(p);
    let (mut p, _) = Partition::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(p.producers().get(11).unwrap().last_seq(), 29);
    assert!(!send(&mut p, 11, 2, 30, 1).unwrap().duplicate);
}

#[test]
fn bad_batches_are_rejected_before_touching_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(1 << 20), 0).unwrap();
    send(&mut p, 5, 0, 0, 2).unwrap();
    let before = entries(&p);
    let end = p.log_end_offset();
    let good = batch(5, 0, 2, 2).to_vec();

    let mut corrupt = good.clone();
    let n = corrupt.len();
    corrupt[n - 1] ^= 1;
    let mut magic1 = good.clone();
    magic1[16] = 1;
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let mut truncated = good.clone();
    truncated.truncate(n - 4);
    let mut count = good.clone();
    count[57..61].copy_from_slice(&5i32.to_be_bytes());
    let fix_crc = |b: &mut Vec<u8>| {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
    };
    fix_crc(&mut count);
    let mut control = good.clone();
    control[22] |= 0x20;
    fix_crc(&mut control);
    let mut negative_seq = good.clone();
    negative_seq[53..57].copy_from_slice(&(-3i32).to_be_bytes());
    fix_crc(&mut negative_seq);
    let mut base_offset = good.clone();
    base_offset[0..8].copy_from_slice(&9i64.to_be_bytes());

    for (name, bytes, code) in [
        ("crc", corrupt, 2),
        ("magic", magic1, 87),
        ("two batches", two, 87),
        ("truncated", truncated, 87),
        ("count", count, 87),
        ("control", control, 87),
        ("negative sequence", negative_seq, 87),
        ("base offset", base_offset, 87),
        ("empty", Vec::new(), 87),
    ] {
        let got = p
            .append_client_batch(&bytes, 0)
            .map_err(|e| e.error_code().code());
        assert_eq!(got.err(), Some(code), "{name}");
    }
    let mut small = config(1 << 20);
    small.max_message_bytes = 50;
    p.set_config(small, 0).unwrap();
    let big = good.clone();
    assert_eq!(
        p.append_client_batch(&big, 0)
            .unwrap_err()
            .error_code()
            .code(),
        10
    );

    assert_eq!(entries(&p), before);
    assert_eq!(p.log_end_offset(), end);
}

/// fsync before ack fails after the batch was written: the client gets a storage error, but
/// the producer table already knows the batch, so its retry is never appended twice: refused
/// while the partition is offline, answered as a duplicate after a restart.
#[test]
fn failed_fsync_never_lets_a_retry_be_appended_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20);
    cfg.log.flush_interval_messages = 1;
    let (mut p, _) = Partition::open(dir.path(), cfg.clone(), 0).unwrap();
    assert_eq!(send(&mut p, 9, 0, 0, 2).unwrap().base_offset, 0);
    p.inject_flush_failures(true);
    assert_eq!(send(&mut p, 9, 0, 2, 2), Err(56), "KAFKA_STORAGE_ERROR");
    assert_eq!(
        p.producers().get(9).unwrap().last_seq(),
        3,
        "the written batch is recorded"
    );
    assert_eq!(
        send(&mut p, 9, 0, 2, 2),
        Err(56),
        "offline: the retry is refused"
    );
    assert_eq!(send(&mut p, 9, 0, 4, 1), Err(56));
    assert_eq!(p.log_end_offset(), 4);
    drop(p);
    let (mut p, _) = Partition::open(dir.path(), cfg, 0).unwrap();
    let retry = send(&mut p, 9, 0, 2, 2).unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, 2);
    assert_eq!(p.log_end_offset(), 4);
}

/// A segment roll whose fsync fails takes the partition offline: the batch that needed the
/// roll is not written, and the producer's next batch is refused as a storage error rather
/// than judged against a table that lacks it (OUT_OF_ORDER_SEQUENCE_NUMBER, which makes a
/// client bump its epoch or give up).
#[test]
fn a_failed_roll_takes_the_partition_offline() {
    let dir = tempfile::tempdir().unwrap();
    // One batch fills a segment: the next one rolls.
    let cfg = config(60);
    let (mut p, _) = Partition::open(dir.path(), cfg.clone(), 0).unwrap();
    assert_eq!(send(&mut p, 9, 0, 0, 2).unwrap().base_offset, 0);
    p.inject_flush_failures(true);
    assert_eq!(send(&mut p, 9, 0, 2, 2), Err(56), "the roll's fsync failed");
    p.inject_flush_failures(false);
    assert_eq!(
        send(&mut p, 9, 0, 4, 2),
        Err(56),
        "offline, not out of order"
    );
    assert_eq!(p.log_end_offset(), 2);
    drop(p);
    let (mut p, _) = Partition::open(dir.path(), cfg, 0).unwrap();
    assert_eq!(send(&mut p, 9, 0, 2, 2).unwrap().base_offset, 2);
}

/// A batch whose header claims more records than it holds (with a consistent delta and CRC)
/// would take offsets it has no records for; it is refused.
#[test]
fn inflated_record_counts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(1 << 20), 0).unwrap();
    let mut b = batch(4, 0, 0, 2).to_vec();
    b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    let err = p.append_client_batch(&b, 0).unwrap_err();
    assert_eq!(err.error_code().code(), 87, "{err}");
    assert_eq!(p.log_end_offset(), 0);
    assert!(p.producers().is_empty());
}
