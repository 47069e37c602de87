//! What the controller's log holds: one command per record batch, the record's value its
//! JSON. The batches are ordinary data batches with no producer (the metadata log is written
//! only by the controller's leader, never retried as a producer would), so they are stored,
//! replicated and applied exactly as a partition's batches are.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordEncodeOptions, TimestampType,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::security_records::ScramRecord;

/// A change to the cluster's metadata. The outcome is a pure function of the state it is
/// applied to, so every replica of the controller computes the same (`ClusterState::apply`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// Names the cluster: the first of these to be applied wins, and every node reports its
    /// id from then on (each node proposes the id of its own data directory at start).
    InitCluster {
        cluster_id: String,
    },
    /// A node announces where it serves Kafka clients and Raft peers (KRaft's
    /// BrokerRegistration). A node registers again on every start.
    RegisterBroker {
        node_id: u64,
        host: String,
        port: u16,
        raft_addr: String,
    },
    /// The proposer picks the topic id, so every replica stores the same one; the
    /// replicas are assigned when the command is applied, from the brokers registered then.
    CreateTopic {
        name: String,
        topic_id: Uuid,
        partitions: u32,
        replication_factor: u16,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Grows `name` to `count` partitions, with the replication factor of its first.
    CreatePartitions {
        name: String,
        count: u32,
    },
    /// The replicas `partition` of `topic` should have, preferred leader first. The group's
    /// leader then adds the new ones as learners, and once they have caught up makes the set
    /// its voters (a joint-consensus membership change); a replica left out is removed from
    /// its node once the leader has reported the new voters (`RecordVoters`).
    ReassignPartition {
        topic: String,
        partition: u32,
        replicas: Vec<u64>,
    },
    /// A block of producer ids for `node_id` to hand out (KIP-730's AllocateProducerIds).
    AllocateProducerIds {
        node_id: u64,
    },
    /// `leader` leads `topic`-`partition` in Raft term `epoch` (KRaft's PartitionChangeRecord),
    /// so nodes that host no replica of it can name its leader in Metadata.
    RecordLeader {
        topic: String,
        topic_id: Uuid,
        partition: u32,
        leader: u64,
        epoch: u64,
    },
    /// SCRAM credentials set and removed (AlterUserScramCredentials), as one change:
    /// `deletions` are (user, mechanism). With `only_new_users`, users who already have a
    /// credential keep it (a node's `sasl.bootstrap.users`, proposed at every start).
    AlterScramCredentials {
        upsertions: Vec<(String, ScramRecord)>,
        deletions: Vec<(String, String)>,
        only_new_users: bool,
    },
    /// ACLs added (CreateAcls), each its binding as the broker's JSON.
    CreateAcls {
        acls: Vec<String>,
    },
    /// ACLs removed (DeleteAcls): the bindings the request's filters matched.
    DeleteAcls {
        acls: Vec<String>,
    },
    /// The voters of `topic`-`partition`'s group, as its leader's committed membership names
    /// them, reported when they differ from the recorded ones.
    RecordVoters {
        topic: String,
        topic_id: Uuid,
        partition: u32,
        voters: Vec<u64>,
    },
}

/// The record batch that carries `command`.
pub fn encode_command(command: &ControllerCommand, timestamp_ms: i64) -> Bytes {
    let value = serde_json::to_vec(command).expect("a command serializes");
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: None,
        value: Some(Bytes::from(value)),
        headers: IndexMap::new(),
        delete_horizon: false,
    };
    let mut buf = BytesMut::new();
    kafka_protocol::records::RecordBatchEncoder::encode(
        &mut buf,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("a command's batch encodes");
    buf.freeze()
}

/// The commands in a stored batch, with their offsets. A record that is not a command (a
/// later version's, or damage) is returned as an error in its place, so every replica skips
/// the same records.
pub fn decode_commands(batch: &[u8]) -> Vec<(i64, Result<ControllerCommand, String>)> {
    let mut bytes = Bytes::copy_from_slice(batch);
    let set = match RecordBatchDecoder::decode(&mut bytes) {
        Ok(set) => set,
        Err(e) => return vec![(-1, Err(format!("unreadable batch: {e}")))],
    };
    set.records
        .into_iter()
        .map(|r| {
            let command = match &r.value {
                Some(v) => serde_json::from_slice(v).map_err(|e| e.to_string()),
                None => Err("a record without a value".to_string()),
            };
            (r.offset, command)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_comes_back_from_its_batch() {
        let command = ControllerCommand::CreateTopic {
            name: "orders".into(),
            topic_id: Uuid::from_u128(7),
            partitions: 6,
            replication_factor: 3,
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        };
        let batch = encode_command(&command, 5);
        let decoded = decode_commands(&batch);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].1.as_ref().unwrap(), &command);
    }

    #[test]
    fn a_record_that_is_not_a_command_is_an_error_in_its_place() {
        let mut batch = encode_command(&ControllerCommand::DeleteTopic { name: "x".into() }, 0);
        assert!(decode_commands(&batch)[0].1.is_ok());
        // Damage the JSON: the batch still decodes, the record does not.
        let mut raw = batch.to_vec();
        let at = raw.iter().position(|&b| b == b'{').unwrap();
        raw[at] = b'[';
        batch = Bytes::from(raw);
        let decoded = decode_commands(&batch);
        assert_eq!(decoded.len(), 1);
        assert!(decoded[0].1.is_err());
    }
}
