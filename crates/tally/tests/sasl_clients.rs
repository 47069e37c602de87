//! Real clients on a SASL_SSL listener, unchanged but for their `security.protocol` and
//! `sasl.*` settings: librdkafka (the rdkafka crate) and kafka-python with SCRAM-SHA-512, and
//! kafkajs with PLAIN, each producing idempotently and reading back in a consumer group. The
//! same clients with a wrong password are refused with SASL_AUTHENTICATION_FAILED and store
//! nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::ClientContext;
use rdkafka::Message;
use std::sync::atomic::{AtomicUsize, Ordering};
use tally_testkit::BrokerProcess;

#[path = "common/pki.rs"]
mod pki;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 100;
const USERS: &str = "admin:admin-secret\nalice:alice, with a comma\n";

struct SaslBroker {
    broker: BrokerProcess,
    pki: pki::Pki,
    _users: tempfile::NamedTempFile,
}

/// A SASL_SSL broker whose users come from a file (no password in its command line).
fn sasl_ssl_broker() -> SaslBroker {
    let pki = pki::pki();
    let users = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(users.path(), USERS).unwrap();
    let keystore = format!("ssl.keystore.location={}", pki.keystore.display());
    let users_file = format!("sasl.bootstrap.users.file={}", users.path().display());
    let broker = BrokerProcess::start_with_scheme(
        Path::new(TALLY),
        "SASL_SSL://",
        &["--set", &keystore, "--set", &users_file],
        &[],
    );
    SaslBroker {
        broker,
        pki,
        _users: users,
    }
}

fn rd_config(b: &SaslBroker, user: &str, password: &str) -> RdConfig {
    let mut c = RdConfig::new();
    c.set("bootstrap.servers", b.broker.bootstrap())
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.location", b.pki.ca.display().to_string());
    c
}

