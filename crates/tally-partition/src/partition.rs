//! One partition: its log, its producer table, and the append path that joins them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tally_log::storage;
use tally_log::{AbortedTxn, Log, LogConfig, LogError, LogReadResult, RecoveryReport};
use tally_protocol::record_batch::{
    set_base_offset, set_log_append_time_header, set_partition_leader_epoch,
};
use tally_protocol::{
    encode_marker, parse_marker, BatchHeader, EndTxnMarker, TxnResult, RECORD_BATCH_OVERHEAD,
};
use tracing::{info, warn};

use crate::append_error::{AppendError, OpenError};
use crate::batch_validation::validate_client_batch;
use crate::entry::{Decision, Entry, EntryOrigin};
use crate::key_filter::{filter_batch, index_entry, open_key_index, replay_keys, FilteredBatch};
use crate::key_index::{IdempotencyConfig, KeyIndex};
use crate::key_snapshot::{list_key_snapshots, write_key_snapshot};
use crate::partition_reader::PartitionReader;
use crate::producer_table::{AppendDecision, CompletedTxn, ProducerTable};
use crate::snapshot::{list_snapshots, read_snapshot, write_snapshot};

mod commit;

/// Snapshots kept besides the newest: older ones are never needed once a newer one exists.
const SNAPSHOTS_TO_KEEP: usize = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionConfig {
    pub log: LogConfig,
    /// `max.message.bytes`: the largest batch accepted.
    pub max_message_bytes: usize,
    /// `producer.id.expiration.ms`.
    pub producer_id_expiration_ms: i64,
    /// Bound on producers remembered per partition; the least recently appending is evicted.
    pub max_producers: usize,
    /// `message.timestamp.type=LogAppendTime`.
    pub log_append_time: bool,
    pub leader_epoch: i32,
    /// `idempotency.key` and its window; `None` for `none`.
    pub idempotency: Option<IdempotencyConfig>,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            log: LogConfig::default(),
            max_message_bytes: 1_048_588,
            producer_id_expiration_ms: 86_400_000,
            max_producers: 100_000,
            log_append_time: false,
            leader_epoch: 0,
            idempotency: None,
        }
    }
}

/// What opening a partition did: log recovery, snapshot loaded, batches replayed.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub log: RecoveryReport,
    pub snapshot_offset: Option<i64>,
    pub replayed_batches: u64,
    pub producers: usize,
}

/// The answer to an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub base_offset: i64,
    /// The LogAppendTime stamped on the batch, or -1 for CreateTime. For a duplicate, the
    /// cached batch's timestamp, as Kafka answers.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// The batch was a retry of one already in the log and was not appended again.
    pub duplicate: bool,
}

pub struct Partition {
    dir: PathBuf,
    config: PartitionConfig,
    log: Log,
    producers: ProducerTable,
    /// Set when an fsync failed: the page cache may have lost written data, so (as Kafka takes
    /// the log directory offline) appends are refused until a restart recovers from disk.
    offline: Option<String>,
    /// What readers see (log bytes, high watermark), published after every apply.
    reader: Arc<PartitionReader>,
    /// Test seam: make every write fail, as a failing disk would.
    fail_writes: bool,
    /// The idempotency-key index, when the topic has `idempotency.key`.
    keys: Option<KeyIndex>,
}

