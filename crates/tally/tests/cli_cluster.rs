//! `tally dev-cluster` through the real binary: three nodes that form one cluster, take a
//! replicated topic, produce and consume through the Tally CLI, show each partition's leader,
//! replicas and ISR in `tally topic describe`, and all stop on SIGINT. And `tally serve`
//! refuses a voters list that does not name it, with one clear line.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// A base port whose three Kafka ports and three Raft ports (base + 100) are free, outside
/// the kernel's ephemeral range.
fn free_base() -> u16 {
    loop {
        let base = tally_testkit::free_fixed_port().min(31_000);
        let all_free = (0..3)
            .flat_map(|i| [base + i, base + 100 + i])
            .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if all_free {
            return base;
        }
    }
}

#[test]
fn dev_cluster_runs_three_nodes_that_serve_one_replicated_topic_and_stop_on_sigint() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base();
    let mut cluster = Command::new(TALLY)
        .args([
            "dev-cluster",
            "--nodes",
            "3",
            "--base-port",
            &base.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bootstrap = format!("127.0.0.1:{}", base + 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = tally(
            &bootstrap,
            &[
                "topic",
                "create",
                "orders",
                "--partitions",
                "3",
                "--replication-factor",
                "3",
            ],
            None,
        );
        // An earlier try that timed out under load may have created it.
        if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let lines: String = (0..30).map(|i| format!("order-{i}\n")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // Until every partition has elected its leader.
        let out = tally(&bootstrap, &["produce", "orders"], Some(&lines));
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "produce: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let consumed = ok(&tally(
        &format!("127.0.0.1:{base}"),
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--max-messages",
            "30",
        ],
        None,
    ));
    let mut values: Vec<&str> = consumed.lines().collect();
    values.sort_unstable();
    let mut expected: Vec<String> = (0..30).map(|i| format!("order-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(values, expected);

    let described = ok(&tally(&bootstrap, &["topic", "describe", "orders"], None));
    assert!(described.contains("ISR"), "{described}");
    let rows: Vec<&str> = described
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 3, "{described}");
    for row in rows {
        let columns: Vec<&str> = row.split_whitespace().collect();
        let mut replicas: Vec<&str> = columns[2].split(',').collect();
        replicas.sort_unstable();
        assert_eq!(replicas, ["1", "2", "3"], "{described}");
        assert!(
            columns[2].split(',').any(|r| r == columns[1]),
            "leader among the replicas: {row}"
        );
    }

    // A compacted topic is refused, with the reason: replicas apply retention on their own.
    let out = tally(
        &bootstrap,
        &[
            "topic",
            "create",
            "table",
            "--config",
            "cleanup.policy=compact",
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("compact"), "{stderr}");

    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(cluster.id() as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = cluster.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "dev-cluster did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    for port in [base, base + 1, base + 2] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "a node still listens on {port}"
        );
    }
}

#[test]
fn serve_refuses_voters_that_do_not_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(TALLY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "off",
            "--node-id",
            "1",
        ])
        .args(["--voters", "2@127.0.0.1:19999"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("node.id 1 is not among the voters"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
