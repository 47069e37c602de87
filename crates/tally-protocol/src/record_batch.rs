//! A zero-copy view of the RecordBatch v2 (magic 2) header.
//!
//! The broker never re-encodes a produced batch: it reads these 61 bytes, checks the CRC-32C,
//! overwrites the two fields that the CRC does not cover (base offset and partition leader
//! epoch), and stores the bytes as they arrived.

use thiserror::Error;

/// Size of the v2 batch header; the records start right after it.
pub const RECORD_BATCH_OVERHEAD: usize = 61;
/// baseOffset (8) + batchLength (4): the part of a batch that `batchLength` does not count.
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why bytes are not a usable v2 batch.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch truncated: {available} bytes available, {needed} needed")]
    Truncated { needed: usize, available: usize },
    #[error("record batch magic {0} is not supported (only magic 2)")]
    BadMagic(i8),
    #[error("record batch length {0} is smaller than the v2 header")]
    LengthTooSmall(i32),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CorruptCrc { stored: u32, computed: u32 },
}

/// The decoded header fields of one v2 batch. Small and `Copy`: the bytes stay where they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn i16_at(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}
fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the batch length prefix from the first 12 bytes: the total size of the batch in bytes,
/// or `None` if fewer than 12 bytes are given. Used to walk a buffer of batches.
pub fn batch_size_at(buf: &[u8]) -> Option<i64> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    Some(i64::from(i32_at(buf, BATCH_LENGTH)) + LOG_OVERHEAD as i64)
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks the magic byte and that the declared
    /// length can hold a header; does not require the whole batch to be present and does not
    /// check the CRC (see [`BatchHeader::verify_crc`]).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() <= MAGIC {
            return Err(BatchError::Truncated {
                needed: RECORD_BATCH_OVERHEAD,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        if buf.len() < RECORD_BATCH_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: RECORD_BATCH_OVERHEAD,
                available: buf.len(),
            });
        }
        let batch_length = i32_at(buf, BATCH_LENGTH);
        if (batch_length as i64) < (RECORD_BATCH_OVERHEAD - LOG_OVERHEAD) as i64 {
            return Err(BatchError::LengthTooSmall(batch_length));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET),
            batch_length,
            partition_leader_epoch: i32_at(buf, PARTITION_LEADER_EPOCH),
            magic,
            crc: u32::from_be_bytes(buf[CRC..CRC + 4].try_into().expect("4 bytes")),
            attributes: i16_at(buf, ATTRIBUTES),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP),
            producer_id: i64_at(buf, PRODUCER_ID),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH),
            base_sequence: i32_at(buf, BASE_SEQUENCE),
            records_count: i32_at(buf, RECORDS_COUNT),
        })
    }

    /// Parses a buffer that must hold exactly this one batch, whole, and checks its CRC.
    pub fn parse_whole(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let header = BatchHeader::parse(buf)?;
        if buf.len() < header.size_in_bytes() {
            return Err(BatchError::Truncated {
                needed: header.size_in_bytes(),
                available: buf.len(),
            });
        }
        header.verify_crc(&buf[..header.size_in_bytes()])?;
        Ok(header)
    }

    /// Checks the CRC-32C over everything after the CRC field. `batch` is exactly this batch.
    pub fn verify_crc(&self, batch: &[u8]) -> Result<(), BatchError> {
        let computed = crc32c::crc32c(&batch[ATTRIBUTES..]);
        if computed != self.crc {
            return Err(BatchError::CorruptCrc {
                stored: self.crc,
                computed,
            });
        }
        Ok(())
    }

    /// Total bytes of the batch including the 12-byte log overhead.
    pub fn size_in_bytes(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The batch's last sequence: baseSequence + lastOffsetDelta, wrapping at `i32::MAX`.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        crate::sequence::increment_sequence(self.base_sequence, self.last_offset_delta.max(0))
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Overwrites the base offset. Not covered by the CRC, so the CRC stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites the partition leader epoch. Not covered by the CRC either.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Writes the producer id, epoch and base sequence into an encoded batch and recomputes the
/// CRC. A producer stamps a batch once, when it is first sent; retries resend these bytes.
pub fn set_producer_fields(
    batch: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) {
    batch[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
    batch[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
    batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Stamps the batch with LogAppendTime `timestamp_ms`: sets the timestamp-type attribute and the
/// max timestamp, then recomputes the CRC (both fields are covered by it).
/// [`set_log_append_time`] for a batch held as its header (`RECORD_BATCH_OVERHEAD` bytes,
/// patched here) and the rest (`body`, unchanged): the CRC covers both.
pub fn set_log_append_time_header(head: &mut [u8], body: &[u8], timestamp_ms: i64) {
    let attributes = i16_at(head, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    head[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    head[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&head[ATTRIBUTES..RECORD_BATCH_OVERHEAD]),
        body,
    );
    head[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes = i16_at(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built batch with one empty-ish record section, CRC filled in.
    pub(crate) fn sample_batch(pid: i64, epoch: i16, seq: i32, count: i32) -> Vec<u8> {
        let records = vec![0u8; 7 * count as usize];
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&1000i64.to_be_bytes());
        b.extend_from_slice(&1005i64.to_be_bytes());
        b.extend_from_slice(&pid.to_be_bytes());
        b.extend_from_slice(&epoch.to_be_bytes());
        b.extend_from_slice(&seq.to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crc32c::crc32c(&b[ATTRIBUTES..]);
        b[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn parses_fields() {
        let b = sample_batch(42, 3, 10, 5);
        let h = BatchHeader::parse_whole(&b).unwrap();
        assert_eq!(h.producer_id, 42);
        assert_eq!(h.producer_epoch, 3);
        assert_eq!(h.base_sequence, 10);
        assert_eq!(h.last_sequence(), 14);
        assert_eq!(h.records_count, 5);
        assert_eq!(h.size_in_bytes(), b.len());
        assert_eq!(h.max_timestamp, 1005);
        assert_eq!(batch_size_at(&b), Some(b.len() as i64));
    }

    #[test]
    fn patching_offsets_keeps_crc_valid() {
        let mut b = sample_batch(1, 0, 0, 2);
        set_base_offset(&mut b, 123_456);
        set_partition_leader_epoch(&mut b, 7);
        let h = BatchHeader::parse_whole(&b).unwrap();
        assert_eq!(h.base_offset, 123_456);
        assert_eq!(h.last_offset(), 123_457);
        assert_eq!(h.partition_leader_epoch, 7);
    }

    #[test]
    fn producer_fields_are_stamped_with_a_valid_crc() {
        let mut b = sample_batch(-1, -1, -1, 3);
        set_producer_fields(&mut b, 77, 4, 1000);
        let h = BatchHeader::parse_whole(&b).unwrap();
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (77, 4, 1000)
        );
        assert_eq!(h.last_sequence(), 1002);
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut b = sample_batch(1, 0, 0, 2);
        set_log_append_time(&mut b, 99);
        let h = BatchHeader::parse_whole(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn detects_corruption_and_bad_shapes() {
        let mut b = sample_batch(1, 0, 0, 2);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            BatchHeader::parse_whole(&b),
            Err(BatchError::CorruptCrc { .. })
        ));
        let mut b = sample_batch(1, 0, 0, 2);
        b[MAGIC] = 1;
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::BadMagic(1)));
        let b = sample_batch(1, 0, 0, 2);
        assert!(matches!(
            BatchHeader::parse_whole(&b[..b.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            BatchHeader::parse(&b[..20]),
            Err(BatchError::Truncated { .. })
        ));
        let mut b = sample_batch(1, 0, 0, 2);
        b[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&b), Err(BatchError::LengthTooSmall(10)));
    }

    #[test]
    fn sequence_wraps_in_last_sequence() {
        let b = sample_batch(1, 0, i32::MAX - 1, 4);
        let h = BatchHeader::parse_whole(&b).unwrap();
        assert_eq!(h.last_sequence(), 1);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Ok(h) = BatchHeader::parse(&bytes) {
                if bytes.len() >= h.size_in_bytes() {
                    let _ = h.verify_crc(&bytes[..h.size_in_bytes()]);
                }
            }
            let _ = BatchHeader::parse_whole(&bytes);
        }
    }
}
