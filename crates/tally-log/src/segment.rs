//! One segment: a file of record batches with base offset `base_offset`, plus its sparse
//! indexes. Bytes below `size` never change once written, which is what lets readers use
//! positional reads while the writer appends.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use tally_protocol::BatchHeader;
use tally_protocol::RECORD_BATCH_OVERHEAD;

use crate::error::LogError;
use crate::index::{OffsetIndex, TimeIndex};
use crate::offset_file_name;
use crate::positioned_read::{self, ReadFailure};
use crate::scan::{BatchScanner, ScanStep};
use crate::storage;
use crate::txn_index::{collect_aborted, AbortedTxn, SharedAborted, TxnIndex};

/// What a full scan of a segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanOutcome {
    pub valid_bytes: u64,
    pub truncated_bytes: u64,
    pub reason: Option<String>,
}

/// Written bytes handed to the kernel's writeback in chunks of this size.
const WRITEBACK_CHUNK_BYTES: u64 = 1 << 20;
/// How far behind the end of a segment early writeback stays.
const WRITEBACK_LAG_BYTES: u64 = 64 << 20;

/// Whether a read may wait for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Wait as long as the disk takes (off the async workers).
    Block,
    /// Only what the page cache holds; anything else is `LogError::WouldBlock`.
    NoWait,
}

/// What readers may see of a segment: its size (bytes below it never change), next offset,
/// indexes and max timestamp. The writer changes it under a short write lock after each
/// append, never across I/O; readers copy what they need under a read lock and then read the
/// file without any lock.
#[derive(Debug, Default, Clone)]
pub(crate) struct SegmentState {
    size: u64,
    next_offset: i64,
    index: OffsetIndex,
    time_index: TimeIndex,
    max_timestamp: i64,
    /// Offset (relative) of the batch that holds `max_timestamp`.
    offset_of_max_timestamp: u32,
}

/// The read side of a segment, cheap to clone: a reader (a fetch, ListOffsets) holds one
/// while it reads, so a segment deleted by retention meanwhile stays readable (unix).
#[derive(Debug, Clone)]
pub struct SegmentReader {
    base_offset: i64,
    log_path: Arc<PathBuf>,
    file: Arc<File>,
    state: Arc<RwLock<SegmentState>>,
    /// The segment's aborted transactions (see `txn_index.rs`).
    aborted: SharedAborted,
}

/// A segment as its one writer sees it: the shared read side plus what only the writer uses.
#[derive(Debug)]
pub struct Segment {
    reader: SegmentReader,
    bytes_since_index: u64,
    /// Bytes below this have been handed to the kernel's writeback.
    writeback_from: u64,
    /// Broker time of the segment's first append, which `segment.ms` is measured from. Kafka
    /// uses the first batch's timestamp instead, so a producer with a slow clock makes it roll
    /// a segment per batch; the broker's clock cannot be skewed by clients.
    rolling_timestamp: Option<i64>,
    txn_index: TxnIndex,
}

impl std::ops::Deref for Segment {
    type Target = SegmentReader;
    fn deref(&self) -> &SegmentReader {
        &self.reader
    }
}

