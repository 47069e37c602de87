//! Reading back the broker's own topics (`__consumer_offsets`, `__transaction_state`): every
//! record below a bound, in log order, through a partition's reader. Their coordinators
//! rebuild their state from this at start-up (and the group store when it compacts).

use kafka_protocol::records::{Record, RecordBatchDecoder};
use tally_log::ReadMode;
use tally_partition::PartitionReader;
use tally_protocol::record_batch::batch_size_at;

/// Calls `f` with each record in `[from, to)`, markers (control records) included.
pub fn for_each_record(
    reader: &PartitionReader,
    from: i64,
    to: i64,
    mut f: impl FnMut(Record) -> Result<(), String>,
) -> Result<(), String> {
    let mut offset = from;
    while offset < to {
        let read = reader
            .read_to(offset, 4 << 20, to, true, ReadMode::Block)
            .map_err(|e| e.to_string())?;
        if read.records.is_empty() {
            break;
        }
        let mut at = 0;
        while at < read.records.len() {
            let Some(size) = batch_size_at(&read.records[at..]) else {
                break;
            };
            let mut batch = read.records.slice(at..at + size as usize);
            at += size as usize;
            let set = RecordBatchDecoder::decode(&mut batch)
                .map_err(|e| format!("unreadable record batch at offset {offset}: {e}"))?;
            for r in set.records {
                offset = r.offset + 1;
                f(r)?;
            }
        }
    }
    Ok(())
}
