//! A segment's aborted-transaction index (Kafka's `.txnindex`): one entry per transaction that
//! was aborted by a marker in this segment, so read_committed fetches can tell consumers which
//! records to drop. The file is Kafka's layout, 34 bytes an entry: version (i16 = 0), producer
//! id, first offset, last offset (the marker's), and the last stable offset when the marker
//! was written (all big-endian).
//!
//! Entries are kept in memory as well (a few per segment at most in practice) behind a short
//! lock shared with the segment's readers; the file is what survives a restart. The index is
//! derived from the log: entries whose marker is past the log end after recovery are dropped,
//! and the partition re-adds the ones it replays.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::LogError;
use crate::offset_file_name;
use crate::storage;

const ENTRY_BYTES: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of the ABORT marker.
    pub last_offset: i64,
    /// The partition's last stable offset right after the marker: no transaction that starts
    /// at or beyond it can be older than this one, which lets a search stop early.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if i16::from_be_bytes([b[0], b[1]]) != ENTRY_VERSION {
            return None;
        }
        Some(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

pub(crate) type SharedAborted = Arc<RwLock<Vec<AbortedTxn>>>;

/// The writer's side of a segment's transaction index.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    file: Option<File>,
    entries: SharedAborted,
    unsynced: AtomicBool,
}

impl TxnIndex {
    pub(crate) fn path(dir: &Path, base_offset: i64) -> PathBuf {
        dir.join(offset_file_name(base_offset, "txnindex"))
    }

    /// An index with nothing loaded yet (see [`TxnIndex::load`]).
    pub(crate) fn new(dir: &Path, base_offset: i64) -> TxnIndex {
        TxnIndex {
            path: Self::path(dir, base_offset),
            file: None,
            entries: Arc::default(),
            unsynced: AtomicBool::new(false),
        }
    }

    pub(crate) fn shared(&self) -> SharedAborted {
        Arc::clone(&self.entries)
    }

