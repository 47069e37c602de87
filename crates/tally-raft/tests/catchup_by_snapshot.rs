//! A follower that was down while the others purged their Raft logs and deleted the segments
//! it lacks catches up by snapshot over TCP: it is sent the leader's retained log with the
//! snapshot, starts its log again from those bytes, and holds what the leader holds, at the
//! same offsets, with the same producer table. A retry of a batch from before the snapshot is
//! answered as a duplicate after the leader changes, and the follower reopens from its
//! snapshot after a restart.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use tally_log::LogConfig;
use tally_raft::Replica;
use tally_testkit::BatchSpec;

mod common;
use common::tcp::{leader_of, produce_one, start_tcp, start_three_tcp, stop_tcp, TcpNode};
use common::{applied, bytes_between, last_index};

const GROUP: &str = "orders-0";
const PRODUCER_ID: i64 = 41;

/// Segments of a few batches, so that deleting segments leaves the leader's log starting
/// past everything the stopped follower holds.
fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1_024,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

async fn start(id: u64, dir: &Path, addr: &str) -> TcpNode {
    start_tcp(id, dir, addr, GROUP, log_config()).await
}

fn batch(seq: i32) -> Bytes {
    BatchSpec::new(PRODUCER_ID, 0, seq, 2).encode()
}

/// Builds a snapshot of everything `replica` has applied, purges its Raft log up to it and
/// deletes the segments below: what retention does on each replica.
async fn snapshot_and_delete(replica: &Replica) -> i64 {
    let applied = replica
        .raft
        .metrics()
        .borrow_watched()
        .last_applied
        .unwrap();
    replica.raft.trigger().snapshot().await.unwrap();
    replica
        .raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.snapshot.is_some_and(|s| s.index >= applied.index),
            "snapshot built",
        )
        .await
        .unwrap();
    replica
        .raft
        .trigger()
        .purge_log(applied.index)
        .await
        .unwrap();
    replica
        .raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= applied.index),
            "log purged",
        )
        .await
        .unwrap();
    let store = replica.store.clone();
    let hw = *replica.state_machine.high_watermark().borrow();
    tokio::task::spawn_blocking(move || store.delete_records_before(hw))
        .await
        .unwrap()
        .unwrap()
}

/// The replicas agree with `reference` on the log start, the high watermark, the bytes in
/// between and the producer table.
fn assert_same(reference: &Replica, others: &[&Replica]) {
    let hw = *reference.state_machine.high_watermark().borrow();
    let start = reference.store.log_reader().log_start_offset();
    let bytes = bytes_between(reference.store.log_reader(), start, hw);
    let producers = reference.state_machine.producers();
    for r in others {
        assert_eq!(
            *r.state_machine.high_watermark().borrow(),
            hw,
            "replica {}",
            r.id
        );
        assert_eq!(
            r.store.log_reader().log_start_offset(),
            start,
            "replica {}",
            r.id
        );
        assert!(
            bytes_between(r.store.log_reader(), start, hw) == bytes,
            "replica {} holds other bytes",
            r.id
        );
        assert_eq!(
            r.state_machine.producers().entries(),
            producers.entries(),
            "replica {}",
            r.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_deleted_segments_catches_up_by_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (mut nodes, addrs) = start_three_tcp(&dirs, GROUP, log_config()).await;
    for k in 0..10 {
        produce_one(&nodes, &batch(k * 2)).await;
    }

    // A follower stops; the others go on, snapshot, purge and delete what it has not got.
    let leader = leader_of(&nodes).unwrap();
    let down = *nodes.keys().find(|id| **id != leader).unwrap();
    let node = nodes.remove(&down).unwrap();
    let down_end = node.replica.store.log_reader().log_end_offset();
    stop_tcp(node).await;
    let mut answers = Vec::new();
    for k in 10..40 {
        answers.push(produce_one(&nodes, &batch(k * 2)).await);
    }
    let last = last_index(&nodes[&leader].replica);
    for node in nodes.values() {
        applied(&node.replica, last).await;
        let start = snapshot_and_delete(&node.replica).await;
        assert!(
            start > down_end,
            "replica {} still holds offset {down_end} (log start {start}): no snapshot needed",
            node.replica.id
        );
    }

    // It comes back and is sent the snapshot with the retained records.
    let idx = (down - 1) as usize;
    nodes.insert(down, start(down, dirs[idx].path(), &addrs[&down]).await);
    let reply = produce_one(&nodes, &batch(80)).await;
    let leader = leader_of(&nodes).unwrap();
    let last = last_index(&nodes[&leader].replica);
    applied(&nodes[&down].replica, last).await;
    let m = nodes[&down].replica.raft.metrics().borrow_watched().clone();
    assert!(
        m.snapshot.is_some(),
        "the follower was sent entries, not a snapshot"
    );
    let others: Vec<&Replica> = nodes.values().map(|n| &n.replica).collect();
    assert_same(&nodes[&leader].replica, &others);
    assert!(reply.base_offset > 0);
    // OffsetForLeaderEpoch for a term whose entries it never held: answered, at or past
    // everything from before the snapshot.
    let (epoch, end) = nodes[&down]
        .replica
        .store
        .end_offset_for_term(0)
        .expect("a purged term is answered");
    assert_eq!(epoch, 0);
    assert!(end > answers.last().unwrap().last_offset, "{end}");

    // The leader stops; under the next one (maybe the follower), a retry of a batch from
    // before the snapshot is a duplicate, with the offsets it was first given.
    let old = nodes.remove(&leader).unwrap();
    stop_tcp(old).await;
    let retried = produce_one(&nodes, &batch(78)).await;
    assert!(
        retried.duplicate,
        "a retry after the snapshot was stored again"
    );
    assert_eq!(retried.base_offset, answers.last().unwrap().base_offset);
    let fresh = produce_one(&nodes, &batch(82)).await;
    assert!(fresh.base_offset > reply.base_offset);

    // It reopens from its snapshot and the entries after it.
    let node = nodes.remove(&down).unwrap();
    let hw = *node.replica.state_machine.high_watermark().borrow();
    stop_tcp(node).await;
    let old_idx = (leader - 1) as usize;
    nodes.insert(
        leader,
        start(leader, dirs[old_idx].path(), &addrs[&leader]).await,
    );
    nodes.insert(down, start(down, dirs[idx].path(), &addrs[&down]).await);
    produce_one(&nodes, &batch(84)).await;
    let leader = leader_of(&nodes).unwrap();
    let last = last_index(&nodes[&leader].replica);
    for node in nodes.values() {
        applied(&node.replica, last).await;
    }
    assert!(*nodes[&down].replica.state_machine.high_watermark().borrow() > hw);
    let others: Vec<&Replica> = nodes.values().map(|n| &n.replica).collect();
    assert_same(&nodes[&leader].replica, &others);
    for node in nodes.into_values() {
        stop_tcp(node).await;
    }
}