impl Partition {
    /// Opens the partition in `dir`: recovers the log, loads the newest usable producer
    /// snapshot, and replays the batches after it so the table is exactly what the log says.
    pub fn open(
        dir: &Path,
        config: PartitionConfig,
        now_ms: i64,
    ) -> Result<(Partition, OpenReport), OpenError> {
        let (log, log_report) = Log::open(dir, config.log.clone())?;
        let end = log.log_end_offset();
        let mut report = OpenReport {
            log: log_report,
            ..OpenReport::default()
        };
        let mut producers = ProducerTable::new(config.max_producers);
        for (offset, path) in list_snapshots(dir).into_iter().rev() {
            if offset > end {
                // State from beyond a truncated tail must never be used; the removal is made
                // durable so it cannot come back once the log grows past it again.
                let _ = storage::remove_file(&path);
                tally_log::sync_dir(dir)?;
                continue;
            }
            match read_snapshot(&path) {
                Ok((offset, entries)) => {
                    producers = ProducerTable::from_entries(entries, offset, config.max_producers);
                    report.snapshot_offset = Some(offset);
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "deleting unreadable producer snapshot");
                    let _ = storage::remove_file(&path);
                }
            }
        }
        let from = producers.map_end_offset().max(log.log_start_offset());
        producers.set_map_end_offset(from);
        // The aborted-transaction index past `from` is rebuilt by the replay, as the live run
        // built it.
        let mut log = log;
        log.truncate_aborted_txns_from(from)?;
        let mut replayed = 0u64;
        let mut aborted = Vec::new();
        let mut failed = None;
        // A test control (TALLY_CONTROL=skip-replay) shows what replay is for.
        let skip_replay = tally_log::failpoint::control("skip-replay");
        log.for_each_batch_header(from, |header| {
            if skip_replay || header.base_offset < from || failed.is_some() {
                return;
            }
            let marker = match marker_in_log(&log, header) {
                Ok(m) => m,
                Err(e) => return failed = Some(e),
            };
            let completed = apply_to_state(&mut producers, header, marker.as_ref(), now_ms);
            aborted.extend(aborted_entry(&producers, completed));
            replayed += 1;
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        for entry in aborted {
            log.append_aborted_txn(entry)?;
        }
        producers.set_map_end_offset(end);
        report.replayed_batches = replayed;
        producers.remove_expired(now_ms, config.producer_id_expiration_ms);
        report.producers = producers.len();
        producers.on_high_watermark(end);
        let keys = match &config.idempotency {
            Some(c) => Some(open_key_index(&log, dir, c, now_ms)?),
            None => None,
        };
        let reader = Arc::new(PartitionReader::new(
            Arc::clone(log.reader()),
            log.log_end_offset(),
        ));
        let mut partition = Partition {
            dir: dir.to_path_buf(),
            config,
            log,
            producers,
            offline: None,
            reader,
            fail_writes: false,
            keys,
        };
        partition.publish_high_watermark(end);
        if replayed > 0 {
            partition.take_snapshot()?;
        }
        Ok((partition, report))
    }

    /// Check, decide, apply and flush one client batch in one call: what the broker's writer
    /// does in steps (tests and benchmarks use this).
    pub fn append_client_batch(
        &mut self,
        batch: &[u8],
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        let header = validate_client_batch(batch, self.config.max_message_bytes)?;
        if let Decision::Duplicate(outcome) = self.decide(&header, false)? {
            return Ok(outcome);
        }
        let filtered = self.filter_keys(&header, batch, now_ms)?;
        let (header, bytes) = match &filtered {
            Some(f) => f.batch(&header, batch),
            None => (&header, batch),
        };
        let outcome = self.apply(Entry {
            origin: EntryOrigin::Client,
            header,
            bytes,
            append_time_ms: now_ms,
            keys: filtered.as_ref(),
        })?;
        self.flush_if_due()?;
        Ok(outcome)
    }

    /// Decide (leader side, pure): is this checked client batch new, a retry of one of its
    /// producer's last five batches, or refused (gap, stale epoch)? The writer decides each
    /// batch just before applying it, after every batch queued before it was applied, so a
    /// pipelined batch n+1 is judged against batch n. `txn_verified`: the transaction
    /// coordinator has this partition in the producer's transaction (see
    /// [`ProducerTable::check`]).
    pub fn decide(
        &self,
        header: &BatchHeader,
        txn_verified: bool,
    ) -> Result<Decision, AppendError> {
        if let Some(reason) = &self.offline {
            return Err(AppendError::Offline(reason.clone()));
        }
        Ok(match self.producers.check(header, txn_verified)? {
            AppendDecision::Duplicate(original) => Decision::Duplicate(AppendOutcome {
                base_offset: original.first_offset(),
                log_append_time_ms: original.timestamp,
                log_start_offset: self.log.log_start_offset(),
                duplicate: true,
            }),
            AppendDecision::Append => Decision::Append,
        })
    }

    /// Decide, second part (pure), for a new client batch of a topic with `idempotency.key`:
    /// the records whose key is stored are dropped, and the batch rebuilt without them (same
    /// header, offsets and sequences; see `BatchRecords::rebuild`). `None` when the topic has
    /// no key index. Apply the returned batch with the result in [`Entry::keys`].
    pub fn filter_keys(
        &self,
        header: &BatchHeader,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<Option<FilteredBatch>, AppendError> {
        let Some(index) = &self.keys else {
            return Ok(None);
        };
        filter_batch(index, header, bytes, now_ms, self.log.log_start_offset()).map(Some)
    }

    /// Decide for a transaction marker: refused from an older producer epoch or an older
    /// coordinator. Pure.
    pub fn decide_marker(&self, marker: &EndTxnMarker) -> Result<(), AppendError> {
        if let Some(reason) = &self.offline {
            return Err(AppendError::Offline(reason.clone()));
        }
        self.producers.check_marker(marker)
    }

    /// Decides and applies a transaction marker (not flushed, like [`Partition::apply`]).
    pub fn write_marker(
        &mut self,
        marker: &EndTxnMarker,
        now_ms: i64,
    ) -> Result<AppendOutcome, AppendError> {
        self.decide_marker(marker)?;
        let batch = encode_marker(marker, now_ms);
        let header = BatchHeader::parse(&batch).expect("an encoded marker parses");
        self.apply(Entry {
            origin: EntryOrigin::Coordinator,
            header: &header,
            bytes: &batch,
            append_time_ms: now_ms,
            keys: None,
        })
    }

    /// Apply: the one way bytes enter the partition. Assigns the offset (the log end), stamps
    /// the leader epoch (and LogAppendTime) into a copy of the header, rolls when due, writes,
    /// then moves the producer table through [`apply_to_state`], the same function start-up
    /// replay uses. Does not flush: the writer calls [`Partition::flush_if_due`] once for all
    /// it applied in one go (group commit) before anything is acknowledged.
    pub fn apply(&mut self, entry: Entry<'_>) -> Result<AppendOutcome, AppendError> {
        if let Some(reason) = &self.offline {
            return Err(AppendError::Offline(reason.clone()));
        }
        let bytes = entry.bytes;
        let mut head = [0u8; RECORD_BATCH_OVERHEAD];
        head.copy_from_slice(&bytes[..RECORD_BATCH_OVERHEAD]);
        let base_offset = self.log.log_end_offset();
        set_base_offset(&mut head, base_offset);
        set_partition_leader_epoch(&mut head, self.config.leader_epoch);
        let mut log_append_time_ms = -1;
        if self.config.log_append_time && entry.origin == EntryOrigin::Client {
            set_log_append_time_header(
                &mut head,
                &bytes[RECORD_BATCH_OVERHEAD..],
                entry.append_time_ms,
            );
            log_append_time_ms = entry.append_time_ms;
        }
        let header = BatchHeader::parse(&head).expect("a checked batch header parses");
        debug_assert_eq!(header.size_in_bytes(), bytes.len());
        if self
            .log
            .should_roll(bytes.len(), header.last_offset(), entry.append_time_ms)
        {
            // A roll that fails half-way (its fsyncs, the new file) leaves what only recovery
            // sorts out, and the producer's next batch must not be judged against a table
            // that lacks this one: offline, as Kafka takes the log directory offline.
            if let Err(e) = self.roll() {
                tracing::error!(dir = %self.dir.display(), error = %e, "a segment roll failed; the partition refuses appends until restart");
                self.offline = Some(e.to_string());
                return Err(e);
            }
        }
        if self.fail_writes {
            return Err(AppendError::Storage(LogError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("injected write failure"),
            }));
        }
        // A failed write leaves nothing behind (the segment is cut back) and changes no state.
        self.log.append_parts(
            &[&head, &bytes[RECORD_BATCH_OVERHEAD..]],
            &header,
            entry.append_time_ms,
        )?;
        // Written: the table must know it now, whatever happens to the flush, or a retry of
        // this batch would be appended again.
        let marker = if header.is_control() {
            parse_marker(&header, bytes).ok()
        } else {
            None
        };
        let completed = apply_to_state(
            &mut self.producers,
            &header,
            marker.as_ref(),
            entry.append_time_ms,
        );
        if let Some(index) = &mut self.keys {
            index_entry(index, &header, &entry, marker.as_ref());
        }
        if let Some(aborted) = aborted_entry(&self.producers, completed) {
            if let Err(e) = self.log.append_aborted_txn(aborted) {
                // The marker is in the log but its index entry is not: refuse appends until a
                // restart rebuilds the index by replay.
                self.offline = Some(e.to_string());
                return Err(e.into());
            }
        }
        Ok(AppendOutcome {
            base_offset,
            log_append_time_ms,
            log_start_offset: self.log.log_start_offset(),
            duplicate: false,
        })
    }

    /// Snapshot the producer table at the log end, then start a new segment: after a crash,
    /// only the new segment needs replaying.
    fn roll(&mut self) -> Result<(), AppendError> {
        self.take_snapshot()?;
        tally_log::failpoint::hit("partition.roll.after_snapshot");
        self.log.roll()?;
        Ok(())
    }

    /// Writes the producer table at the log end. The log is flushed first: a durable
    /// snapshot tells the next start not to replay what precedes it, so the log data and the
    /// aborted-transaction index entries below it must be durable too. (A power cut after a
    /// start-up replay once lost the replayed index entries while the snapshot that skips
    /// them survived: aborted records became visible to read_committed.)
    fn take_snapshot(&mut self) -> Result<(), OpenError> {
        let offset = self.log.log_end_offset();
        assert_eq!(
            self.producers.map_end_offset(),
            offset,
            "producer state must reflect exactly the log when snapshotted"
        );
        self.log.flush()?;
        write_snapshot(&self.dir, offset, &self.producers.entries())?;
        if let Some(index) = &self.keys {
            write_key_snapshot(&self.dir, offset, index)?;
        }
        self.prune_snapshots();
        Ok(())
    }

    fn prune_snapshots(&self) {
        let snapshots = list_snapshots(&self.dir);
        let keep_from = snapshots.len().saturating_sub(SNAPSHOTS_TO_KEEP);
        for (_, path) in &snapshots[..keep_from] {
            let _ = storage::remove_file(path);
        }
        let keys = list_key_snapshots(&self.dir);
        let keep_from = keys.len().saturating_sub(SNAPSHOTS_TO_KEEP);
        for (_, path) in &keys[..keep_from] {
            let _ = storage::remove_file(path);
        }
    }

    /// The read side, shared with readers that must not wait for the writer.
    pub fn reader(&self) -> &Arc<PartitionReader> {
        &self.reader
    }

    /// Reads whole batches from `offset` up to the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<LogReadResult, LogError> {
        self.reader.read(offset, max_bytes, min_one_batch)
    }

