//! One node's replica of the controller group, and the way commands reach its log.
//!
//! The controller is a Raft group like any partition's (tally-raft's `Replica`): its log is
//! a segment log in its own directory, written once per replica, and its leader proposes
//! through the same `PartitionLeader` a partition uses. What it adds is a listener on the
//! state machine's apply that folds each committed command into the `ClusterState`, on every
//! replica, in log order. After a restart the state is rebuilt by applying the log again,
//! as a partition's producer table is.
//!
//! A proposal is answered once its command is applied on the leader, with the outcome the
//! leader computed, which is the outcome every replica computes.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::async_runtime::watch::WatchReceiver;
use openraft::network::{NetSnapshot, RaftNetworkFactory};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tally_protocol::BatchHeader;
use tally_raft::{
    ApplyListener, PartitionLeader, PartitionRaft, PeerAddresses, ProduceError, RaftTransport,
    Replica, ReplicaConfig, SnapshotData, TallyRaft, TokioTcp,
};
use thiserror::Error;
use tokio::sync::watch;

use crate::cluster_state::ClusterState;
use crate::command::{decode_commands, encode_command, ControllerCommand};
use crate::outcome::Outcome;

/// Commands are small; a larger batch in the metadata log is refused.
const MAX_COMMAND_BYTES: usize = 1 << 20;

#[derive(Debug, Error, Serialize, Deserialize)]
pub enum ControllerError {
    /// This node's replica does not lead the controller group; `leader` is the one that
    /// does, when known.
    #[error("not the active controller (leader: {leader:?})")]
    NotController { leader: Option<u64> },
    /// The command's outcome is unknown: it may still be applied.
    #[error("timed out: {0}")]
    TimedOut(String),
    #[error("the metadata log refused the command: {0}")]
    Refused(String),
}

impl From<ProduceError> for ControllerError {
    fn from(e: ProduceError) -> ControllerError {
        match e {
            ProduceError::NotLeader { leader } => ControllerError::NotController { leader },
            // Not stored; commands carry no producer id, so this does not happen.
            ProduceError::Superseded => ControllerError::TimedOut(e.to_string()),
            ProduceError::TimedOut(why) => ControllerError::TimedOut(why),
            ProduceError::Refused(e) => ControllerError::Refused(e.to_string()),
        }
    }
}

/// Folds committed commands into the state, and wakes whoever watches it.
struct MetadataListener {
    state: Arc<Mutex<ClusterState>>,
    changes: watch::Sender<i64>,
}

impl ApplyListener for MetadataListener {
    fn applied(&self, header: &BatchHeader, batch: &[u8]) {
        let mut state = self.state.lock();
        for (relative, command) in decode_commands(batch) {
            // The log's offsets, not the ones the proposer's copy carried.
            let offset = if relative < 0 {
                header.base_offset
            } else {
                header.base_offset + (relative - decode_base(batch))
            };
            if let Err(e) = &command {
                tracing::warn!(offset, error = %e, "skipping an unreadable metadata record");
            }
            state.apply(offset, command.as_ref().map_err(String::as_str));
        }
        self.changes.send_replace(state.applied_end());
    }
}

/// The base offset written in a batch (the decoder's record offsets count from it).
fn decode_base(batch: &[u8]) -> i64 {
    BatchHeader::parse(batch).map_or(0, |h| h.base_offset)
}

pub struct Controller {
    replica: Replica,
    leader: PartitionLeader,
    state: Arc<Mutex<ClusterState>>,
    changes: watch::Receiver<i64>,
    /// Where this node reaches the other voters (its voters list), for forwarded proposals.
    peers: PeerAddresses,
    /// The network forwarded proposals travel on.
    transport: Arc<dyn RaftTransport>,
}

