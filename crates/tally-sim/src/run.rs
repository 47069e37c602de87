//! What every simulated world shares: its data directory, the clients (producers, the
//! high-watermark monitor, the checker), the loop that steps the simulation while a fault
//! driver injects faults, and the report.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use turmoil::Sim;

use crate::oracle::{Fate, Oracle};
use crate::world::{producer_hosts, producer_software, SimFailure, SimOptions, SimReport};

/// Injects one fault at a time into a world.
pub(crate) trait FaultDriver {
    /// Starts a fault at `now` and returns how long it lasts.
    fn start(&mut self, sim: &mut Sim<'_>, now: Duration) -> Duration;
    /// Heals the fault that is on.
    fn end(&mut self, sim: &mut Sim<'_>);
    /// The schedule's random source (pauses between faults are drawn from it too).
    fn rng(&mut self) -> &mut StdRng;
    /// One line per fault, with its simulated start time.
    fn log(&self) -> &[String];
    /// Files reverted, bytes lost and directory changes undone by power cuts.
    fn power_cut_losses(&self) -> (usize, u64, usize) {
        (0, 0, 0)
    }
    /// Looks at the world after every step (the cluster's one-leader-per-term check).
    fn after_step(&mut self, _oracle: &Mutex<Oracle>) {}
    /// Called once the clients are done, while the brokers still run: checks of their state.
    fn at_end(&mut self, _oracle: &Mutex<Oracle>) {}
    /// What a failure report says of the world's state (the cluster's Raft groups).
    fn describe(&self) -> String {
        String::new()
    }
}

/// The fault log's line for a fault started at `now` (simulated time) for `length`: one
/// format for both worlds, so their replays read alike.
pub(crate) fn fault_line(now: Duration, fault: &impl std::fmt::Debug, length: Duration) -> String {
    format!(
        "{:>7.3}s {fault:?} for {} ms",
        now.as_secs_f64(),
        length.as_millis()
    )
}

pub(crate) fn producer_host(k: usize) -> String {
    format!("producer{k}")
}

/// A run's data directory, kept afterwards with `TALLY_SIM_KEEP_DATA=1`.
pub(crate) fn data_dir(seed: u64, options: &SimOptions) -> Result<tempfile::TempDir, SimFailure> {
    let mut data = tempfile::Builder::new()
        .prefix("tally-sim-")
        .tempdir()
        .map_err(|e| SimFailure {
            seed,
            reason: e.to_string(),
            replay_args: options.replay_args(),
        })?;
    if std::env::var_os("TALLY_SIM_KEEP_DATA").is_some() {
        data.disable_cleanup(true);
        eprintln!("seed {seed}: data directory {}", data.path().display());
    }
    Ok(data)
}

/// A world whose messages take up to `max_latency_ms` each (turmoil's default is 100 ms;
/// a cluster's brokers are on one network, with Raft's heartbeats every 100 ms).
pub(crate) fn new_sim<'a>(seed: u64, options: &SimOptions, max_latency_ms: u64) -> Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .max_message_latency(Duration::from_millis(max_latency_ms))
        .simulation_duration(Duration::from_secs(options.max_sim_secs))
        .tick_duration(Duration::from_millis(1))
        .build()
}

/// The producers (the transactional one too), the monitor and the checker.
pub(crate) fn add_clients(sim: &mut Sim<'_>, options: &SimOptions, oracle: &Arc<Mutex<Oracle>>) {
    for k in 0..options.producers {
        sim.client(
            producer_host(k),
            producer_software(k, options.clone(), Arc::clone(oracle)),
        );
    }
    if options.transactions > 0 {
        sim.client(
            producer_host(options.producers),
            crate::txn_producer::txn_producer_software(options.clone(), Arc::clone(oracle)),
        );
    }
    sim.client(
        "monitor",
        crate::checker::monitor_software(options.clone(), Arc::clone(oracle)),
    );
    sim.client(
        "checker",
        crate::checker::checker_software(options.clone(), Arc::clone(oracle)),
    );
}

/// Steps the world to its end: faults one at a time until every producer has sent its
/// messages under faults, then healed for the liveness phase and the check.
pub(crate) fn run_world(
    seed: u64,
    options: &SimOptions,
    mut sim: Sim<'_>,
    oracle: &Arc<Mutex<Oracle>>,
    driver: &mut dyn FaultDriver,
) -> Result<SimReport, SimFailure> {
    let fail = |reason: String| SimFailure {
        seed,
        reason,
        replay_args: options.replay_args(),
    };
    let mut active_until: Option<Duration> = None;
    let mut next_at = Duration::from_millis(200);
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                let o = oracle.lock().unwrap();
                return Err(fail(format!(
                    "{e} (faults: {})\nproducers done with faults {}, finished {}, healed {}, \
                     checked {}; violations so far: {:?}{}",
                    driver.log().join("; "),
                    o.producers_done_with_faults,
                    o.producers_finished,
                    o.healed,
                    o.checked,
                    o.violations,
                    driver.describe()
                )));
            }
        }
        driver.after_step(oracle);
        let now = sim.elapsed();
        let o = oracle.lock().unwrap();
        if o.healed {
            continue;
        }
        if !options.faults || o.producers_done_with_faults == producer_hosts(options) {
            drop(o);
            if active_until.take().is_some() {
                driver.end(&mut sim);
            }
            oracle.lock().unwrap().healed = true;
            continue;
        }
        drop(o);
        match active_until {
            Some(until) if now >= until => {
                driver.end(&mut sim);
                active_until = None;
                next_at = now + Duration::from_millis(driver.rng().random_range(20..300));
            }
            None if now >= next_at => active_until = Some(now + driver.start(&mut sim, now)),
            _ => {}
        }
    }
    driver.at_end(oracle);
    report(seed, &sim, &oracle.lock().unwrap(), driver).map_err(fail)
}

