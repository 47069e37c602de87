//! Idempotency keys in one partition, on real files: a record whose key is stored is dropped
//! whoever sends it, the batch keeps its offsets and sequences, retries still get the original
//! offsets, the window and the bound forget keys, retention takes keys with their segments,
//! transactions count only when committed, and the index after a restart is the index before.

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use tally_log::LogConfig;
use tally_partition::{
    validate_client_batch, Decision, Entry, EntryOrigin, IdempotencyConfig, Partition,
    PartitionConfig,
};
use tally_protocol::{BatchHeader, EndTxnMarker, KeySource, TxnResult};
use tally_testkit::batch::BatchSpec;

const T0: i64 = 1_700_000_000_000;

fn config(window_ms: i64, max_keys: usize) -> PartitionConfig {
    PartitionConfig {
        log: LogConfig {
            segment_bytes: 2_000,
            index_interval_bytes: 256,
            ..LogConfig::default()
        },
        idempotency: Some(IdempotencyConfig {
            source: KeySource::RecordKey,
            window_ms,
            max_keys,
        }),
        ..PartitionConfig::default()
    }
}

fn keyed(pid: i64, seq: i32, keys: &[&str], codec: Compression, time_ms: i64) -> Bytes {
    let mut spec = BatchSpec::new(pid, 0, seq, keys.len());
    spec.record_keys = Some(
        keys.iter()
            .map(|k| (!k.is_empty()).then(|| k.as_bytes().to_vec()))
            .collect(),
    );
    spec.values = keys
        .iter()
        .map(|k| format!("order {k} from {pid}").into_bytes())
        .collect();
    spec.compression = codec;
    spec.timestamp_ms = time_ms;
    spec.encode()
}

/// Every record below the high watermark: (offset, key, value).
fn records(p: &Partition) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    let mut offset = p.log_start_offset();
    while offset < p.high_watermark() {
        let read = p.read(offset, 1 << 20, true).unwrap();
        let mut buf = read.records.clone();
        while !buf.is_empty() {
            let h = BatchHeader::parse(&buf).unwrap();
            h.verify_crc(&buf[..h.size_in_bytes()]).unwrap();
            offset = h.last_offset() + 1;
            let mut one = buf.split_to(h.size_in_bytes());
            if h.is_control() {
                continue;
            }
            for r in RecordBatchDecoder::decode(&mut one).unwrap().records {
                let text =
                    |b: Option<Bytes>| String::from_utf8(b.unwrap_or_default().to_vec()).unwrap();
                out.push((r.offset, text(r.key), text(r.value)));
            }
        }
    }
    out
}

fn keys_of(p: &Partition) -> Vec<String> {
    records(p).into_iter().map(|(_, k, _)| k).collect()
}

#[test]
fn a_stored_key_is_dropped_whoever_sends_it_and_the_offsets_keep_their_gaps() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, _) = Partition::open(dir.path(), config(60_000, 1000), T0).unwrap();
        let a = p
            .append_client_batch(&keyed(1, 0, &["o1", "o2", "o3"], codec, T0), T0)
            .unwrap();
        assert_eq!(a.base_offset, 0);
        // Another producer (a restarted application) resends o2 and o3 and adds o4; a record
        // without a key is always stored; o4 twice in one batch is stored once.
        let b = keyed(2, 0, &["o2", "", "o3", "o4", "o4"], codec, T0 + 1);
        let outcome = p.append_client_batch(&b, T0 + 1).unwrap();
        assert_eq!(outcome.base_offset, 3, "{codec:?}");
        assert!(!outcome.duplicate);
        assert_eq!(p.log_end_offset(), 8, "the batch keeps its offsets");
        let got: Vec<(i64, String)> = records(&p).into_iter().map(|(o, k, _)| (o, k)).collect();
        let want: Vec<(i64, String)> = [(0, "o1"), (1, "o2"), (2, "o3"), (4, ""), (6, "o4")]
            .iter()
            .map(|(o, k)| (*o, k.to_string()))
            .collect();
        assert_eq!(got, want, "{codec:?}");
        // The producer's retry of the filtered batch is its retry: the original offset.
        let retry = p.append_client_batch(&b, T0 + 2).unwrap();
        assert!(retry.duplicate);
        assert_eq!(retry.base_offset, 3);
        // Its sequence accounting is unchanged: the next batch follows at sequence 5.
        let next = p
            .append_client_batch(&keyed(2, 5, &["o5"], codec, T0 + 3), T0 + 3)
            .unwrap();
        assert_eq!(next.base_offset, 8);
        let index = p.key_index().unwrap();
        assert_eq!(index.stats().dropped_records, 3);
        assert_eq!(index.len(), 5);
    }
}

