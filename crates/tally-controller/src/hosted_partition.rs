//! The partition replicas a node hosts, made to follow the metadata: a replica is opened
//! for every partition assigned to the node and closed (its files removed) when its topic is
//! deleted. The partition's directory is `<data dir>/<topic>-<partition>`, as Kafka names
//! it, with the topic id in `partition.metadata`, so a directory left by a deleted topic of
//! the same name is recognised and replaced. Its Raft group is named by the topic id, so a
//! recreated topic never talks to its predecessor's replicas.
//!
//! The group is formed by its first replica (the preferred leader) once every replica is a
//! registered broker: it initializes the group with all of them as voters, and the others
//! wait for it, as openraft recommends. Replicas move by membership changes
//! (`replica_move.rs`).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::impls::BasicNode;
use tally_log::{storage, LogConfig};
use tally_raft::{
    PartitionLeader, PeerAddresses, RaftServer, RaftTransport, Replica, ReplicaConfig,
    TcpNetworkFactory,
};
use uuid::Uuid;

use crate::cluster_state::ClusterState;

const METADATA_FILE: &str = "partition.metadata";

/// A topic's log settings from its configs (`segment.bytes`, `retention.ms`, ...): the
/// broker's own resolution of topic overrides over its defaults.
#[derive(Clone)]
pub struct TopicLogConfig(pub Arc<LogConfigOf>);

/// Resolves a topic's configs into its log settings.
pub type LogConfigOf = dyn Fn(&BTreeMap<String, String>) -> LogConfig + Send + Sync;

impl std::fmt::Debug for TopicLogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TopicLogConfig")
    }
}

/// A partition replica on this node, with its produce path (used when it leads).
pub struct HostedPartition {
    pub topic: String,
    pub index: u32,
    pub topic_id: Uuid,
    /// The replicas the metadata named when this one was opened, preferred leader first.
    pub replicas: Vec<u64>,
    pub replica: Replica,
    pub leader: PartitionLeader,
    /// Retention deletes old segments (`cleanup.policy` includes `delete`, the default).
    pub(crate) retention: bool,
    /// The group has a membership (formed here or joined).
    formed: AtomicBool,
    /// This node, leading the group, is moving its replicas (`replica_move.rs`).
    pub(crate) moving: AtomicBool,
    /// The term this node leads the group in, and since when (`prefer_leader`).
    pub(crate) led_since: parking_lot::Mutex<Option<(u64, tokio::time::Instant)>>,
}

impl HostedPartition {
    /// The partition's Raft group name on every node's listener.
    pub fn group_name(topic_id: Uuid, index: u32) -> String {
        format!("{topic_id}-{index}")
    }

