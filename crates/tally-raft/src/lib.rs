//! `tally-raft` owns a partition's Raft group on one replica: the types Tally gives openraft,
//! the Raft log store, which is the partition's own segment files (each batch written once per
//! replica, not once to a Raft log and again to segments), and the state machine that commits
//! what the log holds.
//!
//! A Raft entry is one Kafka record batch. A client's batch is stored as it came, its base
//! offset and partition leader epoch set by the store: the offset is the log end offset, the
//! epoch is the Raft term (the Kafka leader epoch). openraft's own entries (blank, membership)
//! are control batches of Tally's own types, which Fetch must not return. Raft indexes are
//! not Kafka offsets: the store keeps the map between them (`raft_index.rs`).
//!
//! It does not decide whether a producer's batch is a duplicate or in sequence: that is
//! `tally-partition`'s, run on the leader before a batch is proposed and again on every
//! replica as it applies (see ARCHITECTURE.md, "Replication"). It does not own the
//! controller. Raft's traffic between nodes goes over TCP (`net/`: one listener per node for
//! all its groups; entries travel as the batches the segments hold) or, in tests and the
//! simulation, through the in-process `LocalRouter`. A node's partition groups share one
//! ping per peer instead of heartbeating each on its own, and one task decides when each
//! starts an election (`group_driver.rs`, `net/liveness.rs`).

mod blocking_io;
mod entry_cache;
mod entry_codec;
mod group_driver;
mod leader_log;
mod local_network;
mod log_store;
mod net;
mod partition_leader;
mod quorum_status;
mod raft_index;
mod raft_meta;
mod replica;
mod retention;
mod seeded_runtime;
mod snapshot_install;
mod snapshot_records;
mod state_machine;
mod type_config;

pub use blocking_io::BlockingIo;
pub use entry_codec::{
    decode_entry, encode_entry, is_raft_entry, is_refused, next_offset, refused_batch,
    without_raft_entries, CONTROL_TYPE_BLANK, CONTROL_TYPE_MEMBERSHIP, CONTROL_TYPE_REFUSED,
};
pub use group_driver::{driven, spawn_group_driver, DrivenGroups};
pub use local_network::{LocalNetworkFactory, LocalRouter, PartitionRaft};
pub use log_store::SegmentLogStore;
pub use net::{
    forward, ForwardHandler, Liveness, NetFuture, PeerAddresses, RaftListener, RaftServer,
    RaftStream, RaftStreamIo, RaftTransport, TcpNetworkFactory, TokioTcp,
};
pub use partition_leader::{PartitionLeader, ProduceAnswer, ProduceError, Produced};
pub use quorum_status::{MemberStatus, QuorumStatus};
pub use replica::{raft_config, RaftTimeouts, Replica, ReplicaConfig};
pub use retention::{apply_retention, RetentionPass};
pub use seeded_runtime::SeededRuntime;
pub use snapshot_records::{PartitionSnapshot, SnapshotRecords, StagedRecords, Stager};
pub use state_machine::{ApplyListener, PartitionStateMachine, SnapshotData};
pub use type_config::{AppliedBatch, Entry, LogId, RaftBatch, StoredMembership, TallyRaft, Vote};
