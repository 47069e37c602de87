//! Elections for a node's partition groups, from one task instead of a timer per group (see
//! `net/liveness.rs` for why).
//!
//! Partition groups run with openraft's tick off ([`driven`]): no replica elects or sends
//! heartbeats on its own. Every half heartbeat interval the driver looks at each group the
//! node hosts:
//! - a voter that knows no live leader (none, itself without leading, one whose node has
//!   not answered a ping within the minimum election timeout, or one whose node said in its
//!   last answer that its replica of the group has stopped) starts an election after a
//!   random timeout between the minimum and the maximum, and again after another such
//!   timeout while no leader appears. This is Raft's election timer, with the node's pings in
//!   place of each group's heartbeats; like Raft's, it starts again whenever the replica's
//!   vote changes (it granted a candidate its vote, or saw a newer term), so two replicas do
//!   not keep splitting the vote when requests take longer than the timeouts' spread. Each
//!   election starts with a Pre-Vote round: a replica whose log is behind cannot win, and
//!   without it each of its attempts raised the term past the one that could (seen in
//!   `cluster_rdkafka.rs`: a paused leader not replaced in 3 s).
//! - a leader sends one round of heartbeats when a peer among its members came back (it
//!   answered after a silence, or restarted): a restarted follower learns who leads and how
//!   far it lags, and a leader that was cut off meanwhile learns of the newer term and steps
//!   down.
//!
//! A group with traffic still sends openraft's appends as before; the election safety is
//! openraft's (votes, terms, log comparison); only when to ask for a vote is decided here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::{Config, ServerState};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::local_network::PartitionRaft;
use crate::net::{Liveness, Pinger, RaftTransport};
use crate::seeded_runtime::mix;
use crate::type_config::Vote;

/// What the driver drives: the node's partition groups and where its peers are.
pub trait DrivenGroups: Send + Sync + 'static {
    /// The partition groups this node hosts, each under a name of its own.
    fn groups(&self) -> Vec<(String, PartitionRaft)>;
    /// Where each node that shares a group with this one is reached.
    fn peers(&self) -> BTreeMap<u64, String>;
}

/// openraft's settings for a driven group: `config` with its timers off.
pub fn driven(config: &Config) -> Arc<Config> {
    Arc::new(Config {
        enable_tick: false,
        ..config.clone()
    })
}

/// The intervals the driver keeps, from the groups' settings.
#[derive(Debug, Clone, Copy)]
struct Timing {
    heartbeat: Duration,
    election_min: Duration,
    election_max: Duration,
}

/// Starts pinging the peers and driving the groups, until `stop` turns true.
pub fn spawn_group_driver(
    node_id: u64,
    config: &Config,
    transport: Arc<dyn RaftTransport>,
    seed: Option<u64>,
    groups: Arc<dyn DrivenGroups>,
    liveness: Arc<Liveness>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let timing = Timing {
        heartbeat: Duration::from_millis(config.heartbeat_interval),
        election_min: Duration::from_millis(config.election_timeout_min),
        election_max: Duration::from_millis(config.election_timeout_max),
    };
    let pinger = Pinger::new(node_id, transport);
    let driver = GroupDriver {
        node_id,
        timing,
        random: mix(seed.unwrap_or_else(rand010::random), node_id),
        deadlines: BTreeMap::new(),
    };
    vec![
        tokio::spawn(ping_loop(
            pinger,
            timing,
            Arc::clone(&groups),
            Arc::clone(&liveness),
            stop.clone(),
        )),
        tokio::spawn(driver.run(groups, liveness, stop)),
    ]
}

async fn ping_loop(
    mut pinger: Pinger,
    timing: Timing,
    groups: Arc<dyn DrivenGroups>,
    liveness: Arc<Liveness>,
    mut stop: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(timing.heartbeat);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let peers = groups.peers();
        // A peer silent for longer than the election timeout has been given up on by its
        // groups' followers here: when it answers again, it came back.
        pinger
            .ping_all(&peers, &liveness, timing.heartbeat, timing.election_min)
            .await;
    }
}