    /// Applies `retention.ms` / `retention.bytes`. Producer state is kept even when all of a
    /// producer's batches are deleted (Kafka since 2.5, KIP-360); only expiry forgets it.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize, AppendError> {
        let mut outcome = self.log.apply_retention(now_ms)?;
        self.publish_high_watermark(self.log.log_end_offset());
        if outcome.roll_needed {
            self.roll()?;
            let again = self.log.apply_retention(now_ms)?;
            outcome.deleted_segments.extend(again.deleted_segments);
        }
        if let Some(index) = &mut self.keys {
            // Keys go with their segments.
            index.purge(now_ms, self.log.log_start_offset());
        }
        if !outcome.deleted_segments.is_empty() {
            info!(dir = %self.dir.display(), log_start_offset = self.log.log_start_offset(), "log start offset moved");
        }
        Ok(outcome.deleted_segments.len())
    }

    /// Rolls to a new segment now (snapshotting producer state); returns its base offset.
    pub fn start_new_segment(&mut self) -> Result<i64, AppendError> {
        self.roll()?;
        Ok(self.log.log_end_offset())
    }

    /// Drops the segments that end at or before `offset` (see `Log::delete_segments_before`).
    pub fn delete_segments_before(&mut self, offset: i64) -> Result<usize, AppendError> {
        Ok(self.log.delete_segments_before(offset)?.len())
    }

    /// Forgets producers idle for `producer.id.expiration.ms`.
    pub fn remove_expired_producers(&mut self, now_ms: i64) -> usize {
        self.producers
            .remove_expired(now_ms, self.config.producer_id_expiration_ms)
    }

    /// Clean shutdown: flush, snapshot at the log end, record the recovery point.
    pub fn close(&mut self) -> Result<(), AppendError> {
        self.take_snapshot()?;
        self.log.close()?;
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), LogError> {
        self.log.flush()
    }

    /// Single replica: everything applied and through the flush policy is committed.
    pub fn high_watermark(&self) -> i64 {
        self.reader.high_watermark()
    }

    /// See [`PartitionReader::last_stable_offset`].
    pub fn last_stable_offset(&self) -> i64 {
        self.reader.last_stable_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    pub fn producers(&self) -> &ProducerTable {
        &self.producers
    }

    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes every later fsync fail (tests of storage failures only).
    #[doc(hidden)]
    pub fn inject_flush_failures(&mut self, on: bool) {
        self.log.inject_flush_failures(on);
    }

    /// Makes every later write fail before it reaches the file (tests of storage failures).
    #[doc(hidden)]
    pub fn inject_write_failures(&mut self, on: bool) {
        self.fail_writes = on;
    }

    /// The idempotency-key index, when the topic has one.
    pub fn key_index(&self) -> Option<&KeyIndex> {
        self.keys.as_ref()
    }

    /// A changed `idempotency.key` (or window) rebuilds the key index from the whole log, so it
    /// says what the log holds under the new setting.
    pub fn set_config(&mut self, config: PartitionConfig, now_ms: i64) -> Result<(), AppendError> {
        self.log.set_config(config.log.clone());
        if config.idempotency != self.config.idempotency {
            let start = self.log.log_start_offset();
            self.keys = match &config.idempotency {
                Some(c) => Some(replay_keys(
                    &self.log,
                    KeyIndex::new(c.clone()),
                    start,
                    now_ms,
                )?),
                None => None,
            };
        }
        self.config = config;
        Ok(())
    }
}

