//! Fifty seeds in CI (`TALLY_SIM_SEEDS` sets how many); `cargo run -p tally-sim --release --
//! --seeds 1000` runs many.

use tally_sim::{run_seed, SimOptions};

fn seed_count() -> u64 {
    std::env::var("TALLY_SIM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

#[test]
fn fifty_seeds_hold_every_invariant() {
    let options = SimOptions::default();
    let mut faults = 0;
    let mut kinds = std::collections::BTreeSet::new();
    let mut interrupted_transactions = 0;
    let mut power_cut_losses = (0, 0, 0);
    for seed in 1..=seed_count() {
        match run_seed(seed, &options) {
            Ok(report) => {
                eprintln!(
                    "seed {seed}: {} acked, {} unknown, {} failed, {} faults, {:.1} s simulated",
                    report.acked,
                    report.unknown,
                    report.failed,
                    report.faults.len(),
                    report.sim_secs
                );
                faults += report.faults.len();
                interrupted_transactions += report.transactions.2;
                kinds.extend(report.fault_kinds().into_keys());
                power_cut_losses.0 += report.power_cut_losses.0;
                power_cut_losses.1 += report.power_cut_losses.1;
                power_cut_losses.2 += report.power_cut_losses.2;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    assert!(
        faults >= 10,
        "the seeds injected too few faults to mean anything ({faults})"
    );
    // Every kind of fault happened, broker crashes and lost answers among them, and some
    // transactions were interrupted (so fencing and recovery were exercised).
    for kind in ["Crash", "PowerCut", "LostAnswers", "Hold", "Partition"] {
        assert!(
            kinds.contains(kind),
            "no {kind} fault in these seeds: {kinds:?}"
        );
    }
    assert!(
        interrupted_transactions > 0,
        "no transaction was interrupted"
    );
    // The power cuts took something away each time they could (unsynced data or directory
    // entries), so surviving them means something.
    eprintln!("power cuts dropped: {power_cut_losses:?}");
    assert!(
        power_cut_losses.0 > 0 && power_cut_losses.2 > 0,
        "the power cuts dropped nothing: {power_cut_losses:?}"
    );
}

/// The same worlds with `log.idempotency.key=key` and every message its own key: the key index
/// is filtered against, snapshotted and replayed through crashes and power cuts, and no
/// acknowledged message may be missing, stored twice or out of place.
#[test]
fn seeds_with_idempotency_keys_hold_every_invariant() {
    let options = SimOptions {
        idempotency_keys: true,
        ..SimOptions::default()
    };
    let mut kinds = std::collections::BTreeSet::new();
    for seed in 1..=(seed_count() / 5).max(2) {
        match run_seed(seed, &options) {
            Ok(report) => kinds.extend(report.fault_kinds().into_keys()),
            Err(failure) => panic!("with idempotency keys: {failure}"),
        }
    }
    assert!(
        kinds.contains("Crash") || kinds.contains("PowerCut"),
        "no broker crash in these seeds: {kinds:?}"
    );
}

/// Power cuts can fail the run: with the default flush policy (no fsync before the answer),
/// a power cut loses acknowledged messages that were never flushed, and the oracle must say
/// so. With `log.flush.interval.messages=1` (the odd seeds above) none may be lost.
#[test]
fn the_oracle_catches_acknowledged_losses_at_power_cuts_without_flush() {
    let options = SimOptions {
        power_cuts_without_flush: true,
        ..SimOptions::default()
    };
    let caught = (1u64..=6)
        .filter_map(|seed| run_seed(seed, &options).err())
        .find(|failure| failure.reason.contains("but is at None"));
    caught
        .expect("without a flush before the answer, a power cut must lose an acknowledged message");
}

/// The simulation can fail: with producers that do not deduplicate (idempotence off), lost
/// answers lead to messages stored twice, and the oracle must say so.
#[test]
fn the_oracle_catches_duplicates_without_idempotence() {
    let options = SimOptions {
        idempotent: false,
        ..SimOptions::default()
    };
    let caught = [1u64, 2, 3, 4, 5]
        .iter()
        .filter_map(|seed| run_seed(*seed, &options).err())
        .find(|failure| {
            failure.reason.contains("stored 2 times") || failure.reason.contains("stored 3 times")
        });
    let failure = caught.expect("without idempotence some seed must store a message twice");
    assert!(failure
        .to_string()
        .contains("replay it with: cargo run -p tally-sim --release -- --seed"));
}

#[test]
fn the_oracle_catches_aborted_writes_without_transactions() {
    let options = SimOptions {
        transactional: false,
        ..SimOptions::default()
    };
    let failure = run_seed(1, &options).expect_err("plain writes cannot be aborted");
    assert!(
        failure
            .reason
            .contains("(Aborted): read_committed sees its records"),
        "{}",
        failure.reason
    );
}

/// The run is a function of its seed: replayed in a fresh process (as `--seed N` replays a
/// failing seed), the same seed gives the same trace hash (fault schedule, every fate, the
/// simulated time); another seed does not.
#[test]
fn the_same_seed_gives_the_same_trace() {
    let trace = |seed: u64| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally-sim"))
            .args(["--seed", &seed.to_string()])
            .output()
            .unwrap();
        assert!(out.status.success(), "seed {seed} failed");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let at = stdout.find("trace ").expect("a trace hash") + "trace ".len();
        stdout[at..at + 16].to_string()
    };
    for seed in [3u64, 11] {
        assert_eq!(trace(seed), trace(seed), "seed {seed}");
    }
    assert_ne!(trace(12), trace(11));
}

/// Retention on the single broker, with idempotency keys, under its crashes and power cuts:
/// segments (and with them producer snapshots and the keys they hold) are deleted while the
/// producers write and retry, and every acknowledged message at or past the final log start
/// must be read back once, at its offset. No transactional producer (its check reads every
/// commit back).
#[test]
fn seeds_with_retention_and_idempotency_keys_hold_every_invariant() {
    let options = SimOptions {
        retention: true,
        idempotency_keys: true,
        messages: 300,
        transactions: 0,
        liveness_transactions: 0,
        ..SimOptions::default()
    };
    let mut log_starts = 0;
    for seed in 1..=(seed_count() / 5).max(2) {
        match run_seed(seed, &options) {
            Ok(report) => log_starts += report.log_starts,
            Err(failure) => panic!("with retention: {failure}"),
        }
    }
    assert!(log_starts > 0, "retention deleted nothing");
}
