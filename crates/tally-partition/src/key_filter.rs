//! The idempotency-key steps around apply: the filter a new client batch goes through before
//! it is applied (decide side, pure), the keys of a batch already in the log (apply of an
//! unfiltered entry, and replay), and the index opened from its snapshot plus the log after it.

use tally_log::{storage, Log, LogError};
use tally_protocol::{
    parse_marker, BatchHeader, BatchRecords, EndTxnMarker, KeySource, RecordsError,
};
use tracing::warn;

use crate::append_error::{AppendError, OpenError};
use crate::batch_validation::MAX_DECOMPRESSED_BATCH_BYTES;
use crate::entry::Entry;
use crate::idempotency_key::IdempotencyKey;
use crate::key_index::{IdempotencyConfig, KeptKey, KeyClock, KeyIndex};
use crate::key_snapshot::{list_key_snapshots, read_key_snapshot};

/// A client batch after the filter: the bytes to apply when records were dropped (`None`: the
/// batch as received), its header then, and the keys it stores.
#[derive(Debug, Clone)]
pub struct FilteredBatch {
    pub bytes: Option<Vec<u8>>,
    pub header: Option<BatchHeader>,
    pub kept: Vec<KeptKey>,
    /// Records dropped because their key was stored.
    pub dropped: u64,
}

impl FilteredBatch {
    /// The bytes and header to apply: the rebuilt ones, or the originals.
    pub fn batch<'a>(
        &'a self,
        header: &'a BatchHeader,
        bytes: &'a [u8],
    ) -> (&'a BatchHeader, &'a [u8]) {
        match (&self.header, &self.bytes) {
            (Some(h), Some(b)) => (h, b),
            _ => (header, bytes),
        }
    }
}

fn records_error(e: RecordsError) -> AppendError {
    match e {
        RecordsError::Corrupt(m) => AppendError::CorruptMessage(m),
        other => AppendError::InvalidRecord(other.to_string()),
    }
}

/// Decide (pure): drops the records of a checked client batch whose key is stored; rebuilds
/// the batch when any was.
pub fn filter_batch(
    index: &KeyIndex,
    header: &BatchHeader,
    bytes: &[u8],
    now_ms: i64,
    log_start_offset: i64,
) -> Result<FilteredBatch, AppendError> {
    let records = BatchRecords::read(
        header,
        bytes,
        MAX_DECOMPRESSED_BATCH_BYTES,
        &index.config().source,
    )
    .map_err(records_error)?;
    let (keep, kept) = index.filter(header, &records, now_ms, log_start_offset);
    let dropped = keep.iter().filter(|k| !**k).count() as u64;
    if dropped == 0 {
        return Ok(FilteredBatch {
            bytes: None,
            header: None,
            kept,
            dropped,
        });
    }
    let rebuilt = records.rebuild(bytes, |i| keep[i]).map_err(records_error)?;
    let new_header =
        BatchHeader::parse(&rebuilt).map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
    Ok(FilteredBatch {
        bytes: Some(rebuilt),
        header: Some(new_header),
        kept,
        dropped,
    })
}

/// The keys of a data batch as it is in the log (the first copy of each within the batch; a
/// filtered batch holds no repeats).
pub fn keys_in_batch(
    source: &KeySource,
    header: &BatchHeader,
    bytes: &[u8],
    hash: impl Fn(&[u8]) -> u64,
) -> Result<Vec<KeptKey>, RecordsError> {
    if header.is_control() || header.records_count <= 0 {
        return Ok(Vec::new());
    }
    let records = BatchRecords::read(header, bytes, MAX_DECOMPRESSED_BATCH_BYTES, source)?;
    let mut seen: std::collections::HashSet<&[u8], foldhash::fast::RandomState> =
        std::collections::HashSet::with_capacity_and_hasher(records.len(), Default::default());
    let mut keys = Vec::new();
    for (i, r) in records.records.iter().enumerate() {
        if let Some(key) = records.key(i) {
            if seen.insert(key) {
                keys.push(KeptKey {
                    offset_delta: r.offset_delta,
                    key: IdempotencyKey::new(key),
                    hash: hash(key),
                });
            }
        }
    }
    Ok(keys)
}

/// The key index's transition for an applied entry (at the broker's append time): the
/// filter's kept keys, or the keys read from the bytes of an entry that did not go through
/// the filter, as replay reads them.
pub(crate) fn index_entry(
    index: &mut KeyIndex,
    header: &BatchHeader,
    entry: &Entry<'_>,
    marker: Option<&EndTxnMarker>,
) {
    let clock = KeyClock::Appended(entry.append_time_ms);
    match entry.keys {
        Some(filtered) => {
            index.count_dropped(filtered.dropped);
            index.index_batch(header, &filtered.kept, marker, clock);
        }
        None => {
            let keys = keys_in_batch(&index.config().source, header, entry.bytes, |k| {
                index.hash(k)
            })
            .unwrap_or_else(|e| {
                warn!(offset = header.base_offset, error = %e, "records without readable keys");
                Vec::new()
            });
            index.index_batch(header, &keys, marker, clock);
        }
    }
}

/// Opens the key index: the newest readable key snapshot at or below the log end, then the
/// log after it through [`KeyIndex::index_batch`], as apply did. Without a usable snapshot
/// (first start with the config, a changed key source) the whole log is read.
pub fn open_key_index(
    log: &Log,
    dir: &std::path::Path,
    config: &IdempotencyConfig,
    now_ms: i64,
) -> Result<KeyIndex, OpenError> {
    let end = log.log_end_offset();
    let mut found = None;
    for (offset, path) in list_key_snapshots(dir).into_iter().rev() {
        if offset > end {
            let _ = storage::remove_file(&path);
            tally_log::sync_dir(dir)?;
            continue;
        }
        match read_key_snapshot(&path, config) {
            Ok(Some(index)) => {
                found = Some((offset, index));
                break;
            }
            Ok(None) => break,
            Err(e) => {
                warn!(error = %e, "deleting unreadable idempotency-key snapshot");
                let _ = storage::remove_file(&path);
            }
        }
    }
    let (from, index) =
        found.unwrap_or_else(|| (log.log_start_offset(), KeyIndex::new(config.clone())));
    replay_keys(log, index, from.max(log.log_start_offset()), now_ms)
}

/// Moves `index` through every batch of the log from `from`.
pub fn replay_keys(
    log: &Log,
    mut index: KeyIndex,
    from: i64,
    now_ms: i64,
) -> Result<KeyIndex, OpenError> {
    let source = index.config().source.clone();
    let mut failed: Option<LogError> = None;
    log.for_each_batch_header(from, |header| {
        if header.base_offset < from || failed.is_some() {
            return;
        }
        let size = header.size_in_bytes();
        let read = match log.read(header.base_offset, size, header.last_offset() + 1, true) {
            Ok(r) => r,
            Err(e) => return failed = Some(e),
        };
        let bytes = &read.records[..size.min(read.records.len())];
        let marker = if header.is_control() {
            parse_marker(header, bytes).ok()
        } else {
            None
        };
        let keys = keys_in_batch(&source, header, bytes, |k| index.hash(k)).unwrap_or_else(|e| {
            warn!(offset = header.base_offset, error = %e, "records without readable keys");
            Vec::new()
        });
        index.index_batch(
            header,
            &keys,
            marker.as_ref(),
            KeyClock::Replayed { now_ms },
        );
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    index.purge(now_ms, log.log_start_offset());
    Ok(index)
}
