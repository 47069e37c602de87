//! One replica of a partition group: its Raft, log store and state machine, opened from a
//! data directory, and openraft's settings for partition groups.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::network::RaftNetworkFactory;
use openraft::{Config, SnapshotPolicy};
use tally_log::LogConfig;

use crate::blocking_io::BlockingIo;
use crate::local_network::PartitionRaft;
use crate::log_store::SegmentLogStore;
use crate::seeded_runtime::SeededRuntime;
use crate::state_machine::{ApplyListener, PartitionStateMachine};
use crate::type_config::TallyRaft;

/// Timeouts of a partition group, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimeouts {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
}

impl Default for RaftTimeouts {
    /// A leader that stops answering is replaced in about 1.3 s (p50 of 20 crashes, in-process,
    /// BENCHMARKS.md): openraft's leader lease (the maximum election timeout) expires, then a
    /// follower's election timeout. 400-800 ms gave 2.0 s.
    fn default() -> Self {
        RaftTimeouts {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 500,
        }
    }
}

/// openraft's settings for a partition group. Snapshots are built, and the log purged, only
/// by retention (`retention.rs`), never by openraft's own policy: the controller's group, which
/// retention never touches, keeps its whole log. A follower behind the leader's purge is sent
/// a snapshot with the leader's retained records (`snapshot_records.rs`), over a transfer with
/// timeouts of its own (`install_snapshot_timeout` is not used).
pub fn raft_config(timeouts: RaftTimeouts) -> Result<Arc<Config>, openraft::ConfigError> {
    let config = Config {
        cluster_name: "tally-partition".to_string(),
        heartbeat_interval: timeouts.heartbeat_interval_ms,
        election_timeout_min: timeouts.election_timeout_min_ms,
        election_timeout_max: timeouts.election_timeout_max_ms,
        snapshot_policy: SnapshotPolicy::Never,
        replication_lag_threshold: u64::MAX,
        max_in_snapshot_log_to_keep: u64::MAX,
        ..Config::default()
    };
    Ok(Arc::new(config.validate()?))
}

/// What a replica is opened with.
#[derive(Clone)]
pub struct ReplicaConfig {
    pub log: LogConfig,
    pub raft: Arc<Config>,
    /// Producers remembered per partition (`max.producers.per.partition`).
    pub max_producers: usize,
    /// Told of every batch the replica's state machine applies (the controller's metadata).
    pub listener: Option<Arc<dyn ApplyListener>>,
    /// Where the replica's blocking file I/O runs (inline under a simulation).
    pub io: BlockingIo,
    /// The seed of the randomness openraft draws for this node's replicas (election
    /// timeouts, tick jitter), mixed with each replica's directory; `None`: random. A
    /// simulation sets it so that a seed replays exactly.
    pub seed: Option<u64>,
}

impl std::fmt::Debug for ReplicaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaConfig")
            .field("log", &self.log)
            .field("raft", &self.raft)
            .field("max_producers", &self.max_producers)
            .field("listener", &self.listener.is_some())
            .field("io", &self.io)
            .field("seed", &self.seed)
            .finish()
    }
}

impl ReplicaConfig {
    pub fn new(log: LogConfig, timeouts: RaftTimeouts) -> Result<Self, openraft::ConfigError> {
        Ok(ReplicaConfig {
            log,
            raft: raft_config(timeouts)?,
            max_producers: 10_000,
            listener: None,
            io: BlockingIo::Pool,
            seed: None,
        })
    }
}

/// A running replica.
pub struct Replica {
    pub id: u64,
    pub dir: PathBuf,
    /// The last entry the log held when the replica opened. A leader whose state machine has
    /// not applied this far is still re-applying what it wrote before a restart (openraft
    /// resumes a restarted leader in its own term), so what it has applied is not all that is
    /// committed.
    pub last_index_at_open: Option<u64>,
    pub raft: PartitionRaft,
    pub store: SegmentLogStore,
    pub state_machine: PartitionStateMachine,
}

impl Replica {
    /// Opens the log in `dir` (on the blocking pool) and starts the replica's Raft.
    pub async fn open<N>(
        id: u64,
        dir: &Path,
        config: &ReplicaConfig,
        network: N,
    ) -> io::Result<Replica>
    where
        N: RaftNetworkFactory<TallyRaft>,
        N::Network: openraft::network::NetSnapshot<
            TallyRaft,
            SnapshotData = crate::state_machine::SnapshotData,
        >,
    {
        let dir_owned = dir.to_path_buf();
        let (log_config, max_producers) = (config.log.clone(), config.max_producers);
        let listener = config.listener.clone();
        let io = config.io;
        let (store, state_machine) = io
            .run(move || {
                let store = SegmentLogStore::open(&dir_owned, log_config)?.with_io(io);
                let mut sm = PartitionStateMachine::open(&dir_owned, store.clone(), max_producers)?;
                if let Some(listener) = listener {
                    sm = sm.with_listener(listener);
                }
                Ok::<_, io::Error>((store, sm))
            })
            .await??;
        let last_index_at_open = store.last_index();
        let start = PartitionRaft::new(
            id,
            Arc::clone(&config.raft),
            network,
            store.clone(),
            state_machine.clone(),
        );
        let raft = match config.seed {
            Some(seed) => SeededRuntime::scope(replica_seed(seed, id, dir), start).await,
            None => start.await,
        }
        .map_err(io::Error::other)?;
        Ok(Replica {
            id,
            dir: dir.to_path_buf(),
            last_index_at_open,
            raft,
            store,
            state_machine,
        })
    }

    /// Stops the Raft, then flushes the log and records a clean shutdown.
    pub async fn shutdown(self) -> io::Result<()> {
        self.close().await
    }

    /// `shutdown` for a replica that is shared: later calls into its Raft fail.
    pub async fn close(&self) -> io::Result<()> {
        self.raft.shutdown().await.map_err(io::Error::other)?;
        let store = self.store.clone();
        self.store.io().run(move || store.close()).await?
    }
}

/// A replica's seed: the node's, mixed with its id and its directory's name (the group, the
/// same in every run of a simulation seed, unlike the data directory's temporary path), so
/// that the groups of one node do not time out in step.
fn replica_seed(seed: u64, id: u64, dir: &Path) -> u64 {
    // FNV-1a: fixed, unlike std's randomly keyed hashers.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed ^ id.rotate_left(32);
    let name = dir.file_name().unwrap_or_default();
    for b in name.as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
