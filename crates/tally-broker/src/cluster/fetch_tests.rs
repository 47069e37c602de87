use tally_log::{Log, LogConfig};
use tally_protocol::{encode_control, BatchHeader, ControlRecord, ATTRIBUTES_CONTROL};

use super::read_client_batches;

/// A one-record control batch of `control_type` at the log end: COMMIT (1) stands for a batch
/// a client reads, 0x7a00 for a new term's blank entry, which Fetch never returns.
fn append(log: &mut Log, control_type: i16) -> i64 {
    let mut batch = encode_control(
        &ControlRecord {
            attributes: ATTRIBUTES_CONTROL,
            producer_id: -1,
            producer_epoch: -1,
            control_type,
            value: &[],
        },
        0,
    );
    let offset = log.log_end_offset();
    batch[..8].copy_from_slice(&offset.to_be_bytes());
    let header = BatchHeader::parse(&batch).unwrap();
    log.append(&batch, &header, 0).unwrap();
    offset
}

/// A read stays within one segment: when a segment ends with a Raft entry, a fetch from it
/// must go on to the next segment rather than come back empty for ever.
#[test]
fn a_raft_entry_that_ends_a_segment_does_not_stop_a_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = Log::open(dir.path(), LogConfig::default()).unwrap();
    append(&mut log, 1);
    let blank = append(&mut log, tally_raft::CONTROL_TYPE_BLANK);
    log.roll().unwrap();
    let next = append(&mut log, 1);
    let end = log.log_end_offset();

    let read = read_client_batches(log.reader(), blank, 1 << 20, end, true).unwrap();
    let header = BatchHeader::parse(&read).expect("the batch after the blank entry");
    assert_eq!(header.base_offset, next);
    // Nothing after it: an empty answer, not a loop.
    let read = read_client_batches(log.reader(), end, 1 << 20, end, true).unwrap();
    assert!(read.is_empty());
}
