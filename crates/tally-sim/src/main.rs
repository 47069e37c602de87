//! Runs many simulation seeds: `cargo run -p tally-sim --release -- --seeds 1000`, or replays
//! one: `cargo run -p tally-sim --release -- --seed 42`.

use std::process::ExitCode;

use tally_sim::{run_seed, SimOptions};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
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
            eprintln!("usage: tally-sim --seed N | --seeds COUNT [--start N] [--messages N]");
            return ExitCode::from(2);
        }
    };
    let mut options = SimOptions::default();
    if let Some(n) = value("--messages") {
        options.messages = n as usize;
    }
    let mut failures = 0;
    for seed in first..first + count {
        match run_seed(seed, &options) {
            Ok(r) => println!(
                "seed {seed}: ok, {} acked, {} unknown, {} failed, {} faults, {:.1} s simulated; \
                 transactions: {} committed, {} aborted, {} interrupted",
                r.acked,
                r.unknown,
                r.failed,
                r.faults.len(),
                r.sim_secs,
                r.transactions.0,
                r.transactions.1,
                r.transactions.2
            ),
            Err(e) => {
                failures += 1;
                println!("{e}");
            }
        }
    }
    println!("{count} seeds, {failures} failed");
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
