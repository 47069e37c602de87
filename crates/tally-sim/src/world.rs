//! One simulated world per seed: the broker host, producer clients, a high-watermark monitor,
//! a checker, and the fault schedule driven between simulation steps.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tally_broker::{Broker, BrokerConfig, BrokerOptions, Clock, WriterMode};
use tally_client::{ClientConfig, ProduceError, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::watch;

use crate::oracle::{Fate, Oracle};
use crate::transport::TurmoilTransport;

pub(crate) const TOPIC: &str = "sim";
const BROKER: &str = "broker";

#[derive(Debug, Clone)]
pub struct SimOptions {
    pub producers: usize,
    /// Messages each producer sends while faults are injected.
    pub messages: usize,
    /// Messages each producer sends after healing; every one must be acknowledged.
    pub liveness_messages: usize,
    pub partitions: i32,
    pub faults: bool,
    /// Producers with idempotence; off only for the control run that must fail.
    pub idempotent: bool,
    /// Bound on simulated time: a run that has not finished by then fails.
    pub max_sim_secs: u64,
    /// Transactions the transactional producer writes while faults are injected (0: no
    /// transactional producer), and after healing; records per transaction.
    pub transactions: usize,
    pub liveness_transactions: usize,
    pub txn_size: usize,
    /// The transactional producer really uses transactions; off only for the control run,
    /// whose "aborted" writes stay visible, so the oracle must fail.
    pub transactional: bool,
    /// Power cuts (a crash that also drops whatever was never fsynced, see
    /// `tally_log::storage`) on the odd seeds, whose broker fsyncs every message
    /// (`log.flush.interval.messages=1`) so that every acknowledged message must survive them.
    pub power_cuts: bool,
    /// Control only: power cuts with the default flush policy, where acknowledged messages
    /// that were never flushed are lost, so the oracle must fail.
    pub power_cuts_without_flush: bool,
    /// Brokers: 1 runs the single broker; more run a cluster (`crate::cluster`), every
    /// partition replicated to all of them.
    pub brokers: usize,
    /// The single broker runs with `log.idempotency.key=key` and every message is its own
    /// record key, so the key index lives through the crashes and power cuts (and any record
    /// it wrongly dropped would be an acknowledged loss).
    pub idempotency_keys: bool,
    /// Retention deletes old segments during the run (`log.retention.bytes` small, checked
    /// every half second); in a cluster some crashes and isolations last longer than the time
    /// after which a leader stops waiting for a peer, so a returning node catches up by
    /// snapshot. The oracle then asks for an acknowledged message only at or past the log
    /// start. Not with a transactional producer (its check reads every commit back).
    pub retention: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            producers: 3,
            messages: 150,
            liveness_messages: 20,
            partitions: 3,
            faults: true,
            idempotent: true,
            max_sim_secs: 600,
            transactions: 30,
            liveness_transactions: 3,
            txn_size: 5,
            transactional: true,
            power_cuts: true,
            power_cuts_without_flush: false,
            brokers: 1,
            idempotency_keys: false,
            retention: false,
        }
    }
}

impl SimOptions {
    /// The command-line flags that select these options (for a failure's replay line): the
    /// ones `tally-sim` takes, where they differ from its defaults.
    pub fn replay_args(&self) -> String {
        let mut args = String::new();
        let defaults = if self.brokers > 1 {
            args += &format!(" --brokers {}", self.brokers);
            SimOptions::cluster(self.brokers)
        } else {
            SimOptions::default()
        };
        if !self.faults {
            args += " --no-faults";
        }
        if self.idempotency_keys {
            args += " --idempotency-keys";
        }
        if self.retention {
            args += " --retention";
        }
        if self.messages != defaults.messages {
            args += &format!(" --messages {}", self.messages);
        }
        args
    }

