//! The cluster's metadata as the controller's log builds it: registered brokers, topics with
//! their ids and replica assignments, and the producer ids handed out. `apply` is the only
//! way it changes and is a pure function of the state and the command (no clock, no
//! randomness), so every replica of the controller that applies the same log holds the same
//! state and tells a proposer the same outcome.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::assignment::assign_replicas;
use crate::command::ControllerCommand;
use crate::outcome::{Outcome, Refusal};
use crate::security_records::SecurityRecords;

/// Producer ids per block, as Kafka's controller hands them out (KIP-730).
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;
/// Outcomes remembered for proposers, newest first out of the door last.
const OUTCOMES_KEPT: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: u64,
    pub host: String,
    pub port: u16,
    pub raft_addr: String,
    /// The offset of the node's latest registration (KRaft's broker epoch): a restarted node
    /// has a higher one.
    pub epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub topic_id: Uuid,
    /// Each partition's replicas, preferred leader first.
    pub partitions: Vec<Vec<u64>>,
    pub configs: BTreeMap<String, String>,
    /// Each partition's last reported leader and its epoch (Raft term), if any.
    #[serde(default)]
    pub leaders: Vec<Option<(u64, u64)>>,
    /// Each partition's voters as its leader last reported them, if it has.
    #[serde(default)]
    pub voters: Vec<Option<Vec<u64>>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    cluster_id: Option<String>,
    brokers: BTreeMap<u64, BrokerRegistration>,
    topics: BTreeMap<String, TopicRecord>,
    /// The first producer id of the next block.
    next_producer_id: i64,
    /// Partitions ever created: where the next assignment starts, so leaders spread across
    /// topics too.
    partitions_created: u64,
    /// The offset after the last applied command.
    applied_end: i64,
    /// Recent outcomes by the offset of their command.
    outcomes: BTreeMap<i64, Outcome>,
    /// SCRAM credentials and ACLs.
    #[serde(default)]
    security: SecurityRecords,
}

impl ClusterState {
    /// The cluster's id, once a node has named it.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }

    pub fn brokers(&self) -> &BTreeMap<u64, BrokerRegistration> {
        &self.brokers
    }

    pub fn topics(&self) -> &BTreeMap<String, TopicRecord> {
        &self.topics
    }

    pub fn topic(&self, name: &str) -> Option<&TopicRecord> {
        self.topics.get(name)
    }

    pub fn security(&self) -> &SecurityRecords {
        &self.security
    }

    /// The offset after the last command applied: how far this state has read the log.
    pub fn applied_end(&self) -> i64 {
        self.applied_end
    }

    /// The outcome of the command at `offset`, while it is among the recent ones.
    pub fn outcome_at(&self, offset: i64) -> Option<&Outcome> {
        self.outcomes.get(&offset)
    }

    /// Applies the command stored at `offset` (or a record no command could be read from).
    pub fn apply(&mut self, offset: i64, command: Result<&ControllerCommand, &str>) -> Outcome {
        let outcome = match command {
            Ok(command) => self.apply_command(offset, command),
            Err(e) => Outcome::Refused(Refusal::Unreadable(e.to_string())),
        };
        self.applied_end = self.applied_end.max(offset + 1);
        self.outcomes.insert(offset, outcome.clone());
        while self.outcomes.len() > OUTCOMES_KEPT {
            self.outcomes.pop_first();
        }
        outcome
    }

