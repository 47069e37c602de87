//! The broker: state shared by every connection, start-up (validate config, lock the data
//! directory, bind, recover every partition), background maintenance, and clean shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::broker_config::{BrokerConfig, ConfigError, Endpoint};
use crate::clock::Clock;
use crate::cluster::cluster_config::quorum_voters;
use crate::cluster::group_partitions::GroupPartitions;
use crate::cluster::ClusterMode;
use crate::data_dir::{DataDir, DataDirError};
use crate::group::store::OFFSETS_TOPIC;
use crate::group::GroupCoordinator;
use crate::partition_handle::WriterMode;
use crate::producer_id_manager::ProducerIdManager;
use crate::security::{AclStore, CredentialStore};
use crate::topic_error::TopicError;
use crate::topic_registry::TopicRegistry;
use crate::txn::{OffsetsMarkerHook, TxnCoordinator, TRANSACTION_STATE_TOPIC};
use tally_controller::{ClusterConfig, ClusterNode, RetentionSchedule, TopicLogConfig};
use tally_raft::{RaftTimeouts, RaftTransport, ReplicaConfig, TokioTcp};

#[derive(Debug, Error)]
pub enum StartError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    DataDir(#[from] DataDirError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open producer id allocation in {path}: {source}")]
    ProducerIds {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open topics: {0}")]
    Topics(#[from] TopicError),
    #[error("cannot load consumer groups: {0}")]
    Groups(String),
    #[error("cannot load transaction state: {0}")]
    Transactions(String),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot start the cluster node: {0}")]
    Cluster(std::io::Error),
    #[error("{0}")]
    Credentials(#[from] crate::security::CredentialError),
}

/// How a broker is run besides its config: what a simulation changes.
#[derive(Clone)]
pub struct BrokerOptions {
    pub writer_mode: WriterMode,
    pub clock: Arc<dyn Clock>,
    /// The network Raft's traffic between nodes travels on (cluster mode).
    pub raft_transport: Arc<dyn RaftTransport>,
    /// Each listener's name and bound port, when there are several (else the first
    /// listener is on `listen_port`).
    pub listener_ports: Vec<(String, u16)>,
    /// The SSL listener's keystore (reloaded when its file changes), which Raft's TLS
    /// between nodes presents too; read from `ssl.keystore.location` when absent.
    pub tls_keystore: Option<Arc<crate::tls::ReloadingKeystore>>,
    /// The seed of Raft's randomness (election timeouts) in cluster mode; `None`: random.
    /// A simulation sets it so that its seed replays exactly.
    pub raft_seed: Option<u64>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            writer_mode: WriterMode::Thread,
            clock: crate::clock::system(),
            raft_transport: TokioTcp::shared(),
            listener_ports: Vec::new(),
            tls_keystore: None,
            raft_seed: None,
        }
    }
}

pub struct Broker {
    pub config: Arc<BrokerConfig>,
    /// The wall clock every timestamp and expiry reads.
    pub clock: Arc<dyn Clock>,
    pub node_id: i32,
    /// The first listener's advertised endpoint (cluster mode registers it).
    pub advertised: Endpoint,
    /// Every listener's advertised endpoint: a client is told the one it connected through.
    pub advertised_listeners: Vec<Endpoint>,
    pub cluster_id: String,
    pub topics: Arc<TopicRegistry>,
    pub producer_ids: Arc<ProducerIdManager>,
    pub groups: Arc<GroupCoordinator>,
    pub txns: Arc<TxnCoordinator>,
    /// SCRAM credentials, checked by SASL listeners and changed by AlterUserScramCredentials.
    pub credentials: Arc<CredentialStore>,
    /// ACLs and the authorizer (off unless `authorizer.class.name` is set).
    pub acls: Arc<AclStore>,
    /// Request and connection metrics (the partitions keep their own).
    pub metrics: Arc<crate::metrics::BrokerMetrics>,
    /// Cluster mode (`controller.quorum.voters` set): topics are served by Raft groups.
    pub cluster: Option<Arc<ClusterMode>>,
    /// Bumped after every append; long-polling fetches wait on it.
    data_version: watch::Sender<u64>,
    shutting_down: AtomicBool,
    writer_mode: WriterMode,
    _data_dir: DataDir,
}

impl Broker {
    /// The cluster's id: in cluster mode the one the controller recorded (the first node's to
    /// propose it), else this data directory's.
    pub fn cluster_id(&self) -> String {
        self.cluster
            .as_ref()
            .and_then(|c| {
                c.node
                    .controller()
                    .read(|s| s.cluster_id().map(str::to_string))
            })
            .unwrap_or_else(|| self.cluster_id.clone())
    }

    /// Whether `topic` has partition `index`: in the registry, or in cluster mode in the
    /// controller's metadata.
    pub fn partition_exists(&self, topic: &str, index: i32) -> bool {
        match &self.cluster {
            Some(cluster) => cluster.node.controller().read(|s| {
                s.topic(topic)
                    .is_some_and(|t| usize::try_from(index).is_ok_and(|i| i < t.partitions.len()))
            }),
            None => self.topics.partition(topic, index).is_some(),
        }
    }

    /// What a client that connected through `listener` is told this broker's address is.
    pub fn advertised_for(&self, listener: &str) -> &Endpoint {
        self.advertised_listeners
            .iter()
            .find(|e| e.name == listener)
            .unwrap_or(&self.advertised)
    }

    pub fn notify_append(&self) {
        self.data_version.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.data_version.subscribe()
    }

    /// The coordinator of `group_id` on this node: the broker's own, or in cluster mode the
    /// one of the group's `__consumer_offsets` partition if this node leads it (else
    /// NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS, which send the client to
    /// FindCoordinator or to retry).
    pub fn group_coordinator(
        &self,
        group_id: &str,
    ) -> Result<Arc<GroupCoordinator>, tally_protocol::ResponseError> {
        match &self.cluster {
            None => Ok(Arc::clone(&self.groups)),
            Some(cluster) => cluster.groups.coordinator(cluster, group_id),
        }
    }

    /// Every group coordinator this node runs (ListGroups, metrics, the console).
    pub fn group_coordinators(&self) -> Vec<Arc<GroupCoordinator>> {
        match &self.cluster {
            None => vec![Arc::clone(&self.groups)],
            Some(cluster) => cluster.groups.all(),
        }
    }

    /// Runs blocking file I/O (reads, topic files) off the async workers. Under a
    /// simulation (`WriterMode::Task`) it runs inline, so the simulation stays deterministic.
    pub async fn off_runtime<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> R {
        off_runtime(self.writer_mode, f).await
    }

    /// From now on connections finish what they are doing and stop.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Opens a broker without a listener: checks the config, locks the data directory and
    /// recovers every partition. `listen_port` is the port clients reach it on (for the
    /// advertised address when none is configured). [`Broker::start`] adds the TCP listener;
    /// a simulation feeds it connections through [`Broker::serve_connection`].
    pub async fn open(config: BrokerConfig, listen_port: u16) -> Result<Arc<Broker>, StartError> {
        Self::open_with(config, listen_port, BrokerOptions::default()).await
    }

    /// [`Broker::open`] with its partition writers and clock as `options` say (a simulation
    /// runs the writers as tasks of its runtime, on the runtime's time).
    pub async fn open_with(
        config: BrokerConfig,
        listen_port: u16,
        options: BrokerOptions,
    ) -> Result<Arc<Broker>, StartError> {
        config.validate()?;
        let BrokerOptions {
            writer_mode,
            clock,
            raft_transport,
            listener_ports,
            tls_keystore,
            raft_seed,
        } = options;
        if let Ok(controls) = std::env::var("TALLY_CONTROL") {
            warn!(%controls, "TALLY_CONTROL is set: test controls turn guarantees off");
        }
        let now_ms = clock.now_ms();
        let config = Arc::new(config);
        let log_dir = config.log_dir();
        let data_dir = DataDir::open(&log_dir, config.node_id())?;
        let listener_ports = if listener_ports.is_empty() {
            vec![(config.listener()?.name, listen_port)]
        } else {
            listener_ports
        };
        let advertised_listeners = config.advertised_listeners(&listener_ports)?;
        let advertised = advertised_listeners[0].clone();
        let producer_ids =
            ProducerIdManager::open(&log_dir).map_err(|source| StartError::ProducerIds {
                path: log_dir.display().to_string(),
                source,
            })?;
        let cluster_mode = quorum_voters(&config)?.is_some();
        let ((credentials, bootstrap_users), acls) = {
            let config = Arc::clone(&config);
            let log_dir = log_dir.clone();
            off_runtime(writer_mode, move || {
                let (enabled, settings) = config.authorizer();
                let acls = AclStore::open(&log_dir, enabled, settings)?;
                let credentials = open_credentials(&config, &log_dir, cluster_mode)?;
                Ok::<_, StartError>((credentials, Arc::new(acls)))
            })
            .await?
        };
        let topics = {
            let config = Arc::clone(&config);
            let log_dir = log_dir.clone();
            // Recovery reads files: keep it off the async workers.
            off_runtime(writer_mode, move || {
                TopicRegistry::open(&log_dir, config, now_ms, writer_mode)
            })
            .await?
        };
        // The internal topic of committed offsets: one partition, like any other on disk.
        if topics.get(OFFSETS_TOPIC).is_none() {
            topics.create(OFFSETS_TOPIC, 1, Default::default(), false, now_ms)?;
        }
        let offsets_partition = topics
            .partition(OFFSETS_TOPIC, 0)
            .expect("offsets partition");
        let groups = {
            let config = config.group_config();
            let clock = Arc::clone(&clock);
            let (groups, store_task) = off_runtime(writer_mode, move || {
                GroupCoordinator::open(offsets_partition, config, clock)
            })
            .await
            .map_err(StartError::Groups)?;
            tokio::spawn(store_task);
            Arc::new(groups)
        };
        let topics = Arc::new(topics);
        let producer_ids = Arc::new(producer_ids);
        let cluster = match quorum_voters(&config)? {
            Some(voters) => Some(Arc::new(
                start_cluster(
                    &config,
                    &data_dir.cluster_id,
                    voters,
                    &advertised,
                    secure_raft(&config, raft_transport, tls_keystore, &acls).await?,
                    (&credentials, &acls),
                    (writer_mode, raft_seed, Arc::clone(&clock)),
                )
                .await
                .map_err(StartError::Cluster)?,
            )),
            None => None,
        };
        if let Some(cluster) = &cluster {
            cluster.security.bootstrap(bootstrap_users);
            tokio::spawn(GroupPartitions::follow(Arc::downgrade(cluster)));
        }
        let txns = open_txns(
            &config,
            &topics,
            &producer_ids,
            &groups,
            &clock,
            writer_mode,
            now_ms,
        )
        .await?;
        Ok(Arc::new(Broker {
            credentials,
            acls,
            groups,
            txns,
            cluster,
            metrics: Arc::default(),
            node_id: config.node_id(),
            cluster_id: data_dir.cluster_id.clone(),
            config,
            advertised,
            advertised_listeners,
            topics,
            producer_ids,
            data_version: watch::channel(0).0,
            shutting_down: AtomicBool::new(false),
            writer_mode,
            clock,
            _data_dir: data_dir,
        }))
    }

    /// Runs retention and producer expiry until `shutdown` turns true.
    pub fn spawn_maintenance(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(maintenance(Arc::clone(self), shutdown))
    }

    /// Flushes and snapshots every partition (the end of a clean shutdown).
    pub async fn close(&self) {
        if let Some(cluster) = &self.cluster {
            if let Err(e) = cluster.node.shutdown().await {
                warn!(error = %e, "closing the cluster node's replicas failed");
            }
        }
        self.topics.close_all().await;
    }
}

/// [`Broker::off_runtime`] before there is a broker (its start-up): under a simulation a
/// blocking thread would finish after a real, not a simulated, time, and the simulated time a
/// start takes (so a seed's trace) would depend on the machine's load.
async fn off_runtime<R: Send + 'static>(
    mode: WriterMode,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    match mode {
        WriterMode::Thread => tokio::task::spawn_blocking(f)
            .await
            .expect("blocking task panicked"),
        WriterMode::Task => f(),
    }
}

