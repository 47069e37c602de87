//! A pipelined producer's batch n+1 must never be stored when batch n did not reach the log.
//!
//! The premise: openraft's core refuses a write while the leader's lease has lapsed (its
//! followers still hear it, so nobody is elected) and takes the next write once they answer
//! again, in the same term. So two proposals queued one after the other can have different
//! fates. The check: a batch the leader proposed against a table that counted a batch the
//! core refused is written as a refused-batch entry, answered as refused, never read by a
//! consumer, and the producer's batches end up in the log in sequence order once it retries.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::ClientWriteError;
use openraft::impls::{BasicNode, ProgressResponder};
use tally_raft::{
    without_raft_entries, LocalRouter, PartitionLeader, ProduceError, RaftBatch, Replica,
};
use tally_testkit::BatchSpec;

mod common;
use common::{converged, highest_term_leader, producer_batches, start_local};

const PRODUCER_ID: i64 = 42;

struct Group {
    router: LocalRouter,
    replicas: BTreeMap<u64, (Replica, PartitionLeader)>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn three_replicas() -> Group {
    let router = LocalRouter::default();
    let mut replicas = BTreeMap::new();
    let mut dirs = Vec::new();
    for id in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        replicas.insert(id, start_local(id, dir.path(), &router).await);
        dirs.push(dir);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("node-{id}"))))
        .collect();
    replicas[&1].0.raft.initialize(members).await.unwrap();
    Group {
        router,
        replicas,
        _dirs: dirs,
    }
}

impl Group {
    async fn leader(&self) -> u64 {
        for _ in 0..200 {
            if let Some(id) = highest_term_leader(self.replicas.values().map(|(r, _)| r)) {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no leader");
    }

    fn term(&self, id: u64) -> u64 {
        self.replicas[&id]
            .0
            .raft
            .metrics()
            .borrow_watched()
            .current_term
    }
}

fn batch(seq: i32) -> Bytes {
    BatchSpec::new(PRODUCER_ID, 0, seq, 2).encode()
}

/// Produces through `leader`, retrying what a client would retry, for up to 10 s.
async fn produce(leader: &PartitionLeader, seq: i32) {
    for _ in 0..200 {
        match leader.produce(batch(seq)).await {
            Ok(_) => return,
            Err(ProduceError::Refused(e)) => panic!("sequence {seq} refused: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("sequence {seq} was never stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lease_lapsed_refuses_a_write_then_takes_the_next_in_the_same_term() {
    let group = three_replicas().await;
    let id = group.leader().await;
    let (replica, leader) = &group.replicas[&id];
    produce(leader, 0).await;
    let term = group.term(id);

    group.router.mute_replies_to(id);
    // The lease is the maximum election timeout (500 ms); the followers still hear
    // heartbeats, so none of them stands for election.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (responder, done) = ProgressResponder::complete_only();
    replica
        .raft
        .client_write_ff(RaftBatch(batch(2)), Some(responder))
        .await
        .unwrap();
    let refused = done.await.unwrap();
    assert!(
        matches!(refused, Err(ClientWriteError::ForwardToLeader(_))),
        "the core took a write with its lease lapsed: {refused:?}"
    );
    assert_eq!(
        group.term(id),
        term,
        "a new term began: the premise is not shown"
    );

    group.router.unmute(id);
    let mut taken = None;
    for _ in 0..100 {
        match replica.raft.client_write(RaftBatch(batch(2))).await {
            Ok(resp) => {
                taken = Some(resp.log_id);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let taken = taken.expect("the leader never took a write again");
    assert_eq!(
        taken.leader_id.term, term,
        "the write after the refused one went to another term"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_proposed_behind_one_the_core_refused_is_not_stored() {
    let group = three_replicas().await;
    let id = group.leader().await;
    let (replica, leader) = &group.replicas[&id];
    for seq in [0, 2, 4] {
        produce(leader, seq).await;
    }
    // What the leader proposes when it decided sequence 8 against a table that counts 6,
    // and the core refused 6: the proposal reaches Raft with nothing before it.
    let resp = replica
        .raft
        .client_write(RaftBatch(batch(8)))
        .await
        .expect("the core takes the proposal");
    assert_eq!(
        resp.data.base_offset, -1,
        "a batch behind a gap was stored at offset {}",
        resp.data.base_offset
    );
    // The producer retries 6, then 8: both are stored, in order, once.
    produce(leader, 6).await;
    produce(leader, 8).await;

    let bytes = converged(replica, group.replicas.values().map(|(r, _)| r)).await;
    let seqs: Vec<i32> = producer_batches(&bytes, PRODUCER_ID)
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(seqs, [0, 2, 4, 6, 8]);
    // What a consumer reads holds no trace of the refused proposal.
    let fetched = without_raft_entries(Bytes::from(bytes));
    let mut rest = &fetched[..];
    let mut batches = 0;
    while !rest.is_empty() {
        let h = tally_protocol::BatchHeader::parse_whole(rest).unwrap();
        assert!(
            !h.is_control(),
            "Fetch returns a control batch at {}",
            h.base_offset
        );
        batches += 1;
        rest = &rest[h.size_in_bytes()..];
    }
    assert_eq!(
        batches, 5,
        "Fetch returns other batches than the producer's five"
    );
    for (r, _) in group.replicas.values() {
        assert_eq!(
            r.state_machine.check_disagreements(),
            0,
            "replica {} applied a batch its table did not find new",
            r.id
        );
    }
}
