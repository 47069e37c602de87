//! What a replica knows of its group: who leads and in which term, the high watermark, and, on
//! the leader, how far each voter's log reaches and when the leader last heard from it. This
//! is what DescribeQuorum answers and `tally cluster status` shows. Offsets are Kafka offsets
//! (the end of the batch holding a replica's last matched entry), so a replica's lag reads in
//! records, as Kafka users count it.

use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Instant as _, ServerState};

use crate::replica::Replica;

/// One member of the group, as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub node_id: u64,
    /// The offset after the last entry the leader knows this member holds; None when the
    /// leader does not know (it has not heard from it in this term).
    pub log_end_offset: Option<i64>,
    /// How long ago the leader last heard from it (zero for the leader itself).
    pub last_heard: Option<Duration>,
}

/// A replica's view of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumStatus {
    pub leader: Option<u64>,
    /// The Raft term: the Kafka leader epoch.
    pub term: u64,
    /// Whether this replica leads: only a leader knows the others' progress.
    pub is_leader: bool,
    /// The offset below which every record is committed and applied here.
    pub high_watermark: i64,
    /// The offset after the last entry in this replica's log.
    pub log_end_offset: i64,
    pub voters: Vec<MemberStatus>,
    /// Members that receive the log but do not vote (a replica being added).
    pub learners: Vec<MemberStatus>,
}

impl Replica {
    /// This replica's view of its group, from openraft's metrics and its own log.
    pub fn quorum_status(&self) -> QuorumStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let is_leader = m.state == ServerState::Leader;
        let log_end_offset = self.store.log_reader().log_end_offset();
        let member = |node_id: u64| {
            if node_id == self.id {
                return MemberStatus {
                    node_id,
                    log_end_offset: Some(log_end_offset),
                    last_heard: Some(Duration::ZERO),
                };
            }
            let matched = m
                .replication
                .as_ref()
                .filter(|_| is_leader)
                .and_then(|r| r.get(&node_id).cloned());
            let log_end_offset = matched.map(|matched| {
                matched
                    .and_then(|l| self.store.offsets_of(l.index))
                    .map_or(0, |(_, end)| end)
            });
            let last_heard = m
                .heartbeat
                .as_ref()
                .filter(|_| is_leader)
                .and_then(|h| h.get(&node_id).cloned().flatten())
                .map(|t| t.elapsed());
            MemberStatus {
                node_id,
                log_end_offset,
                last_heard,
            }
        };
        let membership = m.membership_config.membership();
        QuorumStatus {
            leader: m.current_leader,
            term: m.current_term,
            is_leader,
            high_watermark: *self.state_machine.high_watermark().borrow(),
            log_end_offset,
            voters: membership.voter_ids().map(member).collect(),
            learners: membership.learner_ids().map(member).collect(),
        }
    }
}
