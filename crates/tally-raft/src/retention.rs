//! Retention for a partition replica: `retention.ms` and `retention.bytes` applied by each
//! replica to its own log, as each Kafka replica does.
//!
//! A replica may delete a segment only once its Raft log no longer needs the entries in it:
//! a pass takes a snapshot at or past the last entry below the cut, purges the Raft log up to
//! that entry, and then deletes the segments below the first entry left
//! (`SegmentLogStore::delete_records_before`). Records above the applied high watermark are
//! never deleted.
//!
//! A leader purges no further than every live peer has replicated, so a follower that is up
//! and merely behind keeps being sent entries; a peer that is down is not waited for, and
//! when it returns it is sent a snapshot with the leader's retained log
//! (`snapshot_records.rs`), as a Kafka follower behind the leader's log start starts again
//! there. A peer whose replication is unknown (never heard since this replica led) counts as
//! behind everything.
//!
//! A log-start entry (`PartitionLeader::propose_log_start`) raises the cut to its offset on
//! every replica that has applied it, whatever the topic's own settings.
//!
//! The controller's group is never given to retention: its metadata listener needs the whole
//! log at every start.

use std::io;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;

use crate::log_store::SegmentLogStore;
use crate::replica::Replica;
use crate::type_config::LogId;

/// How long a pass waits for openraft to build a snapshot or to purge.
const WAIT: Duration = Duration::from_secs(10);

/// What retention would do now, from the log's rules and the raft index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// Records below it may go.
    cut: i64,
    /// The last entry below the cut that is not purged yet.
    purge_to: Option<LogId>,
    roll_needed: bool,
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPass {
    /// The Raft log was purged up to this entry.
    pub purged_to: Option<LogId>,
    /// The log start offset afterwards.
    pub log_start_offset: i64,
}

impl SegmentLogStore {
    /// The log id of the entry at `index`, if the log still holds it.
    fn raft_log_id(&self, index: u64) -> Option<LogId> {
        let loc = self.inner().index.read().get(index)?;
        Some(LogId::new_term_index(loc.term, index))
    }

    /// Retention's plan at `now_ms`, never past `applied_end`, and up to `floor` (a
    /// log-start entry's offset) whatever the topic's retention says. Rolls the active segment
    /// first if it has expired or holds the floor, so that it can go on a later pass.
    /// Blocking.
    fn retention_plan(&self, now_ms: i64, applied_end: i64, floor: i64) -> io::Result<Plan> {
        let inner = self.inner();
        let mut log = inner.log.lock();
        let mut cut = log.retention_cut(now_ms);
        let floor_in_active = floor > log.active_base_offset();
        if (cut.roll_needed || floor_in_active) && log.log_end_offset() <= applied_end {
            log.roll().map_err(io::Error::other)?;
            cut = log.retention_cut(now_ms);
        }
        let cut_offset = cut.new_start.max(floor).min(applied_end);
        let index = inner.index.read();
        let purge_to = index
            .last_ending_at_or_before(cut_offset)
            .filter(|l| Some(*l) > index.last_purged());
        Ok(Plan {
            cut: cut_offset,
            purge_to,
            roll_needed: cut.roll_needed,
        })
    }
}

/// One retention pass over `replica` at `now_ms`. `live(node)` says whether a peer is up (see
/// the module comment).
pub async fn apply_retention(
    replica: &Replica,
    now_ms: i64,
    live: impl Fn(u64) -> bool,
) -> io::Result<RetentionPass> {
    let store = replica.store.clone();
    let applied_end = *replica.state_machine.high_watermark().borrow();
    let floor = replica.state_machine.log_start_floor();
    let plan = store
        .io()
        .run(move || store.retention_plan(now_ms, applied_end, floor))
        .await??;
    let mut purged_to = None;
    if let Some(target) = plan.purge_to {
        if let Some(upto) = purge_limit(replica, target, &live) {
            purge(replica, upto).await?;
            purged_to = Some(upto);
        }
    }
    let store = replica.store.clone();
    let log_start_offset = store
        .io()
        .run(move || store.delete_records_before(plan.cut))
        .await??;
    Ok(RetentionPass {
        purged_to,
        log_start_offset,
    })
}

/// How far this replica may purge towards `target`: all of it on a follower; on a leader, no
/// further than the least of its live peers' replicated entries.
fn purge_limit(replica: &Replica, target: LogId, live: &impl Fn(u64) -> bool) -> Option<LogId> {
    let m = replica.raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return Some(target);
    }
    let mut limit = target.index;
    if let Some(replication) = &m.replication {
        for (peer, matched) in replication {
            if *peer == replica.id || !live(*peer) {
                continue;
            }
            match matched {
                Some(matched) => limit = limit.min(matched.index),
                None => return None,
            }
        }
    }
    // None when that entry is purged already.
    replica.store.raft_log_id(limit)
}

/// Snapshots at or past `upto` if there is no such snapshot yet, then purges the Raft log up
/// to it. A leader may postpone the purge while an entry is in flight to a follower; the next
/// pass finishes it, and nothing is deleted past the first entry left meanwhile.
async fn purge(replica: &Replica, upto: LogId) -> io::Result<()> {
    let has_snapshot = |m: &openraft::RaftMetrics<crate::TallyRaft>| {
        m.snapshot.is_some_and(|s| s.index >= upto.index)
    };
    if !has_snapshot(&replica.raft.metrics().borrow_watched()) {
        replica
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(io::Error::other)?;
        replica
            .raft
            .wait(Some(WAIT))
            .metrics(has_snapshot, "a snapshot for retention")
            .await
            .map_err(io::Error::other)?;
    }
    replica
        .raft
        .trigger()
        .purge_log(upto.index)
        .await
        .map_err(io::Error::other)?;
    let purged = replica
        .raft
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= upto.index),
            "the purge",
        )
        .await;
    if let Err(e) = purged {
        tracing::debug!(dir = %replica.dir.display(), error = %e, "retention's purge is postponed");
    }
    Ok(())
}
