//! The log of one partition: an ordered map of segments, the log start and end offsets, the
//! recovery point, and the roll, retention and flush rules.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use tally_protocol::BatchHeader;
use tracing::{info, warn};

use crate::config::LogConfig;
use crate::error::LogError;
use crate::reader::{LogReadResult, LogReader};
use crate::segment::{Segment, SegmentReader};
use crate::storage;
use crate::txn_index::AbortedTxn;

const RECOVERY_POINT_FILE: &str = "recovery-point";

/// What opening the log found and did; logged by the broker at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    /// Segments read batch by batch with CRC checks (those at or past the recovery point).
    pub scanned_segments: usize,
    pub scanned_bytes: u64,
    /// Bytes cut off a torn or corrupt tail, and why.
    pub truncated_bytes: u64,
    pub truncation_reason: Option<String>,
    pub log_end_offset: i64,
}

mod truncate;

pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    recovery_point: i64,
    unflushed_messages: u64,
    /// Test seam: make every fsync fail, as a failing disk would.
    fail_flushes: bool,
    /// What readers see; updated whenever the segment map or the log start changes.
    reader: Arc<LogReader>,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering what a crash may have left behind.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(Log, RecoveryReport), LogError> {
        // Durable: a replica's vote and entries are fsynced inside it, and Raft counts on
        // them surviving a power cut.
        storage::create_dir_all_durable(dir).map_err(LogError::io(dir))?;
        let mut bases = Vec::new();
        for entry in fs::read_dir(dir).map_err(LogError::io(dir))? {
            let entry = entry.map_err(LogError::io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = storage::remove_file(&entry.path());
                continue;
            }
            if let Some(stem) = name.strip_suffix(".log") {
                let base = stem
                    .parse::<i64>()
                    .map_err(|_| LogError::BadFileName(dir.to_path_buf(), name.clone()))?;
                bases.push(base);
            }
        }
        bases.sort_unstable();
        remove_orphan_indexes(dir, &bases);
        let recovery_point = read_recovery_point(dir);
        let mut report = RecoveryReport::default();
        let mut segments = BTreeMap::new();
        let interval = config.index_interval_bytes;
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let trusted = matches!(next_base, Some(n) if n <= recovery_point);
            let (mut segment, outcome) = if trusted {
                Segment::open_indexed(dir, base, next_base.expect("trusted has next"), interval)?
            } else if next_base.is_none() && recovery_point > base {
                // The last segment, flushed up to the recovery point (a clean shutdown): read
                // only what follows it.
                let (s, o) = Segment::open_tail(dir, base, recovery_point, interval)?;
                (s, Some(o))
            } else {
                let (s, o) = Segment::open_scanned(dir, base, true, interval)?;
                (s, Some(o))
            };
            let mut cut_here = false;
            if let Some(outcome) = outcome {
                crate::failpoint::hit("log.recovery.after_segment");
                report.scanned_segments += 1;
                report.scanned_bytes += outcome.valid_bytes;
                // A scan cuts bytes exactly when it stops at a batch it cannot keep, and says why.
                if outcome.reason.is_some() {
                    report.truncated_bytes += outcome.truncated_bytes;
                    warn!(
                        dir = %dir.display(),
                        segment = base,
                        truncated_bytes = outcome.truncated_bytes,
                        reason = outcome.reason.as_deref().unwrap_or(""),
                        "truncated a torn or corrupt log tail"
                    );
                    report.truncation_reason = outcome.reason.clone();
                    // Whatever follows a corrupt batch cannot be trusted to be contiguous.
                    for &b in &bases[i + 1..] {
                        let (s, _) = Segment::open_scanned(dir, b, false, interval)?;
                        report.truncated_bytes += s.size();
                        s.delete()?;
                    }
                    cut_here = true;
                }
            }
            segment.load_txn_index()?;
            segments.insert(base, segment);
            if cut_here {
                break;
            }
        }
        if segments.is_empty() {
            segments.insert(0, Segment::create(dir, 0)?);
            sync_dir(dir)?;
        }
        let log_start_offset = *segments.keys().next().expect("one segment");
        let reader = Arc::new(LogReader::new(
            dir.to_path_buf(),
            readers_of(&segments),
            log_start_offset,
        ));
        let mut log = Log {
            reader,
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            recovery_point,
            unflushed_messages: 0,
            fail_flushes: false,
        };
        // The recovery point can never be past what survived recovery.
        log.recovery_point = log.recovery_point.min(log.log_end_offset());
        report.segments = log.segments.len();
        report.log_end_offset = log.log_end_offset();
        Ok((log, report))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The read side, for readers that must not wait for the writer.
    pub fn reader(&self) -> &Arc<LogReader> {
        &self.reader
    }

    fn publish(&self) {
        self.reader
            .publish(readers_of(&self.segments), self.log_start_offset);
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("one segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("one segment")
    }

    /// The offset the next appended batch gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Where the active segment (the one appends go to) begins.
    pub fn active_base_offset(&self) -> i64 {
        self.active().base_offset()
    }

    pub fn size_in_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size()).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// Whether a batch of `batch_bytes` ending at `last_offset`, appended at `now_ms`, must go
    /// into a new segment: the active one is full, old, or could not index the batch's offsets
    /// relative to its base (Kafka's rule: within `i32::MAX`).
    pub fn should_roll(&self, batch_bytes: usize, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        active.size() + batch_bytes as u64 > self.config.segment_bytes
            || last_offset - active.base_offset() > i64::from(i32::MAX)
            || active
                .rolling_timestamp()
                .is_some_and(|t| now_ms - t > self.config.segment_ms)
    }

    /// Starts a new segment at the log end offset. The old one gets its indexes written and is
    /// flushed, and then the recovery point moves to the new base: a crash later re-reads only
    /// the new segment.
    pub fn roll(&mut self) -> Result<i64, LogError> {
        let new_base = self.log_end_offset();
        if self.active().base_offset() == new_base {
            return Ok(new_base);
        }
        {
            let old = self.active();
            old.save_indexes()?;
            old.flush()?;
        }
        crate::failpoint::hit("log.roll.after_flush");
        let segment = Segment::create(&self.dir, new_base)?;
        // In the map before anything else can fail: the file exists now, and a later roll must
        // not try to create it again.
        self.segments.insert(new_base, segment);
        self.publish();
        sync_dir(&self.dir)?;
        crate::failpoint::hit("log.roll.after_new_segment");
        self.set_recovery_point(new_base)?;
        Ok(new_base)
    }

    fn set_recovery_point(&mut self, offset: i64) -> Result<(), LogError> {
        let path = self.dir.join(RECOVERY_POINT_FILE);
        let tmp = self.dir.join("recovery-point.tmp");
        let file = storage::create(&tmp).map_err(LogError::io(&tmp))?;
        storage::write_all_at(&file, &tmp, format!("{offset}\n").as_bytes(), 0)
            .and_then(|_| storage::sync_data(&file, &tmp))
            .map_err(LogError::io(&tmp))?;
        crate::failpoint::hit("log.recovery_point.before_rename");
        storage::rename(&tmp, &path).map_err(LogError::io(&path))?;
        self.recovery_point = offset;
        Ok(())
    }

    /// Makes every later fsync fail (tests of storage failures only).
    #[doc(hidden)]
    pub fn inject_flush_failures(&mut self, on: bool) {
        self.fail_flushes = on;
    }

    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Appends one whole, validated batch whose base offset the caller has already set to the
    /// log end offset, at broker time `now_ms`. Only writes; [`Log::flush_if_due`] applies the
    /// `flush.messages` policy, so the caller can record the batch as written before a flush
    /// (which may fail) is attempted.
    pub fn append(
        &mut self,
        batch: &[u8],
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<(), LogError> {
        self.append_parts(&[batch], header, now_ms)
    }

    /// [`Log::append`] of a batch given as consecutive parts (a patched header and the
    /// client's bytes after it), written without joining them first.
    pub fn append_parts(
        &mut self,
        parts: &[&[u8]],
        header: &BatchHeader,
        now_ms: i64,
    ) -> Result<(), LogError> {
        assert_eq!(
            header.base_offset,
            self.log_end_offset(),
            "a batch must be appended at the log end offset"
        );
        assert_eq!(
            header.size_in_bytes(),
            parts.iter().map(|p| p.len()).sum::<usize>()
        );
        let interval = self.config.index_interval_bytes;
        crate::failpoint::hit("log.append.before_write");
        self.active_mut().append(parts, header, interval, now_ms)?;
        crate::failpoint::hit("log.append.after_write");
        self.unflushed_messages += header.records_count.max(1) as u64;
        Ok(())
    }

    /// fsyncs the active segment if `flush.messages` messages were appended since the last
    /// flush.
    pub fn flush_if_due(&mut self) -> Result<(), LogError> {
        if self.unflushed_messages >= self.config.flush_interval_messages {
            self.flush()?;
        }
        Ok(())
    }

    /// Forces the active segment to disk.
    pub fn flush(&mut self) -> Result<(), LogError> {
        if self.fail_flushes {
            return Err(LogError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("injected fsync failure"),
            });
        }
        self.active().flush()?;
        self.unflushed_messages = 0;
        Ok(())
    }

    /// Flushes everything, saves the active segment's indexes and records the recovery point;
    /// called on clean shutdown, so the next start reads nothing of this log again.
    pub fn close(&mut self) -> Result<(), LogError> {
        self.flush()?;
        self.active().save_indexes()?;
        let end = self.log_end_offset();
        self.set_recovery_point(end)
    }

    /// See [`LogReader::read`].
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<LogReadResult, LogError> {
        self.reader
            .read(offset, max_bytes, max_offset, min_one_batch)
    }

    /// See [`LogReader::for_each_batch_header`].
    pub fn for_each_batch_header(
        &self,
        from_offset: i64,
        f: impl FnMut(&BatchHeader),
    ) -> Result<(), LogError> {
        self.reader.for_each_batch_header(from_offset, f)
    }

    /// Records an aborted transaction in the index of the segment that holds its marker
    /// (`entry.last_offset`, already in the log). Written now, made durable with that
    /// segment's next flush (and at once for an older segment, which is not flushed again).
    pub fn append_aborted_txn(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        let active_base = self.active().base_offset();
        let Some((base, segment)) = self.segments.range_mut(..=entry.last_offset).next_back()
        else {
            return Ok(());
        };
        segment.append_aborted(entry)?;
        if *base != active_base {
            segment.flush()?;
        }
        Ok(())
    }

    /// Forgets the aborted transactions whose marker is at or after `offset`: start-up replay
    /// from `offset` writes them again.
    pub fn truncate_aborted_txns_from(&mut self, offset: i64) -> Result<(), LogError> {
        for segment in self.segments.values_mut() {
            if segment.next_offset() > offset {
                segment.truncate_aborted_from(offset)?;
            }
        }
        Ok(())
    }

    /// Deletes segments beyond `retention.ms` and `retention.bytes` and moves the log start
    /// offset. Never deletes the active segment: when it has expired too, `roll_needed` says
    /// so, and the caller (which snapshots producer state at every roll) rolls and calls again.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome, LogError> {
        let (doomed, roll_needed) = self.retention_selection(now_ms);
        let removed: Vec<Segment> = doomed
            .iter()
            .filter_map(|b| self.segments.remove(b))
            .collect();
        if !doomed.is_empty() {
            self.log_start_offset = *self.segments.keys().next().expect("active remains");
            // Readers stop seeing the segments before their files go.
            self.publish();
            for segment in &removed {
                segment.delete()?;
            }
            info!(dir = %self.dir.display(), deleted = doomed.len(), log_start_offset = self.log_start_offset, "retention deleted segments");
        }
        Ok(RetentionOutcome {
            deleted_segments: doomed,
            roll_needed,
        })
    }

    /// Where retention would move the log start offset now (the base of the first segment it
    /// keeps), without deleting anything, and whether the active segment has expired too:
    /// for a replica, which may delete only what its Raft log no longer needs.
    pub fn retention_cut(&self, now_ms: i64) -> RetentionCut {
        let (doomed, roll_needed) = self.retention_selection(now_ms);
        let new_start = self
            .segments
            .keys()
            .copied()
            .find(|b| !doomed.contains(b))
            .expect("the active segment is never selected");
        RetentionCut {
            new_start,
            roll_needed,
        }
    }

    /// The segments beyond `retention.ms` and `retention.bytes`, oldest first, never the
    /// active one, and whether the active one has expired as well.
    fn retention_selection(&self, now_ms: i64) -> (Vec<i64>, bool) {
        let mut doomed: Vec<i64> = Vec::new();
        if self.config.retention_ms >= 0 {
            for segment in self.segments.values() {
                let newest = if segment.max_timestamp() >= 0 {
                    segment.max_timestamp()
                } else {
                    last_modified_ms(&self.dir, segment.base_offset())
                };
                if segment.is_empty() || now_ms - newest <= self.config.retention_ms {
                    break;
                }
                doomed.push(segment.base_offset());
            }
        }
        if self.config.retention_bytes >= 0 {
            let mut size = self.size_in_bytes();
            // As Kafka: delete a segment only if the log stays at least retention.bytes big.
            for segment in self.segments.values() {
                if segment.is_empty() || size < self.config.retention_bytes as u64 + segment.size()
                {
                    break;
                }
                size -= segment.size();
                if !doomed.contains(&segment.base_offset()) {
                    doomed.push(segment.base_offset());
                }
            }
        }
        let active_base = self.active().base_offset();
        let roll_needed = doomed.contains(&active_base);
        doomed.retain(|b| *b != active_base);
        (doomed, roll_needed)
    }
}