    /// Reads the file, keeping the entries whose marker is below `next_offset` (the segment's
    /// end after recovery) and cutting off the rest and any torn entry.
    pub(crate) fn load(&mut self, next_offset: i64) -> Result<(), LogError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LogError::io(&self.path)(e)),
        };
        let mut kept = Vec::new();
        for chunk in bytes.chunks_exact(ENTRY_BYTES) {
            match AbortedTxn::decode(chunk) {
                Some(e) if e.last_offset < next_offset => kept.push(e),
                _ => break,
            }
        }
        if kept.len() * ENTRY_BYTES != bytes.len() {
            self.rewrite_len(kept.len())?;
        }
        *self.entries.write() = kept;
        Ok(())
    }

    /// Appends an entry (markers come in offset order, so the file stays sorted).
    pub(crate) fn append(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        let created = self.file.is_none() && !self.path.exists();
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                storage::open(OpenOptions::new().create(true).append(true), &self.path)
                    .map_err(LogError::io(&self.path))?,
            ),
        };
        storage::append(file, &self.path, &entry.encode()).map_err(LogError::io(&self.path))?;
        self.unsynced.store(true, Ordering::Relaxed);
        if created {
            let dir = self.path.parent().expect("index has a directory");
            crate::sync_dir(dir)?;
        }
        self.entries.write().push(entry);
        Ok(())
    }

    /// Forgets the entries whose marker is at or after `offset` (they are about to be
    /// replayed from the log).
    pub(crate) fn truncate_from(&mut self, offset: i64) -> Result<(), LogError> {
        let keep = {
            let entries = self.entries.read();
            entries
                .iter()
                .take_while(|e| e.last_offset < offset)
                .count()
        };
        if keep == self.entries.read().len() {
            return Ok(());
        }
        self.rewrite_len(keep)?;
        self.entries.write().truncate(keep);
        Ok(())
    }

    fn rewrite_len(&mut self, entries: usize) -> Result<(), LogError> {
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(LogError::io(&self.path))?;
        storage::set_len(&file, &self.path, (entries * ENTRY_BYTES) as u64)
            .and_then(|_| storage::sync_all(&file, &self.path))
            .map_err(LogError::io(&self.path))
    }

    pub(crate) fn flush(&self) -> Result<(), LogError> {
        if let Some(file) = &self.file {
            if self.unsynced.swap(false, Ordering::Relaxed) {
                if let Err(e) = storage::sync_data(file, &self.path) {
                    self.unsynced.store(true, Ordering::Relaxed);
                    return Err(LogError::io(&self.path)(e));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn delete(&self) {
        let _ = storage::remove_file(&self.path);
    }
}

/// Adds to `out` the entries of one segment that a read of `[fetch_offset, upper_bound)`
/// needs: aborted transactions that end at or after the fetch offset and start below the
/// bound. True once the search can stop (an entry's LSO is at or past the bound, so no later
/// entry can start below it).
pub(crate) fn collect_aborted(
    entries: &[AbortedTxn],
    fetch_offset: i64,
    upper_bound: i64,
    out: &mut Vec<AbortedTxn>,
) -> bool {
    for e in entries {
        if e.last_offset >= fetch_offset && e.first_offset < upper_bound {
            out.push(*e);
        }
        if e.last_stable_offset >= upper_bound {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn survives_a_reload_and_drops_entries_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TxnIndex::new(dir.path(), 0);
        index.append(txn(1, 0, 5, 6)).unwrap();
        index.append(txn(2, 3, 9, 10)).unwrap();
        index.flush().unwrap();
        let mut reloaded = TxnIndex::new(dir.path(), 0);
        reloaded.load(100).unwrap();
        assert_eq!(
            *reloaded.shared().read(),
            vec![txn(1, 0, 5, 6), txn(2, 3, 9, 10)]
        );
        // A log cut back to offset 9 no longer holds the second marker.
        let mut cut = TxnIndex::new(dir.path(), 0);
        cut.load(9).unwrap();
        assert_eq!(*cut.shared().read(), vec![txn(1, 0, 5, 6)]);
        let len = fs::metadata(TxnIndex::path(dir.path(), 0)).unwrap().len();
        assert_eq!(len, ENTRY_BYTES as u64);
    }

    #[test]
    fn truncate_from_keeps_earlier_markers() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = TxnIndex::new(dir.path(), 0);
        for i in 0..4 {
            index
                .append(txn(i, i * 10, i * 10 + 5, i * 10 + 6))
                .unwrap();
        }
        index.truncate_from(25).unwrap();
        assert_eq!(index.shared().read().len(), 2);
        index.append(txn(9, 26, 30, 31)).unwrap();
        let mut reloaded = TxnIndex::new(dir.path(), 0);
        reloaded.load(100).unwrap();
        let pids: Vec<i64> = reloaded
            .shared()
            .read()
            .iter()
            .map(|e| e.producer_id)
            .collect();
        assert_eq!(pids, vec![0, 1, 9]);
    }

    #[test]
    fn collect_takes_overlapping_entries_and_stops_at_the_bound() {
        // Txn 4 was open from offset 9 when txn 3 was aborted, so txn 3's LSO is 9.
        let entries = [
            txn(1, 0, 4, 5),
            txn(2, 2, 12, 8),
            txn(3, 20, 25, 9),
            txn(4, 9, 40, 41),
            txn(5, 50, 55, 56),
        ];
        let mut out = Vec::new();
        // [5, 10): txn 1 ended before 5; txns 2 and 4 overlap; txn 4's LSO 41 stops the search.
        assert!(collect_aborted(&entries, 5, 10, &mut out));
        assert_eq!(out, vec![txn(2, 2, 12, 8), txn(4, 9, 40, 41)]);
        out.clear();
        assert!(!collect_aborted(&entries, 0, 100, &mut out));
        assert_eq!(out.len(), 5);
        // A transaction that starts exactly at the bound is not in the read: left out.
        out.clear();
        collect_aborted(&entries, 45, 50, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }
}
