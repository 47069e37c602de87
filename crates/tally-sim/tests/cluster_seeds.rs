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
