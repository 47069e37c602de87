//! The replicas of partition groups in one process, wired to each other directly: what the
//! in-process cluster tests and the simulation use before the broker's TCP transport exists.
//! A link can be cut both ways (`isolate`), as a network partition would.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, Raft, Snapshot};
use parking_lot::Mutex;

use crate::state_machine::{PartitionStateMachine, SnapshotData};
use crate::type_config::{CommittedLeaderId, Node, TallyRaft, Vote};

pub type PartitionRaft = Raft<TallyRaft, PartitionStateMachine>;

#[derive(Default)]
struct Routes {
    nodes: BTreeMap<u64, PartitionRaft>,
    isolated: BTreeSet<u64>,
}

/// Who can reach whom. Cheap to clone: clones share the routes.
#[derive(Clone, Default)]
pub struct LocalRouter {
    routes: Arc<Mutex<Routes>>,
}

impl LocalRouter {
    pub fn add(&self, id: u64, raft: PartitionRaft) {
        self.routes.lock().nodes.insert(id, raft);
    }

    /// Takes a replica out (it was stopped): messages to it fail.
    pub fn remove(&self, id: u64) -> Option<PartitionRaft> {
        self.routes.lock().nodes.remove(&id)
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: u64) {
        self.routes.lock().isolated.insert(id);
    }

    pub fn heal(&self, id: u64) {
        self.routes.lock().isolated.remove(&id);
    }

    /// The network a replica `from` gives its Raft.
    pub fn network_for(&self, from: u64) -> LocalNetworkFactory {
        LocalNetworkFactory {
            router: self.clone(),
            from,
        }
    }

    fn route(&self, from: u64, to: u64) -> Result<PartitionRaft, Unreachable<TallyRaft>> {
        let routes = self.routes.lock();
        if routes.isolated.contains(&from) || routes.isolated.contains(&to) {
            return Err(Unreachable::from_string(format!(
                "link {from} -> {to} is cut"
            )));
        }
        routes
            .nodes
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("node {to} is down")))
    }
}

pub struct LocalNetworkFactory {
    router: LocalRouter,
    from: u64,
}

impl RaftNetworkFactory<TallyRaft> for LocalNetworkFactory {
    type Network = LocalConnection;

    async fn new_client(&mut self, target: u64, _node: &Node) -> LocalConnection {
        LocalConnection {
            router: self.router.clone(),
            from: self.from,
            to: target,
        }
    }
}

pub struct LocalConnection {
    router: LocalRouter,
    from: u64,
    to: u64,
}

fn unreachable(e: impl std::fmt::Display) -> RPCError<TallyRaft> {
    RPCError::Unreachable(Unreachable::from_string(e))
}

impl RaftNetworkV2<TallyRaft> for LocalConnection {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TallyRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TallyRaft>, RPCError<TallyRaft>> {
        let raft = self
            .router
            .route(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.append_entries(rpc).await.map_err(unreachable)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TallyRaft>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TallyRaft>, RPCError<TallyRaft>> {
        let raft = self
            .router
            .route(self.from, self.to)
            .map_err(RPCError::Unreachable)?;
        raft.vote(rpc).await.map_err(unreachable)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<CommittedLeaderId, u64, Node, SnapshotData>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TallyRaft>, StreamingError<TallyRaft>> {
        let raft = self
            .router
            .route(self.from, self.to)
            .map_err(StreamingError::Unreachable)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))
    }
}
