//! Fuzzing that runs in the test suite (proptest, failures saved next to this file): whatever
//! bytes the partition's own files hold, reading them gives an error or a usable result, never
//! a panic. Producer-state snapshots are mutated behind a valid header and CRC so the parser
//! itself is reached; segments, offset, time and aborted-transaction indexes are replaced or
//! mutated before `Partition::open`, which must either refuse with an error or open a log
//! that reads back as whole batches. Any bytes as a client's batch (the `produce_batch` fuzz
//! target's input) are refused or appended, never a panic.

use std::fs;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tally_partition::{
    read_snapshot, validate_client_batch, write_snapshot, BatchMetadata, Partition,
    PartitionConfig, ProducerStateEntry,
};
use tally_protocol::BatchHeader;
use tally_testkit::batch::batch;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

/// An edit of a file's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Cut { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        any::<usize>().prop_map(|at| Edit::Cut { at }),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..16)
        )
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit], from: usize) {
    for e in edits {
        let span = bytes.len().saturating_sub(from).max(1);
        match e {
            Edit::Flip { at, bit } if bytes.len() > from => {
                bytes[from + at % span] ^= 1 << bit;
            }
            Edit::Set { at, byte } if bytes.len() > from => bytes[from + at % span] = *byte,
            Edit::Cut { at } => bytes.truncate(from + at % span),
            Edit::Insert { at, bytes: b } => {
                let at = (from + at % span).min(bytes.len());
                bytes.splice(at..at, b.iter().copied());
            }
            _ => {}
        }
    }
}

fn entry(producer_id: i64) -> ProducerStateEntry {
    let mut e = ProducerStateEntry::empty(producer_id);
    e.producer_epoch = 3;
    e.last_offset = 40;
    e.current_txn_first_offset = Some(12);
    for i in 0..5 {
        e.batch_metadata.push_back(BatchMetadata {
            last_seq: i * 10 + 9,
            last_offset: i64::from(i) * 10 + 9,
            offset_delta: 9,
            timestamp: 1_000,
        });
    }
    e
}

/// Every batch from offset 0 to the end parses whole and follows the one before.
fn reads_back_whole(p: &Partition) {
    let end = p.log_end_offset();
    let mut offset = p.log_start_offset();
    while offset < end {
        let read = p.read(offset, 1 << 20, true).expect("readable");
        let mut rest = &read.records[..];
        assert!(!rest.is_empty(), "nothing at {offset} below {end}");
        while !rest.is_empty() {
            let h = BatchHeader::parse_whole(rest).expect("a whole batch");
            assert!(h.last_offset() >= offset);
            offset = h.last_offset() + 1;
            rest = &rest[h.size_in_bytes()..];
        }
    }
}

/// A partition with three producers' batches, closed cleanly.
fn populated(dir: &Path) {
    let (mut p, _) = Partition::open(dir, PartitionConfig::default(), 0).unwrap();
    for seq in 0..4 {
        for pid in [1, 2, 3] {
            p.append_client_batch(&batch(pid, 0, seq * 2, 2), 0)
                .unwrap();
        }
    }
    p.close().unwrap();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_mutated_snapshot_is_read_or_refused(edits in proptest::collection::vec(edit(), 1..6)) {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (entry(7), entry(8));
        let path = write_snapshot(dir.path(), 50, &[&a, &b]).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        // Mutate the body, then give it a correct CRC so the parser sees it.
        apply(&mut bytes, &edits, 10);
        if bytes.len() >= 10 {
            let crc = crc32c::crc32c(&bytes[10..]);
            bytes[6..10].copy_from_slice(&crc.to_be_bytes());
        }
        fs::write(&path, &bytes).unwrap();
        if let Ok((_, entries)) = read_snapshot(&path) {
            prop_assert!(entries.len() <= 1 << 20);
        }
    }

    #[test]
    fn any_bytes_as_a_snapshot_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000050.snapshot");
        fs::write(&path, &bytes).unwrap();
        prop_assert!(read_snapshot(&path).is_err());
    }

    #[test]
    fn any_bytes_as_a_client_batch_are_checked_without_panic(
        mut bytes in proptest::collection::vec(any::<u8>(), 0..400),
        fix_header in any::<bool>(),
    ) {
        // Half get magic 2 and a correct length and CRC, to reach the record walk.
        if fix_header && bytes.len() >= 61 {
            let length = (bytes.len() - 12) as i32;
            bytes[8..12].copy_from_slice(&length.to_be_bytes());
            bytes[16] = 2;
            let crc = crc32c::crc32c(&bytes[21..]);
            bytes[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        let _ = validate_client_batch(&bytes, 1 << 20);
    }
}

proptest! {
    // Each case opens a partition on disk: fewer of them.
    #![proptest_config(ProptestConfig { cases: 64, ..config() })]

    #[test]
    fn a_damaged_partition_opens_whole_or_is_refused(
        file in prop_oneof!["log", "index", "timeindex", "txnindex", "snapshot"],
        edits in proptest::collection::vec(edit(), 1..5),
        replace in any::<bool>(),
        garbage in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path());
        let mut found = false;
        for e in fs::read_dir(dir.path()).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_some_and(|x| x == file.as_str()) {
                let mut bytes = if replace { garbage.clone() } else { fs::read(&path).unwrap() };
                apply(&mut bytes, &edits, 0);
                fs::write(&path, &bytes).unwrap();
                found = true;
            }
        }
        if !found {
            let name = format!("00000000000000000000.{file}");
            fs::write(dir.path().join(name), &garbage).unwrap();
        }
        if let Ok((p, _)) = Partition::open(dir.path(), PartitionConfig::default(), 0) {
            reads_back_whole(&p);
            prop_assert!(p.high_watermark() <= p.log_end_offset());
        }
    }
}
