//! The controller group as three in-process replicas over real segment files: they agree on
//! the metadata, a follower points proposers to the leader, producer-id blocks stay disjoint
//! across a leader change, and every node rebuilds the same state from its log after a
//! restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::impls::BasicNode;
use tally_controller::{ClusterState, Controller, ControllerCommand, ControllerError, Outcome};
use tally_log::LogConfig;
use tally_raft::{LocalRouter, RaftTimeouts, ReplicaConfig};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

async fn open(id: u64, dir: &Path, router: &LocalRouter) -> Controller {
    let config = ReplicaConfig::new(LogConfig::default(), RaftTimeouts::default()).unwrap();
    let controller = Controller::open(
        id,
        &dir.join(id.to_string()),
        &config,
        router.network_for(id),
    )
    .await
    .unwrap();
    router.add(id, controller.raft().clone());
    controller
}

async fn start(dir: &Path, router: &LocalRouter) -> BTreeMap<u64, Controller> {
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, open(id, dir, router).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new("in-process")))
        .collect();
    nodes[&1].raft().initialize(members).await.unwrap();
    nodes
}

/// Proposes `command` as a broker would: to the node its last answer named as leader, again
/// while the group elects one.
async fn propose(nodes: &BTreeMap<u64, Controller>, command: &ControllerCommand) -> Outcome {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut target = *nodes.keys().next().unwrap();
    loop {
        match nodes[&target].propose(command).await {
            Ok(outcome) => return outcome,
            Err(ControllerError::NotController { leader: Some(l) }) if nodes.contains_key(&l) => {
                target = l;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("retrying: {e}");
                let ids: Vec<u64> = nodes.keys().copied().collect();
                target = ids[(ids.iter().position(|&i| i == target).unwrap() + 1) % ids.len()];
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{command:?}: {e}"),
        }
    }
}

/// Waits until every node has applied what `nodes[&reference]` has, and returns its state.
async fn agreed(nodes: &BTreeMap<u64, Controller>, reference: u64) -> ClusterState {
    let end = nodes[&reference].cluster().applied_end();
    for (id, c) in nodes {
        let mut changes = c.changes();
        tokio::time::timeout(WAIT, changes.wait_for(|applied| *applied >= end))
            .await
            .unwrap_or_else(|_| panic!("node {id} did not apply up to {end}"))
            .unwrap();
    }
    let state = nodes[&reference].cluster();
    for (id, c) in nodes {
        assert_eq!(c.cluster(), state, "node {id} holds other metadata");
    }
    state
}

fn register(node_id: u64) -> ControllerCommand {
    ControllerCommand::RegisterBroker {
        node_id,
        host: "127.0.0.1".into(),
        port: 9091 + node_id as u16,
        raft_addr: format!("127.0.0.1:{}", 9191 + node_id),
    }
}

fn create(name: &str, partitions: u32) -> ControllerCommand {
    ControllerCommand::CreateTopic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
        partitions,
        replication_factor: 3,
        configs: BTreeMap::new(),
    }
}

fn leader_of(nodes: &BTreeMap<u64, Controller>) -> u64 {
    nodes
        .values()
        .find_map(|c| {
            let m = c.raft().metrics().borrow_watched().clone();
            (m.state == openraft::ServerState::Leader).then_some(c.node_id())
        })
        .expect("a leader")
}

async fn allocate(nodes: &BTreeMap<u64, Controller>, node_id: u64) -> (i64, i64) {
    match propose(nodes, &ControllerCommand::AllocateProducerIds { node_id }).await {
        Outcome::ProducerIds { first, count } => (first, first + count),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_on_the_metadata_and_a_follower_points_to_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let router = LocalRouter::default();
    let nodes = start(dir.path(), &router).await;
    for id in 1..=3 {
        assert!(matches!(
            propose(&nodes, &register(id)).await,
            Outcome::BrokerRegistered { .. }
        ));
    }
    let created = propose(&nodes, &create("orders", 6)).await;
    assert!(
        matches!(created, Outcome::TopicCreated { .. }),
        "{created:?}"
    );
    let again = propose(&nodes, &create("orders", 1)).await;
    assert!(matches!(again, Outcome::Refused(_)), "{again:?}");

    let leader = leader_of(&nodes);
    let state = agreed(&nodes, leader).await;
    assert_eq!(state.brokers().len(), 3);
    let Outcome::TopicCreated { partitions, .. } = created else {
        unreachable!()
    };
    assert_eq!(state.topic("orders").unwrap().partitions, partitions);

    let follower = *nodes.keys().find(|&&id| id != leader).unwrap();
    match nodes[&follower].propose(&create("other", 1)).await {
        Err(ControllerError::NotController { leader: Some(l) }) => assert_eq!(l, leader),
        other => panic!("a follower answered {other:?}"),
    }
    assert!(nodes[&leader].cluster().topic("other").is_none());
    for (_, c) in nodes {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_id_blocks_stay_disjoint_across_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let router = LocalRouter::default();
    let mut nodes = start(dir.path(), &router).await;
    for id in 1..=3 {
        propose(&nodes, &register(id)).await;
    }
    let mut blocks = Vec::new();
    for id in 1..=3 {
        blocks.push(allocate(&nodes, id).await);
    }
    let old_leader = leader_of(&nodes);
    let stopped = nodes.remove(&old_leader).unwrap();
    router.remove(old_leader);
    stopped.shutdown().await.unwrap();
    for id in 1..=3 {
        blocks.push(allocate(&nodes, id).await);
    }
    let new_leader = leader_of(&nodes);
    assert_ne!(new_leader, old_leader);
    for pair in blocks.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "blocks overlap: {blocks:?}");
    }

    // The old leader comes back and learns what it missed.
    nodes.insert(old_leader, open(old_leader, dir.path(), &router).await);
    let state = agreed(&nodes, new_leader).await;
    assert_eq!(state.brokers().len(), 3);
    blocks.push(allocate(&nodes, old_leader).await);
    assert!(blocks[blocks.len() - 2].1 <= blocks[blocks.len() - 1].0);
    for (_, c) in nodes {
        c.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_rebuilds_the_same_metadata_from_its_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let router = LocalRouter::default();
    let nodes = start(dir.path(), &router).await;
    for id in 1..=3 {
        propose(&nodes, &register(id)).await;
    }
    for name in ["a", "b", "c"] {
        propose(&nodes, &create(name, 4)).await;
    }
    propose(&nodes, &ControllerCommand::DeleteTopic { name: "b".into() }).await;
    allocate(&nodes, 2).await;
    let before = agreed(&nodes, leader_of(&nodes)).await;
    let names: BTreeSet<&String> = before.topics().keys().collect();
    assert_eq!(names, BTreeSet::from([&"a".to_string(), &"c".to_string()]));
    for (id, c) in nodes {
        router.remove(id);
        c.shutdown().await.unwrap();
    }

    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, open(id, dir.path(), &router).await);
    }
    for (id, c) in &nodes {
        let mut changes = c.changes();
        tokio::time::timeout(
            WAIT,
            changes.wait_for(|applied| *applied >= before.applied_end()),
        )
        .await
        .unwrap_or_else(|_| panic!("node {id} did not replay its log"))
        .unwrap();
        assert_eq!(c.cluster(), before, "node {id} rebuilt other metadata");
    }
    // The next block follows the last one handed out before the restart.
    let (first, _) = allocate(&nodes, 1).await;
    assert_eq!(first, 1000);
    for (_, c) in nodes {
        c.shutdown().await.unwrap();
    }
}
