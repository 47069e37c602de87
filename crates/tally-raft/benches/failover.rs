//! Failover time of a three-replica partition group in one process: the leader crashes (its
//! Raft stops, no clean shutdown of its log) and the clock runs until a produce succeeds on the
//! next leader; then the crashed replica restarts on its data and catches up. p50 and max
//! over KILLS crashes (default 20), with the default timeouts (heartbeat 100 ms, election
//! 300-500 ms; openraft's leader lease is the maximum election timeout, so a follower waits
//! for it to expire before it votes).
//!
//!     cargo bench -p tally-raft --bench failover [-- KILLS]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use openraft::impls::BasicNode;
use tally_raft::{LocalRouter, PartitionLeader, Replica};
use tally_testkit::BatchSpec;

#[path = "../tests/common/mod.rs"]
mod common;
use common::{highest_term_leader, start_local};

fn leader_of(nodes: &BTreeMap<u64, (Replica, PartitionLeader)>) -> Option<u64> {
    highest_term_leader(nodes.values().map(|(r, _)| r))
}

/// One produce to whoever leads, given 500 ms.
async fn produce_once(
    nodes: &BTreeMap<u64, (Replica, PartitionLeader)>,
    seq: &mut i32,
) -> Option<()> {
    let leader = leader_of(nodes)?;
    let batch = BatchSpec::new(9, 0, *seq, 1).encode();
    let p = nodes[&leader].1.produce(batch);
    tokio::time::timeout(Duration::from_millis(500), p)
        .await
        .ok()?
        .ok()?;
    *seq += 1;
    Some(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let kills: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (1..=3).map(|i| tmp.path().join(format!("r{i}"))).collect();
    let router = LocalRouter::default();
    let mut nodes = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        std::fs::create_dir(dir).unwrap();
        nodes.insert(i as u64 + 1, start_local(i as u64 + 1, dir, &router).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new("in-process")))
        .collect();
    nodes[&1].0.raft.initialize(members).await.unwrap();

    let mut seq = 0;
    let mut times = Vec::new();
    for _ in 0..kills {
        // A healthy group first: a produce succeeds.
        while produce_once(&nodes, &mut seq).await.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let victim = leader_of(&nodes).unwrap();
        let (replica, _) = nodes.remove(&victim).unwrap();
        router.remove(victim);
        replica.raft.shutdown().await.unwrap();
        let start_at = Instant::now();
        while produce_once(&nodes, &mut seq).await.is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        times.push(start_at.elapsed());
        let dir = &dirs[(victim - 1) as usize];
        nodes.insert(victim, start_local(victim, dir, &router).await);
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let max = *times.last().unwrap();
    println!(
        "failover over {kills} leader crashes: p50 {} ms, max {} ms, min {} ms",
        p50.as_millis(),
        max.as_millis(),
        times[0].as_millis()
    );
    for (_, (r, _)) in nodes {
        r.shutdown().await.unwrap();
    }
}
