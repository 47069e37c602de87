/// What the producer table remembers of one appended batch (Kafka's `BatchMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub last_seq: i32,
    pub last_offset: i64,
    /// lastOffset - firstOffset, which is also lastSeq - firstSeq (mod 2^31).
    pub offset_delta: i32,
    /// The batch's max timestamp (LogAppendTime when the topic uses it).
    pub timestamp: i64,
}

impl BatchMetadata {
    pub fn first_seq(&self) -> i32 {
        tally_protocol::sequence::decrement_sequence(self.last_seq, self.offset_delta)
    }

    pub fn first_offset(&self) -> i64 {
        self.last_offset - i64::from(self.offset_delta)
    }
}
