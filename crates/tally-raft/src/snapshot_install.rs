//! Installing a snapshot into a replica's log store, and finishing an install a crash
//! interrupted.
//!
//! openraft installs a snapshot whose last log id is past what the replica has committed, and
//! purges its log up to that id afterwards. Two cases:
//! - **Keep the log.** The replica already holds the snapshot's last entry, in the same term:
//!   by Raft's log matching its log up to there is the leader's, byte for byte, and openraft
//!   keeps the entries after it. Only the state file changes.
//! - **Replace the log.** Otherwise the replica's log ends before the snapshot's last entry
//!   (openraft has cut any conflicting uncommitted tail), and it may lack records the leader
//!   has deleted since. The log starts again from the staged records (`snapshot_records.rs`).
//!
//! A replacement commits by renaming the staging directory to `snapshot-ready`, with the
//! snapshot's state file and its range inside. From then on it is redone at start-up until it
//! has finished: start the log again at the staged start, copy the staged batches, record the
//! raft log as purged up to the snapshot, put the state file in place, then remove
//! `snapshot-ready`. Every step can run twice. All of it runs under the writer's lock, so no
//! entry is appended until it has finished, and a redo never removes an acknowledged entry.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tally_log::{storage, Log, LogConfig};

use crate::log_store::{now_ms, SegmentLogStore};
use crate::raft_index::RaftIndex;
use crate::raft_meta::RaftMeta;
use crate::snapshot_records::{next_offset_after, StagedRecords, CHUNK_BYTES, INCOMING_PREFIX};
use crate::type_config::LogId;

/// A committed replacement not yet finished (see the module comment).
const READY_DIR: &str = "snapshot-ready";
/// A finished replacement's directory, renamed so that removing it can be interrupted safely.
const DONE_DIR: &str = "snapshot-done";
/// The snapshot's range, inside the staging directory.
const RANGE_FILE: &str = "range.json";
/// The state machine's snapshot file (`state_machine.rs` reads it at start-up).
pub(crate) const SNAPSHOT_FILE: &str = "raft-snapshot.json";

#[derive(Debug, Serialize, Deserialize)]
struct Range {
    start: i64,
    end: i64,
    last_log_id: LogId,
}

/// Replaces `dir/name` with `bytes`, durably.
pub(crate) fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    crate::raft_meta::replace(dir, name, bytes, true)
}

impl SegmentLogStore {
    /// Installs the snapshot whose last entry is `last_log_id` and whose state file is
    /// `snapshot_file`: keeps the log if it holds that entry, else starts it again from
    /// `staged` (which must then be there, unless the snapshot covers no record at all).
    /// Returns whether the log was replaced.
    pub(crate) async fn install_snapshot(
        &self,
        last_log_id: LogId,
        end_offset: i64,
        staged: Option<StagedRecords>,
        snapshot_file: Vec<u8>,
    ) -> io::Result<bool> {
        let store = self.clone();
        self.io()
            .run(move || store.install_blocking(last_log_id, end_offset, staged, &snapshot_file))
            .await?
    }

    fn install_blocking(
        &self,
        last_log_id: LogId,
        end_offset: i64,
        staged: Option<StagedRecords>,
        snapshot_file: &[u8],
    ) -> io::Result<bool> {
        let inner = self.inner();
        let mut log = inner.log.lock();
        let local = inner.index.read().get(last_log_id.index);
        let keep = local.is_some_and(|l| l.term == last_log_id.leader_id.term);
        if keep {
            if let Some(s) = staged {
                let _ = std::fs::remove_dir_all(&s.dir);
            }
            replace_file(&inner.dir, SNAPSHOT_FILE, snapshot_file)?;
            return Ok(false);
        }
        let staged = match staged {
            Some(s) if s.end == end_offset => s,
            Some(s) => {
                let _ = std::fs::remove_dir_all(&s.dir);
                return Err(io::Error::other(format!(
                    "staged records end at {}, the snapshot at {end_offset}",
                    s.end
                )));
            }
            None if end_offset == 0 => StagedRecords {
                dir: empty_staging(&inner.dir, log.config().clone())?,
                start: 0,
                end: 0,
            },
            None => {
                return Err(io::Error::other(format!(
                    "a snapshot ending at offset {end_offset} came without its records"
                )))
            }
        };
        commit(&inner.dir, &staged, last_log_id, snapshot_file)?;
        let mut meta = inner.meta.lock().clone();
        finish_ready(&inner.dir, &mut log, &mut meta)?;
        *inner.index.write() = RaftIndex::new(Some(last_log_id));
        inner.cache.lock().truncate_from(0);
        *inner.leader.lock() = None;
        *inner.meta.lock() = meta;
        Ok(true)
    }
}