fn report(
    seed: u64,
    sim: &Sim<'_>,
    o: &Oracle,
    driver: &dyn FaultDriver,
) -> Result<SimReport, String> {
    if !o.violations.is_empty() {
        return Err(format!(
            "{}\nfaults: {}",
            o.violations.join("\n"),
            driver.log().join("; ")
        ));
    }
    let count = |f: fn(&Fate) -> bool| o.fates.values().filter(|x| f(x)).count();
    let trace_hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        driver.log().hash(&mut h);
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
    use crate::txn_producer::TxnFate;
    let n = |f: TxnFate| o.txn_fates.values().filter(|x| **x == f).count();
    Ok(SimReport {
        power_cut_losses: driver.power_cut_losses(),
        leader_terms: 0,
        log_starts: o.log_starts.values().sum(),
        snapshots_installed: o.snapshots_installed,
        trace_hash,
        seed,
        acked: count(|f| matches!(f, Fate::Acked { .. })),
        failed: count(|f| matches!(f, Fate::Failed)),
        unknown: count(|f| matches!(f, Fate::Unknown)),
        unknown_stored: o.unknown_stored,
        stored: o.high_watermarks.values().sum::<i64>() as usize,
        faults: driver.log().to_vec(),
        sim_secs: sim.elapsed().as_secs_f64(),
        transactions: (
            n(TxnFate::Committed),
            n(TxnFate::Aborted),
            n(TxnFate::Unknown),
        ),
    })
}

/// A data directory under the storage seam's tracking while it lives, so a power cut can
/// drop what was never fsynced there.
pub(crate) struct TrackedDir(Option<PathBuf>);

impl TrackedDir {
    pub(crate) fn new(dir: &Path, on: bool) -> TrackedDir {
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

/// Adds a power cut's losses to `into`; a cut that fails is logged.
pub(crate) fn power_cut(dir: &Path, into: &mut (usize, u64, usize), log: &mut Vec<String>) {
    match tally_log::storage::power_cut(dir) {
        Ok(r) => {
            into.0 += r.files_reverted;
            into.1 += r.bytes_lost;
            into.2 += r.dir_ops_undone;
        }
        Err(e) => log.push(format!("power cut failed: {e}")),
    }
}