/// The credential store, with `sasl.bootstrap.users` (and its file) created in it when
/// absent. In cluster mode the store starts empty and follows the controller, and the
/// bootstrap users are returned, to be proposed to it.
fn open_credentials(
    config: &BrokerConfig,
    log_dir: &std::path::Path,
    cluster_mode: bool,
) -> Result<(Arc<CredentialStore>, Vec<crate::security::CredentialChange>), StartError> {
    use crate::security::credential_store::{bootstrap_changes, parse_bootstrap_users};
    use crate::security::CredentialError;
    let store = CredentialStore::open(log_dir)?;
    let (file, _) = config.get("sasl.bootstrap.users.file");
    let file_text = match file.as_str() {
        "" => None,
        path => Some(
            std::fs::read_to_string(path).map_err(|source| CredentialError::Io {
                path: format!("sasl.bootstrap.users.file {path}"),
                source,
            })?,
        ),
    };
    let users = parse_bootstrap_users(&config.get("sasl.bootstrap.users").0, file_text.as_deref())?;
    if cluster_mode {
        store.replace_all(Default::default());
        return Ok((Arc::new(store), bootstrap_changes(&users)));
    }
    let created = store.bootstrap(&users)?;
    if created > 0 {
        info!(
            users = created,
            "created SCRAM credentials from sasl.bootstrap.users"
        );
    }
    Ok((Arc::new(store), Vec::new()))
}

