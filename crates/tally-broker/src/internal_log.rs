//! Reading back the broker's own topics (`__consumer_offsets`, `__transaction_state`): every
//! record below a bound, in log order, through a partition's reader. Their coordinators
//! rebuild their state from this at start-up (and the group store when it compacts); in
//! cluster mode a node that takes over a `__consumer_offsets` partition reads its replica's
//! log the same way.

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tally_log::ReadMode;
use tally_partition::PartitionReader;
use tally_protocol::record_batch::batch_size_at;

/// How much one read takes at most.
const READ_BYTES: usize = 4 << 20;

/// A log whose records can be read back.
pub trait RecordSource {
    /// Whole batches from the one holding `offset`, none at or past `to`, and the offset
    /// after the last batch read; `None` when there is nothing more. Raft's own entries are
    /// left out of the bytes (but counted in the next offset).
    fn batches(&self, offset: i64, to: i64) -> Result<Option<(Bytes, i64)>, String>;
}

impl RecordSource for PartitionReader {
    fn batches(&self, offset: i64, to: i64) -> Result<Option<(Bytes, i64)>, String> {
        let read = self
            .read_to(offset, READ_BYTES, to, true, ReadMode::Block)
            .map_err(|e| e.to_string())?;
        Ok(tally_raft::next_offset(&read.records).map(|next| (read.records, next)))
    }
}

impl RecordSource for tally_log::LogReader {
    fn batches(&self, offset: i64, to: i64) -> Result<Option<(Bytes, i64)>, String> {
        let read = self
            .read(offset, READ_BYTES, to, true)
            .map_err(|e| e.to_string())?;
        Ok(tally_raft::next_offset(&read.records)
            .map(|next| (tally_raft::without_raft_entries(read.records), next)))
    }
}

/// Calls `f` with each record in `[from, to)`, markers (control records) included.
pub fn for_each_record(
    source: &impl RecordSource,
    from: i64,
    to: i64,
    mut f: impl FnMut(Record) -> Result<(), String>,
) -> Result<(), String> {
    let mut offset = from;
    while offset < to {
        let Some((records, next)) = source.batches(offset, to)? else {
            break;
        };
        let mut at = 0;
        while at < records.len() {
            let Some(size) = batch_size_at(&records[at..]) else {
                break;
            };
            let mut batch = records.slice(at..at + size as usize);
            at += size as usize;
            let set = RecordBatchDecoder::decode(&mut batch)
                .map_err(|e| format!("unreadable record batch at offset {offset}: {e}"))?;
            for r in set.records {
                f(r)?;
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}
