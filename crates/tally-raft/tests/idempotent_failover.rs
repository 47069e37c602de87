//! An idempotent producer against a three-replica partition group, in-process, while the
//! leader is cut off twice and acknowledgements are lost (the producer retries batches that
//! were stored): every batch is stored exactly once, in sequence order, on every replica, and
//! every retry is answered with the original's offsets. The same run with the leader's
//! duplicate check off stores duplicates, which shows the check can fail.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::impls::BasicNode;
use tally_partition::AppendError;
use tally_raft::{LocalRouter, PartitionLeader, ProduceError, Produced, Replica};
use tally_testkit::BatchSpec;

mod common;
use common::{converged, highest_term_leader, producer_batches, start_local};

const PRODUCER_ID: i64 = 1000;
const BATCHES: usize = 60;
const IN_FLIGHT: usize = 5;

struct Node {
    replica: Replica,
    leader: PartitionLeader,
}

async fn open(id: u64, dir: &Path, router: &LocalRouter, idempotence: bool) -> Node {
    let (replica, leader) = start_local(id, dir, router).await;
    let leader = if idempotence {
        leader
    } else {
        leader.without_idempotence()
    };
    Node { replica, leader }
}

/// The batches: 1 to 3 records each, sequences counting records.
fn batches() -> Vec<(i32, bytes::Bytes)> {
    let mut seq = 0;
    (0..BATCHES)
        .map(|k| {
            let count = 1 + k % 3;
            let b = BatchSpec::new(PRODUCER_ID, 0, seq, count).encode();
            let out = (seq, b);
            seq += count as i32;
            out
        })
        .collect()
}

fn current_leader(nodes: &BTreeMap<u64, Node>) -> Option<u64> {
    highest_term_leader(nodes.values().map(|n| &n.replica))
}

struct Run {
    stored: Vec<(i32, i64)>,
    acks: BTreeMap<i32, Produced>,
    duplicates_answered: usize,
    duplicates_across_leaders: usize,
    leader_changes: usize,
    check_disagreements: u64,
}

