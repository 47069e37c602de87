//! Producer-state snapshots: Tally's own file format, which (unlike Kafka's) keeps all five
//! cached batches of every producer, so a retry of any of them is still recognised after a
//! clean restart, not only a retry of the last one.
//!
//! Layout, big-endian: magic `TLYS`, version u16 = 1, CRC-32C u32 of everything after it,
//! map end offset i64, entry count u32, then per entry: producer id i64, epoch i16,
//! coordinator epoch i32, last timestamp i64, last append ms i64, last offset i64, open
//! transaction first offset i64 (-1 = none), batch count u8, and per batch: last sequence i32,
//! last offset i64, offset delta i32, timestamp i64.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use tally_log::storage;
use thiserror::Error;

use crate::batch_metadata::BatchMetadata;
use crate::producer_state_entry::{ProducerStateEntry, NUM_BATCHES_TO_RETAIN};
use crate::snapshot_frame::{frame, unframe, BodyReader};

const MAGIC: &[u8; 4] = b"TLYS";
const VERSION: u16 = 1;
const SUFFIX: &str = "snapshot";

#[derive(Debug, Error)]
pub enum SnapshotError {
    #[error("I/O error on snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Snapshot files in `dir`, oldest first, with the offset each was taken at.
pub fn list_snapshots(dir: &Path) -> Vec<(i64, PathBuf)> {
    list_by_suffix(dir, ".snapshot")
}

/// Files named `<offset><suffix>` in `dir`, oldest first, with their offset (producer and
/// idempotency-key snapshots).
pub(crate) fn list_by_suffix(dir: &Path, suffix: &str) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let offset = name.strip_suffix(suffix)?.parse::<i64>().ok()?;
            Some((offset, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The snapshot bytes (the file format above) of `entries` as the state at `map_end_offset`:
/// what a file holds, and what a replicated partition's Raft snapshot carries.
pub fn encode_producer_state(map_end_offset: i64, entries: &[&ProducerStateEntry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + entries.len() * 64);
    body.extend_from_slice(&map_end_offset.to_be_bytes());
    body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for e in entries {
        body.extend_from_slice(&e.producer_id.to_be_bytes());
        body.extend_from_slice(&e.producer_epoch.to_be_bytes());
        body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        body.extend_from_slice(&e.last_append_ms.to_be_bytes());
        body.extend_from_slice(&e.last_offset.to_be_bytes());
        body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        body.push(e.batch_metadata.len() as u8);
        for b in &e.batch_metadata {
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.last_offset.to_be_bytes());
            body.extend_from_slice(&b.offset_delta.to_be_bytes());
            body.extend_from_slice(&b.timestamp.to_be_bytes());
        }
    }
    frame(MAGIC, VERSION, &body)
}

/// Writes the table's entries as the state at `map_end_offset`, atomically (temporary file,
/// fsync, rename).
pub fn write_snapshot(
    dir: &Path,
    map_end_offset: i64,
    entries: &[&ProducerStateEntry],
) -> Result<PathBuf, SnapshotError> {
    let file_bytes = encode_producer_state(map_end_offset, entries);
    let path = dir.join(format!("{map_end_offset:020}.{SUFFIX}"));
    let tmp = dir.join(format!("{map_end_offset:020}.{SUFFIX}.tmp"));
    {
        let f = storage::create(&tmp).map_err(io(&tmp))?;
        storage::write_all_at(&f, &tmp, &file_bytes, 0).map_err(io(&tmp))?;
        storage::sync_data(&f, &tmp).map_err(io(&tmp))?;
    }
    tally_log::failpoint::hit("snapshot.before_rename");
    storage::rename(&tmp, &path).map_err(io(&path))?;
    tally_log::failpoint::hit("snapshot.after_rename");
    storage::sync_dir(dir).map_err(io(dir))?;
    Ok(path)
}

/// Reads a snapshot: the offset it was taken at and its entries.
pub fn read_snapshot(path: &Path) -> Result<(i64, Vec<ProducerStateEntry>), SnapshotError> {
    let bytes = fs::read(path).map_err(io(path))?;
    decode_producer_state(&bytes).map_err(|reason| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason,
    })
}

/// The offset and entries in snapshot bytes, or why they are not a snapshot.
pub fn decode_producer_state(bytes: &[u8]) -> Result<(i64, Vec<ProducerStateEntry>), String> {
    let body = unframe(bytes, MAGIC, VERSION)?;
    let mut r = BodyReader::new(body);
    let parse = |r: &mut BodyReader| -> Option<(i64, Vec<ProducerStateEntry>)> {
        let offset = r.i64()?;
        let count = r.u32()? as usize;
        let mut entries = Vec::with_capacity(count.min(1 << 20));
        for _ in 0..count {
            let mut e = ProducerStateEntry::empty(r.i64()?);
            e.producer_epoch = r.i16()?;
            e.coordinator_epoch = r.i32()?;
            e.last_timestamp = r.i64()?;
            e.last_append_ms = r.i64()?;
            e.last_offset = r.i64()?;
            e.current_txn_first_offset = Some(r.i64()?).filter(|o| *o >= 0);
            let n = r.u8()? as usize;
            if n > NUM_BATCHES_TO_RETAIN {
                return None;
            }
            let mut batches = VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    last_seq: r.i32()?,
                    last_offset: r.i64()?,
                    offset_delta: r.i32()?,
                    timestamp: r.i64()?,
                });
            }
            e.batch_metadata = batches;
            entries.push(e);
        }
        r.is_done().then_some((offset, entries))
    };
    parse(&mut r).ok_or_else(|| "truncated or trailing bytes".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = ProducerStateEntry::empty(7);
        for i in 0..6 {
            a.add_batch(
                2,
                BatchMetadata {
                    last_seq: i * 10 + 9,
                    last_offset: 100 + i as i64 * 10,
                    offset_delta: 9,
                    timestamp: 5000 + i as i64,
                },
                42,
            );
        }
        a.current_txn_first_offset = Some(3);
        let b = ProducerStateEntry::empty(9);
        let path = write_snapshot(dir.path(), 160, &[&a, &b]).unwrap();
        assert!(path.ends_with("00000000000000000160.snapshot"));
        let (offset, entries) = read_snapshot(&path).unwrap();
        assert_eq!(offset, 160);
        assert_eq!(entries, vec![a, b]);
        assert_eq!(entries[0].batch_metadata.len(), NUM_BATCHES_TO_RETAIN);
        assert_eq!(list_snapshots(dir.path()), vec![(160, path.clone())]);

        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read_snapshot(&path),
            Err(SnapshotError::Corrupt { .. })
        ));
        fs::write(&path, b"TLYS").unwrap();
        assert!(matches!(
            read_snapshot(&path),
            Err(SnapshotError::Corrupt { .. })
        ));
    }
}
