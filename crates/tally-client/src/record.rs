use bytes::Bytes;

/// A record header. Kafka allows repeated keys; so does this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Option<Bytes>,
}

/// A record to produce. Without a partition, the key picks one as Kafka's default
/// partitioner does (murmur2); without a key, batches go to one partition at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// Milliseconds since the epoch; now when `None`.
    pub timestamp_ms: Option<i64>,
    /// The record's idempotency key (Tally's topic config `idempotency.key`): the producer
    /// sends it as the record key or as the header the topic names. See
    /// [`ProducerRecord::with_idempotency_key`].
    pub idempotency_key: Option<Bytes>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            partition: None,
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
            timestamp_ms: None,
            idempotency_key: None,
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            key: key.into(),
            value: Some(value.into()),
        });
        self
    }

    /// Sets the record's idempotency key: a Tally broker stores the record only if no record
    /// with this key is stored in the partition within the topic's window. The producer puts
    /// it where the topic's `idempotency.key` says (the record key, or header NAME, read once
    /// per topic with DescribeConfigs); sending to a topic without the config is an error, so
    /// that a missing config is not mistaken for protection.
    pub fn with_idempotency_key(mut self, key: impl Into<Bytes>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Bytes the record adds to a batch, roughly (used to fill batches to `batch_size`).
    pub fn estimated_size(&self) -> usize {
        24 + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|h| 8 + h.key.len() + h.value.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    pub partition: i32,
    /// -1 when the broker answered DUPLICATE_SEQUENCE_NUMBER without an offset (old brokers).
    pub offset: i64,
    /// LogAppendTime if the topic uses it, else the record's own timestamp.
    pub timestamp_ms: i64,
}

/// A record read by the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub producer_id: i64,
}