    /// Forms the group if this node is its first replica, the group is not formed yet and
    /// every replica is registered (their Raft addresses are known). Tried again by every
    /// reconciliation until it is done.
    pub(crate) async fn form(&self, node_id: u64, state: &ClusterState) -> io::Result<()> {
        if self.formed.load(Ordering::Relaxed) {
            return Ok(());
        }
        if self
            .replica
            .raft
            .is_initialized()
            .await
            .map_err(io::Error::other)?
        {
            self.formed.store(true, Ordering::Relaxed);
            return Ok(());
        }
        if self.replicas.first() != Some(&node_id) {
            return Ok(());
        }
        // A group that has had a leader exists on other nodes: a replica opened here since
        // (a reassignment) joins it as a learner and must not start another.
        let led = state
            .topic(&self.topic)
            .filter(|t| t.topic_id == self.topic_id)
            .and_then(|t| t.leaders.get(self.index as usize).copied().flatten())
            .is_some();
        if led {
            return Ok(());
        }
        let members: Option<BTreeMap<u64, BasicNode>> = self
            .replicas
            .iter()
            .map(|id| {
                let broker = state.brokers().get(id)?;
                Some((*id, BasicNode::new(broker.raft_addr.clone())))
            })
            .collect();
        if let Some(members) = members {
            self.replica
                .raft
                .initialize(members)
                .await
                .map_err(io::Error::other)?;
            self.formed.store(true, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Stops the replica's Raft and closes its log.
    async fn stop(&self) -> io::Result<()> {
        self.replica.close().await
    }
}

/// What the metadata assigns to a node: (topic, partition) -> (topic id, replicas).
pub(crate) type Assigned = BTreeMap<(String, u32), (Uuid, Vec<u64>)>;

pub(crate) fn assigned_to(state: &ClusterState, node_id: u64) -> Assigned {
    let mut out = Assigned::new();
    for (name, topic) in state.topics() {
        for (index, replicas) in topic.partitions.iter().enumerate() {
            if replicas.contains(&node_id) {
                out.insert(
                    (name.clone(), index as u32),
                    (topic.topic_id, replicas.clone()),
                );
            }
        }
    }
    out
}

pub(crate) fn partition_dir(data_dir: &Path, topic: &str, index: u32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

/// What a node needs to open and serve partition replicas.
pub(crate) struct HostContext {
    pub node_id: u64,
    pub data_dir: PathBuf,
    pub replica: ReplicaConfig,
    pub max_message_bytes: usize,
    pub server: Arc<RaftServer>,
    /// Where this node reaches its peers (its voters list).
    pub peers: PeerAddresses,
    pub transport: Arc<dyn RaftTransport>,
    /// See `ClusterConfig::preferred_leader_check`.
    pub preferred_leader_check: Option<std::time::Duration>,
    /// See `ClusterConfig::topic_log_config`.
    pub topic_log_config: Option<TopicLogConfig>,
}

impl HostContext {
    /// Opens the replica of `topic`-`index` and serves its group.
    pub(crate) async fn open(
        &self,
        topic: &str,
        index: u32,
        topic_id: Uuid,
        replicas: &[u64],
        configs: &BTreeMap<String, String>,
    ) -> io::Result<Arc<HostedPartition>> {
        let dir = partition_dir(&self.data_dir, topic, index);
        let prepared = dir.clone();
        self.replica
            .io
            .run(move || prepare_dir(&prepared, topic_id))
            .await??;
        let group = HostedPartition::group_name(topic_id, index);
        let network = TcpNetworkFactory::with_peers(group.clone(), Arc::clone(&self.peers))
            .over(Arc::clone(&self.transport));
        let mut config = self.replica.clone();
        if let Some(topic_log_config) = &self.topic_log_config {
            config.log = (topic_log_config.0)(configs);
        }
        let replica = Replica::open(self.node_id, &dir, &config, network).await?;
        self.server
            .register(group, replica.raft.clone(), replica.store.clone());
        let leader = PartitionLeader::new(
            replica.raft.clone(),
            replica.store.clone(),
            replica.state_machine.clone(),
            self.max_message_bytes,
        );
        Ok(Arc::new(HostedPartition {
            topic: topic.to_string(),
            index,
            topic_id,
            replicas: replicas.to_vec(),
            replica,
            leader,
            retention: configs
                .get("cleanup.policy")
                .is_none_or(|p| p.split(',').any(|p| p.trim() == "delete")),
            formed: AtomicBool::new(false),
            moving: AtomicBool::new(false),
            led_since: parking_lot::Mutex::new(None),
        }))
    }

    /// Stops serving `partition`; with `delete`, removes its files (its topic is gone).
    pub(crate) async fn close(&self, partition: &HostedPartition, delete: bool) -> io::Result<()> {
        self.server.unregister(&HostedPartition::group_name(
            partition.topic_id,
            partition.index,
        ));
        partition.stop().await?;
        if delete {
            let dir = partition.replica.dir.clone();
            self.replica
                .io
                .run(move || storage::remove_dir_all(&dir))
                .await??;
        }
        Ok(())
    }
}

/// Makes `dir` the directory of topic `topic_id`'s partition: a directory of another topic
/// of the same name (deleted while this node was away) is removed first.
fn prepare_dir(dir: &Path, topic_id: Uuid) -> io::Result<()> {
    let file = dir.join(METADATA_FILE);
    let expected = format!("version: 0\ntopic_id: {topic_id}\n");
    match std::fs::read_to_string(&file) {
        Ok(found) if found == expected => return Ok(()),
        Ok(_) => storage::remove_dir_all(dir)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Through the storage seam, and durable up to the data directory: the replica's vote and
    // entries will be fsynced in here, which is worth nothing if the directory can vanish.
    storage::create_dir_all_durable(dir)?;
    let tmp = dir.join(format!("{METADATA_FILE}.tmp"));
    storage::write(&tmp, expected.as_bytes())?;
    storage::sync_all(&std::fs::File::open(&tmp)?, &tmp)?;
    storage::rename(&tmp, &file)?;
    storage::sync_dir(dir)
}
