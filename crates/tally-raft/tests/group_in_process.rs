//! Partition groups of real openraft replicas over real segment files, wired in-process: a
//! single voter that commits, applies and comes back after a restart with a new leader epoch;
//! three replicas whose segment files hold the same bytes; and a leader cut off from the
//! others, whose uncommitted batch is cut from its log when it rejoins.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::impls::BasicNode;
use tally_log::LogConfig;
use tally_protocol::BatchHeader;
use tally_raft::{AppliedBatch, LocalRouter, RaftBatch, RaftTimeouts, Replica, ReplicaConfig};
use tally_testkit::BatchSpec;

mod common;
use common::{bytes_below, contains};

const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn batch(tag: &str, seq: i32, records: usize) -> RaftBatch {
    let mut spec = BatchSpec::new(7, 0, seq, records);
    spec.values = (0..records)
        .map(|i| format!("{tag}-{seq}-{i}").into_bytes())
        .collect();
    RaftBatch(spec.encode())
}

async fn open(id: u64, dir: &Path, router: &LocalRouter) -> Replica {
    let config = ReplicaConfig::new(LogConfig::default(), RaftTimeouts::default()).unwrap();
    let replica = Replica::open(id, dir, &config, router.network_for(id))
        .await
        .unwrap();
    router.add(id, replica.raft.clone());
    replica
}

