//! `tally audit` finds ranges stored twice (here made real by forcing a producer's state to
//! expire, spec E.3) and passes a clean topic; the fault proxy's stall and delay faults, and
//! `tally chaos-proxy` run from the command line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tally_chaos::{FaultProxy, ProxyConfig};
use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn tally(args: &[&str], stdin: &str) -> std::process::Output {
    let mut command = Command::new(TALLY);
    command.args(args);
    tally_testkit::run_with_stdin(&mut command, stdin)
}

#[test]
fn audit_passes_a_clean_topic_and_catches_a_range_stored_twice() {
    let broker = BrokerProcess::start(
        Path::new(TALLY),
        &[
            "--set",
            "producer.id.expiration.ms=1",
            "--set",
            "producer.id.expiration.check.interval.ms=50",
        ],
    );
    let b = broker.bootstrap();
    let lines: String = (0..200).map(|i| format!("m{i}\n")).collect();
    assert!(tally(
        &[
            "--bootstrap",
            &b,
            "topic",
            "create",
            "clean",
            "--partitions",
            "2"
        ],
        ""
    )
    .status
    .success());
    assert!(tally(&["--bootstrap", &b, "produce", "clean"], &lines)
        .status
        .success());
    let out = tally(&["--bootstrap", &b, "audit", "clean"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("No sequence range is stored twice"), "{text}");

    // Producer 5 writes three batches; the broker forgets it (expiry); its retry of the second
    // batch is then accepted as new, as Kafka does for an unknown producer.
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("dup", 1).unwrap();
    for seq in [0, 3, 6] {
        assert_eq!(
            c.produce(9, "dup", 0, batch(5, 0, seq, 3))
                .unwrap()
                .error_code,
            0
        );
    }
    std::thread::sleep(Duration::from_millis(400));
    let again = c.produce(9, "dup", 0, batch(5, 0, 3, 3)).unwrap();
    assert_eq!(
        (again.error_code, again.base_offset),
        (0, 9),
        "stored again once the producer expired"
    );
    let out = tally(&["--bootstrap", &b, "audit", "dup"], "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "audit must fail: {text}");
    assert!(text.contains("STORED TWICE: partition 0 producer 5 epoch 0: sequences 3-5 at offset 3 and again at offset 9"), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 sequence ranges of dup are stored twice")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_and_delay_faults() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let api_versions = WireClient::encode(
        &kafka_protocol::messages::ApiVersionsRequest::default(),
        3,
        1,
    )
    .unwrap();
    let mut frame = (api_versions.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&api_versions);

    let mut stalled = ProxyConfig::new(broker.addr);
    stalled.stall_probability = 1.0;
    let proxy = FaultProxy::start(stalled).await.unwrap();
    let addr = proxy.local_addr();
    let answered = tokio::task::spawn_blocking({
        let frame = frame.clone();
        move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            s.write_all(&frame).unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).is_ok()
        }
    })
    .await
    .unwrap();
    assert!(!answered, "a stalled connection must never answer");
    assert_eq!(proxy.counters().connections_stalled, 1);

    let mut delayed = ProxyConfig::new(broker.addr);
    delayed.delay_ms = (300, 300);
    let proxy = FaultProxy::start(delayed).await.unwrap();
    let addr = proxy.local_addr();
    let elapsed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let started = Instant::now();
        s.write_all(&frame).unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        started.elapsed()
    })
    .await
    .unwrap();
    assert!(
        elapsed >= Duration::from_millis(290),
        "answered after {elapsed:?}"
    );
    assert_eq!(proxy.counters().responses_delayed, 1);
}

#[test]
fn chaos_proxy_command_forwards_counts_and_stops_by_itself() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let mut proxy = Command::new(TALLY)
        .args([
            "chaos-proxy",
            "--upstream",
            &broker.bootstrap(),
            "--rewrite-metadata",
            "--drop-acks",
            "0.5",
            "--seed",
            "3",
            "--duration-secs",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(proxy.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_string();
    let lines: String = (0..50).map(|i| format!("x{i}\n")).collect();
    let out = tally(&["--bootstrap", &addr, "produce", "through-proxy"], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tally(
        &[
            "--bootstrap",
            &broker.bootstrap(),
            "consume",
            "through-proxy",
            "--from-beginning",
            "--idle-timeout-ms",
            "1500",
        ],
        "",
    );
    // Everything stored, read until idle (not capped at 50): each message exactly once.
    let mut stored: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    stored.sort();
    let mut sent: Vec<String> = (0..50).map(|i| format!("x{i}")).collect();
    sent.sort();
    assert_eq!(stored, sent, "each message once despite lost acks");
    let finished = proxy.wait_with_output().unwrap();
    assert!(finished.status.success());
    let counts = String::from_utf8_lossy(&finished.stdout);
    // The proxy really dropped acknowledgements (so retries really happened).
    let dropped: u64 = counts
        .split("produce_responses_dropped: ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop count in: {counts}"));
    assert!(
        dropped > 0,
        "the proxy dropped no acknowledgement: {counts}"
    );
    let bad = tally(
        &[
            "chaos-proxy",
            "--upstream",
            "127.0.0.1:1",
            "--drop-acks",
            "2",
        ],
        "",
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("probability between 0 and 1"));
}
