//! The partition's smaller operations, each checked for what it returns (the mutation run
//! found them unchecked here): the report and snapshot of a start-up replay, LogAppendTime,
//! segments started and deleted on request (the group store's compaction), producer expiry,
//! the storage-failure seams.

use tally_log::LogConfig;
use tally_partition::{list_snapshots, Entry, EntryOrigin, Partition, PartitionConfig};
use tally_protocol::BatchHeader;
use tally_testkit::batch;

fn config() -> PartitionConfig {
    PartitionConfig {
        log: LogConfig {
            segment_bytes: 1 << 20,
            index_interval_bytes: 512,
            ..LogConfig::default()
        },
        ..PartitionConfig::default()
    }
}

/// A client's idempotent batch of 4 records, appended at broker time `now_ms`.
fn send(p: &mut Partition, pid: i64, seq: i32, now_ms: i64) -> Result<i64, i16> {
    let b = batch(pid, 0, seq, 4).to_vec();
    p.append_client_batch(&b, now_ms)
        .map(|o| o.log_append_time_ms)
        .map_err(|e| e.error_code().code())
}

#[test]
fn a_replay_at_open_is_reported_and_leaves_a_snapshot_at_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(), 0).unwrap();
    for i in 0..5 {
        send(&mut p, 3, i * 4, 1_000).unwrap();
    }
    drop(p); // a crash: no close
    let (p, report) = Partition::open(dir.path(), config(), 0).unwrap();
    assert_eq!(report.replayed_batches, 5);
    assert_eq!(report.log.log_end_offset, 20);
    assert!(report.log.scanned_segments >= 1);
    assert_eq!(report.snapshot_offset, None);
    assert_eq!(report.producers, 1);
    let snapshots: Vec<i64> = list_snapshots(dir.path()).iter().map(|s| s.0).collect();
    assert_eq!(snapshots, vec![20], "the replay's result is kept");
    drop(p);
    let (_, report) = Partition::open(dir.path(), config(), 0).unwrap();
    assert_eq!(report.snapshot_offset, Some(20));
    assert_eq!(report.replayed_batches, 0);
}

#[test]
fn log_append_time_is_stamped_on_client_batches_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut create_time, _) = Partition::open(&dir.path().join("c"), config(), 0).unwrap();
    assert_eq!(send(&mut create_time, 1, 0, 5_000), Ok(-1));
    let append_time = PartitionConfig {
        log_append_time: true,
        ..config()
    };
    let (mut p, _) = Partition::open(&dir.path().join("a"), append_time, 0).unwrap();
    assert_eq!(send(&mut p, 1, 0, 5_000), Ok(5_000));
    // The broker's own records keep their timestamps.
    let own = batch(-1, -1, -1, 2).to_vec();
    let header = BatchHeader::parse(&own).unwrap();
    let outcome = p
        .apply(Entry {
            origin: EntryOrigin::Broker,
            header: &header,
            bytes: &own,
            append_time_ms: 6_000,
            keys: None,
        })
        .unwrap();
    assert_eq!(outcome.log_append_time_ms, -1);
}

#[test]
fn segments_are_started_and_deleted_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(), 0).unwrap();
    for i in 0..3 {
        send(&mut p, 1, i * 4, 1_000).unwrap();
    }
    assert_eq!(p.start_new_segment().unwrap(), 12);
    send(&mut p, 1, 12, 1_000).unwrap();
    assert_eq!(p.delete_segments_before(12).unwrap(), 1);
    assert_eq!(p.log_start_offset(), 12);
    assert_eq!(p.delete_segments_before(12).unwrap(), 0);
}

#[test]
fn expired_producers_are_forgotten_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = PartitionConfig {
        producer_id_expiration_ms: 10,
        max_producers: 7,
        ..config()
    };
    let (mut p, _) = Partition::open(dir.path(), config, 0).unwrap();
    assert_eq!(p.config().max_producers, 7);
    send(&mut p, 1, 0, 1_000).unwrap();
    send(&mut p, 2, 0, 1_000).unwrap();
    assert_eq!(p.remove_expired_producers(1_005), 0);
    assert_eq!(p.remove_expired_producers(10_000_000_000_000), 2);
    assert!(p.producers().is_empty());
}

#[test]
fn injected_storage_failures_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(), 0).unwrap();
    p.inject_write_failures(true);
    assert!(send(&mut p, 1, 0, 1_000).is_err());
    assert_eq!(p.log_end_offset(), 0);
    p.inject_write_failures(false);
    send(&mut p, 1, 0, 1_000).unwrap();
    p.flush().unwrap();
    p.inject_flush_failures(true);
    assert!(p.flush().is_err());
}

/// With its snapshots gone and nothing to replay, a partition's producer state starts at the
/// log start, so a later snapshot (here at a roll with no append before it) matches the log.
#[test]
fn a_partition_with_nothing_to_replay_starts_its_state_at_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(), 0).unwrap();
    for i in 0..3 {
        send(&mut p, 1, i * 4, 1_000).unwrap();
    }
    assert_eq!(p.start_new_segment().unwrap(), 12);
    assert_eq!(p.delete_segments_before(12).unwrap(), 1);
    drop(p);
    for (_, path) in list_snapshots(dir.path()) {
        std::fs::remove_file(path).unwrap();
    }
    let (mut p, report) = Partition::open(dir.path(), config(), 0).unwrap();
    assert_eq!((report.replayed_batches, report.snapshot_offset), (0, None));
    assert_eq!(p.producers().map_end_offset(), 12);
    assert_eq!(p.start_new_segment().unwrap(), 12);
}
