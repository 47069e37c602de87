//! The replicas of partition groups in one process, wired to each other directly: what the
//! in-process cluster tests and the simulation use before the broker's TCP transport exists.
//! A link can be cut both ways (`isolate`), as a network partition would, a node's replies
//! can be lost while its requests arrive (`mute_replies_to`), and requests and replies can be
//! lost on a seeded schedule (`set_loss`).

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
    /// Nodes whose requests arrive but whose replies are lost: their followers hear them, but
    /// they hear no follower.
    muted: BTreeSet<u64>,
    /// Chance in a million that a request is lost, and (separately) that its reply is.
    loss_ppm: u64,
    /// splitmix64 state: a seeded schedule of losses.
    rng: u64,
}

impl Routes {
    fn lose(&mut self) -> bool {
        if self.loss_ppm == 0 {
            return false;
        }
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % 1_000_000 < self.loss_ppm
    }
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

    /// Every reply to `id`'s requests is lost, while its requests still arrive: a leader
    /// whose followers hear its heartbeats (and elect no one) but who hears nothing back, so
    /// its lease lapses in its own term.
    pub fn mute_replies_to(&self, id: u64) {
        self.routes.lock().muted.insert(id);
    }

    pub fn unmute(&self, id: u64) {
        self.routes.lock().muted.remove(&id);
    }

    /// Loses each request, and each reply, with probability `loss` (0 to 1), on a schedule
    /// seeded by `seed`: a lost reply means the peer acted on a request its sender thinks
    /// failed.
    pub fn set_loss(&self, loss: f64, seed: u64) {
        let mut routes = self.routes.lock();
        routes.loss_ppm = (loss.clamp(0.0, 1.0) * 1_000_000.0) as u64;
        routes.rng = seed;
    }

    fn reply_lost(&self, to: u64) -> bool {
        let mut routes = self.routes.lock();
        routes.muted.contains(&to) || routes.lose()
    }

    /// The network a replica `from` gives its Raft.
    pub fn network_for(&self, from: u64) -> LocalNetworkFactory {
        LocalNetworkFactory {
            router: self.clone(),
            from,
        }
    }

    fn route(&self, from: u64, to: u64) -> Result<PartitionRaft, Unreachable<TallyRaft>> {
        let mut routes = self.routes.lock();
        if routes.isolated.contains(&from) || routes.isolated.contains(&to) {
            return Err(Unreachable::from_string(format!(
                "link {from} -> {to} is cut"
            )));
        }
        if routes.lose() {
            return Err(Unreachable::from_string(format!(
                "request {from} -> {to} lost"
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
        let reply = raft.append_entries(rpc).await.map_err(unreachable)?;
        if self.router.reply_lost(self.from) {
            return Err(unreachable("reply lost"));
        }
        Ok(reply)
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
        let reply = raft.vote(rpc).await.map_err(unreachable)?;
        if self.router.reply_lost(self.from) {
            return Err(unreachable("reply lost"));
        }
        Ok(reply)
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
