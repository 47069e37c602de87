//! `tally-controller` owns the cluster's metadata and the Raft group that replicates it, as
//! KRaft's controller quorum does for Kafka: which brokers are registered and where they
//! listen, which topics exist with their ids and configs, which replicas each partition has,
//! and which producer-id blocks are handed out (KIP-730), so an id is never given twice, even
//! across a leader change.
//!
//! The metadata log is a partition log like any other (tally-raft's `Replica`, its segment
//! files, its `PartitionLeader`): one command per record batch. The `ClusterState` is a pure
//! function of that log (`ClusterState::apply`), kept on every replica by a listener on the
//! state machine's apply. Each node's `ClusterNode` follows the state: it opens and closes the
//! partition replicas assigned to it, and the leader of a group whose assignment changed
//! moves its replicas (`replica_move.rs`).

mod assignment;
mod cluster_node;
mod cluster_state;
#[cfg(test)]
mod cluster_state_tests;
mod command;
mod controller;
mod hosted_partition;
mod outcome;
mod replica_move;
mod retention_loop;
mod security_records;
mod submit;

pub use assignment::assign_replicas;
pub use cluster_node::{ClusterConfig, ClusterNode};
pub use cluster_state::{BrokerRegistration, ClusterState, TopicRecord, PRODUCER_ID_BLOCK_SIZE};
pub use command::{decode_commands, encode_command, ControllerCommand};
pub use controller::{Controller, ControllerError};
pub use hosted_partition::{HostedPartition, TopicLogConfig};
pub use outcome::{Outcome, Refusal};
pub use retention_loop::RetentionSchedule;
pub use security_records::{ScramRecord, SecurityRecords, UserScram};
pub use submit::{submit, ProposalHandler, CONTROLLER_GROUP};
