//! Moving a partition's replicas to the set the metadata assigns (`tally partition reassign`),
//! driven by the group's leader, while the partition keeps serving:
//!
//! 1. The nodes that gain a replica open it empty (reconciliation) and wait: a group that has
//!    had a leader is never formed again.
//! 2. The leader adds each of them as a learner and waits until it has caught up (openraft's
//!    blocking `add_learner`: the whole log, entry by entry, as a lagging follower gets it).
//! 3. It makes the assigned set the voters (`change_membership`: a joint configuration, then
//!    the new one; a replica left out is removed from the group, and a leader left out steps
//!    down once the new configuration is committed).
//! 4. Each leader reports its group's committed voters to the controller (`RecordVoters`); a
//!    node whose replica is no longer assigned removes it only once the recorded voters leave
//!    it out, so a group never loses a voter before the new ones have joined.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::impls::BasicNode;
use openraft::{ChangeMembers, ServerState};

use crate::cluster_state::ClusterState;
use crate::command::ControllerCommand;
use crate::controller::Controller;
use crate::hosted_partition::HostedPartition;
use crate::submit::submit;

/// How long a new replica may take to catch up before the move is given up (and tried again
/// by a later reconciliation).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The group's voters when its membership is uniform and committed here, sorted.
fn committed_voters(partition: &HostedPartition) -> Option<Vec<u64>> {
    let m = partition.replica.raft.metrics().borrow_watched().clone();
    let membership = m.membership_config.membership();
    let committed = m.last_applied.as_ref() >= m.membership_config.log_id().as_ref();
    (membership.get_joint_config().len() == 1 && committed).then(|| {
        let mut voters: Vec<u64> = membership.voter_ids().collect();
        voters.sort_unstable();
        voters
    })
}

/// The replicas the metadata assigns to `partition`, sorted.
fn assigned(partition: &HostedPartition, state: &ClusterState) -> Option<Vec<u64>> {
    let topic = state
        .topic(&partition.topic)
        .filter(|t| t.topic_id == partition.topic_id)?;
    let mut replicas = topic.partitions.get(partition.index as usize)?.clone();
    replicas.sort_unstable();
    Some(replicas)
}

/// On the leader of `partition`'s group: reports its voters when the controller's record
/// differs, and starts moving replicas when the assignment differs from the voters.
pub(crate) async fn follow_assignment(
    controller: &Arc<Controller>,
    state: &ClusterState,
    partition: &Arc<HostedPartition>,
) {
    let m = partition.replica.raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return;
    }
    let (Some(voters), Some(target)) = (committed_voters(partition), assigned(partition, state))
    else {
        return;
    };
    let recorded = state
        .topic(&partition.topic)
        .and_then(|t| t.voters.get(partition.index as usize).cloned().flatten());
    if recorded.as_ref() != Some(&voters) {
        let command = ControllerCommand::RecordVoters {
            topic: partition.topic.clone(),
            topic_id: partition.topic_id,
            partition: partition.index,
            voters: voters.clone(),
        };
        if let Err(e) = submit(controller, &command, REPORT_TIMEOUT).await {
            tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "reporting voters failed; trying again");
        }
    }
    if voters == target {
        remove_stray_learners(partition, &target).await;
        return;
    }
    if partition.moving.swap(true, Ordering::AcqRel) {
        return;
    }
    let addresses: Option<Vec<(u64, String)>> = target
        .iter()
        .map(|id| Some((*id, state.brokers().get(id)?.raft_addr.clone())))
        .collect();
    let Some(addresses) = addresses else {
        partition.moving.store(false, Ordering::Release);
        return;
    };
    let partition = Arc::clone(partition);
    let controller = Arc::clone(controller);
    tokio::spawn(async move {
        if let Err(e) = move_replicas(&controller, &partition, &voters, &addresses).await {
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "moving replicas failed; trying again");
        }
        partition.moving.store(false, Ordering::Release);
    });
}

