//! The read side of a log, shared by every reader of a partition. It never takes the writer's
//! side: the writer publishes the segment map (on open, roll and deletion) and the log start
//! offset here, and each segment's size and indexes through its own short lock. Bytes below
//! a segment's published size never change, so a reader copies a few numbers under a lock
//! and then reads the file with no lock held.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use tally_protocol::record_batch::batch_size_at;
use tally_protocol::BatchHeader;

use crate::error::LogError;
use crate::segment::{ReadMode, SegmentReader};
use crate::txn_index::AbortedTxn;

/// Whole batches read from the log.
#[derive(Debug, Clone)]
pub struct LogReadResult {
    /// Concatenated whole batches; empty when there is nothing at or after the offset.
    pub records: Bytes,
    /// Base offset of the first batch returned (may be below the requested offset).
    pub first_batch_offset: Option<i64>,
}

#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    segments: RwLock<Arc<BTreeMap<i64, SegmentReader>>>,
    log_start_offset: AtomicI64,
}

impl LogReader {
    pub(crate) fn new(dir: PathBuf, segments: BTreeMap<i64, SegmentReader>, start: i64) -> Self {
        LogReader {
            dir,
            segments: RwLock::new(Arc::new(segments)),
            log_start_offset: AtomicI64::new(start),
        }
    }

    /// Called by the writer after it changed the set of segments or the log start.
    pub(crate) fn publish(&self, segments: BTreeMap<i64, SegmentReader>, log_start_offset: i64) {
        *self.segments.write() = Arc::new(segments);
        self.log_start_offset
            .store(log_start_offset, Ordering::Release);
    }

    fn segments(&self) -> Arc<BTreeMap<i64, SegmentReader>> {
        Arc::clone(&self.segments.read())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// The offset after the last batch readers can see.
    pub fn log_end_offset(&self) -> i64 {
        self.segments()
            .values()
            .next_back()
            .map_or(0, SegmentReader::next_offset)
    }

    /// The aborted transactions a read_committed fetch of `[fetch_offset, upper_bound)` must
    /// report: those ending at or after the fetch offset and starting below the bound (the
    /// last stable offset), oldest marker first. A transaction's entry sits in the segment of
    /// its marker, so the search starts at the segment holding the fetch offset.
    pub fn collect_aborted_txns(&self, fetch_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        let segments = self.segments();
        let mut out = Vec::new();
        let first = segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        for segment in segments.range(first..).map(|(_, s)| s) {
            if segment.collect_aborted(fetch_offset, upper_bound, &mut out) {
                break;
            }
        }
        out
    }

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes` (but at
    /// least one batch when `min_one_batch`), and never a batch at or past `max_offset` (the
    /// high watermark). Reads within one segment, as Kafka does; the caller fetches again.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<LogReadResult, LogError> {
        self.read_with(
            offset,
            max_bytes,
            max_offset,
            min_one_batch,
            ReadMode::Block,
        )
    }

    /// [`LogReader::read`] in the given mode: with `ReadMode::NoWait`, `LogError::WouldBlock`
    /// when a byte it needs is not in the page cache.
    pub fn read_with(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
        mode: ReadMode,
    ) -> Result<LogReadResult, LogError> {
        let segments = self.segments();
        let start = self.log_start_offset();
        let end = segments
            .values()
            .next_back()
            .map_or(0, SegmentReader::next_offset);
        if offset < start || offset > end {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: start,
                log_end_offset: end,
            });
        }
        let empty = LogReadResult {
            records: Bytes::new(),
            first_batch_offset: None,
        };
        if offset >= max_offset {
            return Ok(empty);
        }
        let candidates = segments.range(..=offset).next_back().into_iter().chain(
            segments
                .range(offset + 1..)
                .take_while(|(b, _)| **b < max_offset),
        );
        for (_, segment) in candidates {
            let size = segment.size();
            let Some((position, first)) = segment.find_batch(offset, mode)? else {
                continue;
            };
            if first.base_offset >= max_offset {
                return Ok(empty);
            }
            let available = (size - position) as usize;
            let first_size = first.size_in_bytes();
            let want = if first_size > max_bytes {
                if !min_one_batch {
                    return Ok(empty);
                }
                first_size
            } else {
                max_bytes.min(available)
            };
            let mut buf = segment.read_at(position, want, mode)?;
            let keep = self.whole_batches_below(&buf, max_offset)?;
            buf.truncate(keep);
            return Ok(LogReadResult {
                records: Bytes::from(buf),
                first_batch_offset: (keep > 0).then_some(first.base_offset),
            });
        }
        Ok(empty)
    }

    /// How many leading bytes of `buf` are whole batches starting below `max_offset`.
    fn whole_batches_below(&self, buf: &[u8], max_offset: i64) -> Result<usize, LogError> {
        let mut keep = 0usize;
        while keep < buf.len() {
            let Some(size) = batch_size_at(&buf[keep..]) else {
                break;
            };
            let size = size as usize;
            if keep + size > buf.len() {
                break;
            }
            let header = BatchHeader::parse(&buf[keep..]).map_err(|e| LogError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            if header.base_offset >= max_offset {
                break;
            }
            keep += size;
        }
        Ok(keep)
    }

    /// The first batch (header and bytes) whose max timestamp is >= `timestamp`, if any.
    pub fn read_batch_by_time(
        &self,
        timestamp: i64,
    ) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        for segment in self.segments().values() {
            if let Some((position, header)) = segment.find_batch_by_time(timestamp)? {
                let bytes = segment.read_at(position, header.size_in_bytes(), ReadMode::Block)?;
                return Ok(Some((header, Bytes::from(bytes))));
            }
        }
        Ok(None)
    }

    /// The batch (header and bytes) holding the largest timestamp in the log, if any.
    pub fn read_batch_with_max_timestamp(&self) -> Result<Option<(BatchHeader, Bytes)>, LogError> {
        let Some(max) = self
            .segments()
            .values()
            .map(SegmentReader::max_timestamp)
            .max()
            .filter(|t| *t >= 0)
        else {
            return Ok(None);
        };
        self.read_batch_by_time(max)
    }

    /// Calls `f` with the header of every batch from the one holding `from_offset` to the end:
    /// how the producer table is rebuilt from the log.
    pub fn for_each_batch_header(
        &self,
        from_offset: i64,
        mut f: impl FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        let segments = self.segments();
        let start = self.log_start_offset();
        let from = from_offset.max(start);
        let first_base = segments
            .range(..=from)
            .next_back()
            .map(|(b, _)| *b)
            .unwrap_or(start);
        for segment in segments.range(first_base..).map(|(_, s)| s) {
            let size = segment.size();
            let mut position = match segment.find_batch(from, ReadMode::Block)? {
                Some((p, _)) => p,
                None if segment.base_offset() >= from => 0,
                None => continue,
            };
            while position < size {
                let header = segment.header_at(position, ReadMode::Block)?;
                f(&header);
                position += header.size_in_bytes() as u64;
            }
        }
        Ok(())
    }
}
