/// The per-log settings, named after Kafka's topic-level configs (`segment.bytes`,
/// `retention.ms`, ...). The broker resolves broker defaults and topic overrides into this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when the next batch would make the active segment larger.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is older than this.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose newest batch is older; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `flush.messages`: fsync after this many records; `u64::MAX` leaves it to the OS.
    pub flush_interval_messages: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            flush_interval_messages: u64::MAX,
        }
    }
}
