//! Sequential reading of the batches in a segment file, used by recovery (with CRC checks) and
//! by index rebuilds. Reads in large chunks: a segment may hold millions of small batches.

use std::fs::File;
use std::os::unix::fs::FileExt;

use tally_protocol::record_batch::{batch_size_at, LOG_OVERHEAD};
use tally_protocol::{BatchHeader, RECORD_BATCH_OVERHEAD};

const CHUNK_BYTES: usize = 1024 * 1024;

pub(crate) enum ScanStep {
    Batch {
        position: u64,
        header: BatchHeader,
    },
    End,
    /// The bytes from the scanner's position on are not a whole valid batch: a torn or
    /// corrupt tail.
    Invalid {
        reason: String,
    },
}

pub(crate) struct BatchScanner<'a> {
    file: &'a File,
    position: u64,
    end: u64,
    verify_crc: bool,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> BatchScanner<'a> {
    pub fn new(file: &'a File, start: u64, end: u64, verify_crc: bool) -> Self {
        BatchScanner {
            file,
            position: start,
            end,
            verify_crc,
            buf: Vec::new(),
            buf_start: start,
        }
    }

    /// Makes sure `buf` holds `[position, position + n)`. The position only moves forward and
    /// the buffer is always filled from it, so the buffer never starts after the position.
    fn ensure(&mut self, n: usize) -> std::io::Result<()> {
        let have_end = self.buf_start + self.buf.len() as u64;
        if self.position + n as u64 <= have_end {
            return Ok(());
        }
        let want = n.max(CHUNK_BYTES).min((self.end - self.position) as usize);
        self.buf.resize(want, 0);
        self.file.read_exact_at(&mut self.buf, self.position)?;
        self.buf_start = self.position;
        Ok(())
    }

    fn slice(&self, n: usize) -> &[u8] {
        let at = (self.position - self.buf_start) as usize;
        &self.buf[at..at + n]
    }

    pub fn next_batch(&mut self) -> std::io::Result<ScanStep> {
        let position = self.position;
        let remaining = self.end - position;
        if remaining == 0 {
            return Ok(ScanStep::End);
        }
        let invalid = |reason: String| {
            Ok(ScanStep::Invalid {
                reason: format!("at byte {position}: {reason}"),
            })
        };
        if remaining < LOG_OVERHEAD as u64 {
            return invalid(format!(
                "{remaining} trailing bytes, less than a batch header"
            ));
        }
        self.ensure(LOG_OVERHEAD)?;
        let size = batch_size_at(self.slice(LOG_OVERHEAD)).expect("12 bytes");
        if size < RECORD_BATCH_OVERHEAD as i64 {
            return invalid(format!("batch length {size} is smaller than a header"));
        }
        if size as u64 > remaining {
            return invalid(format!(
                "batch of {size} bytes but only {remaining} bytes left"
            ));
        }
        let need = if self.verify_crc {
            size as usize
        } else {
            RECORD_BATCH_OVERHEAD
        };
        self.ensure(need)?;
        let bytes = self.slice(need);
        let header = match BatchHeader::parse(bytes) {
            Ok(h) => h,
            Err(e) => return invalid(e.to_string()),
        };
        if self.verify_crc {
            if let Err(e) = header.verify_crc(bytes) {
                return invalid(e.to_string());
            }
        }
        if header.last_offset_delta < 0 {
            return invalid(format!(
                "negative last offset delta {}",
                header.last_offset_delta
            ));
        }
        self.position += size as u64;
        Ok(ScanStep::Batch { position, header })
    }
}
