//! The types Tally gives openraft.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// A partition's Raft group. One leader per term (`leader_id_std`), so a log id is a term
    /// and an index, and the term is the Kafka leader epoch.
    pub TallyRaft:
        D = RaftBatch,
        R = AppliedBatch,
        NodeId = u64,
        Node = openraft::impls::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = crate::seeded_runtime::SeededRuntime,
);

pub type CommittedLeaderId = openraft::vote::leader_id_std::CommittedLeaderId<u64>;
pub type LogId = openraft::LogId<CommittedLeaderId>;
pub type Vote = <TallyRaft as openraft::RaftTypeConfig>::Vote;
pub type Entry = <TallyRaft as openraft::RaftTypeConfig>::Entry;
pub type Node = openraft::impls::BasicNode;
pub type Membership = openraft::Membership<u64, Node>;
pub type StoredMembership = openraft::StoredMembership<CommittedLeaderId, u64, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<CommittedLeaderId, u64, Node>;

/// A whole Kafka record batch (v2), proposed to the partition's group.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftBatch(pub Bytes);

impl fmt::Debug for RaftBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RaftBatch({} bytes)", self.0.len())
    }
}

impl fmt::Display for RaftBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} bytes", self.0.len())
    }
}

/// Where an applied batch landed: what a Produce answer reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedBatch {
    pub base_offset: i64,
    pub last_offset: i64,
}
