use tally_protocol::ResponseError;
use thiserror::Error;

/// Errors of the client. Broker answers carry Kafka's error code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    #[error("no broker reachable at {0}")]
    Unreachable(String),
    #[error("connection to {addr} failed: {reason}")]
    Network { addr: String, reason: String },
    #[error("request to {addr} timed out after {timeout_ms} ms")]
    RequestTimeout { addr: String, timeout_ms: u64 },
    #[error("broker error {0:?} ({code}){1}", code = .0.code())]
    Broker(ResponseError, String),
    #[error("unknown topic '{0}'")]
    UnknownTopic(String),
    #[error("unknown partition {1} of topic '{0}'")]
    UnknownPartition(String, i32),
    #[error("the broker does not support {0}")]
    Unsupported(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the producer is closed")]
    Closed,
}

impl ClientError {
    /// Wraps a non-zero Kafka error code with an optional broker message.
    pub fn broker(code: i16, message: Option<&str>) -> ClientError {
        let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError);
        ClientError::Broker(error, message.map(|m| format!(": {m}")).unwrap_or_default())
    }

    /// Worth retrying on another connection or after a metadata refresh.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Network { .. } | ClientError::RequestTimeout { .. } => true,
            ClientError::Broker(e, _) => e.is_retriable(),
            _ => false,
        }
    }
}

/// Why a transactional operation failed, in the two classes of Java's `TransactionManager`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TransactionError {
    /// The transaction cannot commit (a record was not delivered, a request failed): abort it,
    /// then go on with a new one.
    #[error("the transaction must be aborted: {0}")]
    Abortable(ClientError),
    /// The producer cannot go on (fenced by a newer instance with the same transactional id,
    /// or refused by the coordinator): close it.
    #[error("the transactional producer failed: {0}")]
    Fatal(ClientError),
    /// Called in the wrong state (send outside a transaction, commit without begin, ...).
    #[error("{0}")]
    State(String),
}

impl TransactionError {
    /// Sorts a coordinator's error code: fencing and mapping errors are fatal, the rest
    /// abortable.
    pub fn from_client(e: ClientError) -> TransactionError {
        use ResponseError::*;
        match &e {
            ClientError::Broker(
                ProducerFenced
                | InvalidProducerEpoch
                | InvalidProducerIdMapping
                | TransactionalIdAuthorizationFailed
                | InvalidTxnState
                | TransactionCoordinatorFenced
                | UnsupportedVersion,
                _,
            )
            | ClientError::Unsupported(_)
            | ClientError::Closed => TransactionError::Fatal(e),
            _ => TransactionError::Abortable(e),
        }
    }

    pub fn is_fatal(&self) -> bool {
        matches!(self, TransactionError::Fatal(_))
    }
}

/// Why one record was not delivered.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProduceError {
    /// The broker refused the batch; it was not written.
    #[error("rejected by the broker: {0}")]
    Rejected(ClientError),
    /// `delivery_timeout_ms` passed. If the batch was ever sent, it may have been written
    /// (`possibly_persisted`); the producer never retries it again.
    #[error("delivery timed out (possibly persisted: {possibly_persisted}){}", last_error.as_ref().map(|e| format!(", last error: {e}")).unwrap_or_default())]
    TimedOut {
        possibly_persisted: bool,
        last_error: Option<ClientError>,
    },
    #[error("record of {size} bytes is larger than the producer's max_request_size ({max})")]
    RecordTooLarge { size: usize, max: usize },
    #[error(transparent)]
    Client(ClientError),
}