/// Raft's transport as `inter.broker.listener.name` asks: mutual TLS over `transport` when
/// it names an SSL listener, else `transport` as it is.
async fn secure_raft(
    config: &Arc<BrokerConfig>,
    transport: Arc<dyn RaftTransport>,
    keystore: Option<Arc<crate::tls::ReloadingKeystore>>,
    acls: &Arc<AclStore>,
) -> Result<Arc<dyn RaftTransport>, StartError> {
    if !config.inter_broker_protocol()?.uses_tls() {
        return Ok(transport);
    }
    let c = Arc::clone(config);
    // Reads the keystore and truststore files: off the async workers.
    let (server, client) =
        tokio::task::spawn_blocking(move || crate::tls::raft_configs(&c, keystore))
            .await
            .expect("reading the TLS files panicked")?;
    info!("cluster mode: Raft traffic between nodes over mutual TLS");
    Ok(crate::security::RaftTls::wrap(
        transport,
        server,
        client,
        Arc::clone(acls),
    ))
}

/// The cluster node of a broker in cluster mode: its Raft listener on its voter address (or
/// `raft.listener` for a node that joins as a broker), its replicas under
/// `<data dir>/cluster/`.
async fn start_cluster(
    config: &BrokerConfig,
    cluster_id: &str,
    voters: std::collections::BTreeMap<u64, String>,
    advertised: &Endpoint,
    transport: Arc<dyn RaftTransport>,
    (credentials, acls): (&Arc<CredentialStore>, &Arc<AclStore>),
    (writer_mode, raft_seed, clock): (WriterMode, Option<u64>, Arc<dyn Clock>),
) -> std::io::Result<ClusterMode> {
    // New at each start: what the node's Raft listener answers pings with.
    let incarnation = clock.now_ms() as u64;
    let clock_for_groups = Arc::clone(&clock);
    let partition = config.partition_config(&Default::default());
    let mut replica = ReplicaConfig::new(partition.log, RaftTimeouts::default())
        .map_err(std::io::Error::other)?;
    // Under a simulation (writers as tasks) the replicas' file I/O runs inline too, so that a
    // seed's run does not depend on when real threads finish.
    if writer_mode == WriterMode::Task {
        replica.io = tally_raft::BlockingIo::Inline;
    }
    replica.seed = raft_seed;
    let node = ClusterNode::start(ClusterConfig {
        node_id: config.node_id() as u64,
        voters,
        data_dir: config.log_dir().join("cluster"),
        cluster_id: cluster_id.to_string(),
        advertised_host: advertised.host.clone(),
        advertised_port: advertised.port,
        raft_listener: crate::cluster::cluster_config::raft_listener(config),
        preferred_leader_check: config.preferred_leader_check(),
        replica,
        max_message_bytes: partition.max_message_bytes,
        transport,
        incarnation,
        topic_log_config: Some(TopicLogConfig(Arc::new({
            let config = config.clone();
            move |overrides| config.partition_config(overrides).log
        }))),
        retention: Some(RetentionSchedule {
            every: Duration::from_millis(config.retention_check_interval_ms()),
            down_after: config.replica_lag_time_max(),
            now_ms: Arc::new(move || clock.now_ms()),
        }),
    })
    .await?;
    info!(node_id = config.node_id(), raft = %node.raft_addr(), "cluster mode: started the cluster node");
    let groups = GroupPartitions::new(
        config.group_config(),
        config.offsets_topic(),
        clock_for_groups,
        writer_mode,
    );
    Ok(ClusterMode::new(
        node,
        config.replica_lag_time_max(),
        Arc::clone(credentials),
        Arc::clone(acls),
        raft_seed,
        groups,
    ))
}

