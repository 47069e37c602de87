//! Idempotency keys (topic config `idempotency.key`) with real clients against a real broker:
//! a librdkafka producer (kcat) SIGKILLed part-way and a new producer process resending all
//! 10,000 messages leave each key stored once, with or without a broker SIGKILL between the
//! runs, read back by librdkafka, kafka-python and kafkajs consumers, which all step over the
//! offset gaps; the same run without the config stores duplicates. Partly duplicate batches in
//! every codec are stored re-encoded, read by all three, and their retries get their original
//! offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tally_testkit::{BatchSpec, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 10_000;
const PARTITIONS: i32 = 3;

/// (partition, offset, key, value) of one record read back.
type Read = (i32, i64, Option<String>, String);

fn create_topic(broker: &BrokerProcess, topic: &str, partitions: i32, configs: &[&str]) {
    let mut args = vec![
        "--bootstrap".to_string(),
        broker.bootstrap(),
        "topic".into(),
        "create".into(),
        topic.into(),
        "--partitions".into(),
        partitions.to_string(),
    ];
    for c in configs {
        args.push("--config".into());
        args.push(c.to_string());
    }
    let out = Command::new(TALLY).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Records stored in `topic` so far (the sum of the partitions' high watermarks).
fn stored(broker: &BrokerProcess, topic: &str) -> i64 {
    let mut c = WireClient::connect(broker.addr).unwrap();
    (0..PARTITIONS)
        .map(|p| c.fetch_once(topic, p, 0, 1).map_or(0, |(_, hw, _)| hw))
        .sum()
}

/// A librdkafka producer process (kcat), idempotent, reading `order-i:...` lines from stdin.
fn kcat_producer(bootstrap: &str, topic: &str) -> std::process::Child {
    Command::new("kcat")
        .args([
            "-P",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-K",
            ":",
            "-X",
            "enable.idempotence=true",
            "-X",
            "linger.ms=5",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat is installed (.ci/run installs it: apt-get install kcat)")
}

fn line(i: usize) -> String {
    format!("order-{i}:payment of order {i}\n")
}

/// First run: messages go out in steps until about a third are stored, then the producer is
/// SIGKILLed with batches in flight. Returns how many were stored by then.
fn first_run_killed(broker: &BrokerProcess, topic: &str) -> i64 {
    let mut kcat = kcat_producer(&broker.bootstrap(), topic);
    let mut stdin = kcat.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
        let text: String = chunk.iter().map(|i| line(*i)).collect();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(10));
        if stored(broker, topic) >= (MESSAGES / 3) as i64 || Instant::now() > deadline {
            break;
        }
    }
    kcat.kill().unwrap(); // SIGKILL
    kcat.wait().unwrap();
    let n = stored(broker, topic);
    assert!(
        n > 0,
        "the first producer stored nothing before it was killed"
    );
    n
}

/// Second run: a new producer process resends all messages from the first and exits cleanly.
fn second_run_resends_everything(broker: &BrokerProcess, topic: &str) {
    let mut kcat = kcat_producer(&broker.bootstrap(), topic);
    let mut stdin = kcat.stdin.take().unwrap();
    let text: String = (0..MESSAGES).map(line).collect();
    stdin.write_all(text.as_bytes()).unwrap();
    drop(stdin);
    let status = kcat.wait().unwrap();
    assert!(status.success(), "kcat failed: {status}");
}

fn rdkafka_read(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<Read> {
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "keys-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
                out.push((
                    m.partition(),
                    m.offset(),
                    text(m.key()),
                    text(m.payload()).unwrap_or_default(),
                ));
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("librdkafka consumer: {e}"),
            None if out.len() >= expected && quiet_since.elapsed() > Duration::from_secs(1) => {
                break
            }
            None => {}
        }
    }
    out
}

const PYTHON: &str = r#"
import json, sys
from kafka import KafkaConsumer, TopicPartition
bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                         consumer_timeout_ms=3000)
tps = [TopicPartition(topic, p) for p in range(partitions)]
consumer.assign(tps)
consumer.seek_to_beginning(*tps)
out = []
for m in consumer:
    out.append([m.partition, m.offset, None if m.key is None else m.key.decode(), m.value.decode()])
