//! An SSL listener (rustls) against real clients: certificates made here with rcgen (an
//! authority, and a broker certificate for 127.0.0.1 and localhost signed by it). kcat
//! (librdkafka) and kafka-python produce idempotently and read back over TLS, trusting the
//! authority. A client trusting another authority fails its handshake and stores nothing; a
//! plaintext client gets nothing; the broker keeps serving. A missing or bad keystore stops
//! the start with a clear message.

use std::path::{Path, PathBuf};
use std::process::Command;

use tally_testkit::BrokerProcess;

#[path = "common/pki.rs"]
mod pki;
use pki::pki;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 100;

fn kcat(broker: &BrokerProcess, ca: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut command = Command::new("kcat");
    command
        // cargo points LD_LIBRARY_PATH at rdkafka-sys's own librdkafka, built without TLS;
        // kcat must load Debian's.
        .env_remove("LD_LIBRARY_PATH")
        .arg("-b")
        .arg(broker.bootstrap())
        .args(["-X", "security.protocol=ssl", "-X"])
        .arg(format!("ssl.ca.location={}", ca.display()))
        .args(args);
    // kcat is installed by .ci/run.
    tally_testkit::run_with_stdin(&mut command, stdin)
}

/// Every message of `topic`, read from the start with kcat over TLS.
fn kcat_read(broker: &BrokerProcess, ca: &Path, topic: &str) -> Vec<String> {
    let out = kcat(
        broker,
        ca,
        &["-C", "-t", topic, "-o", "beginning", "-e", "-q"],
        "",
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

const KAFKA_PYTHON: &str = r#"
import json, sys
from kafka import KafkaConsumer, KafkaProducer
bootstrap, topic, ca, protocol = sys.argv[1:5]
tls = dict(bootstrap_servers=bootstrap, security_protocol=protocol, ssl_cafile=ca)
if topic == "-":
    # Try to write one message to tls-python; report whether it was acknowledged.
    try:
        # A known API version: no probing at start-up, which would wait 30 s.
        p = KafkaProducer(max_block_ms=5000, request_timeout_ms=5000, api_version=(2, 8), **tls)
        p.send("tls-python", b"stranger").get(timeout=5)
        print(json.dumps({"connected": True}))
    except Exception as e:
        print(json.dumps({"connected": False, "error": type(e).__name__}))
    sys.exit(0)
p = KafkaProducer(enable_idempotence=True, acks="all", **tls)
for i in range(100):
    p.send(topic, f"py{i}".encode())
p.flush()
p.close()
c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                  group_id="tls-readers", **tls)
print(json.dumps({"read": [m.value.decode() for m in c]}))
c.close()
"#;

fn kafka_python(
    broker: &BrokerProcess,
    topic: &str,
    ca: &Path,
    protocol: &str,
) -> serde_json::Value {
    let out = Command::new("python3")
        .args(["-c", KAFKA_PYTHON, &broker.bootstrap(), topic])
        .arg(ca)
        .arg(protocol)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafka-python failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("one JSON line")
}

#[test]
fn real_clients_produce_and_read_over_tls() {
    let pki = pki();
    let keystore = format!("ssl.keystore.location={}", pki.keystore.display());
    let broker =
        BrokerProcess::start_with_scheme(Path::new(TALLY), "SSL://", &["--set", &keystore], &[]);

    // librdkafka (kcat): idempotent writes, then read back.
    let lines: String = (0..MESSAGES).map(|i| format!("k{i}\n")).collect();
    let out = kcat(
        &broker,
        &pki.ca,
        &["-X", "enable.idempotence=true", "-P", "-t", "tls-kcat"],
        &lines,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("k{i}")).collect();
    assert_eq!(kcat_read(&broker, &pki.ca, "tls-kcat"), expected);

    // kafka-python: the same, in a consumer group.
    let result = kafka_python(&broker, "tls-python", &pki.ca, "SSL");
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("py{i}")).collect();
    assert_eq!(result["read"], serde_json::json!(expected));

    // Trusting another authority: the handshake fails, nothing is written.
    // (Checked below in the data: kcat's exit status on a failed delivery varies by version.)
    kcat(
        &broker,
        &pki.other_ca,
        &["-X", "message.timeout.ms=3000", "-P", "-t", "tls-kcat"],
        "stranger\n",
    );
    let stranger = kafka_python(&broker, "-", &pki.other_ca, "SSL");
    assert_eq!(
        stranger["connected"], false,
        "a client trusting another authority"
    );
    // Plaintext on the SSL port: no answer it can read.
    let plain = kafka_python(&broker, "-", &pki.ca, "PLAINTEXT");
    assert_eq!(plain["connected"], false, "a plaintext client");

    // The broker still serves, and the strangers' messages are not there.
    for topic in ["tls-kcat", "tls-python"] {
        let read = kcat_read(&broker, &pki.ca, topic);
        assert_eq!(read.len(), MESSAGES, "{topic}: {read:?}");
        assert!(!read.iter().any(|l| l == "stranger"), "{topic}");
    }
}

