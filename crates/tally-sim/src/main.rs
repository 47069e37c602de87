//! Runs many simulation seeds: `cargo run -p tally-sim --release -- --seeds 1000`, or replays
//! one: `cargo run -p tally-sim --release -- --seed 42`. `--brokers 3` runs a cluster of
//! three; `--no-faults` runs without faults. Ends with one summary line.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use tally_sim::{run_seed, SimOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // TALLY_SIM_LOG=info (a tracing filter) prints the brokers' logs, stamped with simulated
    // time (microseconds) so two runs of a seed compare line by line.
    if let Ok(filter) = std::env::var("TALLY_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_timer(SimTime)
            .with_writer(std::io::stderr)
            .init();
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let (first, count) = match (value("--seed"), value("--seeds")) {
        (Some(seed), _) => (seed, 1),
        (None, Some(n)) => (value("--start").unwrap_or(0), n),
        _ => {
            eprintln!(
                "usage: tally-sim --seed N | --seeds COUNT [--start N] [--messages N] [--brokers N] [--idempotency-keys] [--retention]"
            );
            return ExitCode::from(2);
        }
    };
    let mut options = match value("--brokers") {
        Some(n) if n > 1 => SimOptions::cluster(n as usize),
        _ => SimOptions::default(),
    };
    if args.iter().any(|a| a == "--no-faults") {
        options.faults = false;
    }
    // The single broker with log.idempotency.key=key, each message its own key.
    if args.iter().any(|a| a == "--idempotency-keys") {
        options.idempotency_keys = true;
    }
    // Retention deletes segments during the run (in a cluster, long outages end in
    // snapshots). No transactional producer then: its check reads every commit back.
    if args.iter().any(|a| a == "--retention") {
        options.retention = true;
        options.transactions = 0;
        options.liveness_transactions = 0;
    }
    if let Some(n) = value("--messages") {
        options.messages = n as usize;
    }
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let (mut acked, mut unknown, mut txns) = (0, 0, (0, 0, 0));
    let (mut duplicates, mut losses) = (0, 0);
    let mut cut = (0, 0, 0);
    let mut installs = (0, 0);
    for seed in first..first + count {
        match run_seed(seed, &options) {
            Ok(r) => {
                println!(
                    "seed {seed}: ok, {} acked, {} unknown, {} failed, {} faults, {:.1} s simulated; \
                     transactions: {} committed, {} aborted, {} interrupted; {} leader terms seen; \
                     {} snapshots installed ({} replacing the log); log starts {}; trace {:016x}",
                    r.acked,
                    r.unknown,
                    r.failed,
                    r.faults.len(),
                    r.sim_secs,
                    r.transactions.0,
                    r.transactions.1,
                    r.transactions.2,
                    r.leader_terms,
                    r.snapshots_installed.0,
                    r.snapshots_installed.1,
                    r.log_starts,
                    r.trace_hash
                );
                installs.0 += r.snapshots_installed.0;
                installs.1 += r.snapshots_installed.1;
                for (kind, n) in r.fault_kinds() {
                    *kinds.entry(kind).or_default() += n;
                }
                cut.0 += r.power_cut_losses.0;
                cut.1 += r.power_cut_losses.1;
                cut.2 += r.power_cut_losses.2;
                acked += r.acked;
                unknown += r.unknown;
                txns.0 += r.transactions.0;
                txns.1 += r.transactions.1;
                txns.2 += r.transactions.2;
            }
            Err(e) => {
                // The oracle's words for them (at most 20 violations are kept per seed).
                duplicates += e.reason.matches(" is stored ").count()
                    + e.reason.matches("stored twice").count();
                losses += e.reason.matches("but is at None").count();
                println!("{e}");
                failed.push(seed);
            }
        }
    }
    let faults: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "summary: {count} seeds ({first}..{}), {} failed {:?}; faults: {}; broker crashes: {}; \
         power cuts: {} (dropped {} files' unsynced data, {} bytes, {} directory changes); {acked} messages acknowledged, {unknown} of unknown fate; transactions: {} committed, \
         {} aborted, {} interrupted; snapshots installed: {} ({} replacing the log); \
         duplicates: {duplicates}; acknowledged losses: {losses}; {:.0} s",
        first + count,
        failed.len(),
        failed,
        faults.join(", "),
        kinds.get("Crash").copied().unwrap_or(0) + kinds.get("PowerCut").copied().unwrap_or(0),
        kinds.get("PowerCut").copied().unwrap_or(0),
        cut.0,
        cut.1,
        cut.2,
        txns.0,
        txns.1,
        txns.2,
        installs.0,
        installs.1,
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Log lines stamped with the simulated time so two runs of one seed can be compared line by line.
struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let sim = turmoil::sim_elapsed().map_or(0, |d| d.as_micros());
        write!(w, "sim={sim}")
    }
}