    /// A cluster of `brokers` nodes, with every partition on all of them. No transactional
    /// producer: transactions do not run in cluster mode yet.
    pub fn cluster(brokers: usize) -> SimOptions {
        SimOptions {
            brokers,
            // Longer than a single broker's run: elections take their timeouts, and the
            // faults should move leaders more than once.
            messages: 300,
            transactions: 0,
            liveness_transactions: 0,
            ..SimOptions::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct SimReport {
    pub seed: u64,
    pub acked: usize,
    pub failed: usize,
    pub unknown: usize,
    /// Messages of unknown fate that turned out to be stored (once).
    pub unknown_stored: usize,
    pub stored: usize,
    pub faults: Vec<String>,
    pub sim_secs: f64,
    /// Transactions committed, aborted, and of unknown outcome (all checked all-or-nothing).
    pub transactions: (usize, usize, usize),
    /// A hash of everything the run decided and observed (the fault schedule, every
    /// message's and transaction's fate, the simulated duration): the same seed must give
    /// the same hash.
    pub trace_hash: u64,
    /// Power cuts' losses, summed: files whose unsynced data was dropped, those bytes, and
    /// directory changes undone.
    pub power_cut_losses: (usize, u64, usize),
    /// Cluster runs: the (group, term) pairs whose leader the oracle saw.
    pub leader_terms: usize,
    /// Retention runs: the partitions' log start offsets, summed, when the checker read them.
    pub log_starts: i64,
    /// Cluster runs: snapshots the replicas installed, and those that replaced the log with
    /// the leader's records (catch-ups past deleted segments).
    pub snapshots_installed: (u64, u64),
}

impl SimReport {
    /// Faults by kind ("Crash", "PowerCut", "LostAnswers", "Hold", "Partition").
    pub fn fault_kinds(&self) -> std::collections::BTreeMap<String, usize> {
        let mut kinds = std::collections::BTreeMap::new();
        for f in &self.faults {
            // "  1.234s Crash for 120 ms" -> "Crash"
            let kind = f.split_whitespace().nth(1).unwrap_or("");
            let kind = kind.split('(').next().unwrap_or("").to_string();
            *kinds.entry(kind).or_default() += 1;
        }
        kinds
    }
}

#[derive(Debug, Clone)]
pub struct SimFailure {
    pub seed: u64,
    pub reason: String,
    /// The flags after `--seed N` that replay the run (`SimOptions::replay_args`).
    pub replay_args: String,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulation seed {} failed: {}\nreplay it with: cargo run -p tally-sim --release -- --seed {}{}",
            self.seed, self.reason, self.seed, self.replay_args
        )
    }
}

/// Every producer host, the transactional one included.
pub(crate) fn producer_hosts(options: &SimOptions) -> usize {
    options.producers + usize::from(options.transactions > 0)
}

/// The name of broker host `k` (of `brokers`): `broker` alone, else `broker1`, `broker2`, ...
pub(crate) fn broker_host(brokers: usize, k: usize) -> String {
    if brokers == 1 {
        BROKER.to_string()
    } else {
        format!("{BROKER}{}", k + 1)
    }
}

/// A client that knows every simulated broker.
pub(crate) fn client_config(options: &SimOptions) -> ClientConfig {
    let bootstrap: Vec<String> = (0..options.brokers)
        .map(|k| format!("{}:9092", broker_host(options.brokers, k)))
        .collect();
    let mut config = ClientConfig::new(bootstrap.join(","));
    config.transport = Arc::new(TurmoilTransport);
    config.request_timeout_ms = 2_000;
    config.connect_timeout_ms = 1_000;
    config.reconnect_backoff_ms = 50;
    config.reconnect_backoff_max_ms = 400;
    config
}

/// The simulated broker's wall clock starts here (2026-01-01) on every run.
const SIM_EPOCH_MS: i64 = 1_767_225_600_000;

/// The simulation's time as a wall clock: the same on every run of a seed, and it keeps
/// moving forward across broker restarts.
struct SimClock;

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        sim_now_ms()
    }
}

/// The simulated wall clock, for the brokers and for the producers' record timestamps (a
/// client's own clock is the machine's, which would make a seed's bytes differ per run).
pub(crate) fn sim_now_ms() -> i64 {
    SIM_EPOCH_MS + turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as i64)
}

/// What a simulated broker host runs with.
#[derive(Clone)]
pub(crate) struct BrokerSetup {
    pub dir: PathBuf,
    pub host: String,
    pub partitions: i32,
    pub flush_each: bool,
    /// Cluster mode: this node's id, the voters (`controller.quorum.voters`), and the
    /// replication factor of the topics.
    pub cluster: Option<(usize, String, usize)>,
    /// Where the broker announces itself once open, by host: the cluster driver reads its
    /// replicas' Raft state from there.
    pub registry: Option<Registry>,
    /// `log.idempotency.key=key` (single broker only).
    pub idempotency_keys: bool,
    /// Retention that deletes segments within the run (see `SimOptions::retention`).
    pub retention: bool,
    /// The run's seed, which seeds Raft's randomness in cluster mode.
    pub seed: u64,
}

pub(crate) type Registry = Arc<Mutex<std::collections::BTreeMap<String, Weak<Broker>>>>;