consumer.close()
print(json.dumps(out))
"#;

fn parse_reads(stdout: &[u8]) -> Vec<Read> {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().unwrap_or("[]");
    let rows: Vec<Value> = serde_json::from_str(line).unwrap();
    rows.into_iter()
        .map(|r| {
            (
                r[0].as_i64().unwrap() as i32,
                r[1].as_i64().unwrap(),
                r[2].as_str().map(String::from),
                r[3].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn python_read(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Read> {
    let out = Command::new("python3")
        .args(["-c", PYTHON, bootstrap, topic, &partitions.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "kafka-python consumer failed (.ci/run installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_reads(&out.stdout)
}

fn kafkajs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kafkajs")
}

fn kafkajs_read(bootstrap: &str, topic: &str, expected: usize) -> Vec<Read> {
    let dir = kafkajs_dir();
    assert!(
        dir.join("node_modules/fzstd").exists(),
        "kafkajs and its codecs are not installed: run `npm ci --prefix tests/kafkajs` (as .ci/run does)"
    );
    let out = Command::new("node")
        .arg(dir.join("consume.js"))
        .args([bootstrap, topic, &expected.to_string()])
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "kafkajs consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_reads(&out.stdout)
}

/// Each reader's records, sorted by partition and offset.
fn all_readers(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(&'static str, Vec<Read>)> {
    let mut reads = vec![
        (
            "librdkafka",
            rdkafka_read(bootstrap, topic, partitions, expected),
        ),
        ("kafka-python", python_read(bootstrap, topic, partitions)),
        ("kafkajs", kafkajs_read(bootstrap, topic, expected)),
    ];
    for (reader, r) in &mut reads {
        eprintln!("{topic}: {reader} read {} records", r.len());
        r.sort();
    }
    reads
}

/// How many times each key was read.
fn copies(reads: &[Read]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, _, key, _) in reads {
        *out.entry(key.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    out
}

/// Kill the producer part-way, optionally SIGKILL the broker, resend everything; read back.
fn restart_and_resend(
    keys_on: bool,
    broker_crash: bool,
    topic: &str,
) -> Vec<(&'static str, Vec<Read>)> {
    let mut broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let configs: &[&str] = if keys_on {
        &["idempotency.key=key"]
    } else {
        &[]
    };
    create_topic(&broker, topic, PARTITIONS, configs);
    let first = first_run_killed(&broker, topic);
    if broker_crash {
        broker.kill9();
        broker.restart();
    }
    second_run_resends_everything(&broker, topic);
    eprintln!(
        "{topic}: {first} offsets taken when the producer was killed, {} in all",
        stored(&broker, topic)
    );
    let reads = all_readers(&broker.bootstrap(), topic, PARTITIONS, MESSAGES);
    // `tally audit` reads the batch headers: a filtered batch keeps its sequence range, so
    // the offset gaps are neither sequence gaps nor duplicates. (It cannot see the copies of
    // the control either: they come from two producer ids, the limit idempotency keys lift.)
    let audit = Command::new(TALLY)
        .args(["--bootstrap", &broker.bootstrap(), "audit", topic])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(audit.status.success(), "audit of {topic}: {text}");
    let gaps: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert!(!gaps.is_empty() && gaps.iter().all(|g| *g == "0"), "{text}");
    reads
}

fn assert_each_key_once(reads: &[(&'static str, Vec<Read>)]) {
    let want: BTreeSet<String> = (0..MESSAGES).map(|i| format!("order-{i}")).collect();
    for (reader, r) in reads {
        let copies = copies(r);
        let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).take(5).collect();
        assert!(
            twice.is_empty(),
            "{reader}: keys stored more than once: {twice:?}"
        );
        assert_eq!(
            copies.keys().cloned().collect::<BTreeSet<_>>(),
            want,
            "{reader}"
        );
    }
    // All three read the same records at the same offsets, gaps included.
    assert_eq!(reads[0].1, reads[1].1, "librdkafka and kafka-python differ");
    assert_eq!(reads[0].1, reads[2].1, "librdkafka and kafkajs differ");
}

#[test]
fn a_restarted_producer_resending_everything_stores_each_key_once() {
    let reads = restart_and_resend(true, false, "orders-keyed");
    assert_each_key_once(&reads);
}

#[test]
fn a_broker_sigkilled_between_the_runs_gives_the_same_result() {
    let reads = restart_and_resend(true, true, "orders-keyed-crash");
    assert_each_key_once(&reads);
}

#[test]
fn without_the_config_the_same_run_stores_duplicates() {
    let reads = restart_and_resend(false, false, "orders-plain");
    let (_, r) = &reads[0];
    let twice = copies(r).values().filter(|n| **n > 1).count();
    assert!(
        twice > 0,
        "idempotence alone kept every key once: the check could not fail"
    );
    assert!(r.len() > MESSAGES);
}

const CODECS: [(Compression, &str); 5] = [
    (Compression::None, "none"),
    (Compression::Gzip, "gzip"),
    (Compression::Snappy, "snappy"),
    (Compression::Lz4, "lz4"),
    (Compression::Zstd, "zstd"),
];

fn keyed_batch(
    pid: i64,
    epoch: i16,
    seq: i32,
    keys: &[String],
    codec: Compression,
) -> bytes::Bytes {
    let mut spec = BatchSpec::new(pid, epoch, seq, keys.len());
    spec.record_keys = Some(keys.iter().map(|k| Some(k.clone().into_bytes())).collect());
    spec.values = keys
        .iter()
        .map(|k| format!("{k} from {pid}").into_bytes())
        .collect();
    spec.compression = codec;
    spec.encode()
}

#[test]
fn partly_duplicate_batches_in_every_codec_are_re_encoded_and_read_by_three_clients() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let topic = "mixed-codecs";
    create_topic(&broker, topic, 1, &["idempotency.key=key"]);
    let mut c = WireClient::connect(broker.addr).unwrap();
    let (a, a_epoch) = c.init_producer_id().unwrap();
    let (b, b_epoch) = c.init_producer_id().unwrap();
    let mut want = Vec::new();
    for (i, (codec, name)) in CODECS.iter().enumerate() {
        let keys = |range: std::ops::Range<usize>| -> Vec<String> {
            range.map(|k| format!("{name}-{k}")).collect()
        };
        let first = keyed_batch(a, a_epoch, 10 * i as i32, &keys(0..10), *codec);
        let r = c.produce(9, topic, 0, first).unwrap();
        assert_eq!(r.error_code, 0, "{name}");
        // Producer b's batch repeats keys 5..9 of a's and adds 10..14.
        let second = keyed_batch(b, b_epoch, 15 * i as i32, &keys(5..20), *codec);
        let r2 = c.produce(9, topic, 0, second.clone()).unwrap();
        assert_eq!(r2.error_code, 0, "{name}");
        assert_eq!(
            r2.base_offset,
            r.base_offset + 10,
            "{name}: the batch keeps its offsets"
        );
        // b's retry of that batch gets its original offset.
        let retry = c.produce(9, topic, 0, second).unwrap();
        assert_eq!(
            (retry.error_code, retry.base_offset),
            (0, r2.base_offset),
            "{name}"
        );
        for k in 0..10 {
            want.push((
                r.base_offset + k,
                format!("{name}-{k}"),
                format!("{name}-{k} from {a}"),
            ));
        }
        for k in 10..20 {
            let offset = r2.base_offset + k - 5;
            want.push((
                offset,
                format!("{name}-{k}"),
                format!("{name}-{k} from {b}"),
            ));
        }
    }
    for (reader, reads) in all_readers(&broker.bootstrap(), topic, 1, want.len()) {
        let got: Vec<(i64, String, String)> = reads
            .into_iter()
            .map(|(_, o, k, v)| (o, k.unwrap_or_default(), v))
            .collect();
        assert_eq!(got, want, "{reader}");
    }
}
