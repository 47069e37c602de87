//! The checks Kafka makes on a client's produced batch before any producer logic, in Kafka's
//! order (`ProduceRequest.validateRecords`, `UnifiedLog.analyzeAndValidateRecords`,
//! `LogValidator.validateBatch`). A batch that fails here touches no producer state.

use tally_protocol::record_batch::LOG_OVERHEAD;
use tally_protocol::{
    validate_records, BatchError, BatchHeader, RecordsError, RECORD_BATCH_OVERHEAD,
};

/// Records of one batch may decompress to at most this much (Kafka has no bound; a bound turns
/// a compression bomb into an error instead of minutes of CPU).
pub const MAX_DECOMPRESSED_BATCH_BYTES: u64 = 256 * 1024 * 1024;

use crate::append_error::AppendError;

/// Validates the records of one partition in a Produce request (v3+): exactly one whole v2
/// batch, base offset 0, within `max_message_bytes`, a good CRC, a consistent record count, not
/// a control batch, a non-negative sequence when it has a producer id, and records that are
/// whole with offset deltas 0, 1, 2, ... (so the offsets a batch takes are the records it has).
pub fn validate_client_batch(
    records: &[u8],
    max_message_bytes: usize,
) -> Result<BatchHeader, AppendError> {
    if records.len() < LOG_OVERHEAD {
        return Err(AppendError::InvalidRecord(
            "produce requests must carry exactly one record batch per partition, found none".into(),
        ));
    }
    let header = match BatchHeader::parse(records) {
        Ok(h) => h,
        Err(BatchError::BadMagic(m)) => {
            return Err(AppendError::InvalidRecord(format!(
                "produce requests v3+ may only carry record batches of magic 2, found magic {m}"
            )))
        }
        Err(BatchError::LengthTooSmall(len)) => {
            return Err(AppendError::CorruptMessage(format!(
                "record batch length {len} is smaller than the minimum {}",
                RECORD_BATCH_OVERHEAD - LOG_OVERHEAD
            )))
        }
        Err(e) => return Err(AppendError::InvalidRecord(e.to_string())),
    };
    let size = header.size_in_bytes();
    if size > records.len() {
        return Err(AppendError::InvalidRecord(format!(
            "record batch declares {size} bytes but the request holds {}",
            records.len()
        )));
    }
    if size < records.len() {
        return Err(AppendError::InvalidRecord(
            "produce requests must carry exactly one record batch per partition".into(),
        ));
    }
    if header.base_offset != 0 {
        return Err(AppendError::InvalidRecord(format!(
            "the base offset of a produced batch must be 0, not {}",
            header.base_offset
        )));
    }
    if size > max_message_bytes {
        return Err(AppendError::MessageTooLarge {
            size,
            max: max_message_bytes,
        });
    }
    header
        .verify_crc(records)
        .map_err(|e| AppendError::CorruptMessage(e.to_string()))?;
    if header.last_offset_delta < 0 {
        return Err(AppendError::InvalidRecord(
            "batch has an invalid offset range".into(),
        ));
    }
    if header.records_count <= 0 {
        return Err(AppendError::InvalidRecord(format!(
            "invalid record count {}",
            header.records_count
        )));
    }
    if i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1 {
        return Err(AppendError::InvalidRecord(format!(
            "record count {} does not match last offset delta {} + 1",
            header.records_count, header.last_offset_delta
        )));
    }
    if header.compression() > 4 {
        return Err(AppendError::InvalidRecord(format!(
            "unknown compression codec {}",
            header.compression()
        )));
    }
    if header.is_control() {
        return Err(AppendError::InvalidRecord(
            "clients are not allowed to write control records".into(),
        ));
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(AppendError::InvalidRecord(format!(
            "invalid sequence number {} for producer {}",
            header.base_sequence, header.producer_id
        )));
    }
    if header.is_transactional() && !header.has_producer_id() {
        return Err(AppendError::InvalidRecord(
            "a transactional batch must carry a producer id".into(),
        ));
    }
    validate_records(&header, records, MAX_DECOMPRESSED_BATCH_BYTES).map_err(|e| match e {
        RecordsError::Corrupt(m) => AppendError::CorruptMessage(m),
        other => AppendError::InvalidRecord(other.to_string()),
    })?;
    Ok(header)
}
