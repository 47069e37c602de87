//! One simulated world per seed: the broker host, producer clients, a high-watermark monitor,
//! a checker, and the fault schedule driven between simulation steps.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_broker::{Broker, BrokerConfig, BrokerOptions, Clock, WriterMode};
use tally_client::{ClientConfig, ProduceError, Producer, ProducerConfig, ProducerRecord};
use tokio::sync::watch;
use turmoil::Sim;

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
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "simulation seed {} failed: {}\nreplay it with: cargo run -p tally-sim --release -- --seed {}",
            self.seed, self.reason, self.seed
        )
    }
}

/// Every producer host, the transactional one included.
pub(crate) fn producer_hosts(options: &SimOptions) -> usize {
    options.producers + usize::from(options.transactions > 0)
}

pub(crate) fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new(format!("{BROKER}:9092"));
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
        SIM_EPOCH_MS + turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as i64)
    }
}

/// The broker's software: open (recover) the data directory, serve simulated TCP.
async fn broker_software(dir: PathBuf, partitions: i32, flush_each: bool) -> turmoil::Result {
    let mut config = BrokerConfig::new();
    config.set("log.dirs", &dir.to_string_lossy())?;
    config.set("listeners", "0.0.0.0:9092")?;
    config.set("advertised.listeners", &format!("{BROKER}:9092"))?;
    config.set("num.partitions", &partitions.to_string())?;
    // Small segments: rolls and producer snapshots happen during the run.
    config.set("log.segment.bytes", "4096")?;
    if flush_each {
        config.set("log.flush.interval.messages", "1")?;
    }
    // Writers as tasks of the simulated host and the host's (simulated) time as the wall clock,
    // so a seed replays the same run.
    let options = BrokerOptions {
        writer_mode: WriterMode::Task,
        clock: Arc::new(SimClock),
    };
    let broker = Broker::open_with(config, 9092, options).await?;
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

async fn producer_software(
    index: usize,
    options: SimOptions,
    oracle: Arc<Mutex<Oracle>>,
) -> turmoil::Result {
    let mut config = ProducerConfig::new(String::new());
    config.client = client_config();
    config.linger_ms = 5;
    config.batch_size = 256;
    config.retry_backoff_ms = 50;
    config.delivery_timeout_ms = 30_000;
    config.enable_idempotence = options.idempotent;
    let producer = loop {
        match Producer::new(config.clone()).await {
            Ok(p) => break p,
            Err(_) => sleep_ms(100).await,
        }
    };
    let send_all = |prefix: &'static str, count: usize| {
        let producer = &producer;
        let options = &options;
        async move {
            let mut pending = Vec::new();
            for i in 0..count {
                let value = format!("{prefix}{index}-{i}");
                let record = ProducerRecord::new(TOPIC, value.clone())
                    .with_partition((i % options.partitions as usize) as i32);
                loop {
                    match producer.send(record.clone()).await {
                        Ok(d) => {
                            pending.push((value, d));
                            break;
                        }
                        // Metadata not reachable yet (broker down at start): try again.
                        Err(_) => sleep_ms(50).await,
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

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Requests reach the broker, answers do not come back: the write happens, the ack is lost.
    LostAnswers(usize),
    Hold(usize),
    Partition(usize),
    Crash,
    /// A crash that also loses what was never fsynced.
    PowerCut,
}

struct Driver {
    rng: StdRng,
    active: Option<(Fault, Duration)>,
    next_at: Duration,
    log: Vec<String>,
    producers: usize,
    /// The broker's data directory, and whether crashes there are power cuts.
    dir: PathBuf,
    power_cuts: bool,
    power_cut_losses: (usize, u64, usize),
}

fn producer_host(k: usize) -> String {
    format!("producer{k}")
}

impl Driver {
    fn start(&mut self, sim: &mut Sim<'_>, now: Duration) {
        let k = self.rng.random_range(0..self.producers);
        let fault = match self.rng.random_range(0..10) {
            0..=3 => Fault::LostAnswers(k),
            4..=5 => Fault::Hold(k),
            6..=7 => Fault::Partition(k),
            _ if self.power_cuts => Fault::PowerCut,
            _ => Fault::Crash,
        };
        let length = Duration::from_millis(self.rng.random_range(50..1500));
        match fault {
            Fault::LostAnswers(k) => sim.partition_oneway(BROKER, producer_host(k)),
            Fault::Hold(k) => sim.hold(BROKER, producer_host(k)),
            Fault::Partition(k) => sim.partition(BROKER, producer_host(k)),
            Fault::Crash => sim.crash(BROKER),
            Fault::PowerCut => {
                // The host's tasks are gone once crash returns, so nothing writes meanwhile.
                sim.crash(BROKER);
                match tally_log::storage::power_cut(&self.dir) {
                    Ok(r) => {
                        self.power_cut_losses.0 += r.files_reverted;
                        self.power_cut_losses.1 += r.bytes_lost;
                        self.power_cut_losses.2 += r.dir_ops_undone;
                    }
                    Err(e) => self.log.push(format!("power cut failed: {e}")),
                }
            }
        }
        self.log.push(format!(
            "{:>7.3}s {fault:?} for {} ms",
            now.as_secs_f64(),
            length.as_millis()
        ));
        self.active = Some((fault, now + length));
    }

    fn end(&mut self, sim: &mut Sim<'_>) {
        if let Some((fault, _)) = self.active.take() {
            match fault {
                Fault::LostAnswers(k) => sim.repair_oneway(BROKER, producer_host(k)),
                Fault::Hold(k) => sim.release(BROKER, producer_host(k)),
                Fault::Partition(k) => sim.repair(BROKER, producer_host(k)),
                Fault::Crash | Fault::PowerCut => sim.bounce(BROKER),
            }
        }
    }
}

/// The broker's data directory under the storage seam's tracking while it lives.
struct TrackedDir(Option<PathBuf>);

impl TrackedDir {
    fn new(dir: &std::path::Path, on: bool) -> TrackedDir {
        if !on {
            return TrackedDir(None);
        }
        tally_log::storage::track(dir);
        TrackedDir(Some(dir.to_path_buf()))
    }
}

impl Drop for TrackedDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            tally_log::storage::untrack(dir);
        }
    }
}

/// Runs one seeded simulation to the end and checks it.
pub fn run_seed(seed: u64, options: &SimOptions) -> Result<SimReport, SimFailure> {
    let fail = |reason: String| SimFailure { seed, reason };
    let mut data = tempfile::Builder::new()
        .prefix("tally-sim-")
        .tempdir()
        .map_err(|e| fail(e.to_string()))?;
    // TALLY_SIM_KEEP_DATA=1 keeps the broker's data directory for a look afterwards.
    if std::env::var_os("TALLY_SIM_KEEP_DATA").is_some() {
        data.disable_cleanup(true);
        eprintln!("seed {seed}: data directory {}", data.path().display());
    }
    let oracle = Arc::new(Mutex::new(Oracle::default()));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(options.max_sim_secs))
        .tick_duration(Duration::from_millis(1))
        .build();
    let dir = data.path().to_path_buf();
    let partitions = options.partitions;
    let power_cuts = options.power_cuts_without_flush || (options.power_cuts && seed % 2 == 1);
    let flush_each = power_cuts && !options.power_cuts_without_flush;
    let tracked = TrackedDir::new(&dir, power_cuts);
    let broker_dir = dir.clone();
    sim.host(BROKER, move || {
        broker_software(broker_dir.clone(), partitions, flush_each)
    });
    for k in 0..options.producers {
        sim.client(
            producer_host(k),
            producer_software(k, options.clone(), Arc::clone(&oracle)),
        );
    }
    if options.transactions > 0 {
        sim.client(
            producer_host(options.producers),
            crate::txn_producer::txn_producer_software(options.clone(), Arc::clone(&oracle)),
        );
    }
    sim.client(
        "monitor",
        crate::checker::monitor_software(partitions, Arc::clone(&oracle)),
    );
    sim.client(
        "checker",
        crate::checker::checker_software(options.clone(), Arc::clone(&oracle)),
    );

    let mut driver = Driver {
        rng: StdRng::seed_from_u64(seed),
        active: None,
        next_at: Duration::from_millis(200),
        log: Vec::new(),
        producers: producer_hosts(options),
        dir,
        power_cuts,
        power_cut_losses: (0, 0, 0),
    };
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                return Err(fail(format!("{e} (faults: {})", driver.log.join("; "))));
            }
        }
        let now = sim.elapsed();
        let o = oracle.lock().unwrap();
        if o.healed {
            continue;
        }
        if !options.faults || o.producers_done_with_faults == producer_hosts(options) {
            drop(o);
            driver.end(&mut sim);
            oracle.lock().unwrap().healed = true;
            continue;
        }
        drop(o);
        match driver.active {
            Some((_, until)) if now >= until => {
                driver.end(&mut sim);
                driver.next_at = now + Duration::from_millis(driver.rng.random_range(20..300));
            }
            None if now >= driver.next_at => driver.start(&mut sim, now),
            _ => {}
        }
    }
    let o = oracle.lock().unwrap();
    if !o.violations.is_empty() {
        return Err(fail(format!(
            "{}\nfaults: {}",
            o.violations.join("\n"),
            driver.log.join("; ")
        )));
    }
    let count = |f: fn(&Fate) -> bool| o.fates.values().filter(|x| f(x)).count();
    let trace_hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        driver.log.hash(&mut h);
        let mut fates: Vec<_> = o.fates.iter().map(|(k, f)| (k, format!("{f:?}"))).collect();
        fates.sort();
        fates.hash(&mut h);
        let mut txns: Vec<_> = o
            .txn_fates
            .iter()
            .map(|(k, f)| (*k, format!("{f:?}")))
            .collect();
        txns.sort();
        txns.hash(&mut h);
        sim.elapsed().as_nanos().hash(&mut h);
        h.finish()
    };
    drop(tracked);
    Ok(SimReport {
        power_cut_losses: driver.power_cut_losses,
        trace_hash,
        seed,
        acked: count(|f| matches!(f, Fate::Acked { .. })),
        failed: count(|f| matches!(f, Fate::Failed)),
        unknown: count(|f| matches!(f, Fate::Unknown)),
        unknown_stored: o.unknown_stored,
        stored: o.high_watermarks.values().sum::<i64>() as usize,
        faults: driver.log.clone(),
        sim_secs: sim.elapsed().as_secs_f64(),
        transactions: {
            use crate::txn_producer::TxnFate;
            let n = |f: TxnFate| o.txn_fates.values().filter(|x| **x == f).count();
            (
                n(TxnFate::Committed),
                n(TxnFate::Aborted),
                n(TxnFate::Unknown),
            )
        },
    })
}
