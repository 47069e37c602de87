//! Several named listeners on one broker (Kafka's `listeners`,
//! `listener.security.protocol.map`, `advertised.listeners`): a PLAINTEXT one and a
//! SASL_PLAINTEXT one named CLIENTS. Each connection gets its own listener's rules (a login
//! on CLIENTS only) and is told its own listener's advertised address in Metadata. Names
//! that do not add up stop the start with one clear line.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::messages::MetadataRequest;
use tally_testkit::WireClient;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

struct Broker {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("broker.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(TALLY)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--http", "off"])
        .args(args)
        .env("RUST_LOG", "info")
        .env("TALLY_SASL_BOOTSTRAP_USERS", "app:app-pw")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Broker {
        child,
        log,
        _dir: dir,
    }
}

/// The bound address of each listener, from the ready line's `listeners=`.
fn listeners(broker: &Broker) -> Vec<(String, SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&broker.log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("tally broker ready")) {
            let field = line
                .split(" listeners=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            return field
                .split(',')
                .map(|e| {
                    let (name, addr) = e.split_once("://").unwrap();
                    (name.to_string(), addr.parse().unwrap())
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "not ready:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn advertised(c: &mut WireClient) -> (String, i32) {
    let r = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .unwrap();
    (r.brokers[0].host.to_string(), r.brokers[0].port)
}

#[test]
fn each_listener_has_its_own_protocol_and_advertised_address() {
    let broker = start(&[
        "--listen",
        "PLAINTEXT://127.0.0.1:0,clients://127.0.0.1:0",
        "--set",
        "listener.security.protocol.map=CLIENTS:SASL_PLAINTEXT",
        "--set",
        "advertised.listeners=CLIENTS://clients.example:9999",
        "--set",
        "inter.broker.listener.name=PLAINTEXT",
    ]);
    let bound = listeners(&broker);
    assert_eq!(bound.len(), 2, "{bound:?}");
    let (plain, clients) = (bound[0].1, bound[1].1);
    assert_eq!(bound[1].0, "CLIENTS");

    // PLAINTEXT: no login, and Metadata names the address it was reached on.
    let mut c = WireClient::connect(plain).unwrap();
    assert_eq!(
        advertised(&mut c),
        ("127.0.0.1".into(), i32::from(plain.port()))
    );

    // CLIENTS: nothing before a login; after it, the advertised address of CLIENTS.
    let mut c = WireClient::connect(clients).unwrap();
    assert!(c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .is_err());
    let mut c = WireClient::connect(clients).unwrap();
    c.authenticate("SCRAM-SHA-256", "app", "app-pw")
        .unwrap()
        .unwrap();
    assert_eq!(advertised(&mut c), ("clients.example".into(), 9999));
}

fn start_error(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(TALLY)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--http", "off"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn listener_names_that_do_not_add_up_stop_the_start() {
    let two = "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0";
    let err = start_error(&["--listen", two]);
    assert!(err.contains("unknown security protocol INTERNAL"), "{err}");
    let map = "listener.security.protocol.map=INTERNAL:SASL_PLAINTEXT";
    let err = start_error(&[
        "--listen",
        two,
        "--set",
        map,
        "--set",
        "advertised.listeners=OTHER://h:1",
    ]);
    assert!(err.contains("OTHER"), "{err}");
    let err = start_error(&[
        "--listen",
        two,
        "--set",
        map,
        "--set",
        "inter.broker.listener.name=REPLICATION",
    ]);
    assert!(err.contains("inter.broker.listener.name"), "{err}");
    let err = start_error(&["--listen", "SSL://127.0.0.1:0,SSL://127.0.0.1:0"]);
    assert!(err.contains("used twice"), "{err}");
}