/// Retention and producer expiry, each on its own interval.
async fn maintenance(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut retention = tokio::time::interval(Duration::from_millis(
        broker.config.retention_check_interval_ms(),
    ));
    let mut expiry = tokio::time::interval(Duration::from_millis(
        broker.config.producer_id_expiration_check_interval_ms(),
    ));
    let mut groups = tokio::time::interval(Duration::from_millis(100));
    let mut txns = tokio::time::interval(Duration::from_millis(
        broker.txns.config.abort_check_interval_ms,
    ));
    retention.tick().await;
    expiry.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = groups.tick() => broker.groups.tick().await,
            _ = txns.tick() => broker.txns.tick(),
            _ = retention.tick() => {
                // On each partition's writer: deletion is disk I/O, and it must not race appends.
                for p in broker.topics.all_partitions() {
                    let now = broker.clock.now_ms();
                    if let Ok(Err(e)) = p.run(move |p| p.apply_retention(now)).await {
                        warn!(topic = %p.topic, partition = p.index, error = %e, "retention failed");
                    }
                }
            }
            _ = expiry.tick() => {
                let mut removed = 0;
                for p in broker.topics.all_partitions() {
                    let now = broker.clock.now_ms();
                    let n = p.run(move |p| p.remove_expired_producers(now)).await.unwrap_or(0);
                    p.metrics()
                        .producers_expired
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    removed += n;
                }
                if removed > 0 {
                    info!(removed, "expired idle producers");
                }
            }
        }
    }
}

