//! Retention on the partition replicas a node hosts: every `log.retention.check.interval.ms`
//! each replica (leader or follower) applies its topic's `retention.ms` and `retention.bytes`
//! to its own log (tally-raft's `apply_retention`). A peer counts as down for the leader's
//! purge once its node has not answered pings for `down_after` (the broker's
//! `replica.lag.time.max.ms`, after which the follower is out of the ISR too): such a
//! follower is sent a snapshot with the leader's retained log when it returns, instead of
//! holding every other replica's disk hostage.

use std::sync::Arc;
use std::time::Duration;

use tally_raft::{apply_retention, Liveness};
use tokio::sync::watch;

use crate::cluster_node::Hosted;

/// When retention runs on a node's replicas, and the clock it reads.
#[derive(Clone)]
pub struct RetentionSchedule {
    /// `log.retention.check.interval.ms`.
    pub every: Duration,
    /// Silence after which a peer's node counts as down, and retention stops keeping
    /// segments for it.
    pub down_after: Duration,
    /// The broker's clock in milliseconds (a simulation's runs on simulated time).
    pub now_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
}

impl std::fmt::Debug for RetentionSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionSchedule")
            .field("every", &self.every)
            .field("down_after", &self.down_after)
            .finish()
    }
}

pub(crate) async fn run(
    hosted: Hosted,
    liveness: Arc<Liveness>,
    schedule: RetentionSchedule,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(schedule.every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let partitions: Vec<_> = hosted.lock().values().cloned().collect();
        for p in partitions.iter().filter(|p| p.retention) {
            let now_ms = (schedule.now_ms)();
            let live = |node: u64| liveness.heard_within(node, schedule.down_after);
            match apply_retention(&p.replica, now_ms, live).await {
                Ok(pass) if pass.purged_to.is_some() => tracing::info!(
                    topic = %p.topic,
                    partition = p.index,
                    purged_to = ?pass.purged_to,
                    log_start_offset = pass.log_start_offset,
                    "retention"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    topic = %p.topic,
                    partition = p.index,
                    error = %e,
                    "retention failed; tried again next round"
                ),
            }
        }
    }
}