fn start_error(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(TALLY)
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path())
        .args(["--listen", "SSL://127.0.0.1:0", "--http", "off"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_ssl_listener_without_a_usable_keystore_does_not_start() {
    let err = start_error(&[]);
    assert!(err.contains("needs ssl.keystore.location"), "{err}");
    let pki = pki();
    let only_ca = format!("ssl.keystore.location={}", pki.ca.display());
    let err = start_error(&["--set", &only_ca]);
    assert!(err.contains("no private key"), "{err}");
    let missing = "ssl.keystore.location=/nonexistent/broker.pem";
    let err = start_error(&["--set", missing]);
    assert!(err.contains("/nonexistent/broker.pem"), "{err}");
    let keystore = format!("ssl.keystore.location={}", pki.keystore.display());
    let err = start_error(&["--set", &keystore, "--set", "ssl.client.auth=required"]);
    assert!(err.contains("needs ssl.truststore.location"), "{err}");
}

/// Whether a metadata request over TLS, trusting `ca`, gets an answer.
fn kcat_lists(broker: &BrokerProcess, ca: &Path) -> bool {
    kcat(broker, ca, &["-L", "-m", "3"], "").status.success()
}

/// The keystore file replaced while the broker runs: new connections get the new certificate
/// (clients trusting its authority connect, the others no longer do); a replacement that does
/// not load keeps the certificate in use.
#[test]
fn a_changed_keystore_is_used_without_a_restart() {
    let pki = pki();
    let work = tempfile::tempdir().unwrap();
    let keystore = work.path().join("broker.pem");
    std::fs::copy(&pki.keystore, &keystore).unwrap();
    let location = format!("ssl.keystore.location={}", keystore.display());
    let broker = BrokerProcess::start_with_scheme(
        Path::new(TALLY),
        "SSL://",
        &[
            "--set",
            &location,
            "--set",
            "ssl.keystore.check.interval.ms=200",
        ],
        &[],
    );
    assert!(kcat_lists(&broker, &pki.ca));
    assert!(!kcat_lists(&broker, &pki.other_ca));

    // Replaced as a whole (a new file renamed over the old one, as tools do).
    let replace = |from: &Path| {
        let tmp = work.path().join("broker.pem.new");
        std::fs::copy(from, &tmp).unwrap();
        std::fs::rename(&tmp, &keystore).unwrap();
    };
    replace(&pki.other_keystore);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !kcat_lists(&broker, &pki.other_ca) {
        assert!(
            std::time::Instant::now() < deadline,
            "never reloaded:\n{}",
            broker.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(!kcat_lists(&broker, &pki.ca), "the old certificate is gone");

    // A broken replacement: the certificate in use stays.
    replace(&pki.ca);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert!(kcat_lists(&broker, &pki.other_ca));
    assert!(broker
        .logs()
        .contains("does not load; keeping the one in use"));
}

/// With `ssl.client.auth=required`, a client needs a certificate from an authority in the
/// truststore: with one it is served; without one, or with one from another authority, its
/// handshake fails.
#[test]
fn required_client_certificates_are_checked() {
    let pki = pki();
    let keystore = format!("ssl.keystore.location={}", pki.keystore.display());
    let truststore = format!("ssl.truststore.location={}", pki.ca.display());
    let broker = BrokerProcess::start_with_scheme(
        Path::new(TALLY),
        "SSL://",
        &[
            "--set",
            &keystore,
            "--set",
            &truststore,
            "--set",
            "ssl.client.auth=required",
        ],
        &[],
    );
    let lists_with = |client: Option<&(PathBuf, PathBuf)>| {
        let mut args: Vec<String> = vec!["-L".into(), "-m".into(), "3".into()];
        if let Some((cert, key)) = client {
            args.extend([
                "-X".into(),
                format!("ssl.certificate.location={}", cert.display()),
                "-X".into(),
                format!("ssl.key.location={}", key.display()),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kcat(&broker, &pki.ca, &args, "").status.success()
    };
    assert!(lists_with(Some(&pki.client)), "{}", broker.logs());
    assert!(!lists_with(None), "no client certificate");
    assert!(
        !lists_with(Some(&pki.other_client)),
        "another authority's client"
    );
}

/// With `ssl.client.auth=required`, a connection is the subject of its certificate, as in
/// Kafka (`User:CN=alice`): with the authorizer on and alice a super user, alice's writes are
/// stored and bob's (a certificate from the same authority) are refused and not stored.
#[test]
fn a_client_certificate_is_the_connections_principal() {
    let pki = pki();
    let keystore = format!("ssl.keystore.location={}", pki.keystore.display());
    let truststore = format!("ssl.truststore.location={}", pki.ca.display());
    let broker = BrokerProcess::start_with_scheme(
        Path::new(TALLY),
        "SSL://",
        &[
            "--set",
            &keystore,
            "--set",
            &truststore,
            "--set",
            "ssl.client.auth=required",
            "--set",
            "authorizer.class.name=tally",
            "--set",
            "super.users=User:CN=alice",
        ],
        &[],
    );
    let as_client = |client: &(PathBuf, PathBuf), args: &[&str], stdin: &str| {
        let mut all: Vec<String> = vec![
            "-X".into(),
            format!("ssl.certificate.location={}", client.0.display()),
            "-X".into(),
            format!("ssl.key.location={}", client.1.display()),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        kcat(&broker, &pki.ca, &all, stdin)
    };
    let out = as_client(&pki.client, &["-P", "-t", "certs"], "from-alice\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    as_client(
        &pki.client_bob,
        &["-X", "message.timeout.ms=3000", "-P", "-t", "certs"],
        "from-bob\n",
    );
    // Tally's own command line presents a certificate too.
    let tally_with = |client: &(PathBuf, PathBuf), line: &str| {
        let mut command = Command::new(TALLY);
        command
            .args(["produce", "certs", "--bootstrap", &broker.bootstrap()])
            .args(["--security-protocol", "SSL", "--ssl-ca-location"])
            .arg(&pki.ca)
            .arg("--ssl-certificate-location")
            .arg(&client.0)
            .arg("--ssl-key-location")
            .arg(&client.1);
        tally_testkit::run_with_stdin(&mut command, line)
    };
    let out = tally_with(&pki.client, "cli-alice\n");
    assert!(out.status.success(), "{out:?}");
    let out = tally_with(&pki.client_bob, "cli-bob\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // bob may write nowhere, so his idempotent producer is refused its id (KIP-679).
    assert!(err.contains("ClusterAuthorizationFailed"), "{err}");
    let read = as_client(
        &pki.client,
        &["-C", "-t", "certs", "-o", "beginning", "-e", "-q"],
        "",
    );
    let read = String::from_utf8_lossy(&read.stdout).into_owned();
    assert_eq!(
        read.lines().collect::<Vec<_>>(),
        ["from-alice", "cli-alice"],
        "{}",
        broker.logs()
    );
}