#[test]
fn a_batch_with_every_record_dropped_is_written_empty_and_keeps_the_producer_going() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(60_000, 1000), T0).unwrap();
    p.append_client_batch(&keyed(1, 0, &["a", "b"], Compression::Gzip, T0), T0)
        .unwrap();
    let all_dropped = keyed(2, 0, &["a", "b"], Compression::Gzip, T0);
    let o = p.append_client_batch(&all_dropped, T0).unwrap();
    assert_eq!((o.base_offset, o.duplicate), (2, false));
    assert_eq!(p.log_end_offset(), 4);
    assert_eq!(keys_of(&p), ["a", "b"]);
    assert_eq!(
        p.append_client_batch(&all_dropped, T0).unwrap().base_offset,
        2
    );
    let o = p
        .append_client_batch(&keyed(2, 2, &["c"], Compression::Gzip, T0), T0)
        .unwrap();
    assert_eq!(o.base_offset, 4);
    // The empty batch is in the log and survives a restart like any other.
    p.close().unwrap();
    let (p, _) = Partition::open(dir.path(), config(60_000, 1000), T0).unwrap();
    assert_eq!(keys_of(&p), ["a", "b", "c"]);
    assert_eq!(p.producers().get(2).unwrap().last_seq(), 2);
}

#[test]
fn a_key_older_than_the_window_is_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let window = 10_000;
    let (mut p, _) = Partition::open(dir.path(), config(window, 1000), T0).unwrap();
    p.append_client_batch(&keyed(1, 0, &["k"], Compression::None, T0), T0)
        .unwrap();
    // Within the window (by the broker's clock, the `now` given to the partition): dropped.
    p.append_client_batch(&keyed(2, 0, &["k"], Compression::None, T0 + 1), T0 + window)
        .unwrap();
    assert_eq!(keys_of(&p), ["k"]);
    // Past it: stored again.
    p.append_client_batch(&keys_batch(3, "k", T0 + window + 1), T0 + window + 1)
        .unwrap();
    assert_eq!(keys_of(&p), ["k", "k"]);
}

fn keys_batch(pid: i64, key: &str, time_ms: i64) -> Bytes {
    keyed(pid, 0, &[key], Compression::None, time_ms)
}

#[test]
fn past_the_bound_the_oldest_keys_are_forgotten_first_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(60_000, 3), T0).unwrap();
    p.append_client_batch(
        &keyed(1, 0, &["a", "b", "c", "d", "e"], Compression::None, T0),
        T0,
    )
    .unwrap();
    let index = p.key_index().unwrap();
    assert_eq!(index.len(), 3);
    assert_eq!(index.stats().evicted_keys, 2);
    p.append_client_batch(&keyed(2, 0, &["a", "e"], Compression::None, T0), T0)
        .unwrap();
    assert_eq!(keys_of(&p), ["a", "b", "c", "d", "e", "a"]);
}

#[test]
fn retention_takes_keys_with_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(i64::MAX / 2, 1000);
    cfg.log.retention_bytes = 1;
    let (mut p, _) = Partition::open(dir.path(), cfg, T0).unwrap();
    p.append_client_batch(&keyed(1, 0, &["old"], Compression::None, T0), T0)
        .unwrap();
    p.start_new_segment().unwrap();
    p.append_client_batch(&keyed(1, 1, &["new"], Compression::None, T0), T0)
        .unwrap();
    p.start_new_segment().unwrap();
    assert!(p.apply_retention(T0).unwrap() > 0);
    assert!(p.log_start_offset() >= 1, "{}", p.log_start_offset());
    // "old" went with its segment and is stored again.
    let o = p.append_client_batch(&keyed(2, 0, &["old"], Compression::None, T0), T0);
    let stored = records(&p);
    let last = stored.last().unwrap();
    assert_eq!((last.0, last.1.as_str()), (o.unwrap().base_offset, "old"));
    assert_eq!(stored.iter().filter(|r| r.1 == "old").count(), 1);
}

fn txn_batch(pid: i64, seq: i32, keys: &[&str]) -> Bytes {
    let mut spec = BatchSpec::new(pid, 0, seq, keys.len());
    spec.record_keys = Some(keys.iter().map(|k| Some(k.as_bytes().to_vec())).collect());
    spec.transactional = true;
    spec.timestamp_ms = T0;
    spec.encode()
}