impl Controller {
    /// Opens node `node_id`'s replica of the controller group in `dir` and starts its Raft.
    /// The group is formed by `initialize` on one node, as any Raft group is.
    pub async fn open<N>(
        node_id: u64,
        dir: &Path,
        config: &ReplicaConfig,
        network: N,
    ) -> io::Result<Controller>
    where
        N: RaftNetworkFactory<TallyRaft>,
        N::Network: NetSnapshot<TallyRaft, SnapshotData = SnapshotData>,
    {
        let state = Arc::new(Mutex::new(ClusterState::default()));
        let (changes_tx, changes) = watch::channel(0);
        let mut config = config.clone();
        config.listener = Some(Arc::new(MetadataListener {
            state: Arc::clone(&state),
            changes: changes_tx,
        }));
        let replica = Replica::open(node_id, dir, &config, network).await?;
        let leader = PartitionLeader::new(
            replica.raft.clone(),
            replica.store.clone(),
            replica.state_machine.clone(),
            MAX_COMMAND_BYTES,
        );
        Ok(Controller {
            replica,
            leader,
            state,
            changes,
            peers: PeerAddresses::default(),
            transport: TokioTcp::shared(),
        })
    }

    /// Forwards proposals to the voters at `peers` rather than at their membership addresses.
    pub fn with_peers(mut self, peers: PeerAddresses) -> Controller {
        self.peers = peers;
        self
    }

    /// Forwards proposals over `transport` (the simulation's network) rather than TCP.
    pub fn over(mut self, transport: Arc<dyn RaftTransport>) -> Controller {
        self.transport = transport;
        self
    }

    pub(crate) fn transport(&self) -> &dyn RaftTransport {
        &*self.transport
    }

    /// The voters this node was configured with (`controller.quorum.voters`), other than
    /// itself: whom to ask while it knows no leader.
    pub fn other_voters(&self) -> Vec<u64> {
        self.peers
            .keys()
            .copied()
            .filter(|id| *id != self.node_id())
            .collect()
    }

    /// Where this node reaches node `id`: its own address for it, else the membership's.
    pub fn peer_addr(&self, id: u64) -> Option<String> {
        if let Some(addr) = self.peers.get(&id) {
            return Some(addr.clone());
        }
        let metrics = self.replica.raft.metrics().borrow_watched().clone();
        let node = metrics
            .membership_config
            .membership()
            .get_node(&id)
            .cloned();
        node.map(|n| n.addr)
    }

    pub fn node_id(&self) -> u64 {
        self.replica.id
    }

    /// The controller group's Raft on this node (to initialize it, serve it to peers, watch
    /// its metrics).
    pub fn raft(&self) -> &PartitionRaft {
        &self.replica.raft
    }

    /// The node that leads the controller group, as this replica knows it.
    pub fn leader_id(&self) -> Option<u64> {
        self.replica.raft.metrics().borrow_watched().current_leader
    }

    /// Appends `command` to the metadata log, and answers with its outcome once it is applied.
    pub async fn propose(&self, command: &ControllerCommand) -> Result<Outcome, ControllerError> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let produced = self.leader.produce(encode_command(command, now_ms)).await?;
        self.state
            .lock()
            .outcome_at(produced.base_offset)
            .cloned()
            .ok_or_else(|| {
                ControllerError::TimedOut(format!(
                    "the outcome of the command at offset {} is no longer known",
                    produced.base_offset
                ))
            })
    }

    /// This replica's view of the cluster: everything it has applied.
    pub fn cluster(&self) -> ClusterState {
        self.state.lock().clone()
    }

    /// Reads the current state without copying it.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.state.lock())
    }

    /// Changes when a command is applied: the offset after it.
    pub fn changes(&self) -> watch::Receiver<i64> {
        self.changes.clone()
    }

    /// The replica itself (its log store and state machine), for tests and status.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Stops the Raft, then flushes the log.
    pub async fn shutdown(self) -> io::Result<()> {
        self.replica.shutdown().await
    }

    /// `shutdown` for a controller that is shared: later proposals fail.
    pub async fn close(&self) -> io::Result<()> {
        self.replica.close().await
    }
}
