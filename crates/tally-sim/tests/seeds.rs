//! A handful of seeds in CI; `cargo run -p tally-sim --release -- --seeds 1000` runs many.

use tally_sim::{run_seed, SimOptions};

#[test]
fn a_handful_of_seeds_hold_every_invariant() {
    let options = SimOptions::default();
    let mut faults = 0;
    let mut kinds = std::collections::BTreeSet::new();
    let mut interrupted_transactions = 0;
    for seed in [1u64, 2, 3, 4, 5] {
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
                for f in &report.faults {
                    // "  1.234s Crash for 120 ms" -> "Crash"
                    let kind = f.split_whitespace().nth(1).unwrap_or("");
                    kinds.insert(kind.split('(').next().unwrap_or("").to_string());
                }
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
    for kind in ["Crash", "LostAnswers", "Hold", "Partition"] {
        assert!(
            kinds.contains(kind),
            "no {kind} fault in these seeds: {kinds:?}"
        );
    }
    assert!(
        interrupted_transactions > 0,
        "no transaction was interrupted"
    );
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
