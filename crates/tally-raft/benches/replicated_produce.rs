//! What replication costs on this machine, in one run, as ratios (the machine is shared):
//!
//! - the single-node partition (`Partition::append_client_batch`, fsync per batch) against a
//!   one-voter Raft group on the same segment files (`PartitionLeader::produce`, one batch in
//!   flight: an fsync per batch too), the same-machine price of running every partition as a
//!   Raft group;
//! - the one-voter group with 16 batches in flight (openraft hands the log store several
//!   entries per append: one fsync for all), and three replicas in one process;
//! - the memory of idle one-voter groups, per group.
//!
//!     cargo bench -p tally-raft --bench replicated_produce [-- BATCHES [IDLE_GROUPS]]
//!
//! Batches are 10 records of 100 bytes from one idempotent producer. Bounded: BATCHES
//! (default 2000) per case, IDLE_GROUPS (default 200).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::impls::BasicNode;
use tally_log::LogConfig;
use tally_partition::{Partition, PartitionConfig};
use tally_raft::{LocalRouter, PartitionLeader, RaftTimeouts, Replica, ReplicaConfig};

const RECORDS: usize = 10;

fn batches(n: usize) -> Vec<Bytes> {
    tally_testkit::numbered_batches(n, RECORDS, 100)
}

fn single_node(dir: &Path, batches: &[Bytes]) -> f64 {
    let config = PartitionConfig {
        log: LogConfig {
            flush_interval_messages: 1,
            ..LogConfig::default()
        },
        ..PartitionConfig::default()
    };
    let (mut partition, _) = Partition::open(dir, config, 0).unwrap();
    let start = Instant::now();
    for b in batches {
        partition.append_client_batch(b, 1).unwrap();
    }
    batches.len() as f64 / start.elapsed().as_secs_f64()
}

async fn group(dirs: &[&Path]) -> (Vec<Replica>, Arc<PartitionLeader>, LocalRouter) {
    let router = LocalRouter::default();
    let config = ReplicaConfig::new(LogConfig::default(), RaftTimeouts::default()).unwrap();
    let mut replicas = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as u64 + 1;
        let r = Replica::open(id, dir, &config, router.network_for(id))
            .await
            .unwrap();
        router.add(id, r.raft.clone());
        replicas.push(r);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=dirs.len() as u64)
        .map(|id| (id, BasicNode::new("in-process")))
        .collect();
    replicas[0].raft.initialize(members).await.unwrap();
    replicas[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "leader")
        .await
        .unwrap();
    let r = &replicas[0];
    let leader = Arc::new(PartitionLeader::new(
        r.raft.clone(),
        r.store.clone(),
        r.state_machine.clone(),
        1 << 20,
    ));
    (replicas, leader, router)
}

async fn produce_all(leader: &Arc<PartitionLeader>, batches: &[Bytes], in_flight: usize) -> f64 {
    // The first produce waits for the leader to take office; not measured.
    let start = Instant::now();
    for window in batches.chunks(in_flight) {
        let sends = window.iter().map(|b| leader.produce(b.clone()));
        for r in futures_util::future::join_all(sends).await {
            r.unwrap();
        }
    }
    batches.len() as f64 / start.elapsed().as_secs_f64()
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let idle: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let all = batches(n + 1);
    let (warm, measured) = all.split_at(1);

    let dir = tempfile::tempdir().unwrap();
    let fsyncs = tally_log::fsync_latency().count;
    let base = tokio::task::block_in_place(|| single_node(dir.path(), measured));
    println!(
        "single-node partition, fsync per batch:   {base:>9.0} batches/s  {:.2} fsyncs per batch",
        (tally_log::fsync_latency().count - fsyncs) as f64 / n as f64
    );

    let mut results = Vec::new();
    for (name, replicas, in_flight) in [
        ("one-voter group, 1 in flight", 1, 1),
        ("one-voter group, 16 in flight", 1, 16),
        ("three replicas in-process, 16 in flight", 3, 16),
    ] {
        let tmp: Vec<_> = (0..replicas)
            .map(|_| tempfile::tempdir().unwrap())
            .collect();
        let dirs: Vec<&Path> = tmp.iter().map(|d| d.path()).collect();
        let (replicas, leader, _router) = group(&dirs).await;
        produce_all(&leader, warm, 1).await;
        let fsyncs = tally_log::fsync_latency().count;
        let rate = produce_all(&leader, measured, in_flight).await;
        let per_batch = (tally_log::fsync_latency().count - fsyncs) as f64 / n as f64;
        println!(
            "{name:<41} {rate:>9.0} batches/s  ratio to single-node {:.2}  {per_batch:.2} fsyncs per batch",
            rate / base
        );
        results.push(rate);
        for r in replicas {
            r.shutdown().await.unwrap();
        }
    }

    // Idle groups: opened, elected, one batch each, then left alone.
    let tmp = tempfile::tempdir().unwrap();
    let before = rss_bytes();
    let mut groups = Vec::new();
    for g in 0..idle {
        let dir = tmp.path().join(format!("p{g}"));
        std::fs::create_dir(&dir).unwrap();
        let (replicas, leader, router) = group(&[&dir]).await;
        leader.produce(all[0].clone()).await.unwrap();
        groups.push((replicas, leader, router));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes();
    println!(
        "{idle} idle one-voter groups: {:.1} KiB of resident memory per group",
        (after.saturating_sub(before)) as f64 / idle as f64 / 1024.0
    );
    for (replicas, _, _) in groups {
        for r in replicas {
            r.shutdown().await.unwrap();
        }
    }
}