/// The producer table's one state transition for a batch in the log, shared by apply and by
/// start-up replay: so the table (and the aborted-transaction index built from what it
/// returns) after recovery is the table before the crash.
fn apply_to_state(
    producers: &mut ProducerTable,
    header: &BatchHeader,
    marker: Option<&EndTxnMarker>,
    append_time_ms: i64,
) -> Option<CompletedTxn> {
    producers.apply_batch(header, marker, append_time_ms)
}

/// The index entry for a transaction a marker aborted.
fn aborted_entry(producers: &ProducerTable, completed: Option<CompletedTxn>) -> Option<AbortedTxn> {
    let c = completed.filter(|c| c.result == TxnResult::Abort)?;
    Some(AbortedTxn {
        producer_id: c.producer_id,
        first_offset: c.first_offset,
        last_offset: c.last_offset,
        last_stable_offset: producers.last_stable_offset_after(&c),
    })
}

/// The marker in a control batch of the log (read back: markers are small and rare), or
/// `None` for a data batch or a control record of a type nobody knows.
fn marker_in_log(log: &Log, header: &BatchHeader) -> Result<Option<EndTxnMarker>, LogError> {
    if !header.is_control() {
        return Ok(None);
    }
    let size = header.size_in_bytes();
    let read = log.read(header.base_offset, size, header.last_offset() + 1, true)?;
    Ok(parse_marker(header, &read.records[..size.min(read.records.len())]).ok())
}
