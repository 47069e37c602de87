//! The group state machine's rules for committed offsets: who may commit, and when a group's
//! offsets expire. Pure, like the rest of `machine.rs`.

use tally_protocol::ResponseError;
use tokio::time::Instant;

use super::consumer_group::{Group, GroupState};
use super::requests::{CommitRequest, GroupConfig};
use super::store::StoreRecord;

/// The tombstones of an empty group whose offsets are older than `offsets.retention.minutes`
/// (counted from when it became empty or its last commit, whichever is later).
pub(crate) fn expired_offsets(
    group: &Group,
    config: &GroupConfig,
    now_ms: i64,
) -> Option<Vec<StoreRecord>> {
    if group.state != GroupState::Empty || group.offsets.is_empty() {
        return None;
    }
    let last_commit = group
        .offsets
        .values()
        .map(|o| o.commit_timestamp_ms)
        .max()
        .unwrap_or(0);
    let idle_since = group.empty_since_ms.max(last_commit);
    (now_ms - idle_since > config.offsets_retention_ms).then(|| group.tombstones())
}

/// OffsetCommit's and TxnOffsetCommit's checks of the committer against the group (`None`:
/// the group does not exist). `transactional`: a commit inside a transaction, where a commit
/// without a member (producers before KIP-447) is not checked against the generation.
pub(crate) fn check_commit(
    group: Option<&mut Group>,
    request: &CommitRequest,
    transactional: bool,
    now: Instant,
) -> Result<(), ResponseError> {
    let simple = request.generation < 0 && request.member_id.is_empty();
    let g = match group {
        _ if simple && transactional => return Ok(()),
        None if simple => return Ok(()),
        None => return Err(ResponseError::IllegalGeneration),
        Some(g) => g,
    };
    if simple {
        return match g.state {
            GroupState::Empty => Ok(()),
            _ => Err(ResponseError::UnknownMemberId),
        };
    }
    if let Some(instance) = &request.group_instance_id {
        if g.member_by_instance(instance)
            .is_some_and(|m| m.id != request.member_id)
        {
            return Err(ResponseError::FencedInstanceId);
        }
    }
    let (current, state) = (g.generation, g.state);
    let Some(m) = g.member_mut(&request.member_id) else {
        return Err(ResponseError::UnknownMemberId);
    };
    m.last_seen = now;
    if request.generation != current {
        return Err(ResponseError::IllegalGeneration);
    }
    if state == GroupState::CompletingRebalance {
        return Err(ResponseError::RebalanceInProgress);
    }
    Ok(())
}
