//! Replicas of one partition group whose Raft traffic goes over TCP on loopback.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::impls::BasicNode;
use tally_log::LogConfig;
use tally_raft::{
    PartitionLeader, ProduceError, Produced, RaftServer, RaftTimeouts, Replica, ReplicaConfig,
    TcpNetworkFactory,
};

/// A replica with its listener and its produce path.
pub struct TcpNode {
    pub replica: Replica,
    pub leader: Arc<PartitionLeader>,
    pub server: RaftServer,
}

/// Opens replica `id` of `group` on `dir`, listening on `addr`. A stopped node's listener
/// closes as its task ends, a moment after it is dropped, so binding its address again is
/// retried (5 s at most).
pub async fn start_tcp(id: u64, dir: &Path, addr: &str, group: &str, log: LogConfig) -> TcpNode {
    let mut tries = 0;
    let server = loop {
        match RaftServer::bind(addr).await {
            Ok(server) => break server,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    let config = ReplicaConfig::new(log, RaftTimeouts::default()).unwrap();
    let replica = Replica::open(id, dir, &config, TcpNetworkFactory::new(group))
        .await
        .unwrap();
    server.register(group, replica.raft.clone(), replica.store.clone());
    let leader = Arc::new(PartitionLeader::new(
        replica.raft.clone(),
        replica.store.clone(),
        replica.state_machine.clone(),
        1 << 20,
    ));
    TcpNode {
        replica,
        leader,
        server,
    }
}

/// Three replicas of `group` (ids 1-3) on `dirs`, formed by the first; and their addresses,
/// to restart one on its own.
pub async fn start_three_tcp(
    dirs: &[tempfile::TempDir],
    group: &str,
    log: LogConfig,
) -> (BTreeMap<u64, TcpNode>, BTreeMap<u64, String>) {
    let mut nodes = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for (i, dir) in dirs.iter().take(3).enumerate() {
        let id = i as u64 + 1;
        let node = start_tcp(id, dir.path(), "127.0.0.1:0", group, log.clone()).await;
        addrs.insert(id, node.server.local_addr().to_string());
        nodes.insert(id, node);
    }
    let members: BTreeMap<u64, BasicNode> = addrs
        .iter()
        .map(|(id, a)| (*id, BasicNode::new(a.clone())))
        .collect();
    nodes[&1].replica.raft.initialize(members).await.unwrap();
    (nodes, addrs)
}

/// Stops a node: its Raft, its log, then its listener.
pub async fn stop_tcp(node: TcpNode) {
    node.replica.shutdown().await.unwrap();
    drop(node.server);
}

/// The leader of the highest term any replica knows: a restarted leader resumes in its old
/// term until it hears of the newer one, and its table lacks what was written since.
pub fn leader_of(nodes: &BTreeMap<u64, TcpNode>) -> Option<u64> {
    let newest = nodes
        .values()
        .map(|n| n.replica.raft.metrics().borrow_watched().current_term)
        .max()?;
    let id = super::highest_term_leader(nodes.values().map(|n| &n.replica))?;
    let term = nodes[&id]
        .replica
        .raft
        .metrics()
        .borrow_watched()
        .current_term;
    (term == newest).then_some(id)
}

/// Produces `batch` through whoever leads until it is acknowledged (60 s at most).
pub async fn produce_one(nodes: &BTreeMap<u64, TcpNode>, batch: &Bytes) -> Produced {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "never acknowledged");
        let Some(id) = leader_of(nodes) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let sent = tokio::time::timeout(
            Duration::from_secs(3),
            nodes[&id].leader.produce(batch.clone()),
        );
        match sent.await {
            Ok(Ok(produced)) => return produced,
            Ok(Err(ProduceError::Refused(e))) => panic!("refused by {id}: {e}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
