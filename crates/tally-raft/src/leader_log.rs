//! The leader's check of each client batch as it enters its own log, in log order.
//!
//! `PartitionLeader` decides a batch against its term's table before proposing it, so a
//! pipelined batch n+1 is judged against batch n before n commits. That decision assumes
//! every earlier proposal reaches the log. openraft does not promise it: a proposal is queued
//! to the Raft core and checked there when its turn comes, and the core refuses a write while
//! the leader's lease has lapsed (`LeaseExpired`) and takes the next one once a quorum has
//! answered again, in the same term. Batch n is then refused, n+1 is appended behind a gap,
//! commits, and the producer is told n+1 is stored; librdkafka takes the acknowledgement of
//! n+1 as proof that n is stored too, and n is lost.
//!
//! So the leader's log store checks each client batch of its own term again as it writes it,
//! against the table of its log as it stands: the committed table at the start of the term,
//! moved on by every batch the store wrote since. Here the order is the log's order, with no
//! queue in between. A batch that is no longer new (its predecessor never reached the log)
//! is written as a refused-batch control entry instead: Raft still gets an entry at that
//! index, every replica stores the same bytes, Fetch never returns them, and the state
//! machine answers the proposal as refused, so the client sends the batch again.

use tally_partition::{AppendDecision, ProducerTable};
use tally_protocol::BatchHeader;

/// What the store writes for a client batch of the leader's term.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// The batch as proposed.
    Write,
    /// A refused-batch control entry in its place, for this reason.
    Refuse(String),
}

/// The leader's producer table for the log it writes in one term.
pub(crate) struct LeaderLog {
    pub term: u64,
    table: ProducerTable,
}

impl LeaderLog {
    /// `table` must be the table of the whole log as it is when the term's first client batch
    /// is proposed: the leader takes it once its state machine has applied its log.
    pub fn new(term: u64, table: ProducerTable) -> LeaderLog {
        LeaderLog { term, table }
    }

    /// Checks a client batch about to be written at the offsets in `header`, and moves the
    /// table on if it is written as proposed.
    pub fn admit(&mut self, header: &BatchHeader) -> Admission {
        if header.is_control() {
            return Admission::Write;
        }
        match self.table.check(header, false) {
            Ok(AppendDecision::Append) => {
                // The same transition the state machine makes when the batch is applied.
                self.table.apply_batch(header, None, header.max_timestamp);
                Admission::Write
            }
            Ok(AppendDecision::Duplicate(original)) => Admission::Refuse(format!(
                "producer {} sequences {}..{} are already in the log at offset {}",
                header.producer_id,
                header.base_sequence,
                header.last_sequence(),
                original.first_offset()
            )),
            Err(e) => Admission::Refuse(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tally_testkit::BatchSpec;

    use super::*;

    fn header(base_offset: i64, first_seq: i32, count: usize) -> BatchHeader {
        let bytes = BatchSpec::new(7, 0, first_seq, count).encode();
        let mut h = BatchHeader::parse(&bytes).unwrap();
        h.base_offset = base_offset;
        h
    }

    #[test]
    fn a_batch_behind_a_gap_is_refused_and_its_predecessor_then_written() {
        let mut log = LeaderLog::new(3, ProducerTable::new(100));
        assert_eq!(log.admit(&header(0, 0, 2)), Admission::Write);
        // Sequences 2..3 never reached the log (the core refused them): 4..5 must not follow.
        assert!(matches!(log.admit(&header(2, 4, 2)), Admission::Refuse(_)));
        assert_eq!(log.admit(&header(3, 2, 2)), Admission::Write);
        assert_eq!(log.admit(&header(5, 4, 2)), Admission::Write);
    }

    #[test]
    fn a_batch_already_in_the_log_is_refused() {
        let mut log = LeaderLog::new(3, ProducerTable::new(100));
        assert_eq!(log.admit(&header(0, 0, 2)), Admission::Write);
        assert!(matches!(log.admit(&header(2, 0, 2)), Admission::Refuse(_)));
    }
}
