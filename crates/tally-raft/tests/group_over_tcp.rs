//! A three-replica partition group whose Raft traffic goes over TCP on loopback: an
//! idempotent producer's batches are stored once, in order, on every replica, while the leader
//! is stopped and later restarted on its data directory and address; the restarted replica
//! catches up and holds the same bytes.

use std::collections::BTreeMap;

use bytes::Bytes;
use tally_log::LogConfig;
use tally_testkit::BatchSpec;

mod common;
use common::tcp::{leader_of, produce_one, start_tcp, start_three_tcp, stop_tcp, TcpNode};
use common::{converged, producer_batches};

const GROUP: &str = "orders-0";
const PRODUCER_ID: i64 = 77;

/// Produces `batches` (sequence, bytes) in order through whoever leads, retrying each until
/// it is acknowledged (60 s at most each).
async fn produce(nodes: &BTreeMap<u64, TcpNode>, batches: &[(i32, Bytes)]) {
    for (_, batch) in batches {
        produce_one(nodes, batch).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_over_tcp_survives_a_stopped_leader_and_the_restarted_one_catches_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut nodes, addrs) = start_three_tcp(&dirs, GROUP, LogConfig::default()).await;

    let all: Vec<(i32, Bytes)> = (0..40)
        .map(|k| (k * 2, BatchSpec::new(PRODUCER_ID, 0, k * 2, 2).encode()))
        .collect();
    produce(&nodes, &all[..20]).await;

    // The leader stops (its Raft, its listener); the others elect a new one and go on.
    let stopped = leader_of(&nodes).unwrap();
    stop_tcp(nodes.remove(&stopped).unwrap()).await;
    produce(&nodes, &all[20..30]).await;

    // It comes back on its directory and address, and catches up.
    let idx = (stopped - 1) as usize;
    nodes.insert(
        stopped,
        start_tcp(
            stopped,
            dirs[idx].path(),
            &addrs[&stopped],
            GROUP,
            LogConfig::default(),
        )
        .await,
    );
    produce(&nodes, &all[30..]).await;
    let leader = leader_of(&nodes).unwrap();
    let reference = converged(&nodes[&leader].replica, nodes.values().map(|n| &n.replica)).await;
    let expected: Vec<i32> = all.iter().map(|(s, _)| *s).collect();
    let stored: Vec<i32> = producer_batches(&reference, PRODUCER_ID)
        .iter()
        .map(|b| b.0)
        .collect();
    assert_eq!(stored, expected, "each batch once, in order");
    for n in nodes.values() {
        assert_eq!(n.replica.state_machine.check_disagreements(), 0);
    }
    for (_, n) in nodes {
        n.replica.shutdown().await.unwrap();
    }
}