/// The driver's state: when each leaderless group here starts its next election, and the
/// vote its replica held when that was set.
struct GroupDriver {
    node_id: u64,
    timing: Timing,
    random: u64,
    deadlines: BTreeMap<String, (Instant, Vote)>,
}

/// What the driver reads of a group's metrics.
struct GroupView {
    /// The replica's Raft core runs (it stops on a fatal error).
    running: bool,
    state: ServerState,
    vote: Vote,
    leader: Option<u64>,
    voter: bool,
    members: BTreeSet<u64>,
}

impl GroupDriver {
    async fn run(
        mut self,
        groups: Arc<dyn DrivenGroups>,
        liveness: Arc<Liveness>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut every = tokio::time::interval(self.timing.heartbeat / 2);
        every.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let returned: BTreeSet<u64> = liveness.take_returned().into_iter().collect();
            self.drive(groups.groups(), &liveness, &returned).await;
        }
    }

    /// A random election timeout in [min, max).
    fn election_timeout(&mut self) -> Duration {
        self.random = mix(self.random, 0x6a09_e667_f3bc_c908);
        let span = self
            .timing
            .election_max
            .saturating_sub(self.timing.election_min);
        let span_us = span.as_micros().max(1) as u64;
        self.timing.election_min + Duration::from_micros(self.random % span_us)
    }

    fn view(&self, raft: &PartitionRaft) -> GroupView {
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let view = GroupView {
            running: m.running_state.is_ok(),
            state: m.state,
            vote: m.vote,
            leader: m.current_leader,
            voter: membership.voter_ids().any(|id| id == self.node_id),
            members: membership
                .voter_ids()
                .chain(membership.learner_ids())
                .collect(),
        };
        view
    }

    async fn drive(
        &mut self,
        groups: Vec<(String, PartitionRaft)>,
        liveness: &Liveness,
        returned: &BTreeSet<u64>,
    ) {
        let now = Instant::now();
        let mut hosted = BTreeSet::new();
        let mut stopped = Vec::new();
        for (name, raft) in groups {
            let view = self.view(&raft);
            hosted.insert(name.clone());
            if !view.running {
                // Named in this node's pongs: its followers elect as if the node were gone.
                stopped.push(name);
                continue;
            }
            if view.state == ServerState::Leader {
                self.deadlines.remove(&name);
                if !view.members.is_disjoint(returned) {
                    if let Err(e) = raft.trigger().heartbeat().await {
                        tracing::debug!(group = %name, error = %e, "a heartbeat could not be sent");
                    }
                }
                continue;
            }
            let leader_alive = view.leader.is_some_and(|leader| {
                leader != self.node_id
                    && liveness.heard_within(leader, self.timing.election_min)
                    && !liveness.group_stopped(leader, &name)
            });
            if !view.voter || leader_alive {
                self.deadlines.remove(&name);
                continue;
            }
            let deadline = match self.deadlines.get(&name) {
                Some((deadline, vote)) if *vote == view.vote => *deadline,
                _ => {
                    let deadline = now + self.election_timeout();
                    self.deadlines.insert(name.clone(), (deadline, view.vote));
                    deadline
                }
            };
            if now >= deadline {
                tracing::info!(group = %name, leader = ?view.leader, "no live leader; starting an election");
                if let Err(e) = raft.trigger().elect(true).await {
                    tracing::debug!(group = %name, error = %e, "an election could not start");
                }
                // The election changes the vote: the next look sets the next deadline.
                let next = now + self.election_timeout();
                self.deadlines.insert(name, (next, view.vote));
            }
        }
        self.deadlines.retain(|name, _| hosted.contains(name));
        liveness.set_stopped_here(stopped);
    }
}