impl Log {
    /// Deletes every segment that ends at or before `offset` (never the active one) and moves
    /// the log start offset to the first remaining segment. For a single writer that has just
    /// rewritten its live state from `offset` on: compaction by rewriting.
    pub fn delete_segments_before(&mut self, offset: i64) -> Result<Vec<i64>, LogError> {
        let active_base = self.active().base_offset();
        let doomed: Vec<i64> = self
            .segments
            .iter()
            .filter(|(base, s)| **base != active_base && s.next_offset() <= offset)
            .map(|(base, _)| *base)
            .collect();
        let removed: Vec<Segment> = doomed
            .iter()
            .filter_map(|b| self.segments.remove(b))
            .collect();
        self.log_start_offset = *self.segments.keys().next().expect("active remains");
        self.publish();
        for segment in &removed {
            segment.delete()?;
        }
        Ok(doomed)
    }
}

/// Where retention would start the log (see [`Log::retention_cut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionCut {
    pub new_start: i64,
    pub roll_needed: bool,
}

/// What one retention pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: Vec<i64>,
    /// The active segment has expired as well: roll, then apply retention again.
    pub roll_needed: bool,
}

/// Index files whose segment is gone: a crash while a segment was deleted (its log file goes
/// first) leaves them behind.
fn remove_orphan_indexes(dir: &Path, bases: &[i64]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        let is_index = matches!(suffix, "index" | "timeindex" | "txnindex");
        if is_index
            && stem
                .parse::<i64>()
                .is_ok_and(|b| bases.binary_search(&b).is_err())
        {
            let _ = storage::remove_file(&entry.path());
        }
    }
}

fn read_recovery_point(dir: &Path) -> i64 {
    fs::read_to_string(dir.join(RECOVERY_POINT_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn last_modified_ms(dir: &Path, base_offset: i64) -> i64 {
    fs::metadata(dir.join(crate::offset_file_name(base_offset, "log")))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

fn readers_of(segments: &BTreeMap<i64, Segment>) -> BTreeMap<i64, SegmentReader> {
    segments
        .iter()
        .map(|(b, s)| (*b, s.reader().clone()))
        .collect()
}

/// Makes a created, renamed or deleted file's directory entry durable.
pub fn sync_dir(dir: &Path) -> Result<(), LogError> {
    storage::sync_dir(dir).map_err(LogError::io(dir))
}
