//! Idempotency-key snapshots: the key index at an offset, written beside the producer snapshot
//! of the same offset (`<offset>.keys`), so a start replays only the log after it.
//!
//! Layout, big-endian: magic `TLYK`, version u16 = 1, CRC-32C u32 of everything after it, map
//! end offset i64, key source (u16 length, UTF-8), latest timestamp i64, stored count u32 and
//! per key (log order): length u32, bytes, offset i64, timestamp i64; then the staged keys:
//! producer count u32, and per producer: id i64, count u32, keys as above.

use std::fs;
use std::path::{Path, PathBuf};

use tally_log::storage;

use crate::idempotency_key::IdempotencyKey;
use crate::key_index::{IdempotencyConfig, KeyIndex, StoredKey};
use crate::snapshot::SnapshotError;
use crate::snapshot_frame::{frame, unframe, BodyReader};

const MAGIC: &[u8; 4] = b"TLYK";
const VERSION: u16 = 1;

pub(crate) fn key_snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.keys"))
}

/// Key snapshot files in `dir`, oldest first.
pub(crate) fn list_key_snapshots(dir: &Path) -> Vec<(i64, PathBuf)> {
    crate::snapshot::list_by_suffix(dir, ".keys")
}

fn put_keys(body: &mut Vec<u8>, keys: &[(IdempotencyKey, StoredKey)]) {
    body.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for (key, s) in keys {
        body.extend_from_slice(&(key.len() as u32).to_be_bytes());
        body.extend_from_slice(key);
        body.extend_from_slice(&s.offset.to_be_bytes());
        body.extend_from_slice(&s.timestamp_ms.to_be_bytes());
    }
}

pub(crate) fn encode_key_index(map_end_offset: i64, index: &KeyIndex) -> Vec<u8> {
    let (stored, staged) = index.entries();
    let mut body = Vec::with_capacity(32 + stored.len() * 40);
    body.extend_from_slice(&map_end_offset.to_be_bytes());
    let source = index.config().source.to_string();
    body.extend_from_slice(&(source.len() as u16).to_be_bytes());
    body.extend_from_slice(source.as_bytes());
    body.extend_from_slice(&index.latest_timestamp_ms().to_be_bytes());
    put_keys(&mut body, &stored);
    body.extend_from_slice(&(staged.len() as u32).to_be_bytes());
    for (pid, keys) in &staged {
        body.extend_from_slice(&pid.to_be_bytes());
        put_keys(&mut body, keys);
    }
    frame(MAGIC, VERSION, &body)
}

/// Writes the snapshot durably (temporary file, fsync, rename, directory fsync).
pub(crate) fn write_key_snapshot(
    dir: &Path,
    map_end_offset: i64,
    index: &KeyIndex,
) -> Result<(), SnapshotError> {
    let bytes = encode_key_index(map_end_offset, index);
    let path = key_snapshot_path(dir, map_end_offset);
    let tmp = dir.join(format!("{map_end_offset:020}.keys.tmp"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotError::Io { path, source }
    };
    {
        let f = storage::create(&tmp).map_err(io(&tmp))?;
        storage::write_all_at(&f, &tmp, &bytes, 0).map_err(io(&tmp))?;
        storage::sync_data(&f, &tmp).map_err(io(&tmp))?;
    }
    storage::rename(&tmp, &path).map_err(io(&path))?;
    storage::sync_dir(dir).map_err(io(dir))?;
    Ok(())
}

fn read_keys(r: &mut BodyReader) -> Option<Vec<(IdempotencyKey, StoredKey)>> {
    let n = r.u32()? as usize;
    let mut out = Vec::with_capacity(n.min(1 << 20));
    for _ in 0..n {
        let len = r.u32()? as usize;
        let key = IdempotencyKey::new(r.bytes(len)?);
        let offset = r.i64()?;
        let timestamp_ms = r.i64()?;
        out.push((
            key,
            StoredKey {
                offset,
                timestamp_ms,
            },
        ));
    }
    Some(out)
}

/// Reads a key snapshot for `config`. `Ok(None)` when it was taken for another key source (the
/// topic's `idempotency.key` changed): the index must then be rebuilt from the log.
pub(crate) fn read_key_snapshot(
    path: &Path,
    config: &IdempotencyConfig,
) -> Result<Option<KeyIndex>, SnapshotError> {
    let bytes = fs::read(path).map_err(|source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |reason: &str| SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let body = unframe(&bytes, MAGIC, VERSION).map_err(|reason| corrupt(&reason))?;
    let mut c = BodyReader::new(body);
    let parse = |c: &mut BodyReader| {
        let _offset = c.i64()?;
        let len = c.u16()? as usize;
        let source = String::from_utf8(c.bytes(len)?.to_vec()).ok()?;
        let latest = c.i64()?;
        let stored = read_keys(c)?;
        let producers = c.u32()? as usize;
        let mut staged = Vec::with_capacity(producers.min(1 << 16));
        for _ in 0..producers {
            let pid = c.i64()?;
            staged.push((pid, read_keys(c)?));
        }
        c.is_done().then_some((source, latest, stored, staged))
    };
    let (source, latest, stored, staged) =
        parse(&mut c).ok_or_else(|| corrupt("truncated or trailing bytes"))?;
    if source != config.source.to_string() {
        return Ok(None);
    }
    Ok(Some(KeyIndex::from_entries(
        config.clone(),
        latest,
        stored,
        staged,
    )))
}
