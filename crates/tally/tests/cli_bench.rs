//! A smoke run of `tally bench` with tiny counts (benchmarks proper are not part of the test
//! run): each mode finishes, its JSON report adds up, and what `produce` reports it wrote is
//! really in the log.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tally_client::{Admin, ClientConfig};
use tally_testkit::BrokerProcess;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn bench(bootstrap: &str, args: &[&str]) -> Value {
    let out: Output = Command::new(TALLY)
        .args(["--bootstrap", bootstrap, "bench"])
        .args(args)
        .args(["--json"])
        .output()
        .expect("run tally bench");
    assert!(
        out.status.success(),
        "tally bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn log_end_total(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let admin = Admin::new(ClientConfig::new(bootstrap)).await.unwrap();
        let mut total = 0;
        for p in 0..partitions {
            total += admin.list_offset(topic, p, -1).await.unwrap();
        }
        total
    })
}

#[test]
fn tally_bench_modes_report_what_they_did() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let b = broker.bootstrap();

    let produced = bench(
        &b,
        &[
            "produce",
            "--topic",
            "smoke",
            "-n",
            "3000",
            "-s",
            "64",
            "-p",
            "3",
            "--producers",
            "2",
        ],
    );
    assert_eq!(produced["client"], "tally");
    assert_eq!(produced["mode"], "produce");
    assert_eq!(produced["messages"], 3000);
    assert_eq!(produced["errors"], 0);
    assert_eq!(produced["bytes"], 3000 * 64);
    let latency = &produced["latency"];
    let (p50, p99, max) = (
        latency["p50_ms"].as_f64().unwrap(),
        latency["p99_ms"].as_f64().unwrap(),
        latency["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{latency}");
    assert!(produced["messages_per_sec"].as_f64().unwrap() > 0.0);
    // Idempotent by default: every message stored once.
    assert_eq!(log_end_total(&b, "smoke", 3), 3000);

    // Reading back what is there needs no fill.
    let consumed = bench(
        &b,
        &["consume", "--topic", "smoke", "-n", "3000", "-p", "3"],
    );
    assert_eq!(consumed["messages"], 3000);
    assert!(consumed["latency"].is_null());
    assert_eq!(log_end_total(&b, "smoke", 3), 3000);

    let e2e = bench(
        &b,
        &[
            "end-to-end",
            "--topic",
            "smoke-e2e",
            "-n",
            "1000",
            "-s",
            "32",
            "--compression",
            "lz4",
        ],
    );
    assert_eq!(e2e["mode"], "end-to-end");
    assert_eq!(e2e["messages"], 1000);
    assert!(e2e["latency"]["p99_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn tally_bench_rejects_bad_options_in_one_line() {
    let out = Command::new(TALLY)
        .args(["--bootstrap", "127.0.0.1:9", "bench", "produce", "-s", "4"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("tally: "), "{stderr}");
}
