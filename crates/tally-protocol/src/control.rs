//! Transaction markers: the control batches that end a producer's transaction on a partition.
//!
//! A marker is a v2 batch with the control and transactional attributes set, the producer's id
//! and epoch, sequence -1, and one record whose key is (version i16 = 0, type i16: 0 = ABORT,
//! 1 = COMMIT) and whose value is (version i16 = 0, coordinator epoch i32). The broker builds
//! them (WriteTxnMarkers, the transaction coordinator) and reads them back on replay.

use thiserror::Error;

use crate::record_batch::{BatchHeader, RECORD_BATCH_OVERHEAD};

const ATTRIBUTES_MARKER: i16 = 0x10 | 0x20;
const CONTROL_KEY_VERSION: i16 = 0;
const CONTROL_VALUE_VERSION: i16 = 0;

/// How a transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Abort,
    Commit,
}

impl TxnResult {
    fn control_type(self) -> i16 {
        match self {
            TxnResult::Abort => 0,
            TxnResult::Commit => 1,
        }
    }

    /// WriteTxnMarkers' `TransactionResult`: true is COMMIT.
    pub fn from_committed(committed: bool) -> TxnResult {
        if committed {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        }
    }
}

/// One end-of-transaction marker for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub result: TxnResult,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ControlError {
    #[error("not a control batch")]
    NotControl,
    #[error("control batch is compressed or malformed: {0}")]
    Malformed(String),
    /// Kafka skips control records of types it does not know; so do we.
    #[error("unknown control record type {0}")]
    UnknownType(i16),
}

/// Encodes `marker` as a whole batch at base offset 0 (the log sets the real one).
pub fn encode_marker(marker: &EndTxnMarker, timestamp_ms: i64) -> Vec<u8> {
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&CONTROL_VALUE_VERSION.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    encode_control(
        &ControlRecord {
            attributes: ATTRIBUTES_MARKER,
            producer_id: marker.producer_id,
            producer_epoch: marker.producer_epoch,
            control_type: marker.result.control_type(),
            value: &value,
        },
        timestamp_ms,
    )
}

/// Reads the marker in a whole control batch (header included).
pub fn parse_marker(header: &BatchHeader, batch: &[u8]) -> Result<EndTxnMarker, ControlError> {
    let (control_type, value) = parse_control(header, batch)?;
    let result = match control_type {
        0 => TxnResult::Abort,
        1 => TxnResult::Commit,
        other => return Err(ControlError::UnknownType(other)),
    };
    if value.len() < 6 {
        return Err(ControlError::Malformed(
            "control value shorter than 6 bytes".into(),
        ));
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(EndTxnMarker {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        coordinator_epoch,
        result,
    })
}

/// One control record, alone in its batch: a transaction marker, or one of the entries Tally's
/// Raft log stores between data batches (see `tally-raft`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRecord<'a> {
    /// The batch attributes: the control bit (0x20) and, for markers, the transactional bit.
    pub attributes: i16,
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The type in the record's key (version 0): 0 ABORT, 1 COMMIT, others Tally's own.
    pub control_type: i16,
    pub value: &'a [u8],
}

/// The control bit alone: a control batch outside any transaction.
pub const ATTRIBUTES_CONTROL: i16 = 0x20;

/// Encodes `record` as a whole uncompressed batch of one record at base offset 0 (the log
/// sets the real one), its timestamps `timestamp_ms`, its base sequence -1.
pub fn encode_control(record: &ControlRecord<'_>, timestamp_ms: i64) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&CONTROL_KEY_VERSION.to_be_bytes());
    key.extend_from_slice(&record.control_type.to_be_bytes());

    let mut body = Vec::with_capacity(16 + record.value.len());
    body.push(0); // attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, record.value.len() as i64);
    body.extend_from_slice(record.value);
    put_varint(&mut body, 0); // headers

    let mut batch = Vec::with_capacity(RECORD_BATCH_OVERHEAD + body.len() + 5);
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&0i32.to_be_bytes()); // batch length, set below
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, set below
    batch.extend_from_slice(&record.attributes.to_be_bytes());
    batch.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    batch.extend_from_slice(&timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&timestamp_ms.to_be_bytes());
    batch.extend_from_slice(&record.producer_id.to_be_bytes());
    batch.extend_from_slice(&record.producer_epoch.to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&1i32.to_be_bytes()); // records count
    put_varint(&mut batch, body.len() as i64);
    batch.extend_from_slice(&body);

    let length = (batch.len() - 12) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

