use kafka_protocol::records::Compression;

use crate::config::ClientConfig;
use crate::error::ClientError;

/// Producer settings, named after Kafka's producer configs.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub client: ClientConfig,
    /// Idempotent by default: each batch is written once however often it is retried.
    pub enable_idempotence: bool,
    /// -1 (all), 1 or 0. Idempotence needs -1.
    pub acks: i16,
    /// How long a batch may wait for more records before it is sent.
    pub linger_ms: u64,
    /// A batch is sent once its records add up to this many bytes.
    pub batch_size: usize,
    pub compression: Compression,
    /// Requests in flight per broker; at most 5 with idempotence (the broker remembers 5).
    pub max_in_flight_requests_per_connection: usize,
    /// A record's time from `send` to its final outcome, retries included.
    pub delivery_timeout_ms: u64,
    pub retry_backoff_ms: u64,
    /// The largest record accepted by `send`.
    pub max_request_size: usize,
    /// Bytes of records waiting to be sent before `send` waits.
    pub buffer_memory: usize,
    /// Makes the producer transactional (needs idempotence): `Producer::new` then registers
    /// with the transaction coordinator, fencing older instances with the same id.
    pub transactional_id: Option<String>,
    /// How long a transaction may stay open before the coordinator aborts it.
    pub transaction_timeout_ms: i32,
}

impl ProducerConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ProducerConfig {
            client: ClientConfig::new(bootstrap),
            enable_idempotence: true,
            acks: -1,
            linger_ms: 5,
            batch_size: 16 * 1024,
            compression: Compression::None,
            max_in_flight_requests_per_connection: 5,
            delivery_timeout_ms: 120_000,
            retry_backoff_ms: 100,
            max_request_size: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            transactional_id: None,
            transaction_timeout_ms: 60_000,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        if self.transactional_id.is_some() && !self.enable_idempotence {
            return Err(ClientError::Config(
                "a transactional producer needs idempotence".into(),
            ));
        }
        if self.enable_idempotence {
            if self.acks != -1 {
                return Err(ClientError::Config(
                    "idempotence needs acks=all (-1)".into(),
                ));
            }
            if !(1..=5).contains(&self.max_in_flight_requests_per_connection) {
                return Err(ClientError::Config(
                    "idempotence needs max_in_flight_requests_per_connection between 1 and 5"
                        .into(),
                ));
            }
        }
        if !matches!(self.acks, -1..=1) {
            return Err(ClientError::Config(format!(
                "acks must be -1, 0 or 1, not {}",
                self.acks
            )));
        }
        if self.max_in_flight_requests_per_connection == 0 {
            return Err(ClientError::Config(
                "max_in_flight_requests_per_connection must be at least 1".into(),
            ));
        }
        if self.batch_size == 0
            || self.max_request_size == 0
            || self.buffer_memory < self.max_request_size
        {
            return Err(ClientError::Config(
                "batch_size and max_request_size must be positive, buffer_memory at least max_request_size".into(),
            ));
        }
        Ok(())
    }
}
