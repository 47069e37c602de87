use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum LogError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// A `ReadMode::NoWait` read would have had to wait for the disk.
    #[error("the read would wait for the disk")]
    WouldBlock,
    /// A truncation point that falls inside a batch: only whole batches are cut.
    #[error("offset {offset} is not where a batch starts (the nearest batch starts at {batch_base_offset})")]
    NotABatchBoundary { offset: i64, batch_base_offset: i64 },
    #[error("log directory {0} holds a file whose name is not a segment: {1}")]
    BadFileName(PathBuf, String),
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LogError {
        let path = path.into();
        move |source| LogError::Io { path, source }
    }
}
