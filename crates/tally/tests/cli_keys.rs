//! Idempotency keys at the command line: `tally demo idempotency-keys`, `tally produce
//! --idempotency-key-header`, `tally keys`, and a clear refusal of a bad `idempotency.key`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tally_testkit::{http_get, BrokerProcess};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn tally(bootstrap: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(TALLY)
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tally");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn the_demo_stores_every_order_twice_with_idempotence_alone_and_once_with_keys() {
    let out = Command::new(TALLY)
        .args(["demo", "idempotency-keys"])
        .output()
        .unwrap();
    let text = ok(&out);
    let row = |topic: &str| {
        text.lines()
            .find(|l| l.starts_with(topic))
            .unwrap_or_else(|| panic!("no row for {topic}: {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let plain = row("orders-idempotence ");
    assert!(plain.contains(" 20 2: every order 2 times"), "{text}");
    let keyed = row("orders-keys ");
    assert!(keyed.contains(" 10 1: each order once 10"), "{text}");
}

#[test]
fn produce_with_an_idempotency_key_header_and_the_keys_command() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let b = broker.bootstrap();
    ok(&tally(
        &b,
        &[
            "topic",
            "create",
            "payments",
            "--config",
            "idempotency.key=header:order-id",
        ],
        None,
    ));
    let lines = "o-1:paid 1\no-2:paid 2\n";
    let args = [
        "produce",
        "payments",
        "--key-separator",
        ":",
        "--idempotency-key-header",
        "order-id",
    ];
    ok(&tally(&b, &args, Some(lines)));
    ok(&tally(&b, &args, Some("o-2:paid 2\no-3:paid 3\n")));
    let read = ok(&tally(
        &b,
        &[
            "consume",
            "payments",
            "--from-beginning",
            "--max-messages",
            "3",
        ],
        None,
    ));
    let values: Vec<&str> = read.lines().filter(|l| l.starts_with("paid")).collect();
    assert_eq!(values, ["paid 1", "paid 2", "paid 3"], "{read}");
    let keys = ok(&tally(&b, &["keys", "payments"], None));
    assert!(keys.contains("idempotency.key=header:order-id"), "{keys}");
    let row: Vec<&str> = keys
        .lines()
        .find(|l| l.trim_start().starts_with('0'))
        .expect(&keys)
        .split_whitespace()
        .collect();
    assert_eq!(row, ["0", "3", "1", "0"], "{keys}");

    let bad = tally(
        &b,
        &[
            "topic",
            "create",
            "bad",
            "--config",
            "idempotency.key=value",
        ],
        None,
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("none, key or header:NAME"), "{stderr}");
    let plain = tally(&b, &["keys", "__consumer_offsets"], None);
    assert!(!plain.status.success());
}

/// With the broker default `log.idempotency.key=key`, user topics take it and the broker's own
/// topics do not: their records are keyed by group, partition or transactional id, and each
/// new one supersedes the last. They keep no key index (the metric stays 0), and a group's
/// second commit survives a SIGKILL.
#[test]
fn the_broker_default_spares_the_broker_s_own_records() {
    let mut broker = BrokerProcess::start(
        Path::new(TALLY),
        &[
            "--set",
            "log.idempotency.key=key",
            "--set",
            "group.initial.rebalance.delay.ms=0",
        ],
    );
    let b = broker.bootstrap();
    ok(&tally(&b, &["topic", "create", "events"], None));
    let lines: String = (0..10).map(|i| format!("k{i}:v{i}\n")).collect();
    ok(&tally(
        &b,
        &["produce", "events", "--key-separator", ":"],
        Some(&lines),
    ));
    // The topic took the broker default: resending stores nothing.
    ok(&tally(
        &b,
        &["produce", "events", "--key-separator", ":"],
        Some(&lines),
    ));
    let consume = |n: &str| {
        ok(&tally(
            &b,
            &[
                "consume",
                "events",
                "--group",
                "g",
                "--from-beginning",
                "-n",
                n,
            ],
            None,
        ))
    };
    assert_eq!(consume("4").lines().count(), 4);
    let second = consume("3");
    assert_eq!(second.lines().collect::<Vec<_>>(), ["v4", "v5", "v6"]);
    let metrics = http_get(broker.http_addr().expect("http listener"), "/metrics")
        .unwrap()
        .1;
    let keys = |topic: &str| -> Vec<String> {
        metrics
            .lines()
            .filter(|l| l.starts_with("tally_idempotency_keys{") && l.contains(topic))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(keys("\"events\""), ["10"], "{metrics}");
    assert_eq!(keys("__consumer_offsets"), ["0"], "{metrics}");
    let dropped = ok(&tally(&b, &["keys", "events"], None));
    assert!(
        dropped
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "10", "10", "0"]),
        "{dropped}"
    );
    broker.kill9();
    broker.restart();
    let b = broker.bootstrap();
    let rest = ok(&tally(
        &b,
        &["consume", "events", "--group", "g", "-n", "3"],
        None,
    ));
    assert_eq!(
        rest.lines().collect::<Vec<_>>(),
        ["v7", "v8", "v9"],
        "the group resumed after its last commit"
    );
}
