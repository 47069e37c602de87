//! Any bytes, as the records of one partition in a Produce request: validation, the record
//! walk, the producer table's decision and the append to a real partition on disk. Must never
//! panic, and the partition must keep reading back as whole batches.
#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use tally_partition::{Partition, PartitionConfig};

struct Target {
    _dir: tempfile::TempDir,
    partition: Partition,
}

static TARGET: Mutex<Option<Target>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = TARGET.lock().unwrap();
    let target = guard.get_or_insert_with(|| {
        let dir = tempfile::tempdir().unwrap();
        let (partition, _) = Partition::open(dir.path(), PartitionConfig::default(), 0).unwrap();
        Target { _dir: dir, partition }
    });
    let mut batch = data.to_vec();
    // Half of the inputs get magic 2, a zero base offset and a correct CRC, so they get past
    // the header checks into the record walk, the producer table and the log.
    if batch.len() >= 61 && data[0] & 1 == 1 {
        batch[0..8].copy_from_slice(&0i64.to_be_bytes());
        let length = (batch.len() - 12) as i32;
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        batch[16] = 2;
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    let before = target.partition.log_end_offset();
    if let Ok(outcome) = target.partition.append_client_batch(&mut batch, 0) {
        assert!(outcome.base_offset >= 0 && outcome.base_offset <= before);
    }
    let end = target.partition.log_end_offset();
    assert!(end >= before, "the log end went backwards");
    if end > before {
        let read = target.partition.read(before, 1 << 20, true).unwrap();
        let header = tally_protocol::BatchHeader::parse_whole(&read.records).unwrap();
        assert_eq!(header.base_offset, before);
    }
});