/// The broker's software: open (recover) the data directory, serve simulated TCP.
pub(crate) async fn broker_software(setup: BrokerSetup) -> turmoil::Result {
    let BrokerSetup {
        dir,
        host,
        partitions,
        flush_each,
        cluster,
        registry,
        idempotency_keys,
        retention,
        seed,
    } = setup;
    let mut config = BrokerConfig::new();
    config.set("log.dirs", &dir.to_string_lossy())?;
    config.set("listeners", "0.0.0.0:9092")?;
    config.set("advertised.listeners", &format!("{host}:9092"))?;
    config.set("num.partitions", &partitions.to_string())?;
    if let Some((node_id, voters, replication)) = &cluster {
        config.set("node.id", &node_id.to_string())?;
        config.set("controller.quorum.voters", voters)?;
        config.set("default.replication.factor", &replication.to_string())?;
    }
    // Small segments: rolls and producer snapshots happen during the run.
    config.set("log.segment.bytes", "4096")?;
    if flush_each {
        config.set("log.flush.interval.messages", "1")?;
    }
    if idempotency_keys {
        config.set("log.idempotency.key", "key")?;
    }
    if retention {
        // About two 4 KiB segments kept of each partition's log, while a run writes about
        // twenty KiB to each.
        config.set("log.retention.bytes", "8192")?;
        config.set("log.retention.check.interval.ms", "500")?;
        // A node away for longer is no longer waited for: it returns to a snapshot.
        config.set("replica.lag.time.max.ms", "2000")?;
    }
    // Writers as tasks of the simulated host and the host's (simulated) time as the wall clock,
    // so a seed replays the same run.
    let options = BrokerOptions {
        writer_mode: WriterMode::Task,
        clock: Arc::new(SimClock),
        raft_transport: Arc::new(crate::transport::TurmoilRaftTransport),
        listener_ports: Vec::new(),
        tls_keystore: None,
        raft_seed: Some(seed),
    };
    let broker = Broker::open_with(config, 9092, options).await?;
    if let Some(registry) = registry {
        registry
            .lock()
            .unwrap()
            .insert(host, Arc::downgrade(&broker));
    }
    let (_stop, shutdown) = watch::channel(false);
    let _maintenance = broker.spawn_maintenance(shutdown.clone());
    let listener = turmoil::net::TcpListener::bind("0.0.0.0:9092").await?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let (read, write) = stream.into_split();
        tokio::spawn(Arc::clone(&broker).serve_connection(
            read,
            write,
            peer.to_string(),
            shutdown.clone(),
        ));
    }
}

pub(crate) async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

pub(crate) async fn producer_software(
    index: usize,
    options: SimOptions,
    oracle: Arc<Mutex<Oracle>>,
) -> turmoil::Result {
    let mut config = ProducerConfig::new(String::new());
    config.client = client_config(&options);
    config.linger_ms = 5;
    config.batch_size = 256;
    config.retry_backoff_ms = 50;
    config.delivery_timeout_ms = 30_000;
    config.enable_idempotence = options.idempotent;
    let producer = loop {
        match Producer::new(config.clone()).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::debug!(index, error = %e, "producer not created yet");
                sleep_ms(100).await
            }
        }
    };
    let send_all = |prefix: &'static str, count: usize| {
        let producer = &producer;
        let options = &options;
        async move {
            let mut pending = Vec::new();
            for i in 0..count {
                let value = format!("{prefix}{index}-{i}");
                let mut record = ProducerRecord::new(TOPIC, value.clone())
                    .with_partition((i % options.partitions as usize) as i32)
                    .with_timestamp(sim_now_ms());
                if options.idempotency_keys {
                    record = record.with_key(value.clone());
                }
                loop {
                    match producer.send(record.clone()).await {
                        Ok(d) => {
                            pending.push((value, d));
                            break;
                        }
                        // Metadata not reachable yet (broker down at start): try again.
                        Err(e) => {
                            tracing::debug!(index, error = %e, "send refused; trying again");
                            sleep_ms(50).await
                        }
                    }
                }
                sleep_ms(10).await;
            }
            let mut fates = Vec::new();
            for (value, d) in pending {
                let fate = match d.await {
                    Ok(meta) => Fate::Acked {
                        partition: meta.partition,
                        offset: meta.offset,
                    },
                    Err(ProduceError::TimedOut {
                        possibly_persisted: true,
                        ..
                    }) => Fate::Unknown,
                    Err(_) => Fate::Failed,
                };
                fates.push((value, fate));
            }
            fates
        }
    };
    let fates = send_all("p", options.messages).await;
    {
        let mut o = oracle.lock().unwrap();
        o.fates.extend(fates);
        o.producers_done_with_faults += 1;
    }
    while !oracle.lock().unwrap().healed {
        sleep_ms(20).await;
    }
    let fates = send_all("live", options.liveness_messages).await;
    {
        let mut o = oracle.lock().unwrap();
        for (value, fate) in &fates {
            if !matches!(fate, Fate::Acked { .. }) {
                o.violation(format!(
                    "liveness: {value} was not acknowledged after healing ({fate:?})"
                ));
            }
        }
        o.fates.extend(fates);
        o.producers_finished += 1;
    }
    producer.close().await;
    Ok(())
}
