//! Retention on partition replicas (`apply_retention`), in-process: `retention.bytes` deletes
//! old segments on every replica once their entries are purged; a leader does not purge past
//! a live follower that is behind (it keeps being sent entries), but does past one that is
//! down, which catches up by snapshot when it returns and then holds the leader's retained
//! log, byte for byte, from the same log start.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::impls::BasicNode;
use tally_log::LogConfig;
use tally_raft::{apply_retention, LocalRouter, PartitionLeader, Replica};
use tally_testkit::BatchSpec;

mod common;
use common::{applied, bytes_between, highest_term_leader, last_index, start_local_with};

const PRODUCER_ID: i64 = 5;

/// Segments of a few batches; retention keeps about two of them.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_024,
        index_interval_bytes: 256,
        retention_bytes: 2_048,
        ..LogConfig::default()
    }
}

async fn open(id: u64, dir: &Path, router: &LocalRouter) -> (Replica, PartitionLeader) {
    start_local_with(id, dir, router, log_config()).await
}

/// Produces sequences `from..to` (2 records each) through whoever leads.
async fn produce(nodes: &BTreeMap<u64, (Replica, PartitionLeader)>, from: i32, to: i32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut seq = from;
    while seq < to {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sequence {seq} stuck"
        );
        let Some(id) = highest_term_leader(nodes.values().map(|(r, _)| r)) else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let batch = BatchSpec::new(PRODUCER_ID, 0, seq, 2).encode();
        match tokio::time::timeout(Duration::from_secs(3), nodes[&id].1.produce(batch)).await {
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

fn purged(replica: &Replica) -> Option<u64> {
    replica
        .raft
        .metrics()
        .borrow_watched()
        .purged
        .map(|p| p.index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_on_every_replica_and_a_returning_follower_catches_up_by_snapshot() {
    let router = LocalRouter::default();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        nodes.insert(i as u64 + 1, open(i as u64 + 1, dir.path(), &router).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3).map(|id| (id, BasicNode::new(""))).collect();
    nodes[&1].0.raft.initialize(members).await.unwrap();
    produce(&nodes, 0, 20).await;
    let leader = highest_term_leader(nodes.values().map(|(r, _)| r)).unwrap();
    let down = *nodes.keys().find(|id| **id != leader).unwrap();

    // A live follower that is behind holds the leader's purge back: it is cut off, and the
    // leader, told it is alive, purges nothing past what it has.
    router.isolate(down);
    produce(&nodes, 20, 80).await;
    let held = last_index(&nodes[&down].0);
    let pass = apply_retention(&nodes[&leader].0, now_ms(), |_| true)
        .await
        .unwrap();
    assert!(
        pass.purged_to.is_none_or(|p| p.index <= held),
        "purged to {:?} past a live follower at {held}",
        pass.purged_to
    );

    // Down, it is not waited for.
    let (replica, _) = nodes.remove(&down).unwrap();
    router.remove(down);
    replica.shutdown().await.unwrap();
    router.heal(down);
    let down_end = {
        let (log, _) =
            tally_log::Log::open(dirs[(down - 1) as usize].path(), log_config()).unwrap();
        log.log_end_offset()
    };
    let last = last_index(&nodes[&leader].0);
    for (replica, _) in nodes.values() {
        applied(replica, last).await;
        let pass = apply_retention(replica, now_ms(), |id| id != down)
            .await
            .unwrap();
        assert!(
            pass.purged_to.is_some(),
            "replica {} purged nothing",
            replica.id
        );
        assert!(
            pass.log_start_offset > down_end,
            "replica {}: log start {} (the stopped follower ends at {down_end})",
            replica.id,
            pass.log_start_offset
        );
        let size: u64 = std::fs::read_dir(&replica.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(
            size < 2 * 2_048,
            "replica {} keeps {size} bytes",
            replica.id
        );
    }

    // It returns and is sent a snapshot with the retained records.
    nodes.insert(
        down,
        open(down, dirs[(down - 1) as usize].path(), &router).await,
    );
    produce(&nodes, 80, 90).await;
    let leader = highest_term_leader(nodes.values().map(|(r, _)| r)).unwrap();
    let last = last_index(&nodes[&leader].0);
    for (replica, _) in nodes.values() {
        applied(replica, last).await;
    }
    assert!(
        purged(&nodes[&down].0).is_some(),
        "sent entries, not a snapshot"
    );
    let reference = &nodes[&leader].0;
    let start = reference.store.log_reader().log_start_offset();
    let hw = *reference.state_machine.high_watermark().borrow();
    let bytes = bytes_between(reference.store.log_reader(), start, hw);
    for (replica, _) in nodes.values() {
        assert_eq!(
            replica.store.log_reader().log_start_offset(),
            start,
            "replica {}",
            replica.id
        );
        assert_eq!(*replica.state_machine.high_watermark().borrow(), hw);
        assert!(bytes_between(replica.store.log_reader(), start, hw) == bytes);
        assert_eq!(
            replica.state_machine.producers().entries(),
            reference.state_machine.producers().entries()
        );
    }
    for (replica, _) in nodes.into_values() {
        replica.shutdown().await.unwrap();
    }
}
