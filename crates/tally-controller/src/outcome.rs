//! What applying a command did, as the proposer is told; a refusal maps to Kafka's error code
//! for the request that proposed it.

use serde::{Deserialize, Serialize};
use tally_protocol::ResponseError;
use thiserror::Error;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The cluster's id, whoever proposed it.
    ClusterId {
        cluster_id: String,
    },
    /// The node's broker epoch: the offset of this registration.
    BrokerRegistered {
        epoch: i64,
    },
    /// Each partition's replicas, preferred leader first.
    TopicCreated {
        topic_id: Uuid,
        partitions: Vec<Vec<u64>>,
    },
    TopicDeleted,
    /// The new partitions' replicas.
    PartitionsCreated {
        partitions: Vec<Vec<u64>>,
    },
    PartitionReassigned,
    /// Whether the report was newer than what was recorded (a stale one changes nothing).
    LeaderRecorded {
        changed: bool,
    },
    /// Whether the reported voters differ from the recorded ones.
    VotersRecorded {
        changed: bool,
    },
    /// Ids `first .. first + count` are the node's alone.
    ProducerIds {
        first: i64,
        count: i64,
    },
    /// A change to credentials or ACLs was applied at `offset` of the metadata log (a node
    /// waits until its own replica has applied it before answering), touching `count` users
    /// or ACLs.
    SecurityChanged {
        offset: i64,
        count: usize,
    },
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum Refusal {
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("replication factor {requested} is larger than the {brokers} registered brokers")]
    InvalidReplicationFactor { requested: u16, brokers: usize },
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    #[error("node {0} is not a registered broker")]
    UnknownBroker(u64),
    /// Retriable: the partition is not ready for the change yet.
    #[error("{0}")]
    NotReady(String),
    /// A record in the metadata log that this version cannot read; skipped by every replica.
    #[error("unreadable command: {0}")]
    Unreadable(String),
}

impl Refusal {
    /// The Kafka error code a client is answered with.
    pub fn error_code(&self) -> ResponseError {
        match self {
            Refusal::TopicAlreadyExists(_) => ResponseError::TopicAlreadyExists,
            Refusal::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            Refusal::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            Refusal::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
            Refusal::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            Refusal::UnknownBroker(_) => ResponseError::BrokerNotAvailable,
            Refusal::NotReady(_) => ResponseError::LeaderNotAvailable,
            Refusal::Unreadable(_) => ResponseError::UnknownServerError,
        }
    }
}
