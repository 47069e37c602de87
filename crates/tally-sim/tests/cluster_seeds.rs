//! Three brokers in cluster mode under faults: fifteen seeds in CI (`TALLY_SIM_CLUSTER_SEEDS`
//! sets how many); `cargo run -p tally-sim --release -- --brokers 3 --seeds 1000` runs many.

use tally_sim::{run_cluster_seed, SimOptions};

fn seed_count() -> u64 {
    std::env::var("TALLY_SIM_CLUSTER_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

#[test]
fn cluster_seeds_hold_every_invariant() {
    let options = SimOptions::cluster(3);
    let mut kinds = std::collections::BTreeSet::new();
    let (mut leader_terms, mut unknown, mut power_cut_losses) = (0, 0, (0, 0, 0));
    for seed in 1..=seed_count() {
        match run_cluster_seed(seed, &options) {
            Ok(report) => {
                eprintln!(
                    "seed {seed}: {} acked, {} unknown, {} faults, {} leader terms, {:.1} s simulated",
                    report.acked,
                    report.unknown,
                    report.faults.len(),
                    report.leader_terms,
                    report.sim_secs
                );
                kinds.extend(report.fault_kinds().into_keys());
                leader_terms += report.leader_terms;
                unknown += report.unknown;
                power_cut_losses.0 += report.power_cut_losses.0;
                power_cut_losses.2 += report.power_cut_losses.2;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    // Every kind of fault happened somewhere in these seeds.
    for kind in [
        "Crash",
        "PowerCut",
        "Isolate",
        "Link",
        "LostBetween",
        "HoldBetween",
        "LostAnswers",
        "ClientCut",
    ] {
        assert!(
            kinds.contains(kind),
            "no {kind} fault in these seeds: {kinds:?}"
        );
    }
    // Leadership moved: more terms were led than the four groups (metadata and three
    // partitions) need once each, so the checks held across leader changes.
    let runs = seed_count() as usize;
    assert!(
        leader_terms > 4 * runs,
        "leaders hardly changed: {leader_terms} terms in {runs} runs"
    );
    assert!(
        power_cut_losses.0 > 0 && power_cut_losses.2 > 0,
        "the power cuts dropped nothing: {power_cut_losses:?}"
    );
    eprintln!("{leader_terms} leader terms, {unknown} sends of unknown fate");
}

/// The cluster's run can fail: with producers that do not deduplicate, a retry after a lost
/// answer or a leader change stores a message twice, and the oracle says so.
#[test]
fn the_cluster_oracle_catches_duplicates_without_idempotence() {
    let options = SimOptions {
        idempotent: false,
        ..SimOptions::cluster(3)
    };
    let caught = (1u64..=8)
        .filter_map(|seed| run_cluster_seed(seed, &options).err())
        .find(|failure| failure.reason.contains(" is stored "));
    let failure = caught.expect("without idempotence some seed must store a message twice");
    assert!(failure
        .to_string()
        .contains("replay it with: cargo run -p tally-sim --release -- --seed"));
}

/// A cluster run is a function of its seed, as a single broker's is: replayed in a fresh
/// process, the same seed gives the same trace (fault schedule, every fate, the simulated
/// time). Raft's election timeouts draw from the seed, and the replicas' file I/O runs on
/// the simulation's own time rather than on real threads.
#[test]
fn the_same_cluster_seed_gives_the_same_trace() {
    let trace = |seed: u64| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally-sim"))
            .args(["--brokers", "3", "--seed", &seed.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "cluster seed {seed} failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let at = stdout.find("trace ").expect("a trace hash") + "trace ".len();
        stdout[at..at + 16].to_string()
    };
    for seed in [5u64, 8] {
        assert_eq!(trace(seed), trace(seed), "cluster seed {seed}");
    }
    assert_ne!(trace(5), trace(8));
}

/// Retention in the cluster under the same faults: segments are deleted while the producers
/// write, leaders purge their Raft logs, and a node that was away longer than a leader waits
/// for it comes back to a snapshot carrying the leader's retained log, installed on its own
/// data (power cuts included). Every acknowledged message at or past the log start must be
/// read back once, at its offset. `TALLY_SIM_RETENTION_SEEDS` sets how many seeds (four).
#[test]
fn cluster_seeds_with_retention_hold_every_invariant() {
    let seeds = std::env::var("TALLY_SIM_RETENTION_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4u64);
    // Twice the messages of the plain cluster run: the producers are still writing when a
    // node returns from a long outage.
    let options = SimOptions {
        retention: true,
        messages: 600,
        ..SimOptions::cluster(3)
    };
    let (mut log_starts, mut installs) = (0, (0, 0));
    for seed in 1..=seeds {
        match run_cluster_seed(seed, &options) {
            Ok(report) => {
                eprintln!(
                    "seed {seed}: {} acked, {} faults, log starts {}, {:?} snapshots installed \
                     (replacing the log), {:.1} s simulated",
                    report.acked,
                    report.faults.len(),
                    report.log_starts,
                    report.snapshots_installed,
                    report.sim_secs
                );
                log_starts += report.log_starts;
                installs.0 += report.snapshots_installed.0;
                installs.1 += report.snapshots_installed.1;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    // What the scenario is for happened: retention deleted acknowledged messages, and some
    // replica caught up by a snapshot that replaced its log.
    assert!(log_starts > 0, "retention deleted nothing");
    assert!(
        installs.1 > 0,
        "no replica caught up by snapshot: {installs:?}"
    );
}
