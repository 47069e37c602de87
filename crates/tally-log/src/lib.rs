//! `tally-log` owns one partition's bytes on disk: a directory of segments named by their base
//! offset (`00000000000000000000.log`), a sparse offset index and a time index per segment,
//! rolling by size and time, an aborted-transaction index per segment (entries given by
//! `tally-partition`, which reads markers), retention by time and size (which moves the log start offset),
//! recovery after a crash (every batch past the recovery point is re-read and its CRC checked,
//! and a torn tail is truncated), the fsync policy, and the latency of every fsync the process makes.
//!
//! It stores Kafka RecordBatch v2 bytes exactly as given and reads them back by offset. It knows
//! batch headers (through `tally-protocol`) but nothing about producers, sequences or
//! transactions: deciding whether a batch may be appended belongs to `tally-partition`.

mod config;
mod error;
pub mod failpoint;
mod fsync_stats;
mod index;
mod log;
mod positioned_read;
mod reader;
mod scan;
mod segment;
pub mod storage;
mod txn_index;
mod writeback;

pub use config::LogConfig;
pub use error::LogError;
pub use fsync_stats::{fsync_latency, FsyncLatency};
pub use log::{sync_dir, Log, RecoveryReport, RetentionCut, RetentionOutcome};
pub use reader::{LogReadResult, LogReader};
pub use segment::{ReadMode, Segment, SegmentReader};
pub use txn_index::AbortedTxn;

/// File name of a segment or index: the base offset zero-padded to 20 digits, as Kafka does.
pub fn offset_file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}
