//! Cluster mode: the broker serves topics whose partitions are Raft groups (tally-raft),
//! with the cluster's metadata in the controller group (tally-controller). It is on when
//! `controller.quorum.voters` is set; the handlers of Produce, Fetch, ListOffsets, Metadata,
//! CreateTopics, DeleteTopics and InitProducerId then answer from here (see `dispatch`).
//!
//! Consumer groups are coordinated by the leaders of the replicated `__consumer_offsets`
//! partitions (`group_partitions`).
//!
//! Not yet in cluster mode (issue 12): transactions, compaction, and changing topic configs
//! after creation (the log settings given at creation apply: `segment.*`, `retention.*`).
//! Also served here: CreatePartitions, DescribeProducers, DescribeQuorum and
//! AlterPartitionReassignments; SCRAM credentials and ACLs are the controller's
//! (`security_sync`).

pub mod admin;
pub mod cluster_config;
pub mod create_partitions;
pub mod describe_producers;
pub mod describe_quorum;
pub mod fetch;
pub mod group_partitions;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod reassign;
pub mod security_sync;
mod topic_ids;

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::BrokerId;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Instant as _, ServerState};
use parking_lot::Mutex;
use tally_controller::{ClusterNode, ControllerCommand, HostedPartition, Outcome, TopicRecord};
use tally_protocol::ResponseError;

use group_partitions::GroupPartitions;
use security_sync::SecuritySync;

/// A follower is in sync while its log is within this many entries of the leader's and it
/// has acknowledged the leader within `replica.lag.time.max.ms` (`ClusterMode::lag_time`).
const ISR_MAX_LAG_ENTRIES: u64 = 1000;
/// How long a request waits for the controller (a topic created, an id block allocated).
pub const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ClusterMode {
    pub node: Arc<ClusterNode>,
    /// Credentials and ACLs, kept by the controller.
    pub security: Arc<SecuritySync>,
    /// The consumer groups this node coordinates.
    pub groups: Arc<GroupPartitions>,
    /// The producer-id block this node hands out from: (next, end).
    producer_ids: Mutex<(i64, i64)>,
    /// One block request at a time.
    allocating: tokio::sync::Mutex<()>,
    /// The ids of the topics this node proposes.
    topic_ids: topic_ids::TopicIds,
    /// `replica.lag.time.max.ms`: how long a follower may stay silent and still be in sync.
    lag_time: Duration,
}

type PartitionMetrics = openraft::RaftMetrics<tally_raft::TallyRaft>;

/// What this node knows of a partition's leadership.
pub struct PartitionView {
    pub hosted: Option<Arc<HostedPartition>>,
    pub leader: Option<u64>,
    /// The Raft term: Kafka's leader epoch.
    pub leader_epoch: i32,
    pub is_leader: bool,
    pub isr: Vec<u64>,
}

impl ClusterMode {
    /// Starts following the controller's credentials and ACLs into `credentials` and `acls`.
    pub fn new(
        node: ClusterNode,
        lag_time: Duration,
        credentials: Arc<crate::security::CredentialStore>,
        acls: Arc<crate::security::AclStore>,
        id_seed: Option<u64>,
        groups: GroupPartitions,
    ) -> ClusterMode {
        let node = Arc::new(node);
        let topic_ids = topic_ids::TopicIds::new(id_seed, node.node_id());
        let security = SecuritySync::new(Arc::clone(&node), credentials, acls);
        security.follow();
        ClusterMode {
            node,
            security,
            groups: Arc::new(groups),
            producer_ids: Mutex::new((0, 0)),
            allocating: tokio::sync::Mutex::new(()),
            topic_ids,
            lag_time,
        }
    }

    /// An id for a topic this node proposes (see `topic_ids.rs`).
    pub(crate) fn new_topic_id(&self) -> uuid::Uuid {
        self.topic_ids.next()
    }

    pub fn node_id(&self) -> u64 {
        self.node.node_id()
    }

