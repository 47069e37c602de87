//! The group commands through the real binary: `tally consume --group` resumes where the group
//! committed; `tally group describe` shows the members, their assignments, and per partition
//! the committed offset, the log end offset and the lag; `reset-offsets` is refused while the
//! group has members and works once it has none; `list` and `delete`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tally_testkit::{BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn tally(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(TALLY)
        .arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .output()
        .expect("run tally")
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

/// Rows of the offsets table: (partition, committed, log end, lag, member id).
fn offset_rows(describe: &str) -> Vec<(i32, String, i64, String, String)> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in describe.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.first() == Some(&"TOPIC") {
            in_table = true;
            continue;
        }
        if in_table && cells.first() == Some(&"orders") {
            rows.push((
                cells[1].parse().unwrap(),
                cells[2].to_string(),
                cells[3].parse().unwrap(),
                cells[4].to_string(),
                cells[5].to_string(),
            ));
        }
    }
    rows.sort();
    rows
}

fn consume_group(b: &str, n: usize) -> Vec<String> {
    let out = ok(&tally(
        b,
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--from-beginning",
            "-n",
            &n.to_string(),
            "--idle-timeout-ms",
            "15000",
        ],
    ));
    out.lines().map(str::to_string).collect()
}

#[test]
fn group_commands_show_members_assignments_offsets_and_lag() {
    let broker = BrokerProcess::start(
        Path::new(TALLY),
        &["--set", "group.initial.rebalance.delay.ms=0"],
    );
    let b = broker.bootstrap();
    ok(&tally(
        &b,
        &["topic", "create", "orders", "--partitions", "2"],
    ));
    let input: String = (0..10).map(|i| format!("k{i}:order-{i}\n")).collect();
    let mut produce = Command::new(TALLY)
        .args([
            "--bootstrap",
            &b,
            "produce",
            "orders",
            "--key-separator",
            ":",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut produce.stdin.take().unwrap(), input.as_bytes()).unwrap();
    assert!(produce.wait().unwrap().success());
    let mut wire = WireClient::connect(broker.addr).unwrap();
    let ends: Vec<i64> = (0..2)
        .map(|p| wire.list_offset("orders", p, -1).unwrap())
        .collect();
    assert_eq!(ends.iter().sum::<i64>(), 10);

    // A group member reads four, then another run resumes after them and reads the rest.
    let first = consume_group(&b, 4);
    assert_eq!(first.len(), 4);
    let rest = consume_group(&b, 6);
    assert_eq!(rest.len(), 6);
    let all: BTreeSet<String> = first.iter().chain(&rest).cloned().collect();
    let expected: BTreeSet<String> = (0..10).map(|i| format!("order-{i}")).collect();
    assert_eq!(all, expected, "each message once across the two runs");

    // Move the group back to offset 1 on each partition, so it has lag.
    let reset = ok(&tally(
        &b,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-offset",
            "1",
        ],
    ));
    assert!(reset.contains("NEW"), "{reset}");

    // A live member (librdkafka, not committing) owns both partitions.
    let member: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "billing")
        .set("client.id", "describe-probe")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .unwrap();
    member.subscribe(&["orders"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while member.assignment().map(|a| a.count()).unwrap_or(0) < 2 {
        assert!(
            Instant::now() < deadline,
            "the member never got its partitions"
        );
        let _ = member.poll(Duration::from_millis(50));
    }
    let _ = member.poll(Duration::from_millis(50));

    let describe = ok(&tally(&b, &["group", "describe", "billing"]));
    println!("{describe}");
    assert!(describe.contains("Stable"), "{describe}");
    assert!(describe.contains("1 member"), "{describe}");
    assert!(describe.contains("protocol range"), "{describe}");
    assert!(describe.contains("describe-probe"), "client id: {describe}");
    assert!(
        describe.contains("orders-0,orders-1"),
        "assignment: {describe}"
    );
    let rows = offset_rows(&describe);
    assert_eq!(rows.len(), 2, "{describe}");
    for (partition, committed, end, lag, member_id) in &rows {
        let expected_committed = 1.min(ends[*partition as usize]);
        assert_eq!(committed, &expected_committed.to_string(), "{describe}");
        assert_eq!(*end, ends[*partition as usize], "{describe}");
        assert_eq!(lag, &(end - expected_committed).to_string(), "{describe}");
        assert!(member_id.starts_with("describe-probe"), "{describe}");
    }

    // Refused while the group has a member.
    let refused = tally(
        &b,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-earliest",
        ],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("active member"), "{stderr}");
    let refused = tally(&b, &["group", "delete", "billing"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("still has members"));

    member.unsubscribe();
    drop(member);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = ok(&tally(&b, &["group", "describe", "billing"]));
        if d.contains("Empty") {
            break;
        }
        assert!(Instant::now() < deadline, "the group never emptied: {d}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Without members: reset to the end, so there is no lag left.
    ok(&tally(
        &b,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-latest",
        ],
    ));
    let describe = ok(&tally(&b, &["group", "describe", "billing"]));
    for (partition, committed, end, lag, member_id) in offset_rows(&describe) {
        assert_eq!(committed, ends[partition as usize].to_string());
        assert_eq!(end, ends[partition as usize]);
        assert_eq!(lag, "0");
        assert_eq!(member_id, "-");
    }

    let list = ok(&tally(&b, &["group", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("billing") && l.contains("Empty")),
        "{list}"
    );
    ok(&tally(&b, &["group", "delete", "billing"]));
    let gone = tally(&b, &["group", "describe", "billing"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no group 'billing'"));
}
