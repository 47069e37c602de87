//! The end of a group of appends on a partition: the flush policy, then the high watermark
//! and last stable offset that follow.

use crate::append_error::AppendError;

use super::Partition;

impl Partition {
    /// Applies the `flush.messages` policy to everything applied so far: with
    /// `flush.messages=1`, one fsync for a whole drained set of appends (group commit). Then
    /// the high watermark moves to the log end, so consumers never see what a failed flush
    /// may lose. A failed fsync takes the partition offline.
    pub fn flush_if_due(&mut self) -> Result<(), AppendError> {
        if let Some(reason) = &self.offline {
            // What was written since the last good fsync may be lost, and a later fsync that
            // succeeds does not say otherwise (the kernel may have dropped the pages the
            // failed one covered): nothing more is acknowledged, and the high watermark stays
            // where the last good fsync left it.
            return Err(AppendError::Offline(reason.clone()));
        }
        if let Err(e) = self.log.flush_if_due() {
            tracing::error!(dir = %self.dir.display(), error = %e, "fsync failed; the partition refuses appends until restart");
            self.offline = Some(e.to_string());
            return Err(e.into());
        }
        self.publish_high_watermark(self.log.log_end_offset());
        Ok(())
    }

    /// Publishes the high watermark and the last stable offset that follows from it.
    pub(super) fn publish_high_watermark(&mut self, high_watermark: i64) {
        self.producers.on_high_watermark(high_watermark);
        let lso = self
            .producers
            .first_unstable_offset()
            .map_or(high_watermark, |o| o.min(high_watermark))
            .max(self.log.log_start_offset().min(high_watermark));
        self.reader.set_high_watermark(high_watermark, lso);
    }
}
