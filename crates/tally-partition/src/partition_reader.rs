//! The read side of a partition: its log's reader and the high watermark, published by the
//! writer after each apply. Fetch and ListOffsets use only this, never the writer.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tally_log::{AbortedTxn, LogError, LogReadResult, LogReader, ReadMode};
use tally_protocol::BatchHeader;

#[derive(Debug)]
pub struct PartitionReader {
    log: Arc<LogReader>,
    high_watermark: AtomicI64,
    last_stable_offset: AtomicI64,
}

impl PartitionReader {
    pub(crate) fn new(log: Arc<LogReader>, high_watermark: i64) -> Self {
        PartitionReader {
            log,
            high_watermark: AtomicI64::new(high_watermark),
            last_stable_offset: AtomicI64::new(high_watermark),
        }
    }

    /// Published after the bytes up to it are visible in the log's reader. The LSO is never
    /// above the high watermark.
    pub(crate) fn set_high_watermark(&self, offset: i64, last_stable_offset: i64) {
        debug_assert!(last_stable_offset <= offset);
        self.last_stable_offset
            .store(last_stable_offset, Ordering::Release);
        self.high_watermark.store(offset, Ordering::Release);
    }

    /// Single replica: everything applied is committed.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// How far read_committed readers may read: the start of the oldest transaction not yet
    /// ended (with its marker below the high watermark), or the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable_offset.load(Ordering::Acquire)
    }

    /// The aborted transactions a read_committed fetch of `[fetch_offset, upper_bound)` must
    /// be told about (see `LogReader::collect_aborted_txns`).
    pub fn aborted_txns(&self, fetch_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        self.log.collect_aborted_txns(fetch_offset, upper_bound)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// Whole batches from `offset`, never past the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<LogReadResult, LogError> {
        let hw = self.high_watermark();
        self.log.read(offset, max_bytes, hw, min_one_batch)
    }

    /// Whole batches from `offset`, never at or past `max_offset` (a high watermark read
    /// earlier, so a response's records and its high watermark agree). With
    /// `ReadMode::NoWait`, `LogError::WouldBlock` when a byte is not in the page cache.
    pub fn read_to(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
        mode: ReadMode,
    ) -> Result<LogReadResult, LogError> {
        self.log
            .read_with(offset, max_bytes, max_offset, min_one_batch, mode)
    }

    pub fn read_batch_by_time(
        &self,
        timestamp: i64,
    ) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        self.log.read_batch_by_time(timestamp)
    }

    pub fn read_batch_with_max_timestamp(&self) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        self.log.read_batch_with_max_timestamp()
    }
}