/// Check, decide (as verified by the coordinator), filter, apply, flush.
fn txn_append(p: &mut Partition, bytes: &[u8]) -> i64 {
    let header = validate_client_batch(bytes, usize::MAX).unwrap();
    if let Decision::Duplicate(o) = p.decide(&header, true).unwrap() {
        return o.base_offset;
    }
    let filtered = p.filter_keys(&header, bytes, T0).unwrap().unwrap();
    let (h, b) = filtered.batch(&header, bytes);
    let o = p
        .apply(Entry {
            origin: EntryOrigin::Client,
            header: h,
            bytes: b,
            append_time_ms: T0,
            keys: Some(&filtered),
        })
        .unwrap();
    p.flush_if_due().unwrap();
    o.base_offset
}

fn end_txn(p: &mut Partition, pid: i64, commit: bool) {
    let m = EndTxnMarker {
        producer_id: pid,
        producer_epoch: 0,
        coordinator_epoch: 0,
        result: if commit {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
    };
    p.write_marker(&m, T0).unwrap();
    p.flush_if_due().unwrap();
}

#[test]
fn a_transaction_s_keys_count_only_once_it_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(60_000, 1000), T0).unwrap();
    txn_append(&mut p, &txn_batch(1, 0, &["x", "y"]));
    // Its own repeat inside the transaction is dropped; another producer's copy is not
    // blocked by a transaction that has not committed.
    txn_append(&mut p, &txn_batch(1, 2, &["x"]));
    end_txn(&mut p, 1, false);
    p.append_client_batch(&keyed(2, 0, &["x"], Compression::None, T0), T0)
        .unwrap();
    txn_append(&mut p, &txn_batch(3, 0, &["y", "x"]));
    end_txn(&mut p, 3, true);
    p.append_client_batch(&keyed(2, 1, &["y", "z"], Compression::None, T0), T0)
        .unwrap();
    let stored: Vec<(i64, String)> = records(&p).into_iter().map(|(o, k, _)| (o, k)).collect();
    // Offsets: 0-1 txn 1 (aborted), 2 its dropped repeat (empty batch), 3 abort marker,
    // 4 x by producer 2, 5-6 txn 3 (x dropped), 7 commit marker, 8-9 producer 2 (y dropped).
    let want: Vec<(i64, String)> = [(0, "x"), (1, "y"), (4, "x"), (5, "y"), (9, "z")]
        .iter()
        .map(|(o, k)| (*o, k.to_string()))
        .collect();
    assert_eq!(stored, want);
}

#[test]
fn the_index_after_a_crash_or_a_clean_restart_is_the_index_before() {
    for clean in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (mut p, _) = Partition::open(dir.path(), config(60_000, 50), T0).unwrap();
        for i in 0..40 {
            let keys: Vec<String> = (0..3)
                .map(|j| format!("k{}", (i * 7 + j * 13) % 70))
                .collect();
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            // Appended at the batch's max timestamp, so that a replayed batch's time (its own
            // timestamp) is the time live apply gave it.
            let t = T0 + 10 * i;
            p.append_client_batch(&keyed(i, 0, &keys, Compression::Lz4, t), t + 2)
                .unwrap();
        }
        let before = p
            .key_index()
            .unwrap()
            .live_entries(T0 + 100, p.log_start_offset());
        assert!(!before.is_empty());
        if clean {
            p.close().unwrap();
        } else {
            drop(p);
        }
        let (p, _) = Partition::open(dir.path(), config(60_000, 50), T0 + 100).unwrap();
        let after = p
            .key_index()
            .unwrap()
            .live_entries(T0 + 100, p.log_start_offset());
        assert_eq!(before, after, "clean={clean}");
    }
}

#[test]
fn an_old_producer_timestamp_does_not_shorten_a_key_s_window() {
    // An application resending old events keeps their event time; the window counts from
    // when the broker stored the key, across a clean restart too.
    let dir = tempfile::tempdir().unwrap();
    let ten_days_ago = T0 - 10 * 86_400_000;
    let (mut p, _) = Partition::open(dir.path(), config(86_400_000, 1000), T0).unwrap();
    p.append_client_batch(
        &keyed(1, 0, &["old-event"], Compression::None, ten_days_ago),
        T0,
    )
    .unwrap();
    p.append_client_batch(
        &keyed(2, 0, &["old-event"], Compression::None, ten_days_ago),
        T0 + 1,
    )
    .unwrap();
    assert_eq!(keys_of(&p), ["old-event"]);
    p.close().unwrap();
    let (mut p, _) = Partition::open(dir.path(), config(86_400_000, 1000), T0 + 2).unwrap();
    p.append_client_batch(
        &keyed(3, 0, &["old-event"], Compression::None, ten_days_ago),
        T0 + 3,
    )
    .unwrap();
    assert_eq!(keys_of(&p), ["old-event"]);
}