impl Segment {
    fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(offset_file_name(base_offset, "log")),
            dir.join(offset_file_name(base_offset, "index")),
            dir.join(offset_file_name(base_offset, "timeindex")),
        )
    }

    fn open_file(path: &Path, create_new: bool) -> Result<File, LogError> {
        storage::open(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(create_new),
            path,
        )
        .map_err(LogError::io(path))
    }

    fn empty(base_offset: i64, log_path: PathBuf, file: File) -> Segment {
        let dir = log_path.parent().expect("segment has a directory");
        let txn_index = TxnIndex::new(dir, base_offset);
        Segment {
            reader: SegmentReader {
                base_offset,
                log_path: Arc::new(log_path),
                file: Arc::new(file),
                state: Arc::new(RwLock::new(SegmentState {
                    size: 0,
                    next_offset: base_offset,
                    index: OffsetIndex::default(),
                    time_index: TimeIndex::default(),
                    max_timestamp: -1,
                    offset_of_max_timestamp: 0,
                })),
                aborted: txn_index.shared(),
            },
            bytes_since_index: 0,
            writeback_from: 0,
            rolling_timestamp: None,
            txn_index,
        }
    }

    /// Creates a new, empty segment file.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        // Stale indexes of an earlier segment with the same base would mislead a later open.
        let _ = storage::remove_file(&index_path);
        let _ = storage::remove_file(&time_path);
        let _ = storage::remove_file(&TxnIndex::path(dir, base_offset));
        let file = Self::open_file(&log_path, true)?;
        Ok(Segment::empty(base_offset, log_path, file))
    }

    /// Opens a segment by reading every batch (checking CRCs when `verify_crc`), rebuilding its
    /// indexes, and truncating the file at the first batch that is torn or corrupt.
    pub(crate) fn open_scanned(
        dir: &Path,
        base_offset: i64,
        verify_crc: bool,
        index_interval_bytes: u32,
    ) -> Result<(Segment, ScanOutcome), LogError> {
        let (log_path, _, _) = Self::paths(dir, base_offset);
        let file = Self::open_file(&log_path, false)?;
        let file_len = file.metadata().map_err(LogError::io(&log_path))?.len();
        let mut segment = Segment::empty(base_offset, log_path, file);
        let outcome = segment.scan(file_len, index_interval_bytes, verify_crc)?;
        Ok((segment, outcome))
    }

    /// Reads (CRC-checking when `verify_crc`) and tracks every batch from the segment's current
    /// size to `file_len`, then cuts the file after the last whole, valid batch. The outcome
    /// counts the valid bytes read.
    fn scan(
        &mut self,
        file_len: u64,
        index_interval_bytes: u32,
        verify_crc: bool,
    ) -> Result<ScanOutcome, LogError> {
        let start = self.size();
        let file = Arc::clone(&self.file);
        let mut scanner = BatchScanner::new(&file, start, file_len, verify_crc);
        let mut reason = None;
        loop {
            match scanner
                .next_batch()
                .map_err(LogError::io(&*self.log_path))?
            {
                ScanStep::Batch { position, header } => {
                    let expected = self.next_offset();
                    if header.base_offset < expected
                        || header.last_offset() - self.base_offset > i64::from(u32::MAX)
                    {
                        reason = Some(format!(
                            "batch at position {position} has offset {} but {expected} was expected",
                            header.base_offset
                        ));
                        break;
                    }
                    self.track(position, &header, index_interval_bytes);
                }
                ScanStep::End => break,
                ScanStep::Invalid { reason: r, .. } => {
                    reason = Some(r);
                    break;
                }
            }
        }
        let size = self.size();
        if size > 0 {
            // The first append's time is not stored; the last write's time is a later bound.
            self.rolling_timestamp = modified_ms(&self.log_path);
        }
        let truncated_bytes = file_len.saturating_sub(size);
        if truncated_bytes > 0 {
            storage::set_len(&file, &self.log_path, size).map_err(LogError::io(&*self.log_path))?;
            storage::sync_all(&file, &self.log_path).map_err(LogError::io(&*self.log_path))?;
        }
        Ok(ScanOutcome {
            valid_bytes: size - start,
            truncated_bytes,
            reason,
        })
    }

    /// Opens the last segment when the recovery point lies inside it or at its end (a clean
    /// shutdown saved its indexes): batches below the recovery point were flushed and are
    /// trusted through the saved indexes; reading starts at the last index entry below it, so
    /// only the unflushed tail (and at most `index.interval.bytes` before it) is read and
    /// CRC-checked, a torn tail cut. Without sane indexes, the whole segment is scanned.
    pub(crate) fn open_tail(
        dir: &Path,
        base_offset: i64,
        recovery_point: i64,
        index_interval_bytes: u32,
    ) -> Result<(Segment, ScanOutcome), LogError> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let file = Self::open_file(&log_path, false)?;
        let file_len = file.metadata().map_err(LogError::io(&log_path))?.len();
        let trusted_rel = (recovery_point - base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let loaded = OffsetIndex::load(&index_path, file_len)
            .zip(TimeIndex::load(&time_path, trusted_rel.saturating_sub(1)))
            .filter(|_| trusted_rel > 0);
        let Some((mut index, mut time_index)) = loaded else {
            drop(file);
            return Self::open_scanned(dir, base_offset, true, index_interval_bytes);
        };
        let (start_rel, start_position) = index.retain_below(trusted_rel).unwrap_or((0, 0));
        time_index.retain_below(start_rel);
        let mut segment = Segment::empty(base_offset, log_path, file);
        segment.state.write().restore(
            u64::from(start_position),
            base_offset + i64::from(start_rel),
            index,
            time_index,
        );
        let outcome = segment.scan(file_len, index_interval_bytes, true)?;
        Ok((segment, outcome))
    }

    /// Opens an inactive segment below the recovery point from its saved indexes, trusting its
    /// bytes. `next_offset` is the next segment's base offset. Falls back to a scan when the
    /// indexes are missing or not sane.
    pub(crate) fn open_indexed(
        dir: &Path,
        base_offset: i64,
        next_offset: i64,
        index_interval_bytes: u32,
    ) -> Result<(Segment, Option<ScanOutcome>), LogError> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let file = Self::open_file(&log_path, false)?;
        let size = file.metadata().map_err(LogError::io(&log_path))?.len();
        let max_rel = (next_offset - base_offset - 1).clamp(0, i64::from(u32::MAX)) as u32;
        let loaded = OffsetIndex::load(&index_path, size)
            .zip(TimeIndex::load(&time_path, max_rel))
            .filter(|_| size > 0 && next_offset > base_offset);
        match loaded {
            Some((index, time_index)) => {
                let mut segment = Segment::empty(base_offset, log_path, file);
                segment
                    .state
                    .write()
                    .restore(size, next_offset, index, time_index);
                segment.rolling_timestamp = modified_ms(&segment.log_path);
                Ok((segment, None))
            }
            None => {
                let (segment, outcome) =
                    Self::open_scanned(dir, base_offset, true, index_interval_bytes)?;
                segment.save_indexes()?;
                Ok((segment, Some(outcome)))
            }
        }
    }

    /// Updates size, next offset, indexes and timestamps for a batch stored at `position`.
    /// Like Kafka, both indexes get an entry only every `index.interval.bytes`. Readers see the
    /// batch once this returns.
    fn track(&mut self, position: u64, header: &BatchHeader, index_interval_bytes: u32) {
        let relative = (header.base_offset - self.base_offset) as u32;
        let size = header.size_in_bytes() as u64;
        let index_due = self.bytes_since_index >= u64::from(index_interval_bytes);
        let mut state = self.reader.state.write();
        if state.size > 0 && index_due {
            state.index.append(relative, position as u32);
            let (t, r) = (state.max_timestamp, state.offset_of_max_timestamp);
            state.time_index.maybe_append(t, r);
            self.bytes_since_index = 0;
        }
        if header.max_timestamp > state.max_timestamp {
            state.max_timestamp = header.max_timestamp;
            state.offset_of_max_timestamp = relative;
        }
        state.size = position + size;
        state.next_offset = header.last_offset() + 1;
        drop(state);
        self.bytes_since_index += size;
    }

    /// Appends one whole batch at the end, given as consecutive parts (a patched header and
    /// the rest, so the client's bytes need not be copied). On a failed write the file is cut
    /// back to its old size, so a partial batch is never left behind for readers.
    pub(crate) fn append(
        &mut self,
        parts: &[&[u8]],
        header: &BatchHeader,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let position = self.size();
        let mut at = position;
        for part in parts {
            if let Err(e) = storage::write_all_at(&self.file, &self.log_path, part, at) {
                let _ = storage::set_len(&self.file, &self.log_path, position);
                return Err(LogError::Io {
                    path: (*self.log_path).clone(),
                    source: e,
                });
            }
            at += part.len() as u64;
        }
        self.track(position, header, index_interval_bytes);
        self.rolling_timestamp.get_or_insert(now_ms);
        self.start_writeback(at);
        Ok(())
    }

    /// Hands written bytes to early writeback (see `writeback.rs`) in chunks, staying
    /// `WRITEBACK_LAG_BYTES` behind the end: a burst that fits in that lag costs no writeback
    /// work while it runs, and a sustained stream never leaves more than the lag unwritten.
    fn start_writeback(&mut self, end: u64) {
        let until = end.saturating_sub(WRITEBACK_LAG_BYTES);
        if until < self.writeback_from + WRITEBACK_CHUNK_BYTES {
            return;
        }
        crate::writeback::start(&self.file, self.writeback_from, until - self.writeback_from);
        self.writeback_from = until;
    }

    /// Cuts the file to `size` bytes, durably; `Log::truncate_to` then rebuilds the state.
    pub(crate) fn cut_file(&self, size: u64) -> Result<(), LogError> {
        let io = LogError::io(&*self.log_path);
        storage::set_len(&self.file, &self.log_path, size).map_err(io)?;
        storage::sync_all(&self.file, &self.log_path).map_err(LogError::io(&*self.log_path))
    }

    pub(crate) fn flush(&self) -> Result<(), LogError> {
        storage::sync_data(&self.file, &self.log_path).map_err(LogError::io(&*self.log_path))?;
        self.txn_index.flush()
    }

    /// Loads the aborted-transaction index, once the segment's end is known (after recovery).
    pub(crate) fn load_txn_index(&mut self) -> Result<(), LogError> {
        self.txn_index.load(self.reader.next_offset())
    }

    /// Records an aborted transaction whose marker is in this segment.
    pub(crate) fn append_aborted(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        self.txn_index.append(entry)
    }

    /// Forgets aborted transactions whose marker is at or after `offset`.
    pub(crate) fn truncate_aborted_from(&mut self, offset: i64) -> Result<(), LogError> {
        self.txn_index.truncate_from(offset)
    }

    pub(crate) fn save_indexes(&self) -> Result<(), LogError> {
        let dir = self.log_path.parent().expect("segment has a directory");
        let (_, index_path, time_path) = Self::paths(dir, self.base_offset);
        let (index, mut time_index, max_timestamp, offset_of_max) = {
            let s = self.state.read();
            (
                s.index.clone(),
                s.time_index.clone(),
                s.max_timestamp,
                s.offset_of_max_timestamp,
            )
        };
        index.save(&index_path).map_err(LogError::io(&index_path))?;
        // The final entry records the segment's max timestamp, which retention reads back.
        if max_timestamp >= 0 {
            time_index.maybe_append(max_timestamp, offset_of_max);
        }
        time_index
            .save(&time_path)
            .map_err(LogError::io(&time_path))
    }

    /// Removes the segment's files. Readers holding the file handle keep reading (unix).
    pub(crate) fn delete(&self) -> Result<(), LogError> {
        let dir = self.log_path.parent().expect("segment has a directory");
        let (log_path, index_path, time_path) = Self::paths(dir, self.base_offset);
        storage::remove_file(&log_path).map_err(LogError::io(&log_path))?;
        // The log file goes first: without it the segment is gone, and its index files are
        // orphans that the next open removes. The other order could leave a segment whose
        // aborted-transaction index was lost.
        crate::failpoint::hit("segment.delete.after_log");
        let _ = storage::remove_file(&index_path);
        let _ = storage::remove_file(&time_path);
        self.txn_index.delete();
        Ok(())
    }

    pub fn reader(&self) -> &SegmentReader {
        &self.reader
    }

    pub(crate) fn rolling_timestamp(&self) -> Option<i64> {
        self.rolling_timestamp
    }
}