/// Creates `__transaction_state` if needed, loads the coordinator from it (off the async
/// workers) and resumes the transactions a crash left half-ended.
async fn open_txns(
    config: &Arc<BrokerConfig>,
    topics: &Arc<TopicRegistry>,
    producer_ids: &Arc<ProducerIdManager>,
    groups: &Arc<GroupCoordinator>,
    clock: &Arc<dyn Clock>,
    writer_mode: WriterMode,
    now_ms: i64,
) -> Result<Arc<TxnCoordinator>, StartError> {
    if topics.get(TRANSACTION_STATE_TOPIC).is_none() {
        let partitions = config.transaction_state_partitions();
        topics.create(
            TRANSACTION_STATE_TOPIC,
            partitions,
            Default::default(),
            false,
            now_ms,
        )?;
    }
    let logs = topics
        .get(TRANSACTION_STATE_TOPIC)
        .expect("transaction state topic")
        .partitions
        .clone();
    let (topics, ids, clock) = (
        Arc::clone(topics),
        Arc::clone(producer_ids),
        Arc::clone(clock),
    );
    let txn_config = config.txn_config();
    let groups = Arc::clone(groups);
    // Markers that reach __consumer_offsets apply or drop the transaction's offsets.
    let on_offsets_marker: OffsetsMarkerHook =
        Arc::new(move |producer_id, commit| groups.complete_txn(producer_id, commit));
    let txns = off_runtime(writer_mode, move || {
        TxnCoordinator::open(
            logs,
            topics,
            ids,
            clock,
            txn_config,
            writer_mode,
            on_offsets_marker,
        )
    })
    .await
    .map_err(StartError::Transactions)?;
    let txns = Arc::new(txns);
    txns.resume();
    Ok(txns)
}
