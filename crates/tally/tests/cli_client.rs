//! The client commands through the real binary: produce then consume as JSON round-trips keys,
//! values and headers; `tally demo idempotence` tells the seeds' story with real values; bad
//! input is one error line and a non-zero exit.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use tally_testkit::BrokerProcess;

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

fn one_error_line(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("tally: "), "{stderr}");
    assert!(stderr.contains(needle), "'{needle}' not in: {stderr}");
}

#[test]
fn produce_then_consume_json_round_trips_keys_values_and_headers() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let b = broker.bootstrap();
    ok(&tally(
        &b,
        &["topic", "create", "events", "--partitions", "2"],
        None,
    ));
    let input = "alice:signed up\nbob:paid: 3 euros\n:no key here\nplain line\n";
    let produced = ok(&tally(
        &b,
        &[
            "produce",
            "events",
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--header",
            "v=1",
        ],
        Some(input),
    ));
    assert!(
        produced.contains("Produced 4 of 4 messages to events"),
        "{produced}"
    );
    let consumed = ok(&tally(
        &b,
        &[
            "consume",
            "events",
            "--from-beginning",
            "-n",
            "4",
            "--format",
            "json",
        ],
        None,
    ));
    let mut seen: Vec<(Option<String>, String)> = consumed
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["topic"], "events");
            assert_eq!(v["headers"]["source"], "cli");
            assert_eq!(v["headers"]["v"], "1");
            assert!(v["offset"].as_i64().unwrap() >= 0);
            assert!(v["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
            assert!(v["partition"].as_i64().unwrap() < 2);
            (
                v["key"].as_str().map(String::from),
                v["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (Some("alice".to_string()), "signed up".to_string()),
        (Some("bob".to_string()), "paid: 3 euros".to_string()),
        (Some(String::new()), "no key here".to_string()),
        (None, "plain line".to_string()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    // A file with a progress bar (hidden when not a terminal) and a fixed partition.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.txt");
    std::fs::write(
        &file,
        (0..500).map(|i| format!("line {i}\n")).collect::<String>(),
    )
    .unwrap();
    let produced = ok(&tally(
        &b,
        &[
            "produce",
            "events",
            "--file",
            file.to_str().unwrap(),
            "--partition",
            "1",
            "--compression",
            "zstd",
        ],
        None,
    ));
    assert!(produced.contains("Produced 500 of 500"), "{produced}");
    let values = ok(&tally(
        &b,
        &[
            "consume",
            "events",
            "--partition",
            "1",
            "--from-beginning",
            "-n",
            "600",
            "--idle-timeout-ms",
            "1500",
        ],
        None,
    ));
    assert_eq!(
        values.lines().filter(|l| l.starts_with("line ")).count(),
        500
    );
    let table = ok(&tally(&b, &["producers", "events"], None));
    assert!(table.contains("LAST SEQUENCE"), "{table}");
    // Rows: PARTITION, PRODUCER ID, EPOCH, LAST SEQUENCE, LAST OFFSET, LAST TIMESTAMP. Each
    // producer's sequences on a partition start at 0 and have no gap, so last sequence + 1
    // summed over the rows is every message produced (4 + 500), by two producers.
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    let sent: i64 = rows.iter().map(|r| r[3].parse::<i64>().unwrap() + 1).sum();
    assert_eq!(sent, 504, "{table}");
    let producers: std::collections::BTreeSet<&String> = rows.iter().map(|r| &r[1]).collect();
    assert_eq!(producers.len(), 2, "{table}");
    assert!(
        rows.iter().all(|r| r[2] == "0"),
        "epoch 0 everywhere: {table}"
    );
    let described = ok(&tally(&b, &["topic", "describe", "events"], None));
    assert!(described.contains("2 partitions"), "{described}");
}

#[test]
fn demo_idempotence_stores_one_copy_and_two_without() {
    let out = Command::new(TALLY)
        .args(["demo", "idempotence"])
        .output()
        .unwrap();
    let text = ok(&out);
    let retry = text
        .lines()
        .find(|l| l.contains("Retry message1"))
        .expect(&text);
    assert!(retry.contains("Yes: duplicate ignored"), "{text}");
    assert!(text.contains("Ack lost on the way back"), "{text}");
    assert!(text.contains("stored once (1 copy)"), "{text}");
    let stored: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("offset "))
        .collect();
    assert_eq!(stored, vec!["  offset 0: message1"], "{text}");

    let out = Command::new(TALLY)
        .args(["demo", "idempotence", "--no-idempotence"])
        .output()
        .unwrap();
    let text = ok(&out);
    let retry = text
        .lines()
        .find(|l| l.contains("Retry message1"))
        .expect(&text);
    assert!(retry.contains("Stored at offset 1"), "{text}");
    assert!(text.contains("(2 copies)"), "{text}");

    // Against a running broker given with --bootstrap.
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let text = ok(&tally(&broker.bootstrap(), &["demo", "idempotence"], None));
    assert!(text.contains("stored once (1 copy)"), "{text}");
}

#[test]
fn client_errors_are_one_line() {
    let broker = BrokerProcess::start(
        Path::new(TALLY),
        &["--set", "auto.create.topics.enable=false"],
    );
    let b = broker.bootstrap();
    one_error_line(
        &tally(&b, &["consume", "missing", "-n", "1"], None),
        "unknown topic 'missing'",
    );
    one_error_line(
        &tally(&b, &["produce", "missing"], Some("x\n")),
        "unknown topic 'missing'",
    );
    one_error_line(
        &tally(&b, &["producers", "missing"], None),
        "unknown topic 'missing'",
    );
    one_error_line(
        &tally(&b, &["topic", "delete", "missing"], None),
        "unknown topic 'missing'",
    );
    one_error_line(
        &tally("127.0.0.1:1", &["topic", "list"], None),
        "no broker reachable at 127.0.0.1:1",
    );
    one_error_line(
        &tally(&b, &["consume", "x", "--format", "yaml"], None),
        "invalid value 'yaml'",
    );
    one_error_line(&tally(&b, &["topic", "create"], None), "<TOPIC>");
    one_error_line(
        &tally(&b, &["produce", "t", "--header", "nokv"], Some("")),
        "KEY=VALUE",
    );
    one_error_line(
        &tally(&b, &["topic", "create", "t", "--partitions", "0"], None),
        "InvalidPartitions (37): number of partitions must be at least 1",
    );
    let help = Command::new(TALLY)
        .args(["produce", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Examples:"));
}
