//! One node of a cluster: its Raft listener, its replica of the controller group, and the
//! partition replicas the metadata assigns to it.
//!
//! At start the node opens the controller's replica in `<data dir>/__cluster_metadata`; if its
//! log is empty it initializes the group with the configured voters (KRaft's
//! `controller.quorum.voters`; every voter does so with the same list, which openraft allows).
//! It then registers itself, and a reconciling task keeps the hosted replicas equal to what
//! the metadata assigns: on every applied command, and once a second so a group waiting for
//! a registration is formed once it arrives.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{InitializeError, RaftError};
use openraft::impls::BasicNode;
use openraft::ServerState;
use parking_lot::Mutex;
use tally_raft::{
    driven, spawn_group_driver, DrivenGroups, Liveness, PartitionRaft, PeerAddresses, RaftServer,
    RaftTransport, ReplicaConfig, TcpNetworkFactory,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster_state::ClusterState;
use crate::command::ControllerCommand;
use crate::controller::{Controller, ControllerError};
use crate::hosted_partition::{assigned_to, HostContext, HostedPartition, TopicLogConfig};
use crate::outcome::Outcome;
use crate::replica_move::{follow_assignment, prefer_leader};
use crate::retention_loop::RetentionSchedule;
use crate::submit::{submit, ProposalHandler, CONTROLLER_GROUP};

/// How long a start-up registration keeps trying before it gives up and logs.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// A leadership report that cannot reach the controller is tried again on the next round.
const REPORT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `node.id`.
    pub node_id: u64,
    /// The controller group's voters and their Raft addresses (`controller.quorum.voters`).
    /// This node's entry is where its Raft listener binds.
    pub voters: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    /// The cluster id this node proposes (its data directory's); the first proposed wins.
    pub cluster_id: String,
    /// Where this node serves Kafka clients, as it registers (`advertised.listeners`).
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Where a node that is not among the voters listens for Raft (`raft.listener`): it
    /// joins as a broker, and the controller's leader adds it to the controller group as a
    /// learner, so it follows the metadata.
    pub raft_listener: Option<String>,
    /// How long this node leads a partition whose preferred replica (its first) is another
    /// before handing leadership over (Kafka's `auto.leader.rebalance.enable`,
    /// `leader.imbalance.check.interval.seconds`); None: never.
    pub preferred_leader_check: Option<Duration>,
    pub replica: ReplicaConfig,
    pub max_message_bytes: usize,
    /// The network Raft's traffic travels on: TCP (`TokioTcp`), or the simulation's.
    pub transport: Arc<dyn RaftTransport>,
    /// A value this node has not started with before (the broker's clock in milliseconds):
    /// what its Raft listener answers pings with, so peers see a restart.
    pub incarnation: u64,
    /// A topic's log settings from its configs; None: `replica.log` for every topic.
    pub topic_log_config: Option<TopicLogConfig>,
    /// When each hosted replica applies retention; None: never.
    pub retention: Option<RetentionSchedule>,
}

pub(crate) type Hosted = Arc<Mutex<BTreeMap<(String, u32), Arc<HostedPartition>>>>;

pub struct ClusterNode {
    controller: Arc<Controller>,
    server: Arc<RaftServer>,
    /// Which peers answer the node's pings (see tally-raft's `group_driver.rs`).
    liveness: Arc<Liveness>,
    hosted: Hosted,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    context: Arc<HostContext>,
}

