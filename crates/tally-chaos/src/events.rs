//! What the proxy saw of Produce traffic, for people to read (`tally demo`) and tests to check.

/// One partition of a Produce request: the batch header fields that matter for idempotence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducePartition {
    pub topic: String,
    pub partition: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
    /// From the broker's answer; `None` while unanswered.
    pub error_code: Option<i16>,
    pub base_offset: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceOutcome {
    /// The answer went back to the client.
    Delivered,
    /// The broker answered, the proxy dropped the answer and closed the client's connection.
    AnswerDropped,
    /// The connection was reset before the request reached the broker.
    NotForwarded,
    /// No answer yet (or the connection ended first).
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceEvent {
    pub connection: u64,
    pub correlation_id: i32,
    pub partitions: Vec<ProducePartition>,
    pub outcome: ProduceOutcome,
}
