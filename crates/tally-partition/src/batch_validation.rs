//! The checks Kafka makes on a client's produced batch before any producer logic, in Kafka's
//! order (`ProduceRequest.validateRecords`, `UnifiedLog.analyzeAndValidateRecords`,
//! `LogValidator.validateBatch`). A batch that fails here touches no producer state.

use tally_protocol::record_batch::LOG_OVERHEAD;
use tally_protocol::{BatchError, BatchHeader, RECORD_BATCH_OVERHEAD};

use crate::append_error::AppendError;

/// Validates the records of one partition in a Produce request (v3+): exactly one whole v2
/// batch, base offset 0, within `max_message_bytes`, a good CRC, a consistent record count, not
/// a control batch, and a non-negative sequence when it has a producer id.
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
    if header.is_transactional() {
        return Err(AppendError::TransactionsUnsupported);
    }
    Ok(header)
}
