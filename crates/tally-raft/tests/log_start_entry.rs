//! A log-start entry (`PartitionLeader::propose_log_start`): once it is committed, every
//! replica's retention deletes its segments below the entry's offset, whatever the topic's
//! retention settings (here: keep everything), and Fetch's high watermark never counts the
//! entry itself. How the consumer groups' store drops what its compaction has rewritten.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::impls::BasicNode;
use tally_log::LogConfig;
use tally_raft::{apply_retention, LocalRouter, PartitionLeader, Replica};
use tally_testkit::BatchSpec;

mod common;
use common::{applied, highest_term_leader, last_index, start_local_with};

const PRODUCER_ID: i64 = 9;

/// Small segments, and no retention of the topic's own.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_024,
        index_interval_bytes: 256,
        retention_ms: -1,
        retention_bytes: -1,
        ..LogConfig::default()
    }
}

async fn open(id: u64, dir: &Path, router: &LocalRouter) -> (Replica, PartitionLeader) {
    start_local_with(id, dir, router, log_config()).await
}

/// Produces sequences `from..to` (2 records each) through `leader`.
async fn produce(leader: &PartitionLeader, from: i32, to: i32) {
    let mut seq = from;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seq < to {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sequence {seq} stuck"
        );
        let batch = BatchSpec::new(PRODUCER_ID, 0, seq, 2).encode();
        match tokio::time::timeout(Duration::from_secs(3), leader.produce(batch)).await {
            Ok(Ok(_)) => seq += 2,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_deletes_below_a_committed_log_start_entry() {
    let router = LocalRouter::default();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.insert(i as u64 + 1, open(i as u64 + 1, dir.path(), &router).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3).map(|id| (id, BasicNode::new(""))).collect();
    nodes[&1].0.raft.initialize(members).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let leader = loop {
        if let Some(id) = highest_term_leader(nodes.values().map(|(r, _)| r)) {
            break id;
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (leader_replica, leader_path) = &nodes[&leader];
    produce(leader_path, 0, 60).await;

    // Without an entry, retention keeps everything: this topic's settings keep all.
    for (replica, _) in nodes.values() {
        applied(replica, last_index(leader_replica)).await;
        let pass = apply_retention(replica, now_ms(), |_| true).await.unwrap();
        assert_eq!(
            pass.log_start_offset, 0,
            "replica {} deleted records",
            replica.id
        );
    }

    let floor = leader_replica.state_machine.client_high_watermark();
    leader_path.propose_log_start(floor).await.unwrap();
    assert_eq!(
        leader_replica.state_machine.client_high_watermark(),
        floor,
        "Fetch's high watermark counts the log-start entry"
    );
    produce(leader_path, 60, 80).await;
    let last = last_index(leader_replica);
    for (replica, _) in nodes.values() {
        applied(replica, last).await;
        assert_eq!(replica.state_machine.log_start_floor(), floor);
        // The first pass may only roll the segment that holds the floor; the next deletes.
        let mut start = 0;
        for _ in 0..3 {
            start = apply_retention(replica, now_ms(), |_| true)
                .await
                .unwrap()
                .log_start_offset;
        }
        assert!(
            start > 0 && start <= floor,
            "replica {}: log start {start}, entry at {floor}",
            replica.id
        );
        let reader = replica.store.log_reader();
        assert_eq!(reader.log_start_offset(), start);
    }
}
