//! Builds record batches through `kafka-protocol`'s encoder, with exact producer id, epoch and
//! base sequence, so that tests forge the same bytes a real producer would send.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// What to put in a batch. `values.len()` records, record i has sequence base_sequence + i.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub values: Vec<Vec<u8>>,
    pub key: Option<Vec<u8>>,
    /// One key per record (`None`: a record without a key), instead of `key` for all.
    pub record_keys: Option<Vec<Option<Vec<u8>>>>,
    pub timestamp_ms: i64,
    pub compression: Compression,
    pub transactional: bool,
    pub control: bool,
}

impl BatchSpec {
    pub fn new(producer_id: i64, producer_epoch: i16, base_sequence: i32, count: usize) -> Self {
        BatchSpec {
            producer_id,
            producer_epoch,
            base_sequence,
            values: (0..count)
                .map(|i| {
                    format!("p{producer_id}-e{producer_epoch}-s{base_sequence}-{i}").into_bytes()
                })
                .collect(),
            key: None,
            record_keys: None,
            timestamp_ms: 1_700_000_000_000,
            compression: Compression::None,
            transactional: false,
            control: false,
        }
    }

    pub fn encode(&self) -> Bytes {
        let records: Vec<Record> = self
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| Record {
                transactional: self.transactional,
                control: self.control,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: self.producer_id,
                producer_epoch: self.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: if self.base_sequence < 0 && self.producer_id < 0 {
                    (i as i32).wrapping_sub(1)
                } else {
                    self.base_sequence.wrapping_add(i as i32) & i32::MAX
                },
                timestamp: self.timestamp_ms + i as i64,
                key: match &self.record_keys {
                    Some(keys) => keys.get(i).cloned().flatten().map(Bytes::from),
                    None => self.key.clone().map(Bytes::from),
                },
                value: Some(Bytes::from(v.clone())),
                headers: IndexMap::new(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: self.compression,
            },
        )
        .expect("encode batch");
        buf.freeze()
    }
}

/// A batch of `count` records from producer (`pid`, `epoch`) starting at `base_sequence`.
pub fn batch(pid: i64, epoch: i16, base_sequence: i32, count: usize) -> Bytes {
    BatchSpec::new(pid, epoch, base_sequence, count).encode()
}

/// `n` consecutive batches of producer 1000 (epoch 0), each of `records` records whose values
/// are `value_bytes` long: a benchmark's load.
pub fn numbered_batches(n: usize, records: usize, value_bytes: usize) -> Vec<Bytes> {
    (0..n)
        .map(|i| {
            let mut spec = BatchSpec::new(1000, 0, (i * records) as i32, records);
            spec.values = (0..records)
                .map(|r| vec![b'a' + (r % 26) as u8; value_bytes])
                .collect();
            spec.encode()
        })
        .collect()
}
