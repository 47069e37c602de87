//! Batches of records: open while they fill, then sealed (encoded once) and, on their first
//! send, stamped with producer id, epoch and sequence. A retry resends the same bytes.

use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::sync::OwnedSemaphorePermit;

use super::delivery::Completion;
use crate::error::{ClientError, ProduceError};
use crate::record::ProducerRecord;

pub(crate) struct PendingRecord {
    pub record: ProducerRecord,
    pub timestamp_ms: i64,
}

/// Records for one partition, filling up.
pub(crate) struct OpenBatch {
    pub topic: String,
    pub partition: i32,
    pub records: Vec<PendingRecord>,
    pub bytes: usize,
    pub created: Instant,
    /// Settles every record's future at once.
    pub completion: Completion,
    /// The buffer memory the records hold, released when the batch settles.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// What is known about whether a sealed batch is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Never sent: certainly not written; carries no sequence yet.
    NeverSent,
    /// Sent, and the broker's answer proves it was not written (it keeps its sequence).
    Unwritten,
    /// Sent, with no definite answer yet: it may be in the log.
    Unknown,
}

pub(crate) struct SealedBatch {
    pub id: u64,
    pub topic: String,
    pub partition: i32,
    /// The encoded batch, shared by every send of it.
    pub bytes: Bytes,
    pub record_count: i32,
    completion: Completion,
    _permit: Option<OwnedSemaphorePermit>,
    pub created: Instant,
    /// (producer id, epoch, base sequence) once stamped.
    pub stamp: Option<(i64, i16, i32)>,
    /// Position among the partition's stamped batches (counts every batch ever stamped).
    pub stamp_index: u64,
    pub fate: Fate,
    pub attempts: u32,
    pub in_flight: bool,
    pub retry_at: Option<Instant>,
    pub last_error: Option<ClientError>,
}

impl SealedBatch {
    /// Encodes the batch. If it cannot be encoded, its records are settled with the error and
    /// their count comes back.
    pub fn seal(
        id: u64,
        open: OpenBatch,
        compression: Compression,
        transactional: bool,
    ) -> Result<SealedBatch, usize> {
        let records: Vec<Record> = open
            .records
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut headers = IndexMap::new();
                for h in &p.record.headers {
                    headers.insert(StrBytes::from_string(h.key.clone()), h.value.clone());
                }
                Record {
                    transactional,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: -1,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i as i64,
                    // Placeholder sequences (base -1); the real ones are stamped at first send.
                    sequence: i as i32 - 1,
                    timestamp: p.timestamp_ms,
                    key: p.record.key.clone(),
                    value: p.record.value.clone(),
                    headers,
                }
            })
            .collect();
        let mut bytes = BytesMut::new();
        if let Err(e) = RecordBatchEncoder::encode(
            &mut bytes,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        ) {
            let n = open.records.len();
            open.completion
                .fail(ProduceError::Client(ClientError::Protocol(format!(
                    "cannot encode the batch: {e}"
                ))));
            return Err(n);
        }
        Ok(SealedBatch {
            id,
            topic: open.topic,
            partition: open.partition,
            bytes: bytes.freeze(),
            record_count: open.records.len() as i32,
            completion: open.completion,
            _permit: open.permit,
            created: open.created,
            stamp: None,
            stamp_index: 0,
            fate: Fate::NeverSent,
            attempts: 0,
            in_flight: false,
            retry_at: None,
            last_error: None,
        })
    }

    /// Writes producer id, epoch and base sequence into the encoded bytes; sends after that
    /// share them.
    pub fn stamp(&mut self, producer_id: i64, epoch: i16, base_sequence: i32) {
        // Patched in place when nothing else holds the bytes (the first stamp, or a restamp
        // after the last send's request was dropped); copied otherwise.
        let bytes = std::mem::take(&mut self.bytes);
        let mut bytes = bytes
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
        tally_protocol::record_batch::set_producer_fields(
            &mut bytes,
            producer_id,
            epoch,
            base_sequence,
        );
        self.bytes = bytes.freeze();
        self.stamp = Some((producer_id, epoch, base_sequence));
    }

    pub fn last_sequence(&self) -> Option<i32> {
        self.stamp.map(|(_, _, base)| {
            tally_protocol::sequence::increment_sequence(base, self.record_count - 1)
        })
    }

    pub fn payload(&self) -> Bytes {
        self.bytes.clone()
    }

    /// Completes every record with its offset.
    pub fn succeed(self, base_offset: i64, log_append_time_ms: i64) {
        self.completion.succeed(base_offset, log_append_time_ms);
    }

    pub fn fail(self, error: ProduceError) {
        self.completion.fail(error);
    }
}
