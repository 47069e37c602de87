//! Transactions at the command line: `tally produce --transactional-id` commits (or with
//! `--abort` aborts) a run's lines as one transaction, `tally consume` reads committed data by
//! default and everything with `--isolation read_uncommitted`, `tally transactions` lists and
//! describes transactional ids and aborts an open transaction by its start offset.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
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

fn consume(b: &str, topic: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "consume",
        topic,
        "--from-beginning",
        "--idle-timeout-ms",
        "1500",
    ];
    args.extend_from_slice(extra);
    let mut lines: Vec<String> = ok(&tally(b, &args, None))
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[test]
fn produce_in_a_transaction_consume_by_isolation_and_inspect() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let b = broker.bootstrap();
    ok(&tally(
        &b,
        &["topic", "create", "ledger", "--partitions", "2"],
        None,
    ));
    let committed = ok(&tally(
        &b,
        &["produce", "ledger", "--transactional-id", "cli-loader"],
        Some("a\nb\nc\n"),
    ));
    assert!(committed.contains("Transaction committed"), "{committed}");
    let aborted = ok(&tally(
        &b,
        &[
            "produce",
            "ledger",
            "--transactional-id",
            "cli-loader",
            "--abort",
        ],
        Some("x\ny\n"),
    ));
    assert!(aborted.contains("Transaction aborted"), "{aborted}");
    assert_eq!(consume(&b, "ledger", &[]), ["a", "b", "c"]);
    assert_eq!(
        consume(&b, "ledger", &["--isolation", "read_uncommitted"]),
        ["a", "b", "c", "x", "y"]
    );
    let list = ok(&tally(&b, &["transactions", "list"], None));
    assert!(
        list.contains("cli-loader") && list.contains("CompleteAbort"),
        "{list}"
    );
    let described = ok(&tally(
        &b,
        &["transactions", "describe", "cli-loader"],
        None,
    ));
    assert!(described.contains("CompleteAbort"), "{described}");
    let unknown = tally(&b, &["transactions", "describe", "nobody"], None);
    assert!(
        !unknown.status.success(),
        "an unknown transactional id is an error"
    );
}

#[test]
fn an_open_transaction_is_aborted_by_its_start_offset() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let b = broker.bootstrap();
    ok(&tally(
        &b,
        &["topic", "create", "stuck", "--partitions", "1"],
        None,
    ));
    ok(&tally(&b, &["produce", "stuck"], Some("before\n")));
    // A transaction left open (its producer stays alive and silent).
    let open: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("transactional.id", "cli-stuck")
        .set("transaction.timeout.ms", "600000")
        .create()
        .unwrap();
    open.init_transactions(Duration::from_secs(20)).unwrap();
    open.begin_transaction().unwrap();
    open.send(
        BaseRecord::<(), str>::to("stuck")
            .partition(0)
            .payload("open"),
    )
    .map_err(|(e, _)| e)
    .unwrap();
    open.flush(Duration::from_secs(20)).unwrap();
    ok(&tally(&b, &["produce", "stuck"], Some("after\n")));
    // read_committed is held at the open transaction.
    assert_eq!(consume(&b, "stuck", &[]), ["before"]);
    let producers = ok(&tally(
        &b,
        &["transactions", "describe-producers", "stuck"],
        None,
    ));
    assert!(
        producers.contains("CURRENT TRANSACTION START OFFSET"),
        "{producers}"
    );
    let aborted = ok(&tally(
        &b,
        &[
            "transactions",
            "abort",
            "--topic",
            "stuck",
            "--partition",
            "0",
            "--start-offset",
            "1",
        ],
        None,
    ));
    assert!(aborted.contains("Aborted"), "{aborted}");
    assert_eq!(consume(&b, "stuck", &[]), ["after", "before"]);
    let wrong = tally(
        &b,
        &[
            "transactions",
            "abort",
            "--topic",
            "stuck",
            "--partition",
            "0",
            "--start-offset",
            "0",
        ],
        None,
    );
    assert!(!wrong.status.success(), "no transaction starts at offset 0");
}

#[test]
fn the_transactions_demo_shows_half_a_transfer_only_without_a_transaction() {
    let out = Command::new(TALLY)
        .args(["demo", "transactions"])
        .output()
        .expect("run the demo");
    let text = ok(&out);
    let line = |step: &str| -> String {
        text.lines()
            .find(|l| l.starts_with(step))
            .unwrap_or_else(|| panic!("no '{step}' row in:\n{text}"))
            .to_string()
    };
    assert!(line("plain writes").contains("HALF a transfer"), "{text}");
    assert!(line("one transaction").contains("nothing []"), "{text}");
    assert!(
        line("a new writer").contains("the whole transfer"),
        "{text}"
    );
}
