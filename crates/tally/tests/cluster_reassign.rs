//! `tally partition reassign` on three real `tally serve` processes while an unchanged
//! librdkafka idempotent producer (acks=all, five in flight) writes to the partition: a
//! replica moves from the partition's leader to the node that had none (the leader adds it as
//! a learner, lets it catch up, makes it a voter in its own place and steps down), the node
//! that lost its replica removes its files once the new voters are recorded, Metadata names
//! the new replicas, the preferred replica (the first) takes the lead, and every acknowledged
//! message is read back once, in order, at its acknowledged offset, from the new replicas
//! alone.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tally_testkit::{free_fixed_port, BrokerProcess};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const TOPIC: &str = "moving";

#[derive(Default)]
struct Acks {
    acked: HashMap<String, i64>,
    failed: Vec<String>,
}

struct Recorder(Arc<Mutex<Acks>>);

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut acks = self.0.lock().unwrap();
        match result {
            Ok(m) => {
                let value = String::from_utf8_lossy(m.payload().unwrap()).into_owned();
                acks.acked.insert(value, m.offset());
            }
            Err((e, _)) => acks.failed.push(e.to_string()),
        }
    }
}

fn tally(bootstrap: &str, args: &[&str]) -> std::process::Output {
    Command::new(TALLY)
        .args(["--bootstrap", bootstrap])
        .args(args)
        .output()
        .unwrap()
}