/// Kafka's preferred leader election: a node that has led `partition` for `check` while its
/// preferred replica (the assignment's first) is another voter that has caught up hands
/// leadership over, so leaders spread as the assignment spreads them, after failovers and
/// reassignments. Writes refused during the transfer are answered NOT_LEADER_OR_FOLLOWER (not
/// stored) and retried by the client.
pub(crate) async fn prefer_leader(
    check: Option<Duration>,
    state: &ClusterState,
    partition: &HostedPartition,
) {
    let Some(check) = check else {
        return;
    };
    let m = partition.replica.raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        *partition.led_since.lock() = None;
        return;
    }
    {
        let mut since = partition.led_since.lock();
        match *since {
            Some((term, at)) if term == m.current_term && at.elapsed() >= check => {
                *since = Some((term, tokio::time::Instant::now()));
            }
            Some((term, _)) if term == m.current_term => return,
            _ => {
                *since = Some((m.current_term, tokio::time::Instant::now()));
                return;
            }
        }
    }
    let preferred = state
        .topic(&partition.topic)
        .filter(|t| t.topic_id == partition.topic_id)
        .and_then(|t| t.partitions.get(partition.index as usize))
        .and_then(|r| r.first().copied());
    let Some(preferred) = preferred.filter(|p| *p != m.id) else {
        return;
    };
    let is_voter = m
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == preferred);
    let caught_up = m
        .replication
        .as_ref()
        .and_then(|r| r.get(&preferred).cloned().flatten())
        .is_some_and(|matched| Some(matched.index) == m.last_log_index);
    if !(is_voter && caught_up) {
        return;
    }
    tracing::info!(topic = %partition.topic, partition = partition.index, to = preferred, "handing leadership to the preferred replica");
    if let Err(e) = partition
        .replica
        .raft
        .trigger()
        .transfer_leader(preferred)
        .await
    {
        tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "leadership transfer failed");
    }
}

/// Learners the assignment does not name (a reassignment cancelled while they caught up):
/// removed from the membership, or the leader would go on sending them the log.
async fn remove_stray_learners(partition: &HostedPartition, target: &[u64]) {
    if partition.moving.load(Ordering::Acquire) {
        return;
    }
    let m = partition.replica.raft.metrics().borrow_watched().clone();
    let stray: BTreeSet<u64> = m
        .membership_config
        .membership()
        .learner_ids()
        .filter(|id| !target.contains(id))
        .collect();
    if stray.is_empty() {
        return;
    }
    tracing::info!(topic = %partition.topic, partition = partition.index, ?stray, "removing learners the assignment does not name");
    if let Err(e) = partition
        .replica
        .raft
        .change_membership(ChangeMembers::RemoveNodes(stray), false)
        .await
    {
        tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "removing learners failed; trying again");
    }
}

async fn move_replicas(
    controller: &Controller,
    partition: &HostedPartition,
    voters: &[u64],
    target: &[(u64, String)],
) -> Result<(), String> {
    let raft = &partition.replica.raft;
    for (id, addr) in target.iter().filter(|(id, _)| !voters.contains(id)) {
        tracing::info!(topic = %partition.topic, partition = partition.index, node = id, "adding a replica as a learner");
        tokio::time::timeout(
            CATCH_UP_TIMEOUT,
            raft.add_learner(*id, BasicNode::new(addr.clone()), true),
        )
        .await
        .map_err(|_| format!("node {id} did not catch up in {CATCH_UP_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    }
    // The learners may have taken long to catch up: a reassignment cancelled or replaced
    // meanwhile must not be carried out.
    let new_voters: BTreeSet<u64> = target.iter().map(|(id, _)| *id).collect();
    let now: Option<BTreeSet<u64>> =
        assigned(partition, &controller.cluster()).map(|a| a.into_iter().collect());
    if now.as_ref() != Some(&new_voters) {
        return Err(format!(
            "the assignment changed to {now:?} while the new replicas caught up"
        ));
    }
    tracing::info!(topic = %partition.topic, partition = partition.index, ?new_voters, "changing the voters");
    raft.change_membership(new_voters, false)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
