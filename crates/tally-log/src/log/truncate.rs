//! Cutting the log back to an offset: Kafka's `truncateTo`, for a replica whose uncommitted
//! tail a new leader's log replaces. Only bytes above the high watermark are ever cut, and
//! readers (Fetch, ListOffsets) read below it, so they never see a batch disappear.

use super::{sync_dir, Log};
use crate::error::LogError;
use crate::segment::{ReadMode, Segment};

impl Log {
    /// Removes every batch at or after `offset`, which must be the base offset of a batch in
    /// the log (or the log end offset, which removes nothing). The log end offset is `offset`
    /// afterwards, and the cut is on disk when this returns.
    ///
    /// Crash safety: the recovery point moves below the cut first, so a later open trusts no
    /// index past it; later segments are deleted newest first and the segment holding `offset`
    /// is cut last, so a crash part-way leaves a shorter tail of the same log, never a gap
    /// followed by batches that should be gone.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset < self.log_start_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        let (floor_base, position) = {
            let (base, segment) = self
                .segments
                .range(..=offset)
                .next_back()
                .expect("offset is at or above the log start offset");
            match segment.find_batch(offset, ReadMode::Block)? {
                Some((position, header)) if header.base_offset == offset => (*base, position),
                Some((_, header)) => {
                    return Err(LogError::NotABatchBoundary {
                        offset,
                        batch_base_offset: header.base_offset,
                    })
                }
                // In a gap between segments: no batch starts there.
                None => {
                    return Err(LogError::NotABatchBoundary {
                        offset,
                        batch_base_offset: segment.next_offset(),
                    })
                }
            }
        };
        if self.recovery_point > offset {
            self.set_recovery_point(offset)?;
        }
        let doomed: Vec<i64> = self
            .segments
            .range(floor_base + 1..)
            .map(|(b, _)| *b)
            .collect();
        for base in doomed.iter().rev() {
            let segment = self.segments.remove(base).expect("listed above");
            self.publish();
            segment.delete()?;
        }
        let interval = self.config.index_interval_bytes;
        let segment = self.segments.get(&floor_base).expect("floor segment");
        segment.cut_file(position)?;
        // Rebuilt from the bytes that remain: the indexes, the next offset and the max
        // timestamp of the cut segment all come from its batches.
        let (mut rebuilt, _) = Segment::open_scanned(&self.dir, floor_base, false, interval)?;
        // Loading cuts the aborted-transaction index file at the segment's new end.
        rebuilt.load_txn_index()?;
        rebuilt.save_indexes()?;
        self.segments.insert(floor_base, rebuilt);
        self.unflushed_messages = 0;
        self.publish();
        if !doomed.is_empty() {
            sync_dir(&self.dir)?;
        }
        debug_assert_eq!(self.log_end_offset(), offset);
        Ok(())
    }

    /// Deletes every segment and starts the log again, empty, at `offset`: Kafka's
    /// `truncateFullyAndStartAt`, for a replica that is sent a leader's retained log because
    /// its own lacks what the leader has already deleted. The log start and end offsets are
    /// both `offset` afterwards, and the change is on disk when this returns.
    ///
    /// Crash safety: the recovery point moves to the start first; segments go oldest first,
    /// so a crash part-way leaves a suffix of the old log (as retention would), and the caller
    /// (a snapshot install, redone after a crash) starts again from there.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        let first = self.log_start_offset;
        if self.recovery_point > first {
            self.set_recovery_point(first)?;
        }
        let old = std::mem::take(&mut self.segments);
        let mut created = false;
        for (base, segment) in old {
            if base == offset && segment.is_empty() {
                // Already the empty log at `offset` (an install redone after a crash).
                self.segments.insert(base, segment);
                created = true;
                continue;
            }
            segment.delete()?;
        }
        if !created {
            self.segments
                .insert(offset, Segment::create(&self.dir, offset)?);
        }
        self.log_start_offset = offset;
        self.unflushed_messages = 0;
        self.publish();
        sync_dir(&self.dir)?;
        self.set_recovery_point(offset)?;
        Ok(())
    }
}