/// The partition's leader and replicas as Metadata names them, once it has a leader.
fn replicas(bootstrap: &str) -> (i32, Vec<i32>) {
    let client: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(m) = client.fetch_metadata(Some(TOPIC), Duration::from_secs(5)) {
            if let Some(p) = m.topics().first().and_then(|t| t.partitions().first()) {
                if p.leader() > 0 {
                    return (p.leader(), p.replicas().to_vec());
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader for {TOPIC}-0");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read_all(bootstrap: &str, expected: usize) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reassign-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            out.push((m.offset(), value));
        }
    }
    out
}

#[test]
fn a_replica_moves_to_another_node_while_librdkafka_produces() {
    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", free_fixed_port()))
        .collect::<Vec<_>>()
        .join(",");
    // Preferred leader election after 1 s of leading (Kafka's default is 300 s).
    let nodes: Vec<BrokerProcess> = (1..=3)
        .map(|i: u32| {
            let id = i.to_string();
            BrokerProcess::start(
                Path::new(TALLY),
                &[
                    "--node-id",
                    &id,
                    "--voters",
                    &voters,
                    "--set",
                    "leader.imbalance.check.interval.seconds=1",
                ],
            )
        })
        .collect();
    let bootstrap = nodes
        .iter()
        .map(|n| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let create = [
        "topic",
        "create",
        TOPIC,
        "--partitions",
        "1",
        "--replication-factor",
        "2",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    // An earlier try that timed out under load may have created it.
    let created = |out: std::process::Output| {
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists")
    };
    while !created(tally(&nodes[0].bootstrap(), &create)) {
        assert!(Instant::now() < deadline, "topic create");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (leader, before) = replicas(&bootstrap);
    assert_eq!(before.len(), 2);
    let newcomer = (1..=3).find(|n| !before.contains(n)).unwrap();
    // The leader is the replica that leaves: it adds the newcomer, commits the new voters
    // without itself, and steps down.
    let leaving = leader;
    let kept = *before.iter().find(|n| **n != leader).unwrap();
    let after = vec![newcomer, kept];

    let acks = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (bootstrap, acks, stop) = (bootstrap.clone(), Arc::clone(&acks), Arc::clone(&stop));
        std::thread::spawn(move || {
            let producer: BaseProducer<Recorder> = RdConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("max.in.flight.requests.per.connection", "5")
                .set("linger.ms", "2")
                .set("retry.backoff.ms", "20")
                .set("message.timeout.ms", "120000")
                .create_with_context(Recorder(acks))
                .unwrap();
            let mut sent = 0;
            while sent < 20_000 && (sent < 2_000 || !stop.load(Ordering::Relaxed)) {
                let value = format!("m-{sent}");
                let record: BaseRecord<(), String> =
                    BaseRecord::to(TOPIC).partition(0).payload(&value);
                if producer.send(record).is_ok() {
                    sent += 1;
                }
                producer.poll(Duration::from_millis(1));
            }
            producer.flush(Duration::from_secs(120)).unwrap();
            sent
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let replicas_arg = after
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let out = tally(
        &bootstrap,
        &[
            "partition",
            "reassign",
            TOPIC,
            "0",
            "--replicas",
            &replicas_arg,
            "--timeout-secs",
            "120",
        ],
    );
    assert!(
        out.status.success(),
        "reassign: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let sent = producing.join().unwrap();
    eprintln!("moved {kept},{leaving} -> {newcomer},{kept} while {sent} messages were sent");
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    assert!(acks.failed.is_empty(), "failed: {:?}", acks.failed.first());
    assert_eq!(acks.acked.len(), sent, "every message acknowledged");

    assert_eq!(replicas(&bootstrap).1, after, "Metadata's replicas");
    // The preferred replica (the first) takes the lead once it has caught up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while replicas(&bootstrap).0 != newcomer {
        assert!(
            Instant::now() < deadline,
            "node {newcomer}, the preferred replica, never led"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let leaving_dir = nodes[leaving as usize - 1]
        .data_dir()
        .join("cluster")
        .join(format!("{TOPIC}-0"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while leaving_dir.exists() {
        assert!(
            Instant::now() < deadline,
            "node {leaving} kept its replica's files"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let newcomer_dir = nodes[newcomer as usize - 1]
        .data_dir()
        .join("cluster")
        .join(format!("{TOPIC}-0"));
    assert!(newcomer_dir.exists(), "node {newcomer} has no replica");

    // Read from the new replicas only: the leaving node has no replica to serve.
    let stored = read_all(&bootstrap, sent);
    let mut seen = HashMap::new();
    let mut last = -1;
    for (offset, value) in &stored {
        *seen.entry(value.clone()).or_insert(0) += 1;
        let counter: i64 = value.trim_start_matches("m-").parse().unwrap();
        assert!(counter > last, "{counter} after {last} at offset {offset}");
        last = counter;
        if let Some(acked) = acks.acked.get(value) {
            if *acked >= 0 {
                assert_eq!(acked, offset, "{value} acknowledged elsewhere");
            }
        }
    }
    assert_eq!(seen.len(), sent, "messages read");
    assert!(seen.values().all(|n| *n == 1), "a message stored twice");
}

#[test]
fn a_reassignment_waiting_for_a_down_node_is_listed_and_can_be_cancelled() {
    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", free_fixed_port()))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<BrokerProcess> = (1..=3)
        .map(|i: u32| {
            let id = i.to_string();
            BrokerProcess::start(Path::new(TALLY), &["--node-id", &id, "--voters", &voters])
        })
        .collect();
    let bootstrap = nodes
        .iter()
        .map(|n| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let create = [
        "topic",
        "create",
        TOPIC,
        "--partitions",
        "1",
        "--replication-factor",
        "2",
    ];
    let created = |out: std::process::Output| {
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !created(tally(&nodes[0].bootstrap(), &create)) {
        assert!(Instant::now() < deadline, "topic create");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (leader, before) = replicas(&bootstrap);
    let down = (1..=3).find(|n| !before.contains(n)).unwrap();
    let leaving = *before.iter().find(|n| **n != leader).unwrap();
    nodes[down as usize - 1].kill9();
    let alive = nodes[leader as usize - 1].bootstrap();

    // The move cannot finish while the new replica's node is down: it is listed.
    let target = format!("{down},{leader}");
    let out = tally(
        &alive,
        &[
            "partition",
            "reassign",
            TOPIC,
            "0",
            "--replicas",
            &target,
            "--no-wait",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&tally(&alive, &["partition", "reassignments"]).stdout)
        .into_owned();
    let row: Vec<String> = listed
        .lines()
        .find(|l| l.starts_with(TOPIC))
        .unwrap_or_else(|| panic!("not listed:\n{listed}"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(
        row[2..],
        [target.clone(), down.to_string(), leaving.to_string()],
        "{listed}"
    );

    // Cancelled: the voters stay the replicas, nothing is listed, and a second cancel says
    // there is nothing to cancel.
    let out = tally(&alive, &["partition", "reassign", TOPIC, "0", "--cancel"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut replicas_now = replicas(&alive).1;
    replicas_now.sort_unstable();
    let mut expected = before.clone();
    expected.sort_unstable();
    assert_eq!(replicas_now, expected);
    let listed = String::from_utf8_lossy(&tally(&alive, &["partition", "reassignments"]).stdout)
        .into_owned();
    assert!(listed.contains("No reassignment in progress"), "{listed}");
    let again = tally(&alive, &["partition", "reassign", TOPIC, "0", "--cancel"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("NoReassignmentInProgress"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The node comes back and is not given the partition.
    nodes[down as usize - 1].restart();
    std::thread::sleep(Duration::from_secs(2));
    let dir = nodes[down as usize - 1]
        .data_dir()
        .join("cluster")
        .join(format!("{TOPIC}-0"));
    assert!(
        !dir.exists(),
        "node {down} hosts a replica after the cancel"
    );
}
