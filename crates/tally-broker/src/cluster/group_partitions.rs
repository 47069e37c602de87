//! Consumer groups in cluster mode, coordinated as Kafka coordinates them: a group belongs to
//! partition `abs(hash(group id)) % partitions` of the replicated `__consumer_offsets` topic
//! (Java's `String.hashCode`, so a group lands where Kafka would put it), and the leader of
//! that partition is the group's coordinator.
//!
//! A node that takes a partition's leadership loads the partition's groups from its own
//! replica of the log, once everything committed before its term is applied (the term's blank
//! entry), and coordinates them, writing through the partition's Raft group, until it loses
//! the leadership. Then it drops them, answering the requests parked in them with
//! NOT_COORDINATOR, and the next leader loads them from the log again: what a coordinator
//! acknowledged is on a quorum, so no failover loses a commit.
//!
//! The topic is created on the first FindCoordinator for a group (as KRaft does), with
//! `offsets.topic.num.partitions` partitions and `offsets.topic.replication.factor` replicas,
//! and keeps every record (`retention.ms=-1`): compaction is not in cluster mode yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tally_controller::{ControllerCommand, HostedPartition, Outcome, Refusal};
use tally_protocol::ResponseError;
use tracing::{info, warn};

use super::{ClusterMode, CONTROLLER_TIMEOUT};
use crate::clock::Clock;
use crate::group::store::OFFSETS_TOPIC;
use crate::group::{load_replicated, GroupConfig, GroupCoordinator, GroupLog};
use crate::partition_handle::WriterMode;

/// How often a node checks which `__consumer_offsets` partitions it leads (and ticks the
/// groups' timers).
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// The partition of `__consumer_offsets` that holds `group_id`: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions`.
pub fn partition_for(group_id: &str, partitions: u32) -> u32 {
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    ((hash & 0x7fff_ffff) as u32) % partitions.max(1)
}

/// A partition's groups, loaded by this node for the term it leads the partition in.
struct Loaded {
    term: u64,
    coordinator: Arc<GroupCoordinator>,
}

/// The sizes `__consumer_offsets` is created with.
#[derive(Debug, Clone, Copy)]
pub struct OffsetsTopicConfig {
    pub partitions: u32,
    pub replication_factor: u16,
}

pub struct GroupPartitions {
    loaded: Mutex<HashMap<u32, Loaded>>,
    /// Partitions whose load is under way.
    loading: Mutex<HashSet<u32>>,
    config: GroupConfig,
    topic: OffsetsTopicConfig,
    clock: Arc<dyn Clock>,
    writer_mode: WriterMode,
}

impl GroupPartitions {
    pub fn new(
        config: GroupConfig,
        topic: OffsetsTopicConfig,
        clock: Arc<dyn Clock>,
        writer_mode: WriterMode,
    ) -> GroupPartitions {
        GroupPartitions {
            loaded: Mutex::default(),
            loading: Mutex::default(),
            config,
            topic,
            clock,
            writer_mode,
        }
    }