impl SegmentState {
    /// Sets what was loaded from saved indexes (before the tail is scanned).
    fn restore(&mut self, size: u64, next_offset: i64, index: OffsetIndex, time_index: TimeIndex) {
        self.size = size;
        self.next_offset = next_offset;
        if let Some((t, r)) = time_index.last() {
            self.max_timestamp = t;
            self.offset_of_max_timestamp = r;
        }
        self.index = index;
        self.time_index = time_index;
    }
}

impl SegmentReader {
    /// See `txn_index::collect_aborted`.
    pub(crate) fn collect_aborted(
        &self,
        fetch_offset: i64,
        upper_bound: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> bool {
        collect_aborted(&self.aborted.read(), fetch_offset, upper_bound, out)
    }

    pub(crate) fn header_at(&self, position: u64, mode: ReadMode) -> Result<BatchHeader, LogError> {
        let mut buf = [0u8; RECORD_BATCH_OVERHEAD];
        self.pread(&mut buf, position, mode)?;
        BatchHeader::parse(&buf).map_err(|e| LogError::Io {
            path: (*self.log_path).clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// Position and header of the first batch whose last offset is >= `offset`, if any.
    pub(crate) fn find_batch(
        &self,
        offset: i64,
        mode: ReadMode,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let relative = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let (mut position, size) = {
            let s = self.state.read();
            if offset >= s.next_offset {
                return Ok(None);
            }
            (u64::from(s.index.floor_position(relative)), s.size)
        };
        while position < size {
            let header = self.header_at(position, mode)?;
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size_in_bytes() as u64;
        }
        Ok(None)
    }

    /// Position and header of the first batch whose max timestamp is >= `timestamp`.
    pub(crate) fn find_batch_by_time(
        &self,
        timestamp: i64,
    ) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let (relative, size) = {
            let s = self.state.read();
            if s.max_timestamp < timestamp {
                return Ok(None);
            }
            (s.time_index.floor_offset(timestamp), s.size)
        };
        let start = self.base_offset + i64::from(relative);
        let Some((mut position, _)) = self.find_batch(start, ReadMode::Block)? else {
            return Ok(None);
        };
        while position < size {
            let header = self.header_at(position, ReadMode::Block)?;
            if header.max_timestamp >= timestamp {
                return Ok(Some((position, header)));
            }
            position += header.size_in_bytes() as u64;
        }
        Ok(None)
    }

    /// Reads `len` bytes at `position` into a new buffer. The buffer is not zeroed first:
    /// the read fills every byte or fails, and zeroing a fetch's or a replica's megabytes
    /// cost as much as copying them out of the page cache (a tenth of a cluster node's CPU).
    pub(crate) fn read_at(
        &self,
        position: u64,
        len: usize,
        mode: ReadMode,
    ) -> Result<Vec<u8>, LogError> {
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        // SAFETY: the allocation holds `len` bytes; `pread_into` writes all of them or fails,
        // and the length is set only once they are written.
        unsafe {
            self.pread_into(buf.as_mut_ptr(), len, position, mode)?;
            buf.set_len(len);
        }
        Ok(buf)
    }

    /// Fills `buf` from `position` (see `pread_into`).
    fn pread(&self, buf: &mut [u8], position: u64, mode: ReadMode) -> Result<(), LogError> {
        // SAFETY: `buf` is valid for writes of its whole length.
        unsafe { self.pread_into(buf.as_mut_ptr(), buf.len(), position, mode) }
    }

    /// Writes `len` bytes from `position` to `ptr` (see `positioned_read::read_into`).
    ///
    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes.
    unsafe fn pread_into(
        &self,
        ptr: *mut u8,
        len: usize,
        position: u64,
        mode: ReadMode,
    ) -> Result<(), LogError> {
        // SAFETY: passed on from the caller.
        match unsafe { positioned_read::read_into(&self.file, ptr, len, position, mode) } {
            Ok(()) => Ok(()),
            Err(ReadFailure::WouldBlock) => Err(LogError::WouldBlock),
            Err(ReadFailure::Io(e)) => Err(self.io_error(e)),
        }
    }

    /// Built only on failure: the hot read path allocates no path.
    fn io_error(&self, source: std::io::Error) -> LogError {
        LogError::Io {
            path: (*self.log_path).clone(),
            source,
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn size(&self) -> u64 {
        self.state.read().size
    }
    pub fn next_offset(&self) -> i64 {
        self.state.read().next_offset
    }
    pub fn max_timestamp(&self) -> i64 {
        self.state.read().max_timestamp
    }
    pub fn is_empty(&self) -> bool {
        self.size() == 0
    }
}

/// The file's modification time in ms since the epoch.
fn modified_ms(path: &Path) -> Option<i64> {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
}