/// The commit point of a replacement: from here on a restart finishes the install.
fn commit(
    dir: &Path,
    staged: &StagedRecords,
    last_log_id: LogId,
    snapshot_file: &[u8],
) -> io::Result<()> {
    let range = Range {
        start: staged.start,
        end: staged.end,
        last_log_id,
    };
    let range = serde_json::to_vec(&range).map_err(io::Error::other)?;
    replace_file(&staged.dir, RANGE_FILE, &range)?;
    replace_file(&staged.dir, SNAPSHOT_FILE, snapshot_file)?;
    let ready = dir.join(READY_DIR);
    if ready.exists() {
        std::fs::remove_dir_all(&ready)?;
    }
    storage::rename(&staged.dir, &ready)?;
    storage::sync_dir(dir)
}

/// An empty staged log at offset 0: the records of a snapshot that covers none.
fn empty_staging(dir: &Path, config: LogConfig) -> io::Result<std::path::PathBuf> {
    let stager = crate::snapshot_records::Stager::begin(dir, 0, 0, config)?;
    Ok(stager.finish()?.dir)
}

/// Start-up: removes unfinished transfers and finishes a committed install (see the module
/// comment), before the raft index is built from `meta`.
pub(crate) fn recover(dir: &Path, log: &mut Log, meta: &mut RaftMeta) -> io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(INCOMING_PREFIX) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
    }
    if dir.join(READY_DIR).is_dir() {
        tracing::info!(dir = %dir.display(), "finishing a snapshot install a restart interrupted");
        finish_ready(dir, log, meta)?;
    }
    let done = dir.join(DONE_DIR);
    if done.exists() {
        std::fs::remove_dir_all(&done)?;
    }
    Ok(())
}

/// Every step after the commit point, each safe to run again.
fn finish_ready(dir: &Path, log: &mut Log, meta: &mut RaftMeta) -> io::Result<()> {
    let ready = dir.join(READY_DIR);
    let range: Range = serde_json::from_slice(&std::fs::read(ready.join(RANGE_FILE))?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let (staged, _) = Log::open(&ready, log.config().clone()).map_err(io::Error::other)?;
    if staged.log_start_offset() != range.start || staged.log_end_offset() != range.end {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: staged records [{}, {}) where [{}, {}) was committed",
                ready.display(),
                staged.log_start_offset(),
                staged.log_end_offset(),
                range.start,
                range.end
            ),
        ));
    }
    log.truncate_fully_and_start_at(range.start)
        .map_err(io::Error::other)?;
    copy_records(&staged, log, range.end)?;
    log.flush().map_err(io::Error::other)?;
    meta.last_purged = Some(range.last_log_id);
    meta.first_entry = None;
    meta.save(dir)?;
    let state = ready.join(SNAPSHOT_FILE);
    if state.exists() {
        storage::rename(&state, &dir.join(SNAPSHOT_FILE))?;
        storage::sync_dir(dir)?;
    }
    drop(staged);
    let done = dir.join(DONE_DIR);
    let _ = std::fs::remove_dir_all(&done);
    storage::rename(&ready, &done)?;
    storage::sync_dir(dir)?;
    std::fs::remove_dir_all(&done)
}

