//! How fast a follower that was down catches up, in one run, as a ratio (the machine is
//! shared): by entries (the leader's Raft log still holds everything it missed) against by
//! snapshot (the leader purged its Raft log, so it sends its retained log with the snapshot,
//! `snapshot_transfer.rs`). Three replicas in one process, Raft over TCP on loopback.
//!
//!     cargo bench -p tally-raft --bench catchup [-- BATCHES [ROUNDS]]
//!
//! Batches are 10 records of 1 KiB from one idempotent producer, 16 in flight; the follower
//! is down while BATCHES (default 3000, about 30 MB) are written. Each round runs both cases,
//! alternating which goes first. Bounded: ROUNDS (default 2).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::impls::BasicNode;
use tally_log::LogConfig;
use tally_raft::{
    PartitionLeader, RaftServer, RaftTimeouts, Replica, ReplicaConfig, TcpNetworkFactory,
};

const GROUP: &str = "bench-0";
const RECORDS: usize = 10;
const WAIT: Option<Duration> = Some(Duration::from_secs(300));

fn batches(n: usize) -> Vec<Bytes> {
    tally_testkit::numbered_batches(n, RECORDS, 1024)
}

async fn start(id: u64, dir: &Path, addr: &str) -> (Replica, RaftServer) {
    let server = loop {
        match RaftServer::bind(addr).await {
            Ok(s) => break s,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let config = ReplicaConfig::new(LogConfig::default(), RaftTimeouts::default()).unwrap();
    let replica = Replica::open(id, dir, &config, TcpNetworkFactory::new(GROUP))
        .await
        .unwrap();
    server.register(GROUP, replica.raft.clone(), replica.store.clone());
    (replica, server)
}

/// Seconds for a follower, down while `batches` were written, to apply them after it
/// returns; with `purge`, the others snapshot and purge first, so it is sent a snapshot.
async fn catch_up(batches: &[Bytes], purge: bool) -> f64 {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as u64 + 1;
        nodes.insert(id, start(id, dir.path(), "127.0.0.1:0").await);
    }
    let addrs: BTreeMap<u64, String> = nodes
        .iter()
        .map(|(id, (_, s))| (*id, s.local_addr().to_string()))
        .collect();
    let members = addrs
        .iter()
        .map(|(id, a)| (*id, BasicNode::new(a.clone())))
        .collect::<BTreeMap<_, _>>();
    let first = &nodes[&1].0;
    first.raft.initialize(members).await.unwrap();
    first
        .raft
        .wait(WAIT)
        .current_leader(1, "leader")
        .await
        .unwrap();
    let leader = Arc::new(PartitionLeader::new(
        first.raft.clone(),
        first.store.clone(),
        first.state_machine.clone(),
        1 << 20,
    ));
    let (down, server) = nodes.remove(&3).unwrap();
    down.shutdown().await.unwrap();
    drop(server);
    for window in batches.chunks(16) {
        let sends = window.iter().map(|b| leader.produce(b.clone()));
        for r in futures_util::future::join_all(sends).await {
            r.unwrap();
        }
    }
    let last = nodes[&1]
        .0
        .raft
        .metrics()
        .borrow_watched()
        .last_log_index
        .unwrap();
    if purge {
        for (replica, _) in nodes.values() {
            replica
                .raft
                .wait(WAIT)
                .applied_index_at_least(Some(last), "applied")
                .await
                .unwrap();
            replica.raft.trigger().snapshot().await.unwrap();
            replica
                .raft
                .wait(WAIT)
                .metrics(|m| m.snapshot.is_some_and(|s| s.index >= last), "snapshot")
                .await
                .unwrap();
            replica.raft.trigger().purge_log(last).await.unwrap();
            replica
                .raft
                .wait(WAIT)
                .metrics(|m| m.purged.is_some_and(|p| p.index >= last), "purged")
                .await
                .unwrap();
        }
    }
    let began = Instant::now();
    let (back, server) = start(3, dirs[2].path(), &addrs[&3]).await;
    back.raft
        .wait(WAIT)
        .applied_index_at_least(Some(last), "caught up")
        .await
        .unwrap();
    let seconds = began.elapsed().as_secs_f64();
    assert_eq!(
        back.raft.metrics().borrow_watched().snapshot.is_some(),
        purge,
        "caught up the other way"
    );
    back.shutdown().await.unwrap();
    drop(server);
    for (replica, _) in nodes.into_values() {
        replica.shutdown().await.unwrap();
    }
    seconds
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(3000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
    let all = batches(n);
    let mb = all.iter().map(|b| b.len()).sum::<usize>() as f64 / 1e6;
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut secs = [0.0; 2];
        for purge in order {
            secs[purge as usize] = catch_up(&all, purge).await;
        }
        println!(
            "round {round}: {mb:.1} MB missed; by entries {:.2} s ({:.0} MB/s), by snapshot {:.2} s ({:.0} MB/s); snapshot/entries speed {:.2}",
            secs[0],
            mb / secs[0],
            secs[1],
            mb / secs[1],
            secs[0] / secs[1]
        );
    }
}