/// Produces every batch (retrying until each is acknowledged, losing some acknowledgements
/// the first time), cutting the leader off before windows 2 and 8 and healing it before
/// windows 5 and 11. Bounded: 400 attempts, 90 seconds.
async fn run(idempotence: bool) -> Run {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let router = LocalRouter::default();
    let mut nodes = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        let id = i as u64 + 1;
        nodes.insert(id, open(id, dir.path(), &router, idempotence).await);
    }
    let members: BTreeMap<u64, BasicNode> = (1..=3)
        .map(|id| (id, BasicNode::new(format!("node-{id}"))))
        .collect();
    nodes[&1].replica.raft.initialize(members).await.unwrap();

    let all = batches();
    let mut acks: BTreeMap<i32, Produced> = BTreeMap::new();
    let mut lost_once = std::collections::BTreeSet::new();
    let (mut attempts, mut window, mut duplicates_answered) = (0, 0, 0);
    let mut leaders = Vec::new();
    // Which leader stored each batch, to count retries answered by another leader.
    let mut stored_by = BTreeMap::new();
    let mut duplicates_across_leaders = 0;
    let mut isolated = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while acks.len() < all.len() {
        assert!(
            attempts < 400 && tokio::time::Instant::now() < deadline,
            "bounded: {} of {} acknowledged",
            acks.len(),
            all.len()
        );
        let Some(leader) = current_leader(&nodes) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if leaders.last() != Some(&leader) {
            leaders.push(leader);
        }
        match window {
            // Cut the leader off right after a window whose acknowledgement was lost, and
            // wait for the next leader, as a client refreshing its metadata does: the retry
            // goes to a leader that did not store the original.
            2 | 8 if isolated.is_none() => {
                router.isolate(leader);
                isolated = Some(leader);
                window += 1;
                continue;
            }
            3 | 9 if current_leader(&nodes) == isolated => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            5 | 11 => {
                if let Some(id) = isolated.take() {
                    router.heal(id);
                }
            }
            _ => {}
        }
        let sending = window;
        window += 1;
        // At most IN_FLIGHT batches past the oldest unacknowledged one (max.in.flight=5).
        let first = all
            .iter()
            .position(|(seq, _)| !acks.contains_key(seq))
            .unwrap();
        let pending: Vec<&(i32, bytes::Bytes)> = all[first..(first + IN_FLIGHT).min(all.len())]
            .iter()
            .filter(|(seq, _)| !acks.contains_key(seq))
            .collect();
        let node = &nodes[&leader].leader;
        let sends = pending
            .iter()
            .map(|(_, b)| tokio::time::timeout(Duration::from_secs(3), node.produce(b.clone())));
        let results = futures_util::future::join_all(sends).await;
        // The last batch of the window just before the leader is cut off loses its first
        // acknowledgement: the followers may not have applied it yet when the next leader
        // takes over, so the new leader must catch up before it decides.
        let last_in_window = pending.last().map(|(seq, _)| *seq);
        for ((seq, _), result) in pending.iter().zip(results) {
            attempts += 1;
            match result {
                Ok(Ok(p)) => {
                    if p.duplicate {
                        duplicates_answered += 1;
                        if stored_by.get(seq).is_some_and(|l| *l != leader) {
                            duplicates_across_leaders += 1;
                        }
                    } else {
                        stored_by.insert(*seq, leader);
                    }
                    // Every fifth batch's first acknowledgement is lost: the producer retries.
                    let lose =
                        *seq % 5 == 0 || (matches!(sending, 1 | 7) && Some(*seq) == last_in_window);
                    if lose && lost_once.insert(*seq) {
                        continue;
                    }
                    acks.insert(*seq, p);
                }
                Ok(Err(
                    ProduceError::NotLeader { .. }
                    | ProduceError::Superseded
                    | ProduceError::TimedOut(_),
                ))
                | Err(_) => {}
                // A batch after one that failed in the same window: retried in order.
                Ok(Err(ProduceError::Refused(AppendError::OutOfOrderSequence { .. }))) => {}
                Ok(Err(e)) => panic!("fatal producer error for sequence {seq}: {e}"),
            }
        }
    }
    if let Some(id) = isolated.take() {
        router.heal(id);
    }
    // Every replica applies everything the last leader committed.
    let leader = current_leader(&nodes).unwrap();
    let reference = converged(&nodes[&leader].replica, nodes.values().map(|n| &n.replica)).await;
    let check_disagreements = nodes
        .values()
        .map(|n| n.replica.state_machine.check_disagreements())
        .sum();
    for (_, n) in nodes {
        n.replica.shutdown().await.unwrap();
    }
    Run {
        stored: producer_batches(&reference, PRODUCER_ID),
        acks,
        duplicates_answered,
        duplicates_across_leaders,
        leader_changes: leaders.len() - 1,
        check_disagreements,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_batch_is_stored_once_in_order_across_leader_changes_and_lost_acks() {
    let run = run(true).await;
    let sequences: Vec<i32> = run.stored.iter().map(|(s, _)| *s).collect();
    let expected: Vec<i32> = batches().iter().map(|(s, _)| *s).collect();
    assert_eq!(sequences, expected, "each batch once, in sequence order");
    for (seq, offset) in &run.stored {
        assert_eq!(
            run.acks[seq].base_offset, *offset,
            "sequence {seq} answered with its offset"
        );
    }
    eprintln!(
        "stored {} batches; {} retries answered as duplicates, {} by another leader than the one that stored them; {} leader changes",
        run.stored.len(),
        run.duplicates_answered,
        run.duplicates_across_leaders,
        run.leader_changes
    );
    assert!(
        run.duplicates_answered > 0,
        "retries of stored batches were answered"
    );
    assert!(
        run.duplicates_across_leaders > 0,
        "a new leader recognised a retry"
    );
    assert!(
        run.leader_changes >= 2,
        "the leader changed: {}",
        run.leader_changes
    );
    assert_eq!(run.check_disagreements, 0);
}

/// The control run: without the leader's duplicate check, the retries of batches whose
/// acknowledgement was lost are stored again, and every replica's own check sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_duplicate_check_retries_are_stored_twice() {
    let run = run(false).await;
    let mut counts = BTreeMap::new();
    for (seq, _) in &run.stored {
        *counts.entry(*seq).or_insert(0) += 1;
    }
    let duplicated = counts.values().filter(|c| **c > 1).count();
    assert!(duplicated > 0, "duplicates stored: {counts:?}");
    assert!(run.check_disagreements > 0);
}
