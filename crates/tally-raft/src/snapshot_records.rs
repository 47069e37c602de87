//! What a partition snapshot carries besides its state: the records.
//!
//! A snapshot's state (the producer table, the high watermark, the applied log id) says what
//! the log up to the snapshot led to, but a replica that installs it must also hold the
//! records, because Fetch reads them and Raft's later entries follow them at the same offsets.
//! So a snapshot sent to a replica whose log lacks what the leader has purged carries the
//! leader's retained log, `[leader's log start, snapshot end)`, and the receiver starts its log
//! again from those bytes (Kafka's `truncateFullyAndStartAt`, then a fetch from there).
//!
//! Nothing is copied when a snapshot is built: the leader's snapshot names its own log
//! (`SnapshotRecords::Local`), and the bytes are read as they are sent. Records below the
//! snapshot's end are committed and never change (truncation only cuts above the committed
//! end, retention only deletes whole segments from the front), so no lock is needed; a
//! retention pass that deletes what a transfer still had to read makes the read fail, and
//! openraft sends the newer snapshot again.
//!
//! The receiver writes what it is sent into a staging directory of its own replica
//! (`Stager`), checking every batch (CRC, contiguous offsets, the announced end). Only the
//! install (`snapshot_install.rs`) puts staged records into the log.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tally_log::{storage, Log, LogConfig};
use tally_protocol::BatchHeader;

use crate::log_store::SegmentLogStore;

/// How many bytes of records one read (and one frame on the wire) carries.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// The prefix of a staging directory inside a replica's directory. Any left at start-up are
/// from a transfer that did not finish, and are removed.
pub(crate) const INCOMING_PREFIX: &str = "snapshot-incoming-";

/// A partition snapshot as openraft passes it around: the state bytes (see
/// `state_machine.rs`) and where its records are.
pub struct PartitionSnapshot {
    pub(crate) state: Vec<u8>,
    pub(crate) records: SnapshotRecords,
}

impl fmt::Debug for PartitionSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionSnapshot")
            .field("state_bytes", &self.state.len())
            .field("records", &self.records)
            .finish()
    }
}

/// Where a snapshot's records are.
pub enum SnapshotRecords {
    /// In the log of the replica that built the snapshot: read from its log start up to the
    /// snapshot's end as they are sent.
    Local(SegmentLogStore),
    /// Received from the leader and written to a staging directory of this replica.
    Staged(StagedRecords),
}

impl fmt::Debug for SnapshotRecords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotRecords::Local(_) => f.write_str("Local"),
            SnapshotRecords::Staged(s) => write!(f, "Staged({s:?})"),
        }
    }
}

/// Records `[start, end)` in a staging directory: a closed log of their own, whose segments
/// keep the leader's boundaries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedRecords {
    pub dir: PathBuf,
    pub start: i64,
    pub end: i64,
}

/// Writes the records of an incoming snapshot into a new staging directory. Blocking: run it
/// off the async workers.
pub struct Stager {
    dir: PathBuf,
    log: Log,
    start: i64,
    end: i64,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl Stager {
    /// A staging directory in `replica_dir` for records `[start, end)`.
    pub fn begin(replica_dir: &Path, start: i64, end: i64, config: LogConfig) -> io::Result<Self> {
        if start < 0 || end < start {
            return Err(invalid(format!("snapshot records [{start}, {end})")));
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "{INCOMING_PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = replica_dir.join(name);
        storage::create_dir_all_durable(&dir)?;
        // An empty first segment at `start` makes the staged log start there.
        let first = dir.join(tally_log::offset_file_name(start, "log"));
        drop(storage::create(&first)?);
        let (log, _) = Log::open(&dir, config).map_err(io::Error::other)?;
        Ok(Stager {
            dir,
            log,
            start,
            end,
        })
    }

    /// The offset the next batch must start at.
    pub fn next_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// Writes whole batches, which must continue the staged log and stay below the end.
    pub fn push(&mut self, mut bytes: Bytes) -> io::Result<()> {
        while !bytes.is_empty() {
            let header = BatchHeader::parse(&bytes).map_err(|e| invalid(e.to_string()))?;
            let size = header.size_in_bytes();
            if size > bytes.len() {
                return Err(invalid("a snapshot batch runs past its frame".into()));
            }
            let batch = bytes.split_to(size);
            header
                .verify_crc(&batch)
                .map_err(|e| invalid(format!("snapshot batch at {}: {e}", header.base_offset)))?;
            let expected = self.log.log_end_offset();
            if header.base_offset != expected || header.last_offset() >= self.end {
                return Err(invalid(format!(
                    "snapshot batch [{}, {}] where offset {expected} (end {}) was expected",
                    header.base_offset,
                    header.last_offset(),
                    self.end
                )));
            }
            let now = crate::log_store::now_ms();
            if self.log.should_roll(size, header.last_offset(), now) {
                self.log.roll().map_err(io::Error::other)?;
            }
            self.log
                .append(&batch, &header, now)
                .map_err(io::Error::other)?;
        }
        Ok(())
    }

    /// Checks that everything up to the end arrived and makes it durable.
    pub fn finish(mut self) -> io::Result<StagedRecords> {
        let reached = self.log.log_end_offset();
        if reached != self.end {
            return Err(invalid(format!(
                "snapshot records end at {reached}, not at {}",
                self.end
            )));
        }
        self.log.close().map_err(io::Error::other)?;
        storage::sync_dir(&self.dir)?;
        let dir = std::mem::take(&mut self.dir);
        Ok(StagedRecords {
            dir,
            start: self.start,
            end: self.end,
        })
    }
}

impl Drop for Stager {
    /// A transfer that did not finish leaves nothing behind.
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Copies the records `[log start, end)` of `source` into a new staging directory of
/// `replica_dir`: what a snapshot sent between replicas in one process does in place of the
/// wire transfer. Blocking.
pub fn stage_from(
    source: &SegmentLogStore,
    replica_dir: &Path,
    end: i64,
    config: LogConfig,
) -> io::Result<StagedRecords> {
    let reader = source.log_reader();
    let start = reader.log_start_offset();
    let mut stager = Stager::begin(replica_dir, start, end, config)?;
    while stager.next_offset() < end {
        let chunk = read_chunk(source, stager.next_offset(), end)?;
        stager.push(chunk)?;
    }
    stager.finish()
}

/// Whole batches of `source` from `offset` on, below `end`: at least one, at most about
/// `CHUNK_BYTES`. Blocking.
pub(crate) fn read_chunk(source: &SegmentLogStore, offset: i64, end: i64) -> io::Result<Bytes> {
    let read = source
        .log_reader()
        .read(offset, CHUNK_BYTES, end, true)
        .map_err(io::Error::other)?;
    if read.records.is_empty() || read.first_batch_offset != Some(offset) {
        return Err(io::Error::other(format!(
            "the log has no batch starting at {offset} below {end} (retention moved on?)"
        )));
    }
    Ok(read.records)
}

/// The offset after the last batch in `records` (whole batches).
pub(crate) fn next_offset_after(records: &[u8]) -> io::Result<i64> {
    let mut rest = records;
    let mut next = None;
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest).map_err(|e| invalid(e.to_string()))?;
        next = Some(header.last_offset() + 1);
        rest = &rest[header.size_in_bytes().min(rest.len())..];
    }
    next.ok_or_else(|| invalid("no batch".into()))
}