/// Writes through `leader`, as a client would: a leader still taking office answers
/// ForwardToLeader, and the client tries again.
/// Returns where the batch landed and its raft index.
async fn write(
    replicas: &BTreeMap<u64, Replica>,
    leader: u64,
    b: RaftBatch,
) -> (AppliedBatch, u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match replicas[&leader].raft.client_write(b.clone()).await {
            Ok(resp) => return (resp.data, resp.log_id.index),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::debug!("retrying: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("write through {leader}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voter_commits_applies_and_comes_back_after_a_restart_with_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let router = LocalRouter::default();
    let replica = open(1, dir.path(), &router).await;
    let members = BTreeMap::from([(1u64, BasicNode::new("in-process"))]);
    replica.raft.initialize(members).await.unwrap();
    replica
        .raft
        .wait(WAIT)
        .current_leader(1, "leader")
        .await
        .unwrap();

    let mut next = None;
    for seq in 0..10 {
        let resp = replica
            .raft
            .client_write(batch("a", seq, 1 + seq as usize % 3))
            .await
            .unwrap();
        let applied = resp.data;
        if let Some(n) = next {
            assert!(applied.base_offset >= n, "{applied:?} after {n}");
        }
        assert_eq!(applied.last_offset - applied.base_offset, seq as i64 % 3);
        next = Some(applied.last_offset + 1);
    }
    let hw = *replica.state_machine.high_watermark().borrow();
    assert_eq!(
        Some(hw),
        next,
        "the high watermark is past the last applied batch"
    );
    let term_before = replica.raft.metrics().borrow_watched().current_term;
    replica.shutdown().await.unwrap();
    router.remove(1);

    let replica = open(1, dir.path(), &router).await;
    replica
        .raft
        .wait(WAIT)
        .current_leader(1, "leader again")
        .await
        .unwrap();
    let term_after = replica.raft.metrics().borrow_watched().current_term;
    // openraft keeps a single voter's leadership across a restart when its vote was
    // committed, so the term (the leader epoch) may stay; it never goes back.
    assert!(term_after >= term_before, "{term_after} >= {term_before}");
    let resp = replica.raft.client_write(batch("b", 10, 2)).await.unwrap();
    assert!(resp.data.base_offset >= hw, "{:?} below {hw}", resp.data);
    // The committed entries were applied again: the high watermark covers them all.
    let hw_after = *replica.state_machine.high_watermark().borrow();
    assert_eq!(hw_after, resp.data.last_offset + 1);
    let read = replica
        .store
        .log_reader()
        .read(resp.data.base_offset, 1 << 20, hw_after, true)
        .unwrap();
    let header = BatchHeader::parse_whole(&read.records).unwrap();
    assert_eq!(
        header.partition_leader_epoch as u64, term_after,
        "leader epoch = term"
    );
    let everything = bytes_below(replica.store.log_reader(), hw_after);
    for seq in 0..10 {
        assert!(contains(&everything, &format!("a-{seq}-0")), "a-{seq} kept");
    }
    replica.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_agree_byte_for_byte_and_a_cut_off_leader_loses_its_uncommitted_tail() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = LocalRouter::default();
    let mut replicas = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as u64 + 1;
        replicas.insert(id, open(id, dir.path(), &router).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("node-{id}"))))
        .collect();
    replicas[&1].raft.initialize(members).await.unwrap();
    let leader = replicas[&1]
        .raft
        .wait(WAIT)
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .unwrap()
        .current_leader
        .unwrap();

    let mut last = 0;
    for seq in 0..20 {
        last = write(&replicas, leader, batch("first", seq, 2)).await.1;
    }
    for r in replicas.values() {
        r.raft
            .wait(WAIT)
            .applied_index_at_least(Some(last), "caught up")
            .await
            .unwrap();
    }
    let hw = *replicas[&leader].state_machine.high_watermark().borrow();
    let leader_bytes = bytes_below(replicas[&leader].store.log_reader(), hw);
    for r in replicas.values() {
        assert_eq!(
            *r.state_machine.high_watermark().borrow(),
            hw,
            "replica {}",
            r.id
        );
        assert!(
            bytes_below(r.store.log_reader(), hw) == leader_bytes,
            "replica {} differs",
            r.id
        );
    }

    // The leader is cut off. A batch sent to it is written to its log only: it never commits.
    router.isolate(leader);
    let old = replicas[&leader].raft.clone();
    let end_before = replicas[&leader].store.log_reader().log_end_offset();
    let stale = tokio::spawn(async move { old.client_write(batch("stale", 99, 1)).await });
    let mut grew = false;
    for _ in 0..100 {
        if replicas[&leader].store.log_reader().log_end_offset() > end_before {
            grew = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(grew, "the cut-off leader wrote the batch to its own log");

    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = replicas[&others[0]]
        .raft
        .wait(WAIT)
        .metrics(
            |m| m.current_leader.is_some_and(|l| l != leader),
            "a new leader",
        )
        .await
        .unwrap()
        .current_leader
        .unwrap();
    for seq in 0..5 {
        last = write(&replicas, new_leader, batch("second", seq, 3))
            .await
            .1;
    }

    router.heal(leader);
    for r in replicas.values() {
        r.raft
            .wait(WAIT)
            .applied_index_at_least(Some(last), "caught up after heal")
            .await
            .unwrap();
    }
    let outcome = tokio::time::timeout(Duration::from_secs(10), stale)
        .await
        .unwrap()
        .unwrap();
    assert!(
        outcome.is_err(),
        "the stale batch must not be acknowledged: {outcome:?}"
    );
    let hw = *replicas[&new_leader]
        .state_machine
        .high_watermark()
        .borrow();
    let reference = bytes_below(replicas[&new_leader].store.log_reader(), hw);
    assert!(contains(&reference, "second-4-2"));
    for r in replicas.values() {
        assert_eq!(
            *r.state_machine.high_watermark().borrow(),
            hw,
            "replica {}",
            r.id
        );
        let bytes = bytes_below(r.store.log_reader(), hw);
        assert!(bytes == reference, "replica {} differs", r.id);
        assert!(
            !contains(&bytes, "stale-99"),
            "replica {} kept the stale batch",
            r.id
        );
        assert_eq!(
            r.store.log_reader().log_end_offset(),
            hw,
            "replica {} has a tail",
            r.id
        );
    }
    for (_, r) in replicas {
        r.shutdown().await.unwrap();
    }
}