/// Counts delivery reports: messages acknowledged and messages failed.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicUsize,
    failed: AtomicUsize,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let counter = match result {
            Ok(_) => &self.delivered,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends `count` messages idempotently; how many were acknowledged (the others failed, at
/// the latest when message.timeout.ms ran out).
fn rd_produce(b: &SaslBroker, user: &str, password: &str, topic: &str, count: usize) -> usize {
    let producer: BaseProducer<Deliveries> = rd_config(b, user, password)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "8000")
        .create_with_context(Deliveries::default())
        .unwrap();
    for i in 0..count {
        let value = format!("rd{i}");
        let record: BaseRecord<(), String> = BaseRecord::to(topic).payload(&value);
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    let _ = producer.flush(Duration::from_secs(20));
    let d = producer.context();
    assert_eq!(
        d.delivered.load(Ordering::Relaxed) + d.failed.load(Ordering::Relaxed),
        count,
        "every message has its report"
    );
    d.delivered.load(Ordering::Relaxed)
}

fn rd_consume(b: &SaslBroker, topic: &str, want: usize) -> Vec<String> {
    let consumer: BaseConsumer = rd_config(b, "alice", "alice, with a comma")
        .set("group.id", "sasl-rdkafka-readers")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read.len() < want && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            read.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    read
}

/// The end offset of `topic`'s one partition, asked by an authenticated librdkafka.
fn end_offset(b: &SaslBroker, topic: &str) -> i64 {
    let consumer: BaseConsumer = rd_config(b, "admin", "admin-secret").create().unwrap();
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    high
}

const KAFKA_PYTHON: &str = r#"
import json, sys
from kafka import KafkaConsumer, KafkaProducer
bootstrap, topic, ca, user, password = sys.argv[1:6]
sasl = dict(bootstrap_servers=bootstrap, security_protocol="SASL_SSL", ssl_cafile=ca,
            sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
            sasl_plain_password=password)
if topic == "-":
    # The producer reports a refused login as a metadata timeout; its log says why.
    import io, logging
    log = io.StringIO()
    logging.basicConfig(stream=log, level=logging.INFO)
    try:
        p = KafkaProducer(max_block_ms=5000, request_timeout_ms=5000, api_version=(2, 8), **sasl)
        p.send("sasl-python", b"stranger").get(timeout=5)
        print(json.dumps({"connected": True}))
    except Exception as e:
        refused = "SaslAuthenticationFailedError" in log.getvalue()
        print(json.dumps({"connected": False, "error": type(e).__name__, "refused": refused}))
    sys.exit(0)
p = KafkaProducer(enable_idempotence=True, acks="all", **sasl)
for i in range(100):
    p.send(topic, f"py{i}".encode())
p.flush()
p.close()
c = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=5000,
                  group_id="sasl-python-readers", **sasl)
print(json.dumps({"read": [m.value.decode() for m in c]}))
c.close()
"#;

fn json_line(out: std::process::Output, who: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{who} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{who}: {e}: {stdout}"))
}

fn kafka_python(b: &SaslBroker, topic: &str, user: &str, password: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .args(["-c", KAFKA_PYTHON, &b.broker.bootstrap(), topic])
        .arg(&b.pki.ca)
        .args([user, password])
        .output()
        .expect("python3 runs");
    json_line(out, "kafka-python")
}

fn kafkajs(b: &SaslBroker, topic: &str, user: &str, password: &str) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/kafkajs/sasl.js");
    let out = Command::new("node")
        .arg(script)
        .args([b.broker.bootstrap().as_str(), topic])
        .arg(&b.pki.ca)
        .args(["plain", user, password])
        .output()
        .expect("node runs (.ci/run installs it)");
    json_line(out, "kafkajs")
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn real_clients_authenticate_produce_and_consume_over_sasl_ssl() {
    let b = sasl_ssl_broker();

    let delivered = rd_produce(&b, "admin", "admin-secret", "sasl-rdkafka", MESSAGES);
    assert_eq!(delivered, MESSAGES, "{}", b.broker.logs());
    let mut read = rd_consume(&b, "sasl-rdkafka", MESSAGES);
    read.sort_by_key(|v| v[2..].parse::<usize>().unwrap());
    assert_eq!(read, numbered("rd", MESSAGES));

    let result = kafka_python(&b, "sasl-python", "alice", "alice, with a comma");
    assert_eq!(result["read"], serde_json::json!(numbered("py", MESSAGES)));

    let result = kafkajs(&b, "sasl-kafkajs", "alice", "alice, with a comma");
    let mut read: Vec<String> = serde_json::from_value(result["read"].clone()).unwrap();
    read.sort_by_key(|v| v[2..].parse::<usize>().unwrap());
    assert_eq!(read, numbered("js", MESSAGES));
}

#[test]
fn a_wrong_password_is_refused_and_stores_nothing() {
    let b = sasl_ssl_broker();
    // The topics exist, written by the right users, so "nothing stored" is a count.
    assert_eq!(
        rd_produce(&b, "admin", "admin-secret", "sasl-rdkafka", 1),
        1
    );
    assert!(kafka_python(&b, "sasl-python", "alice", "alice, with a comma")["read"].is_array());
    let js = kafkajs(&b, "-", "alice", "alice, with a comma");
    assert_eq!(js["connected"], true, "{js}");

    let delivered = rd_produce(&b, "admin", "not-the-password", "sasl-rdkafka", 5);
    assert_eq!(delivered, 0, "librdkafka delivered with a wrong password");
    let python = kafka_python(&b, "-", "alice", "wrong");
    assert_eq!(python["connected"], false, "{python}");
    assert_eq!(python["refused"], true, "{python}");
    let js = kafkajs(&b, "-", "alice", "wrong");
    assert_eq!(js["connected"], false, "{js}");
    // kafkajs's error for an answer with SASL_AUTHENTICATION_FAILED (a closed connection
    // would be KafkaJSConnectionClosedError).
    assert_eq!(js["error"], "KafkaJSSASLAuthenticationError", "{js}");

    assert_eq!(end_offset(&b, "sasl-rdkafka"), 1);
    assert_eq!(end_offset(&b, "sasl-python"), MESSAGES as i64);
    assert_eq!(end_offset(&b, "sasl-kafkajs"), 1);
    let logs = b.broker.logs();
    assert!(!logs.contains("not-the-password") && !logs.contains("admin-secret"));
}