    /// The coordinator of `group_id` when this node is it: NOT_COORDINATOR when another node
    /// leads the group's partition, COORDINATOR_LOAD_IN_PROGRESS while this node loads it.
    pub fn coordinator(
        &self,
        cluster: &ClusterMode,
        group_id: &str,
    ) -> Result<Arc<GroupCoordinator>, ResponseError> {
        let state = cluster.node.controller().cluster();
        let Some(topic) = state.topic(OFFSETS_TOPIC) else {
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        let index = partition_for(group_id, topic.partitions.len() as u32);
        if let Some(loaded) = self.loaded.lock().get(&index) {
            return Ok(Arc::clone(&loaded.coordinator));
        }
        if cluster.view(OFFSETS_TOPIC, index, topic).is_leader {
            Err(ResponseError::CoordinatorLoadInProgress)
        } else {
            Err(ResponseError::NotCoordinator)
        }
    }

    /// Every coordinator this node runs (ListGroups, metrics, the console).
    pub fn all(&self) -> Vec<Arc<GroupCoordinator>> {
        let loaded = self.loaded.lock();
        let mut all: Vec<_> = loaded.iter().collect();
        all.sort_by_key(|(index, _)| **index);
        all.into_iter()
            .map(|(_, l)| Arc::clone(&l.coordinator))
            .collect()
    }

    /// The node that coordinates `group_id` (the leader of its partition), creating
    /// `__consumer_offsets` first if the cluster has none.
    pub async fn find(&self, cluster: &ClusterMode, group_id: &str) -> Result<u64, ResponseError> {
        self.ensure_topic(cluster).await?;
        let state = cluster.node.controller().cluster();
        let topic = state
            .topic(OFFSETS_TOPIC)
            .ok_or(ResponseError::CoordinatorNotAvailable)?;
        let index = partition_for(group_id, topic.partitions.len() as u32);
        cluster
            .view(OFFSETS_TOPIC, index, topic)
            .leader
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }

    async fn ensure_topic(&self, cluster: &ClusterMode) -> Result<(), ResponseError> {
        if cluster
            .node
            .controller()
            .cluster()
            .topic(OFFSETS_TOPIC)
            .is_some()
        {
            return Ok(());
        }
        let command = ControllerCommand::CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            topic_id: cluster.new_topic_id(),
            partitions: self.topic.partitions,
            replication_factor: self.topic.replication_factor,
            configs: BTreeMap::from([
                ("retention.ms".to_string(), "-1".to_string()),
                ("retention.bytes".to_string(), "-1".to_string()),
            ]),
        };
        match cluster.node.submit(&command, CONTROLLER_TIMEOUT).await {
            Ok(Outcome::TopicCreated { .. })
            | Ok(Outcome::Refused(Refusal::TopicAlreadyExists(_))) => Ok(()),
            Ok(Outcome::Refused(r)) => {
                warn!(refusal = %r, "cannot create {OFFSETS_TOPIC}");
                Err(ResponseError::CoordinatorNotAvailable)
            }
            Ok(other) => {
                warn!(?other, "unexpected answer to creating {OFFSETS_TOPIC}");
                Err(ResponseError::CoordinatorNotAvailable)
            }
            Err(e) => {
                warn!(error = %e, "cannot reach the controller to create {OFFSETS_TOPIC}");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// Follows the leadership of this node's `__consumer_offsets` replicas until the cluster
    /// mode is dropped: loads a partition's groups when this node takes it, drops them when it
    /// loses it, and ticks the groups' timers.
    pub async fn follow(cluster: Weak<ClusterMode>) {
        let mut every = tokio::time::interval(FOLLOW_EVERY);
        loop {
            every.tick().await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            let groups = Arc::clone(&cluster.groups);
            groups.reconcile(&cluster);
            for coordinator in groups.all() {
                coordinator.tick().await;
            }
        }
    }

    fn reconcile(self: &Arc<Self>, cluster: &Arc<ClusterMode>) {
        let state = cluster.node.controller().cluster();
        let Some(topic) = state.topic(OFFSETS_TOPIC) else {
            return;
        };
        for index in 0..topic.partitions.len() as u32 {
            let view = cluster.view(OFFSETS_TOPIC, index, topic);
            let term = view.is_leader.then_some(view.leader_epoch as u64);
            let current = self.loaded.lock().get(&index).map(|l| l.term);
            if current.is_some() && current != term {
                self.unload(index);
            }
            let (Some(_), Some(hosted)) = (term, view.hosted) else {
                continue;
            };
            if current.is_none() && self.loading.lock().insert(index) {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    if let Err(e) = this.load(index, hosted).await {
                        info!(partition = index, error = %e, "did not load the partition's groups");
                    }
                    this.loading.lock().remove(&index);
                });
            }
        }
    }

    /// Reads the partition's groups from this replica's log once it leads with everything
    /// committed applied, and starts coordinating them.
    async fn load(&self, index: u32, hosted: Arc<HostedPartition>) -> Result<(), String> {
        let term = hosted
            .leader
            .take_office()
            .await
            .map_err(|e| e.to_string())?;
        let to = *hosted.replica.state_machine.high_watermark().borrow();
        let reader = Arc::clone(hosted.replica.store.log_reader());
        let contents = match self.writer_mode {
            WriterMode::Thread => tokio::task::spawn_blocking(move || load_replicated(&reader, to))
                .await
                .map_err(|e| e.to_string())??,
            WriterMode::Task => load_replicated(&reader, to)?,
        };
        let (coordinator, store_task) = GroupCoordinator::from_log(
            GroupLog::Replicated(hosted),
            contents,
            self.config.clone(),
            Arc::clone(&self.clock),
        );
        tokio::spawn(store_task);
        let groups = coordinator.list(&[]).len();
        self.loaded.lock().insert(
            index,
            Loaded {
                term,
                coordinator: Arc::new(coordinator),
            },
        );
        info!(
            partition = index,
            term, groups, "coordinating the groups of {OFFSETS_TOPIC}"
        );
        Ok(())
    }

    fn unload(&self, index: u32) {
        if let Some(loaded) = self.loaded.lock().remove(&index) {
            loaded.coordinator.resign();
            info!(
                partition = index,
                term = loaded.term,
                "no longer coordinating the groups of {OFFSETS_TOPIC}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn groups_land_where_kafka_puts_them() {
        // Java's String.hashCode of these: "hello" 99162322, "Hello World" -862545276 (a
        // negative hash is masked, not negated), "😀" 1772899 (two UTF-16 units, not one char).
        assert_eq!(partition_for("hello", 50), (99_162_322 % 50) as u32);
        assert_eq!(
            partition_for("Hello World", 50),
            ((-862_545_276i32 & 0x7fff_ffff) % 50) as u32
        );
        assert_eq!(partition_for("\u{1F600}", 50), 1_772_899 % 50);
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("anything", 1), 0);
    }
}