    /// Leadership of partition `index` of `topic` (`record` in the metadata), as this node
    /// sees it: from its own replica when it hosts one that knows the leader, else as the
    /// leader last reported to the controller.
    pub fn view(&self, topic: &str, index: u32, record: &TopicRecord) -> PartitionView {
        let replicas = record
            .partitions
            .get(index as usize)
            .map_or(&[][..], Vec::as_slice);
        let recorded = record.leaders.get(index as usize).copied().flatten();
        let hosted = self.node.partition(topic, index);
        let local_leader = hosted
            .as_ref()
            .and_then(|h| h.replica.raft.metrics().borrow_watched().current_leader);
        let (Some(hosted), Some(_)) = (hosted.clone(), local_leader) else {
            return PartitionView {
                hosted,
                leader: recorded.map(|(leader, _)| leader),
                leader_epoch: recorded
                    .map_or(-1, |(_, epoch)| i32::try_from(epoch).unwrap_or(i32::MAX)),
                is_leader: false,
                isr: replicas.to_vec(),
            };
        };
        let m = hosted.replica.raft.metrics().borrow_watched().clone();
        if m.state == ServerState::Leader && !self.hears_a_majority(&hosted, &m) {
            // Cut off from its voters: their nodes elect another leader once this one's has
            // not answered their pings for an election timeout, and an idle group's leader
            // hears of it only when the links heal. Naming itself would send clients back
            // to a node that can take nothing; the leader last recorded, if another, is the
            // better guess, and none makes them ask another node.
            let other = recorded.filter(|(leader, _)| *leader != self.node_id());
            return PartitionView {
                hosted: Some(hosted),
                leader: other.map(|(leader, _)| leader),
                leader_epoch: other.map_or(
                    i32::try_from(m.current_term).unwrap_or(i32::MAX),
                    |(_, e)| i32::try_from(e).unwrap_or(i32::MAX),
                ),
                is_leader: false,
                isr: replicas.to_vec(),
            };
        }
        let is_leader = m.state == ServerState::Leader;
        let isr = match (&m.replication, &m.heartbeat, is_leader) {
            (Some(replication), Some(heartbeat), true) => {
                let last = m.last_log_index.unwrap_or(0);
                let lag_time = self.lag_time;
                replicas
                    .iter()
                    .copied()
                    .filter(|r| {
                        let caught_up = replication.get(r).is_some_and(|matched| {
                            matched.map_or(0, |l| l.index) + ISR_MAX_LAG_ENTRIES >= last
                        });
                        // An idle partition's group sends no heartbeats: its followers'
                        // nodes answering the node's pings counts as hearing from them.
                        let heard = heartbeat
                            .get(r)
                            .and_then(|t| t.as_ref().map(|t| t.elapsed() < lag_time))
                            .unwrap_or(false)
                            || self.node.liveness().heard_within(*r, lag_time);
                        *r == self.node_id() || (caught_up && heard)
                    })
                    .collect()
            }
            _ => replicas.to_vec(),
        };
        PartitionView {
            hosted: Some(hosted),
            leader: m.current_leader,
            leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
            is_leader,
            isr,
        }
    }

    /// Whether a majority of the group's voters (this node included) answered this node's
    /// pings within the election timeout: the followers of a leader that does not hear
    /// them elect another.
    fn hears_a_majority(&self, hosted: &HostedPartition, m: &PartitionMetrics) -> bool {
        let within = Duration::from_millis(hosted.replica.raft.config().election_timeout_max);
        let voters: Vec<u64> = m.membership_config.membership().voter_ids().collect();
        let heard = voters
            .iter()
            .filter(|v| **v == self.node_id() || self.node.liveness().heard_within(**v, within))
            .count();
        heard * 2 > voters.len()
    }

    /// A producer id from this node's block, asking the controller for a new block when it
    /// is used up. Ids are never handed out twice in the cluster (KIP-730).
    pub async fn next_producer_id(&self) -> Result<i64, ResponseError> {
        loop {
            {
                let mut ids = self.producer_ids.lock();
                if ids.0 < ids.1 {
                    ids.0 += 1;
                    return Ok(ids.0 - 1);
                }
            }
            let _one = self.allocating.lock().await;
            let (next, end) = *self.producer_ids.lock();
            if next < end {
                continue;
            }
            let command = ControllerCommand::AllocateProducerIds {
                node_id: self.node_id(),
            };
            match self.node.submit(&command, CONTROLLER_TIMEOUT).await {
                Ok(Outcome::ProducerIds { first, count }) => {
                    *self.producer_ids.lock() = (first, first + count);
                }
                Ok(other) => {
                    tracing::warn!(?other, "the controller gave no producer ids");
                    return Err(ResponseError::CoordinatorLoadInProgress);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the controller for producer ids");
                    return Err(ResponseError::CoordinatorLoadInProgress);
                }
            }
        }
    }
}

pub fn broker_id(node: u64) -> BrokerId {
    BrokerId(i32::try_from(node).unwrap_or(-1))
}

/// FENCED_LEADER_EPOCH for an epoch older than the leader's, UNKNOWN_LEADER_EPOCH for a newer
/// one; -1 means the client does not know it.
pub fn check_leader_epoch(requested: i32, current: i32) -> Option<ResponseError> {
    match requested {
        -1 => None,
        e if e < current => Some(ResponseError::FencedLeaderEpoch),
        e if e > current => Some(ResponseError::UnknownLeaderEpoch),
        _ => None,
    }
}