/// Appends the batches of `from` below `end` to `to`, which ends where `from` starts.
fn copy_records(from: &Log, to: &mut Log, end: i64) -> io::Result<()> {
    while to.log_end_offset() < end {
        let offset = to.log_end_offset();
        let read = from
            .read(offset, CHUNK_BYTES, end, true)
            .map_err(io::Error::other)?;
        if read.records.is_empty() || read.first_batch_offset != Some(offset) {
            return Err(io::Error::other(format!(
                "staged records have no batch at {offset}"
            )));
        }
        let mut rest = read.records;
        let next = next_offset_after(&rest)?;
        while !rest.is_empty() {
            let header = tally_protocol::BatchHeader::parse(&rest).map_err(io::Error::other)?;
            let batch = rest.split_to(header.size_in_bytes().min(rest.len()));
            let now = now_ms();
            if to.should_roll(batch.len(), header.last_offset(), now) {
                to.roll().map_err(io::Error::other)?;
            }
            to.append(&batch, &header, now).map_err(io::Error::other)?;
        }
        debug_assert_eq!(to.log_end_offset(), next);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::storage::RaftLogStorage;
    use tally_testkit::BatchSpec;

    use super::*;
    use crate::snapshot_records::{stage_from, Stager};

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 512,
            index_interval_bytes: 128,
            ..LogConfig::default()
        }
    }

    /// A plain partition log in `dir` holding `count` batches of 2 records from offset 0.
    fn source_with(dir: &Path, count: i32) -> SegmentLogStore {
        {
            let (mut log, _) = Log::open(dir, config()).unwrap();
            for k in 0..count {
                let mut batch = BatchSpec::new(9, 0, k * 2, 2).encode().to_vec();
                let offset = log.log_end_offset();
                tally_protocol::record_batch::set_base_offset(&mut batch, offset);
                let header = tally_protocol::BatchHeader::parse(&batch).unwrap();
                if log.should_roll(batch.len(), header.last_offset(), 0) {
                    log.roll().unwrap();
                }
                log.append(&batch, &header, 0).unwrap();
            }
            log.close().unwrap();
        }
        SegmentLogStore::open(dir, config()).unwrap()
    }

    #[tokio::test]
    async fn a_restart_after_the_commit_point_finishes_the_install_and_drops_unfinished_transfers()
    {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let source = source_with(a.path(), 20);
        source.delete_records_before(10).unwrap();
        let start = source.log_reader().log_start_offset();
        assert!(start > 0, "the source log kept everything");
        let replica = source_with(b.path(), 3);
        drop(replica);
        let staged = stage_from(&source, b.path(), 40, config()).unwrap();
        // An unfinished transfer beside it.
        let stray = Stager::begin(b.path(), 0, 40, config()).unwrap();
        std::mem::forget(stray);
        let last = LogId::new_term_index(3, 17);
        commit(b.path(), &staged, last, b"{}").unwrap();

        let reopened = SegmentLogStore::open(b.path(), config()).unwrap();
        assert_eq!(reopened.log_reader().log_start_offset(), start);
        assert_eq!(reopened.log_reader().log_end_offset(), 40);
        let meta = RaftMeta::load(b.path()).unwrap();
        assert_eq!(meta.last_purged, Some(last));
        assert_eq!(meta.first_entry, None);
        assert_eq!(std::fs::read(b.path().join(SNAPSHOT_FILE)).unwrap(), b"{}");
        let left: Vec<String> = std::fs::read_dir(b.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snapshot-"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        let read = |s: &SegmentLogStore| s.log_reader().read(start, 1 << 20, 40, true).unwrap();
        assert_eq!(read(&reopened).records, read(&source).records);
        let mut store = reopened.clone();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(last));
        assert_eq!(state.last_log_id, Some(last));
    }

    #[test]
    fn the_stager_refuses_a_gap_a_bad_crc_an_overrun_and_a_short_end_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let batch_at = |offset: i64| {
            let mut b = BatchSpec::new(9, 0, 0, 2).encode().to_vec();
            tally_protocol::record_batch::set_base_offset(&mut b, offset);
            b
        };
        let staging = |d: &Path| {
            std::fs::read_dir(d)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(INCOMING_PREFIX))
                .count()
        };
        let mut s = Stager::begin(dir.path(), 10, 20, config()).unwrap();
        s.push(Bytes::from(batch_at(10))).unwrap();
        assert!(s.push(Bytes::from(batch_at(13))).is_err(), "a gap");
        drop(s);
        let mut s = Stager::begin(dir.path(), 10, 14, config()).unwrap();
        let mut bad = batch_at(10);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(s.push(Bytes::from(bad)).is_err(), "a bad CRC");
        assert!(
            s.push(Bytes::from(batch_at(10)[..20].to_vec())).is_err(),
            "a torn batch"
        );
        drop(s);
        let mut s = Stager::begin(dir.path(), 10, 11, config()).unwrap();
        assert!(s.push(Bytes::from(batch_at(10))).is_err(), "past the end");
        drop(s);
        let mut s = Stager::begin(dir.path(), 10, 14, config()).unwrap();
        s.push(Bytes::from(batch_at(10))).unwrap();
        assert!(s.finish().is_err(), "short of the end");
        assert!(Stager::begin(dir.path(), 5, 4, config()).is_err());
        assert_eq!(staging(dir.path()), 0);
        let mut s = Stager::begin(dir.path(), 10, 14, config()).unwrap();
        s.push(Bytes::from([batch_at(10), batch_at(12)].concat()))
            .unwrap();
        let staged = s.finish().unwrap();
        assert_eq!((staged.start, staged.end), (10, 14));
        assert_eq!(staging(dir.path()), 1);
    }
}
