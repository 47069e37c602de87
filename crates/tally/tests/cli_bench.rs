//! A smoke run of `tally bench` with tiny counts (benchmarks proper are not part of the test
//! run): each mode finishes, its JSON report adds up, and what `produce` reports it wrote is
//! really in the log, once, also when the fault proxy loses acknowledgements (and, as the
//! control, twice for some messages with idempotence off).

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

/// `tally bench produce` through the fault proxy, which loses the first two acknowledgements
/// after the broker wrote the batches: the producer retries them. Idempotent (the default),
/// every message is stored once; with `--no-idempotence` the retried batches are stored twice.
#[test]
fn tally_bench_stores_each_message_once_when_acknowledgements_are_lost() {
    use tally_chaos::{DropPolicy, FaultProxy, ProxyConfig};
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for (topic, idempotent) in [("lossy", true), ("lossy-control", false)] {
        let mut config = ProxyConfig::new(broker.addr);
        config.drop_produce_responses = DropPolicy::FirstN(2);
        config.rewrite_metadata = true;
        let proxy = runtime.block_on(FaultProxy::start(config)).unwrap();
        let through = proxy.local_addr().to_string();
        let mut args = vec![
            "produce",
            "--topic",
            topic,
            "-n",
            "3000",
            "-s",
            "64",
            "-p",
            "3",
            "--request-timeout-ms",
            "1000",
        ];
        if !idempotent {
            args.push("--no-idempotence");
        }
        let produced = bench(&through, &args);
        assert_eq!(produced["messages"], 3000);
        assert_eq!(produced["errors"], 0);
        assert_eq!(proxy.counters().produce_responses_dropped, 2, "{topic}");
        let stored = log_end_total(&broker.bootstrap(), topic, 3);
        if idempotent {
            assert_eq!(stored, 3000, "every message once");
        } else {
            assert!(
                stored > 3000,
                "the control stores retried batches twice: {stored}"
            );
        }
    }
}
