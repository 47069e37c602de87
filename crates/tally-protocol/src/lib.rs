//! `tally-protocol` owns the parts of the Kafka wire format that Tally reads itself rather than
//! through the `kafka-protocol` codecs: the 4-byte frame prefix and request-header peek, the table
//! of API versions the broker advertises, the zero-copy view of a RecordBatch v2 header (read the
//! producer fields, check the CRC-32C, patch the base offset and partition leader epoch in place),
//! transaction markers (control batches), idempotency keys (which record carries which key, and
//! a batch rebuilt without some of its records), SCRAM (RFC 5802/7677: stored credentials and both
//! sides of the exchange), a bounded, streaming walk over the records inside a batch (for validation and timestamp
//! lookups, decompressing when needed), and Kafka's sequence-number arithmetic.
//!
//! It does no I/O and knows nothing about partitions or producers' state: everything here is a
//! pure function of bytes, so it can be fuzzed and property-tested on its own.

pub mod api_versions;
pub mod control;
pub mod frame;
pub mod legacy_produce;
pub mod record_batch;
pub mod record_keys;
pub mod records;
pub mod scram;
pub mod sequence;

pub use api_versions::{
    advertised_range, ApiRange, ADVERTISED_APIS, TRANSACTION_VERSION, TRANSACTION_VERSION_FEATURE,
};
pub use control::{
    encode_control, encode_marker, parse_control, parse_marker, ControlError, ControlRecord,
    EndTxnMarker, TxnResult, ATTRIBUTES_CONTROL,
};
pub use frame::{FrameError, RequestPeek};
pub use record_batch::{BatchError, BatchHeader, RECORD_BATCH_OVERHEAD};
pub use record_keys::{BatchRecords, KeySource, RecordSpan};
pub use records::{validate_records, walk_records, RecordInfo, RecordsError};

/// Tally's extension to DescribeProducers: a tagged field of each producer state carrying the
/// offset of the producer's last batch (i64, big-endian). Kafka's schema has no such field;
/// clients that do not know the tag skip it.
pub const DESCRIBE_PRODUCERS_LAST_OFFSET_TAG: i32 = 10_000;

/// Tally's extension to DescribeProducers: a tagged field of each partition response whose
/// topic has `idempotency.key`, carrying its key index's counters: keys remembered, records
/// dropped as duplicates, keys evicted (three u64, big-endian).
pub const DESCRIBE_PRODUCERS_KEY_INDEX_TAG: i32 = 10_001;

/// Kafka's error codes, re-exported so every crate names them the same way.
pub use kafka_protocol::ResponseError;