/// The type and value of the first record of a whole, uncompressed control batch.
pub fn parse_control<'a>(
    header: &BatchHeader,
    batch: &'a [u8],
) -> Result<(i16, &'a [u8]), ControlError> {
    if !header.is_control() {
        return Err(ControlError::NotControl);
    }
    if header.compression() != 0 {
        return Err(ControlError::Malformed("compressed".into()));
    }
    let malformed = |what: &str| ControlError::Malformed(what.to_string());
    let mut r = Cursor {
        buf: batch
            .get(RECORD_BATCH_OVERHEAD..)
            .ok_or_else(|| malformed("short"))?,
        at: 0,
    };
    let _length = r.varint()?;
    let _attributes = r.bytes(1)?;
    let _timestamp_delta = r.varint()?;
    let _offset_delta = r.varint()?;
    let key_len = r.varint()?;
    if key_len < 4 {
        return Err(malformed("control key shorter than 4 bytes"));
    }
    let key = r.bytes(key_len as usize)?;
    let control_type = i16::from_be_bytes([key[2], key[3]]);
    let value_len = r.varint()?;
    let value = if value_len < 0 {
        &[][..]
    } else {
        r.bytes(value_len as usize)?
    };
    Ok((control_type, value))
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ControlError> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| ControlError::Malformed("truncated record".into()))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn varint(&mut self) -> Result<i64, ControlError> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.bytes(1)?[0];
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(ControlError::Malformed("varint too long".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::records::RecordBatchDecoder;

    fn marker(result: TxnResult) -> EndTxnMarker {
        EndTxnMarker {
            producer_id: 4242,
            producer_epoch: 7,
            coordinator_epoch: 3,
            result,
        }
    }

    #[test]
    fn round_trips_both_results() {
        for result in [TxnResult::Abort, TxnResult::Commit] {
            let m = marker(result);
            let batch = encode_marker(&m, 1_700_000_000_000);
            let header = BatchHeader::parse_whole(&batch).unwrap();
            header.verify_crc(&batch).unwrap();
            assert!(header.is_control() && header.is_transactional());
            assert_eq!(header.records_count, 1);
            assert_eq!(header.base_sequence, -1);
            assert_eq!(parse_marker(&header, &batch).unwrap(), m);
        }
    }

    /// An independent decoder (the kafka-protocol crate's) reads our marker as Kafka would.
    #[test]
    fn kafka_protocol_decodes_it_as_a_control_record() {
        let batch = encode_marker(&marker(TxnResult::Commit), 5);
        let mut buf = Bytes::from(batch);
        let records = RecordBatchDecoder::decode(&mut buf).unwrap();
        let records = records.records;
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert!(r.control && r.transactional);
        assert_eq!(r.producer_id, 4242);
        assert_eq!(r.producer_epoch, 7);
        let key = r.key.as_ref().unwrap();
        assert_eq!(&key[..], &[0, 0, 0, 1]);
        let value = r.value.as_ref().unwrap();
        assert_eq!(&value[..], &[0, 0, 0, 0, 0, 3]);
    }

    /// A control record of another type, outside any transaction, with a value of any
    /// length: what Tally's Raft log writes for its own entries.
    #[test]
    fn other_control_records_round_trip_and_decode_as_kafka_control_records() {
        for value in [&b""[..], b"{\"voters\":[1,2,3]}", &[7u8; 300][..]] {
            let record = ControlRecord {
                attributes: ATTRIBUTES_CONTROL,
                producer_id: -1,
                producer_epoch: -1,
                control_type: 0x7a01,
                value,
            };
            let batch = encode_control(&record, -1);
            let header = BatchHeader::parse_whole(&batch).unwrap();
            header.verify_crc(&batch).unwrap();
            assert!(header.is_control() && !header.is_transactional());
            assert!(!header.has_producer_id());
            assert_eq!(parse_control(&header, &batch).unwrap(), (0x7a01, value));
            assert_eq!(
                parse_marker(&header, &batch),
                Err(ControlError::UnknownType(0x7a01))
            );
            let mut buf = Bytes::from(batch);
            let decoded = RecordBatchDecoder::decode(&mut buf).unwrap().records;
            assert_eq!(decoded.len(), 1);
            assert!(decoded[0].control && !decoded[0].transactional);
            assert_eq!(decoded[0].value.as_deref(), Some(value));
        }
    }

    #[test]
    fn refuses_data_batches_and_unknown_types() {
        let mut batch = encode_marker(&marker(TxnResult::Abort), 5);
        let header = BatchHeader::parse_whole(&batch).unwrap();
        let mut data = header;
        data.attributes = 0x10;
        assert_eq!(parse_marker(&data, &batch), Err(ControlError::NotControl));
        // type 5 in the key (bytes 2..4 of the key, right after the record's framing)
        let key_at = RECORD_BATCH_OVERHEAD + 1 + 1 + 1 + 1 + 1;
        batch[key_at + 3] = 5;
        assert_eq!(
            parse_marker(&header, &batch),
            Err(ControlError::UnknownType(5))
        );
        assert!(parse_marker(&header, &batch[..RECORD_BATCH_OVERHEAD + 3]).is_err());
    }
}
