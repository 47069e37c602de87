//! What `Partition::apply` takes: one batch and where it came from. Every write to a partition
//! is an entry: a client's batch (checked and decided before it gets here), the broker's own
//! records (`__consumer_offsets`), transaction markers, and later replicated entries.

use tally_protocol::BatchHeader;

/// Where an entry comes from, which says what was already checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOrigin {
    /// A client's batch: it passed `check_client_batch` and `Partition::decide` said Append.
    Client,
    /// Records the broker wrote itself (group metadata, committed offsets). Trusted: never
    /// re-validated as if a client had sent them.
    Broker,
    /// A transaction marker (a control batch) written for the transaction coordinator; it
    /// passed `Partition::decide_marker`.
    Coordinator,
}

/// One batch to apply. `bytes` is the batch as received: its base offset and leader epoch are
/// set by `apply` in a copy of the header, so the client's bytes are never copied or changed.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub origin: EntryOrigin,
    pub header: &'a BatchHeader,
    pub bytes: &'a [u8],
    /// The broker's time for this append: the producer's last-append time, `segment.ms`,
    /// LogAppendTime. Carried in the entry so that apply reads no clock.
    pub append_time_ms: i64,
    /// What the idempotency-key filter decided for a client batch (`bytes` and `header` are
    /// then the filtered batch). `None`: apply reads the keys from the bytes, as replay does.
    pub keys: Option<&'a crate::FilteredBatch>,
}

/// What a client's batch turned out to be before anything was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// New: apply it.
    Append,
    /// A retry of a batch already in the log: answer with this, write nothing.
    Duplicate(crate::AppendOutcome),
}