impl ClusterNode {
    pub async fn start(config: ClusterConfig) -> io::Result<ClusterNode> {
        let voter = config.voters.contains_key(&config.node_id);
        let raft_addr = config
            .voters
            .get(&config.node_id)
            .or(config.raft_listener.as_ref())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "node {} is not among the voters and has no Raft listener",
                        config.node_id
                    ),
                )
            })?;
        let server = Arc::new(RaftServer::bind_on(&*config.transport, raft_addr).await?);
        server.set_incarnation(config.incarnation);
        let peers: PeerAddresses = Arc::new(config.voters.clone());
        let controller = Arc::new(
            Controller::open(
                config.node_id,
                &config.data_dir.join(CONTROLLER_GROUP),
                &config.replica,
                TcpNetworkFactory::with_peers(CONTROLLER_GROUP, Arc::clone(&peers))
                    .over(Arc::clone(&config.transport)),
            )
            .await?
            .with_peers(Arc::clone(&peers))
            .over(Arc::clone(&config.transport)),
        );
        server.register(
            CONTROLLER_GROUP,
            controller.raft().clone(),
            controller.replica().store.clone(),
        );
        server.register_forward(
            CONTROLLER_GROUP,
            Arc::new(ProposalHandler(Arc::clone(&controller))),
        );
        // Only voters form the controller group; a broker that joins is sent its log.
        if voter
            && !controller
                .raft()
                .is_initialized()
                .await
                .map_err(io::Error::other)?
        {
            let voters: BTreeMap<u64, BasicNode> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
                .collect();
            match controller.raft().initialize(voters).await {
                // Another voter's election reached this one first: the group is forming.
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        // Partition groups run without openraft's timers: the group driver elects and the
        // node's pings stand in for each group's heartbeats. The controller's one group keeps
        // its own.
        let partition_replica = ReplicaConfig {
            raft: driven(&config.replica.raft),
            ..config.replica.clone()
        };
        let context = Arc::new(HostContext {
            node_id: config.node_id,
            data_dir: config.data_dir.clone(),
            replica: partition_replica,
            max_message_bytes: config.max_message_bytes,
            server: Arc::clone(&server),
            peers,
            transport: Arc::clone(&config.transport),
            preferred_leader_check: config.preferred_leader_check,
            topic_log_config: config.topic_log_config.clone(),
        });
        let (stop, _) = watch::channel(false);
        let hosted: Hosted = Arc::default();
        let registration = ControllerCommand::RegisterBroker {
            node_id: config.node_id,
            host: config.advertised_host.clone(),
            port: config.advertised_port,
            raft_addr: raft_addr.clone(),
        };
        let init = ControllerCommand::InitCluster {
            cluster_id: config.cluster_id.clone(),
        };
        let liveness = Liveness::new();
        server.answer_pings_with(Arc::clone(&liveness));
        let driven_groups = Arc::new(NodeGroups {
            node_id: config.node_id,
            hosted: Arc::clone(&hosted),
            controller: Arc::clone(&controller),
            peers: Arc::clone(&context.peers),
        });
        let mut tasks = spawn_group_driver(
            config.node_id,
            &config.replica.raft,
            Arc::clone(&config.transport),
            config.replica.seed,
            driven_groups,
            Arc::clone(&liveness),
            stop.subscribe(),
        );
        tasks.extend([
            tokio::spawn(register(
                Arc::clone(&controller),
                [init, registration],
                stop.subscribe(),
            )),
            tokio::spawn(reconcile_loop(
                Arc::clone(&controller),
                Arc::clone(&context),
                Arc::clone(&hosted),
                stop.subscribe(),
            )),
        ]);
        if let Some(schedule) = config.retention.clone() {
            tasks.push(tokio::spawn(crate::retention_loop::run(
                Arc::clone(&hosted),
                Arc::clone(&liveness),
                schedule,
                stop.subscribe(),
            )));
        }
        Ok(ClusterNode {
            controller,
            server,
            liveness,
            hosted,
            stop,
            tasks: Mutex::new(tasks),
            context,
        })
    }

    pub fn node_id(&self) -> u64 {
        self.context.node_id
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    pub fn raft_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Which peers answer this node's pings, and when they last did.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// AppendEntries requests this node's partition replicas were sent, heartbeats included.
    pub fn partition_append_requests(&self) -> u64 {
        self.partitions()
            .iter()
            .map(|p| {
                let group = HostedPartition::group_name(p.topic_id, p.index);
                self.server.append_requests(&group)
            })
            .sum()
    }

    /// The replica of `topic`-`index` on this node, if it hosts one.
    pub fn partition(&self, topic: &str, index: u32) -> Option<Arc<HostedPartition>> {
        self.hosted.lock().get(&(topic.to_string(), index)).cloned()
    }

    /// Every replica this node hosts.
    pub fn partitions(&self) -> Vec<Arc<HostedPartition>> {
        self.hosted.lock().values().cloned().collect()
    }

    /// Proposes `command` through the controller's leader, wherever it is.
    pub async fn submit(
        &self,
        command: &ControllerCommand,
        timeout: Duration,
    ) -> Result<Outcome, ControllerError> {
        submit(&self.controller, command, timeout).await
    }

    /// Stops the tasks, every partition replica, then the controller's, and flushes their
    /// logs.
    pub async fn shutdown(&self) -> io::Result<()> {
        self.stop.send_replace(true);
        let tasks: Vec<_> = self.tasks.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        let hosted: Vec<_> = std::mem::take(&mut *self.hosted.lock())
            .into_values()
            .collect();
        for partition in hosted {
            self.context.close(&partition, false).await?;
        }
        self.server.unregister(CONTROLLER_GROUP);
        self.controller.close().await
    }
}

/// What the group driver drives on this node: its hosted partitions' groups, and every other
/// registered broker (reached at this node's own address for it when it has one, as the
/// groups' traffic is).
struct NodeGroups {
    node_id: u64,
    hosted: Hosted,
    controller: Arc<Controller>,
    peers: PeerAddresses,
}

impl DrivenGroups for NodeGroups {
    fn groups(&self) -> Vec<(String, PartitionRaft)> {
        self.hosted
            .lock()
            .values()
            .map(|p| {
                let name = HostedPartition::group_name(p.topic_id, p.index);
                (name, p.replica.raft.clone())
            })
            .collect()
    }

    fn peers(&self) -> BTreeMap<u64, String> {
        let mut peers: BTreeMap<u64, String> = self.controller.read(|state| {
            state
                .brokers()
                .values()
                .map(|b| (b.node_id, b.raft_addr.clone()))
                .collect()
        });
        for (id, addr) in self.peers.iter() {
            peers.insert(*id, addr.clone());
        }
        peers.remove(&self.node_id);
        peers
    }
}

/// Names the cluster (if no node has yet) and registers the node, each tried until it is
/// done or the node stops.
async fn register(
    controller: Arc<Controller>,
    commands: [ControllerCommand; 2],
    mut stop: watch::Receiver<bool>,
) {
    for command in commands {
        tokio::select! {
            answer = submit(&controller, &command, REGISTER_TIMEOUT) => match answer {
                Ok(outcome) => tracing::info!(?outcome, "joined the cluster"),
                Err(e) => tracing::error!(error = %e, ?command, "could not reach the controller"),
            },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

async fn reconcile_loop(
    controller: Arc<Controller>,
    context: Arc<HostContext>,
    hosted: Hosted,
    mut stop: watch::Receiver<bool>,
) {
    let mut changes = controller.changes();
    loop {
        add_brokers_to_controller_group(&controller).await;
        reconcile(&controller, &context, &hosted).await;
        tokio::select! {
            _ = changes.changed() => {}
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Opens what the metadata assigns to this node and is not hosted, closes what is hosted
/// and no longer assigned (its files removed: its topic is gone or recreated).
async fn reconcile(controller: &Arc<Controller>, context: &HostContext, hosted: &Hosted) {
    let state = controller.cluster();
    let assigned = assigned_to(&state, context.node_id);
    let gone: Vec<Arc<HostedPartition>> = {
        let mut hosted = hosted.lock();
        let keys: Vec<_> = hosted
            .iter()
            .filter(|(key, p)| {
                assigned.get(*key).is_none_or(|(id, _)| *id != p.topic_id)
                    && !still_a_voter(&state, context.node_id, p)
            })
            .map(|(key, _)| key.clone())
            .collect();
        keys.iter().filter_map(|k| hosted.remove(k)).collect()
    };
    for partition in gone {
        if let Err(e) = context.close(&partition, true).await {
            tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "closing a replica failed");
        }
    }
    for ((topic, index), (topic_id, replicas)) in assigned {
        if hosted.lock().contains_key(&(topic.clone(), index)) {
            continue;
        }
        let configs = state
            .topic(&topic)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        match context
            .open(&topic, index, topic_id, &replicas, &configs)
            .await
        {
            Ok(partition) => {
                hosted.lock().insert((topic, index), partition);
            }
            Err(e) => {
                tracing::error!(%topic, partition = index, error = %e, "opening a replica failed");
            }
        }
    }
    let hosted: Vec<_> = hosted.lock().values().cloned().collect();
    for partition in hosted {
        if let Err(e) = partition.form(context.node_id, &state).await {
            tracing::warn!(topic = %partition.topic, partition = partition.index, error = %e, "forming a partition group failed");
        }
        report_leadership(controller, &state, context.node_id, &partition).await;
        follow_assignment(controller, &state, &partition).await;
        prefer_leader(context.preferred_leader_check, &state, &partition).await;
    }
}

/// On the controller's leader: every registered broker that is not a member of the controller
/// group becomes a learner of it, so it receives the metadata log (a node added with
/// `raft.listener`, `tally cluster add-node`).
async fn add_brokers_to_controller_group(controller: &Controller) {
    let m = controller.raft().metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return;
    }
    let membership = m.membership_config.membership();
    let missing: Vec<(u64, String)> = controller.read(|state| {
        state
            .brokers()
            .values()
            .filter(|b| membership.get_node(&b.node_id).is_none())
            .map(|b| (b.node_id, b.raft_addr.clone()))
            .collect()
    });
    for (id, addr) in missing {
        tracing::info!(node = id, %addr, "adding a broker to the controller group as a learner");
        if let Err(e) = controller
            .raft()
            .add_learner(id, BasicNode::new(addr), false)
            .await
        {
            tracing::warn!(node = id, error = %e, "adding a learner to the controller group failed");
        }
    }
}

/// Whether a replica no longer assigned to this node must stay: its topic is still there
/// and its group's leader has not yet reported voters that leave this node out (a
/// reassignment in progress: the group may still need this replica's vote).
fn still_a_voter(state: &ClusterState, node_id: u64, partition: &HostedPartition) -> bool {
    let Some(topic) = state
        .topic(&partition.topic)
        .filter(|t| t.topic_id == partition.topic_id)
    else {
        return false;
    };
    topic
        .voters
        .get(partition.index as usize)
        .cloned()
        .flatten()
        .is_none_or(|voters| voters.contains(&node_id))
}

/// Tells the controller that this node leads `partition`, when its term is newer than the
/// recorded one, so every node can name the leader.
async fn report_leadership(
    controller: &Controller,
    state: &ClusterState,
    node_id: u64,
    partition: &HostedPartition,
) {
    let m = partition.replica.raft.metrics().borrow_watched().clone();
    if m.state != ServerState::Leader {
        return;
    }
    let recorded = state
        .topic(&partition.topic)
        .and_then(|t| t.leaders.get(partition.index as usize).copied().flatten());
    if recorded.is_some_and(|(_, epoch)| epoch >= m.current_term) {
        return;
    }
    let command = ControllerCommand::RecordLeader {
        topic: partition.topic.clone(),
        topic_id: partition.topic_id,
        partition: partition.index,
        leader: node_id,
        epoch: m.current_term,
    };
    if let Err(e) = submit(controller, &command, REPORT_TIMEOUT).await {
        tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "reporting leadership failed; trying again");
    }
}
