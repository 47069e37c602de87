//! `tally serve` start-up and shutdown as an operator sees them: bad configuration and an
//! occupied port are one clear error line and a non-zero exit; SIGTERM shuts down cleanly.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn serve(args: &[&str], dir: &Path) -> Output {
    Command::new(TALLY)
        .arg("serve")
        .args(["--http", "127.0.0.1:0"])
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .output()
        .expect("run tally")
}

fn assert_one_error_line(out: &Output, needle: &str) {
    assert!(!out.status.success(), "should fail: {needle}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {stderr}");
    assert!(lines[0].starts_with("tally: error: "), "{stderr}");
    assert!(lines[0].contains(needle), "'{needle}' not in: {stderr}");
}

#[test]
fn bad_configuration_is_one_clear_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let free = |_| format!("127.0.0.1:{}", tally_testkit::broker_process::free_port());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--set".into(), "num.partitions=zero".into()],
            "num.partitions",
        ),
        (
            vec!["--set".into(), "no.such.key=1".into()],
            "unknown config key 'no.such.key'",
        ),
        (vec!["--set".into(), "justakey".into()], "KEY=VALUE"),
        (vec!["--listen".into(), "nonsense".into()], "HOST:PORT"),
        (
            vec!["--listen".into(), "SASL_SSL://127.0.0.1:1".into()],
            "needs ssl.keystore.location",
        ),
        (
            vec!["--listen".into(), "SASL_GSSAPI://127.0.0.1:1".into()],
            "unknown security protocol SASL_GSSAPI",
        ),
        (
            vec!["--listen".into(), "SSL://127.0.0.1:1".into()],
            "needs ssl.keystore.location",
        ),
        (
            vec![
                "--listen".into(),
                free(0),
                "--config".into(),
                "/no/such/file.toml".into(),
            ],
            "/no/such/file.toml",
        ),
        (
            vec![
                "--listen".into(),
                free(0),
                "--set".into(),
                "default.replication.factor=3".into(),
            ],
            "replication",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_one_error_line(&serve(&args, dir.path()), needle);
    }
    std::fs::write(dir.path().join("bad.toml"), "num.partitions = [").unwrap();
    assert_one_error_line(
        &serve(&["--config", "bad.toml", "--listen", &free(0)], dir.path()),
        "bad.toml",
    );
    let out = Command::new(TALLY)
        .args(["serve", "--listen", &free(0), "--http", "127.0.0.1:0"])
        .env("TALLY_LOG_RETENTION_MS", "soon")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_one_error_line(&out, "log.retention.ms");
}

#[test]
fn occupied_port_and_shared_data_dir_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    assert_one_error_line(&serve(&["--listen", &addr], dir.path()), "cannot listen on");

    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let other = format!("127.0.0.1:{}", tally_testkit::broker_process::free_port());
    let data = broker.data_dir.to_string_lossy().to_string();
    assert_one_error_line(
        &serve(&["--listen", &other, "--data-dir", &data], dir.path()),
        "in use by another tally broker",
    );
}

#[test]
fn defaults_use_a_local_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("broker.log");
    let mut child = Command::new(TALLY)
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let addr = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(at) = log.find("listen=") {
            let addr: std::net::SocketAddr = log[at + 7..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap();
            break addr;
        }
        assert!(std::time::Instant::now() < deadline, "not ready: {log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut client = WireClient::connect(addr).unwrap();
    client.create_topic("here", 1).unwrap();
    assert!(
        dir.path().join("tally-data/here-0").is_dir(),
        "data in ./tally-data"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn sigterm_is_a_clean_shutdown() {
    let mut broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("s", 1).unwrap();
    for i in 0..5 {
        assert_eq!(
            c.produce(9, "s", 0, batch(3, 0, i, 1)).unwrap().error_code,
            0
        );
    }
    drop(c);
    assert!(broker.terminate().success(), "exit status 0 after SIGTERM");
    assert!(broker.logs().contains("shutdown complete"));
    let partition = broker.data_dir.join("s-0");
    assert!(
        partition.join("00000000000000000005.snapshot").exists(),
        "snapshot at the log end"
    );
    broker.restart();
    assert!(
        broker.logs().contains("replayed_batches=0"),
        "a clean restart replays nothing"
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    assert_eq!(c.list_offset("s", 0, -1).unwrap(), 5);
}