    fn apply_command(&mut self, offset: i64, command: &ControllerCommand) -> Outcome {
        match command {
            ControllerCommand::InitCluster { cluster_id } => {
                let cluster_id = self.cluster_id.get_or_insert_with(|| cluster_id.clone());
                Outcome::ClusterId {
                    cluster_id: cluster_id.clone(),
                }
            }
            ControllerCommand::RegisterBroker {
                node_id,
                host,
                port,
                raft_addr,
            } => {
                let registration = BrokerRegistration {
                    node_id: *node_id,
                    host: host.clone(),
                    port: *port,
                    raft_addr: raft_addr.clone(),
                    epoch: offset,
                };
                self.brokers.insert(*node_id, registration);
                Outcome::BrokerRegistered { epoch: offset }
            }
            ControllerCommand::CreateTopic {
                name,
                topic_id,
                partitions,
                replication_factor,
                configs,
            } => self.create_topic(name, *topic_id, *partitions, *replication_factor, configs),
            ControllerCommand::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Outcome::TopicDeleted,
                None => Outcome::Refused(Refusal::UnknownTopic(name.clone())),
            },
            ControllerCommand::CreatePartitions { name, count } => {
                self.create_partitions(name, *count)
            }
            ControllerCommand::ReassignPartition {
                topic,
                partition,
                replicas,
            } => self.reassign(topic, *partition, replicas),
            ControllerCommand::RecordLeader {
                topic,
                topic_id,
                partition,
                leader,
                epoch,
            } => self.record_leader(topic, *topic_id, *partition, *leader, *epoch),
            ControllerCommand::RecordVoters {
                topic,
                topic_id,
                partition,
                voters,
            } => self.record_voters(topic, *topic_id, *partition, voters),
            ControllerCommand::AlterScramCredentials {
                upsertions,
                deletions,
                only_new_users,
            } => Outcome::SecurityChanged {
                offset,
                count: self
                    .security
                    .alter_scram(upsertions, deletions, *only_new_users),
            },
            ControllerCommand::CreateAcls { acls } => Outcome::SecurityChanged {
                offset,
                count: self.security.create_acls(acls),
            },
            ControllerCommand::DeleteAcls { acls } => Outcome::SecurityChanged {
                offset,
                count: self.security.delete_acls(acls),
            },
            ControllerCommand::AllocateProducerIds { node_id } => {
                if !self.brokers.contains_key(node_id) {
                    return Outcome::Refused(Refusal::UnknownBroker(*node_id));
                }
                let first = self.next_producer_id;
                self.next_producer_id += PRODUCER_ID_BLOCK_SIZE;
                Outcome::ProducerIds {
                    first,
                    count: PRODUCER_ID_BLOCK_SIZE,
                }
            }
        }
    }

    /// Replicas for `count` new partitions from `first_partition`, or why there are none.
    fn assign(
        &mut self,
        first_partition: u32,
        count: u32,
        replication_factor: u16,
    ) -> Result<Vec<Vec<u64>>, Refusal> {
        let brokers: Vec<u64> = self.brokers.keys().copied().collect();
        if replication_factor == 0 || usize::from(replication_factor) > brokers.len() {
            return Err(Refusal::InvalidReplicationFactor {
                requested: replication_factor,
                brokers: brokers.len(),
            });
        }
        let start = self.partitions_created;
        self.partitions_created += u64::from(count);
        Ok(assign_replicas(
            &brokers,
            first_partition,
            count,
            replication_factor,
            start,
        ))
    }

    fn create_topic(
        &mut self,
        name: &str,
        topic_id: Uuid,
        partitions: u32,
        replication_factor: u16,
        configs: &BTreeMap<String, String>,
    ) -> Outcome {
        if self.topics.contains_key(name) {
            return Outcome::Refused(Refusal::TopicAlreadyExists(name.to_string()));
        }
        if partitions == 0 {
            return Outcome::Refused(Refusal::InvalidPartitions(
                "a topic needs at least one partition".into(),
            ));
        }
        let assignment = match self.assign(0, partitions, replication_factor) {
            Ok(a) => a,
            Err(refusal) => return Outcome::Refused(refusal),
        };
        self.topics.insert(
            name.to_string(),
            TopicRecord {
                topic_id,
                leaders: vec![None; assignment.len()],
                voters: vec![None; assignment.len()],
                partitions: assignment.clone(),
                configs: configs.clone(),
            },
        );
        Outcome::TopicCreated {
            topic_id,
            partitions: assignment,
        }
    }

    fn create_partitions(&mut self, name: &str, count: u32) -> Outcome {
        let Some(topic) = self.topics.get(name) else {
            return Outcome::Refused(Refusal::UnknownTopic(name.to_string()));
        };
        let current = topic.partitions.len() as u32;
        if count <= current {
            return Outcome::Refused(Refusal::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the count can only grow"
            )));
        }
        let replication_factor = topic.partitions.first().map_or(1, |r| r.len() as u16);
        match self.assign(current, count - current, replication_factor) {
            Ok(new) => {
                let topic = self.topics.get_mut(name).expect("checked above");
                topic.partitions.extend(new.iter().cloned());
                topic.leaders.resize(topic.partitions.len(), None);
                topic.voters.resize(topic.partitions.len(), None);
                Outcome::PartitionsCreated { partitions: new }
            }
            Err(refusal) => Outcome::Refused(refusal),
        }
    }

    fn record_leader(
        &mut self,
        topic: &str,
        topic_id: Uuid,
        partition: u32,
        leader: u64,
        epoch: u64,
    ) -> Outcome {
        let recorded = self
            .topics
            .get_mut(topic)
            .filter(|t| t.topic_id == topic_id)
            .and_then(|t| {
                t.leaders.resize(t.partitions.len(), None);
                t.leaders.get_mut(partition as usize)
            });
        let Some(recorded) = recorded else {
            return Outcome::Refused(Refusal::UnknownTopic(format!("{topic}-{partition}")));
        };
        // Terms only grow: a report from an older term arrived late.
        let changed = recorded.is_none_or(|(_, e)| epoch > e);
        if changed {
            *recorded = Some((leader, epoch));
        }
        Outcome::LeaderRecorded { changed }
    }

    fn record_voters(
        &mut self,
        topic: &str,
        topic_id: Uuid,
        partition: u32,
        voters: &[u64],
    ) -> Outcome {
        let recorded = self
            .topics
            .get_mut(topic)
            .filter(|t| t.topic_id == topic_id && (partition as usize) < t.partitions.len())
            .map(|t| {
                t.voters.resize(t.partitions.len(), None);
                &mut t.voters[partition as usize]
            });
        let Some(recorded) = recorded else {
            return Outcome::Refused(Refusal::UnknownTopic(format!("{topic}-{partition}")));
        };
        let mut voters = voters.to_vec();
        voters.sort_unstable();
        let changed = recorded.as_ref() != Some(&voters);
        *recorded = Some(voters);
        Outcome::VotersRecorded { changed }
    }

    fn reassign(&mut self, name: &str, partition: u32, replicas: &[u64]) -> Outcome {
        let distinct: BTreeSet<_> = replicas.iter().collect();
        let refusal = if replicas.is_empty() {
            Some("a partition needs at least one replica".to_string())
        } else if distinct.len() != replicas.len() {
            Some(format!("replicas {replicas:?} name a broker twice"))
        } else {
            replicas
                .iter()
                .find(|b| !self.brokers.contains_key(b))
                .map(|b| format!("node {b} is not a registered broker"))
        };
        if let Some(why) = refusal {
            return Outcome::Refused(Refusal::InvalidReplicaAssignment(why));
        }
        let Some(topic) = self
            .topics
            .get_mut(name)
            .filter(|t| (partition as usize) < t.partitions.len())
        else {
            return Outcome::Refused(Refusal::UnknownTopic(format!("{name}-{partition}")));
        };
        // Only a formed group can change its members: before its first leader is reported,
        // its first replica may still be initializing it with the old replicas.
        if topic
            .leaders
            .get(partition as usize)
            .copied()
            .flatten()
            .is_none()
        {
            return Outcome::Refused(Refusal::NotReady(format!(
                "{name}-{partition} has no leader yet"
            )));
        }
        topic.partitions[partition as usize] = replicas.to_vec();
        Outcome::PartitionReassigned
    }
}
