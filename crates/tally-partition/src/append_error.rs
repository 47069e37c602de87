use tally_log::LogError;
use tally_protocol::ResponseError;
use thiserror::Error;

/// Why a produced batch was not appended. [`AppendError::error_code`] is the one place where
/// these outcomes become Kafka error codes.
#[derive(Debug, Error)]
pub enum AppendError {
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    #[error("record batch of {size} bytes is larger than max.message.bytes ({max})")]
    MessageTooLarge { size: usize, max: usize },
    #[error("producer {producer_id}: epoch {batch_epoch} is older than the current epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_id: i64,
        batch_epoch: i16,
        current_epoch: i16,
    },
    #[error("producer {producer_id} epoch {epoch}: sequence {first_seq} is out of order, expected {expected_seq}")]
    OutOfOrderSequence {
        producer_id: i64,
        epoch: i16,
        first_seq: i32,
        expected_seq: i32,
    },
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    #[error("producer {producer_id}: marker from coordinator epoch {coordinator_epoch}, older than {current}")]
    TransactionCoordinatorFenced {
        producer_id: i64,
        coordinator_epoch: i32,
        current: i32,
    },
    #[error("storage error: {0}")]
    Storage(#[from] LogError),
    #[error("storage error: {0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    #[error("the partition is offline after a storage failure ({0}); restart the broker")]
    Offline(String),
    /// A replicated partition's write that this node could not commit: it does not lead the
    /// partition (any more).
    #[error("not the partition's leader: {0}")]
    NotLeader(String),
}

impl AppendError {
    pub fn error_code(&self) -> ResponseError {
        match self {
            AppendError::InvalidRecord(_) => ResponseError::InvalidRecord,
            AppendError::CorruptMessage(_) => ResponseError::CorruptMessage,
            AppendError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
            AppendError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            AppendError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
            // Also what Kafka answers for a transactional batch it cannot verify (KIP-890).
            AppendError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
            AppendError::TransactionCoordinatorFenced { .. } => {
                ResponseError::TransactionCoordinatorFenced
            }
            AppendError::Storage(_) | AppendError::Snapshot(_) | AppendError::Offline(_) => {
                ResponseError::KafkaStorageError
            }
            AppendError::NotLeader(_) => ResponseError::NotLeaderOrFollower,
        }
    }
}

/// Why a partition could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
}

impl From<OpenError> for AppendError {
    fn from(e: OpenError) -> AppendError {
        match e {
            OpenError::Log(e) => e.into(),
            OpenError::Snapshot(e) => e.into(),
        }
    }
}
