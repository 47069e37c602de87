//! Reading and writing `__transaction_state`: one record batch per state change, written
//! through the partition's writer with the broker's trusted origin (answered after its group
//! commit), and read back whole at start-up.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tally_partition::{EntryOrigin, PartitionReader};
use tally_protocol::BatchHeader;

use super::log_record::{decode_key, decode_value, encode_key, encode_value};
use super::metadata::TxnMetadata;
use crate::partition_handle::AppendRequest;

/// The record for `m` (or a tombstone for `transactional_id` when `m` is `None`).
pub fn record(transactional_id: &str, m: Option<&TxnMetadata>, now_ms: i64) -> AppendRequest {
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(Bytes::from(encode_key(transactional_id))),
        value: m.map(|m| Bytes::from(encode_value(m))),
        headers: IndexMap::new(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("a transaction log record encodes");
    let batch = buf.freeze();
    let header = BatchHeader::parse(&batch).expect("an encoded batch parses");
    AppendRequest {
        origin: EntryOrigin::Broker,
        header,
        batch,
        append_time_ms: now_ms,
        txn_verified: false,
    }
}

/// The latest metadata of every transactional id in the log (tombstoned ids left out), and
/// how many records were read.
pub fn load(reader: &PartitionReader) -> Result<(HashMap<String, TxnMetadata>, u64), String> {
    let mut out = HashMap::new();
    let mut read = 0u64;
    let (from, to) = (reader.log_start_offset(), reader.high_watermark());
    crate::internal_log::for_each_record(reader, from, to, |r| {
        read += 1;
        let Some(id) = r.key.as_deref().and_then(decode_key) else {
            return Ok(());
        };
        match r.value.as_deref() {
            None => {
                out.remove(&id);
            }
            Some(v) => {
                let m = decode_value(&id, v)
                    .ok_or_else(|| format!("unreadable transaction state of {id:?}"))?;
                out.insert(id, m);
            }
        }
        Ok(())
    })?;
    Ok((out, read))
}
