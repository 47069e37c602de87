//! A three-node cluster of real `tally serve` processes (replication factor 3, three
//! partitions) and an unchanged librdkafka idempotent producer (acks=all, five requests in
//! flight), each broker behind a fault proxy that loses produce acknowledgements, while the
//! leader of each partition in turn is SIGKILLed and restarted on its data directory. Every
//! acknowledged message is read back exactly once, at the offset it was acknowledged with, in
//! per-partition order, and no delivery fails, and no replica applies a committed batch its
//! producer table does not find new; then a leader is paused with SIGSTOP, and another is cut
//! off from the other nodes while clients still reach it (the nodes' Raft links run through
//! `LinkProxy`s, one per pair and direction; `CLUSTER_TEST_CUT=0` leaves this out). The
//! control run, idempotence off, stores duplicates: the retries of batches whose
//! acknowledgement was lost. A group consumer reads and commits all along; afterwards the group
//! holds every partition's last acknowledged commit and a new member reads on from there with
//! no gap (`failover_group`).
//!
//! `CLUSTER_TEST_KILLS=N` sets the number of leader kills (default 3) and
//! `CLUSTER_TEST_PARTITIONS=N` the partitions (default 3); the must-show of issue 12, 10 kills
//! of each of 6 partitions' leaders, runs outside CI: `CLUSTER_TEST_PARTITIONS=6
//! CLUSTER_TEST_KILLS=60 cargo test -p tally --test cluster_rdkafka librdkafka_idempotent`. These knobs are not `TALLY_` variables: the
//! brokers this test starts would read those as their own config and refuse to start.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tally_chaos::{DropPolicy, FaultProxy, ProxyConfig};
use tally_testkit::{free_fixed_port, BrokerProcess, LinkProxy};

mod failover_group;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const GROUP: &str = "failover-readers";
const TOPIC: &str = "orders";
/// The topic's partitions: 3, or `CLUSTER_TEST_PARTITIONS` (the must-show of issue 12 is 6,
/// run outside CI).
fn partitions() -> i32 {
    std::env::var("CLUSTER_TEST_PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}
/// The producer stops at this many messages whatever happens (a bound on the run).
const MAX_MESSAGES: usize = 40_000;

#[derive(Default)]
struct Outcomes {
    acked: HashMap<String, (i32, i64)>,
    failed: Vec<String>,
}

struct Recorder(Arc<Mutex<Outcomes>>);

impl ClientContext for Recorder {}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut outcomes = self.0.lock().unwrap();
        match result {
            Ok(m) => {
                let value = String::from_utf8_lossy(m.payload().unwrap()).into_owned();
                outcomes.acked.insert(value, (m.partition(), m.offset()));
            }
            Err((e, _)) => outcomes.failed.push(e.to_string()),
        }
    }
}

struct Cluster {
    nodes: Vec<BrokerProcess>,
    proxies: Vec<FaultProxy>,
    /// `links[&(from, to)]` carries node `from`'s Raft traffic to node `to`.
    links: HashMap<(i32, i32), LinkProxy>,
    bootstrap: String,
}

/// Each node's voters list: its own Raft address, and each peer through the link that only
/// this node's traffic to that peer crosses.
fn voters_lists(links: &HashMap<(i32, i32), LinkProxy>, raft_ports: &[u16]) -> Vec<String> {
    (1..=3)
        .map(|from| {
            (1..=3)
                .map(|to: i32| match links.get(&(from, to)) {
                    Some(link) => format!("{to}@{}", link.addr()),
                    None => format!("{to}@127.0.0.1:{}", raft_ports[to as usize - 1]),
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn start_cluster(runtime: &tokio::runtime::Runtime, seed: u64) -> Cluster {
    let raft_ports: Vec<u16> = (0..3).map(|_| free_fixed_port()).collect();
    let mut links = HashMap::new();
    for from in 1..=3 {
        for to in (1..=3).filter(|to| *to != from) {
            let upstream = format!("127.0.0.1:{}", raft_ports[to as usize - 1]);
            links.insert(
                (from, to),
                LinkProxy::start(upstream.parse().unwrap()).unwrap(),
            );
        }
    }
    let voters = voters_lists(&links, &raft_ports);
    let mut nodes = Vec::new();
    let mut proxies = Vec::new();
    for id in 1..=3u64 {
        let proxy = runtime
            .block_on(FaultProxy::start({
                let mut c = ProxyConfig::new("127.0.0.1:9".parse().unwrap());
                c.seed = seed + id;
                c.drop_produce_responses = DropPolicy::Probability(0.05);
                c
            }))
            .unwrap();
        proxy.set_faults_enabled(false);
        let advertise = proxy.local_addr().to_string();
        let node_id = id.to_string();
        let node = BrokerProcess::start(
            Path::new(TALLY),
            &[
                "--node-id",
                &node_id,
                "--voters",
                &voters[id as usize - 1],
                "--advertise",
                &advertise,
            ],
        );
        proxy.set_upstream(node.addr);
        nodes.push(node);
        proxies.push(proxy);
    }
    let bootstrap = proxies
        .iter()
        .map(|p| p.local_addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    Cluster {
        nodes,
        proxies,
        links,
        bootstrap,
    }
}

/// Cuts (or heals) every link between `node` and the other two, both ways.
fn isolate(cluster: &Cluster, node: i32, cut: bool) {
    for ((from, to), link) in &cluster.links {
        if *from == node || *to == node {
            if cut {
                link.cut();
            } else {
                link.heal();
            }
        }
    }
}

/// Creates the topic through the CLI, again while the controller is being elected.
fn create_topic(bootstrap: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = Command::new(TALLY)
            .args(["--bootstrap", bootstrap.split(',').next().unwrap()])
            .args([
                "topic",
                "create",
                TOPIC,
                "--partitions",
                &partitions().to_string(),
                "--replication-factor",
                "3",
            ])
            .output()
            .unwrap();
        // An earlier try that timed out under load may have created it.
        if out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Each partition's leader as the nodes other than `paused` (or cut off) see it.
fn leaders_from(cluster: &Cluster, paused: i32) -> Vec<i32> {
    let others = cluster
        .proxies
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as i32 + 1 != paused)
        .map(|(_, p)| p.local_addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    leaders(&others)
}

/// Each partition's leader (node id), once every partition has one.
fn leaders(bootstrap: &str) -> Vec<i32> {
    let client: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(m) = client.fetch_metadata(Some(TOPIC), Duration::from_secs(5)) {
            let leaders: Vec<i32> = m
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.leader()))
                .collect();
            if leaders.len() == partitions() as usize && leaders.iter().all(|l| *l > 0) {
                return leaders;
            }
        }
        assert!(Instant::now() < deadline, "partitions without a leader");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn producer(
    bootstrap: &str,
    idempotent: bool,
    outcomes: &Arc<Mutex<Outcomes>>,
) -> BaseProducer<Recorder> {
    RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("batch.num.messages", "10")
        .set("linger.ms", "1")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("message.timeout.ms", "300000")
        .create_with_context(Recorder(Arc::clone(outcomes)))
        .unwrap()
}

/// Produces keyed messages, paced, until `stop` (at least `min` of them): the value carries
/// the partition and a counter that grows in send order.
fn produce(producer: &BaseProducer<Recorder>, stop: &AtomicBool, min: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut sent = 0;
    while sent < MAX_MESSAGES && (sent < min || !stop.load(Ordering::Relaxed)) {
        let partition = (sent % partitions() as usize) as i32;
        let value = format!("p{partition}-{sent}");
        let mut record: BaseRecord<(), String> =
            BaseRecord::to(TOPIC).partition(partition).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(_), r)) => {
                    assert!(Instant::now() < deadline, "producer stuck");
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("send: {e}"),
            }
        }
        sent += 1;
        if sent % 10 == 0 {
            producer.poll(Duration::from_millis(10));
        }
    }
    sent
}

/// Every message in the topic, as (partition, offset, value).
fn read_all(bootstrap: &str, expected: usize) -> Vec<(i32, i64, String)> {
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions() {
        assignment
            .add_partition_offset(TOPIC, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                out.push((m.partition(), m.offset(), value));
                quiet_since = Instant::now();
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None if out.len() >= expected && quiet_since.elapsed() > Duration::from_secs(3) => {
                break
            }
            None => {}
        }
    }
    out
}

struct Run {
    acked: HashMap<String, (i32, i64)>,
    failed: Vec<String>,
    fatal: Option<String>,
    stored: Vec<(i32, i64, String)>,
    faults: u64,
    /// Every broker's log, every start.
    logs: String,
    /// The group consumer that read and committed all along (the idempotent run).
    group: Option<failover_group::GroupRun>,
    data_dirs: Vec<std::path::PathBuf>,
}

/// What each node's segment files hold for `partition` between offsets `from` and `to`: one
/// line per batch (offsets, term, producer, epoch, sequences, whether it is a control batch).
fn stored_batches(run: &Run, partition: i32, from: i64, to: i64) -> String {
    let mut out = String::new();
    for (node, dir) in run.data_dirs.iter().enumerate() {
        out.push_str(&format!("node {}:\n", node + 1));
        let dir = dir.join("cluster").join(format!("{TOPIC}-{partition}"));
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|e| e == "log"));
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).unwrap_or_default();
            let mut at = 0;
            while let Ok(h) = tally_protocol::BatchHeader::parse(&bytes[at..]) {
                if h.last_offset() >= from && h.base_offset <= to {
                    out.push_str(&format!(
                        "  {}..{} term {} producer {} epoch {} seq {}..{}{}\n",
                        h.base_offset,
                        h.last_offset(),
                        h.partition_leader_epoch,
                        h.producer_id,
                        h.producer_epoch,
                        h.base_sequence,
                        h.last_sequence(),
                        if h.is_control() { " control" } else { "" }
                    ));
                }
                at += h.size_in_bytes();
                if at >= bytes.len() {
                    break;
                }
            }
        }
    }
    out
}

/// Runs the producer against a cluster and hands the outcome to `check` while the cluster
/// still runs, so a failed check prints every broker's log (`BrokerProcess` does when it is
/// dropped during a panic).
fn run(
    idempotent: bool,
    kills: usize,
    pause: bool,
    cut: bool,
    seed: u64,
    check: impl FnOnce(&Run),
) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = start_cluster(&runtime, seed);
    create_topic(&cluster.bootstrap);
    leaders(&cluster.bootstrap);
    for p in &cluster.proxies {
        p.set_faults_enabled(true);
    }
    let reader = idempotent.then(|| failover_group::start(&cluster.bootstrap, TOPIC, GROUP));
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (bootstrap, outcomes, stop) = (
            cluster.bootstrap.clone(),
            Arc::clone(&outcomes),
            Arc::clone(&stop),
        );
        std::thread::spawn(move || {
            let producer = producer(&bootstrap, idempotent, &outcomes);
            let sent = produce(&producer, &stop, 2_000);
            let flushed = producer.flush(Duration::from_secs(240));
            let fatal = producer
                .client()
                .fatal_error()
                .map(|(code, reason)| format!("{code:?}: {reason}"));
            assert!(
                flushed.is_ok() || fatal.is_some(),
                "flush timed out: {flushed:?}"
            );
            (sent, fatal)
        })
    };
    for round in 0..kills {
        std::thread::sleep(Duration::from_millis(700));
        let partition = round % partitions() as usize;
        let leader = leaders(&cluster.bootstrap)[partition];
        let node = &mut cluster.nodes[leader as usize - 1];
        eprintln!("kill {round}: SIGKILL node {leader}, the leader of partition {partition}");
        node.kill9();
        std::thread::sleep(Duration::from_millis(500));
        node.restart();
    }
    if pause {
        // A leader paused long enough for the others to elect a new one, then resumed: it
        // must step down, and nothing it accepted alone may count.
        std::thread::sleep(Duration::from_millis(700));
        let leader = leaders(&cluster.bootstrap)[0];
        let pid = cluster.nodes[leader as usize - 1].pid() as i32;
        eprintln!("SIGSTOP node {leader}, the leader of partition 0, for 3 s");
        // SAFETY: kill(2) on a child process of this test.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(3));
        let during = leaders_from(&cluster, leader)[0];
        unsafe { libc::kill(pid, libc::SIGCONT) };
        assert_ne!(during, leader, "the paused node still led partition 0");
    }
    if cut {
        // A leader cut off from the other two nodes while clients still reach it: it cannot
        // commit what it is sent, the others elect a new leader, and when the links heal its
        // uncommitted entries give way to the new leader's log.
        std::thread::sleep(Duration::from_millis(700));
        let leader = leaders(&cluster.bootstrap)[1];
        eprintln!("cut node {leader}, the leader of partition 1, off from the other nodes");
        isolate(&cluster, leader, true);
        let deadline = Instant::now() + Duration::from_secs(20);
        while leaders_from(&cluster, leader)[1] == leader {
            assert!(Instant::now() < deadline, "no new leader behind the cut");
            std::thread::sleep(Duration::from_millis(200));
        }
        std::thread::sleep(Duration::from_secs(2));
        eprintln!("heal node {leader}'s links");
        isolate(&cluster, leader, false);
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, fatal) = producing.join().unwrap();
    let faults: u64 = cluster.proxies.iter().map(|p| p.counters().faults()).sum();
    for p in &cluster.proxies {
        p.set_faults_enabled(false);
    }
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    eprintln!(
        "sent {sent}, acked {}, failed {}, faults {faults}",
        outcomes.acked.len(),
        outcomes.failed.len()
    );
    let stored = read_all(&cluster.bootstrap, outcomes.acked.len());
    let group = reader.map(|r| {
        // The group's coordinator (the lowest node) crashes right after the last commits: what
        // it acknowledged must still be there when it is back.
        let committed = r.stop();
        let coordinator = &mut cluster.nodes[0];
        coordinator.kill9();
        std::thread::sleep(Duration::from_millis(300));
        coordinator.restart();
        failover_group::finish(
            committed,
            &cluster.bootstrap,
            TOPIC,
            GROUP,
            partitions(),
            &stored,
        )
    });
    let logs = cluster.nodes.iter().map(|n| n.logs()).collect();
    let data_dirs = cluster
        .nodes
        .iter()
        .map(|n| n.data_dir().to_path_buf())
        .collect();
    check(&Run {
        acked: outcomes.acked,
        failed: outcomes.failed,
        fatal,
        stored,
        faults,
        logs,
        group,
        data_dirs,
    });
}

/// `CLUSTER_TEST_CUT=0` leaves out the cut-off leader (on by default).
fn cut() -> bool {
    std::env::var("CLUSTER_TEST_CUT").map_or(true, |v| v != "0")
}

fn kills() -> usize {
    std::env::var("CLUSTER_TEST_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

#[test]
fn librdkafka_idempotent_producer_is_exactly_once_across_leader_kills_and_a_pause() {
    run(true, kills(), true, cut(), 11, exactly_once);
}

/// librdkafka's offset for a delivery it inferred: a request whose outcome it did not know,
/// followed by a later request of the same producer that succeeded (its sequence proves the
/// earlier one stored). The value must still be in the log, once.
const OFFSET_UNKNOWN: i64 = -1001;

fn exactly_once(run: &Run) {
    // Each replica's state machine checks every committed batch again: one it does not find
    // new means the leader stored a batch behind a gap or twice, whether or not the client
    // noticed.
    let disagreements = run
        .logs
        .matches("a committed batch is not new to the producer table")
        .count();
    assert_eq!(disagreements, 0, "committed batches that were not new");
    assert_eq!(run.fatal, None, "fatal producer error");
    assert!(
        run.failed.is_empty(),
        "{} deliveries failed, first: {:?}",
        run.failed.len(),
        run.failed.first()
    );
    assert!(
        run.faults >= 20,
        "too few lost acknowledgements to mean anything: {}",
        run.faults
    );
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut last: HashMap<i32, i64> = HashMap::new();
    for (partition, offset, value) in &run.stored {
        *seen.entry(value).or_default() += 1;
        let counter: i64 = value.split_once('-').unwrap().1.parse().unwrap();
        let previous = last.insert(*partition, counter).unwrap_or(-1);
        assert!(
            counter > previous,
            "partition {partition}: {counter} after {previous} at offset {offset}"
        );
        if let Some(&(acked_partition, acked_offset)) = run.acked.get(value) {
            let offset_known = acked_offset != OFFSET_UNKNOWN;
            if offset_known && (acked_partition, acked_offset) != (*partition, *offset) {
                let (low, high) = (acked_offset.min(*offset), acked_offset.max(*offset));
                eprintln!(
                    "{value} acknowledged at {acked_offset}, read at {offset}; the logs hold:\n{}",
                    stored_batches(run, *partition, low - 30, high + 30)
                );
            }
            assert_eq!(
                (
                    acked_partition,
                    if offset_known { acked_offset } else { *offset }
                ),
                (*partition, *offset),
                "{value} acknowledged elsewhere"
            );
        }
    }
    let duplicates = seen.values().filter(|n| **n > 1).count();
    assert_eq!(duplicates, 0, "values stored more than once");
    if let Some(group) = &run.group {
        eprintln!(
            "group: {} commits acknowledged, {} failed, held {:?}",
            group.commits, group.commit_errors, group.held
        );
        failover_group::check(group, &run.stored);
    }
    for (value, at) in &run.acked {
        assert!(
            seen.contains_key(value.as_str()),
            "acknowledged {value} (at partition and offset {at:?}) is not in the log"
        );
    }
}

#[test]
fn without_idempotence_the_same_faults_store_duplicates() {
    run(false, 1, false, false, 11, stores_duplicates);
}

fn stores_duplicates(run: &Run) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (_, _, value) in &run.stored {
        *seen.entry(value).or_default() += 1;
    }
    let duplicates = seen.values().filter(|n| **n > 1).count();
    eprintln!(
        "control run: {duplicates} values stored twice, {} faults",
        run.faults
    );
    assert!(
        duplicates > 0,
        "the control run stored no duplicate: the test could not fail"
    );
}

/// Reads `count` messages through a group consumer, committing as it goes.
fn consume_in_group(
    bootstrap: &str,
    group: &str,
    count: usize,
    kill: Option<&mut BrokerProcess>,
) -> Vec<String> {
    let consumer: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let mut out = Vec::new();
    let mut kill = kill;
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < count {
        assert!(Instant::now() < deadline, "read {} of {count}", out.len());
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            match m {
                Ok(m) => {
                    out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                    consumer
                        .commit_message(&m, rdkafka::consumer::CommitMode::Sync)
                        .unwrap();
                }
                Err(e) => eprintln!("group consumer: {e}"),
            }
        }
        if out.len() >= count / 2 {
            if let Some(node) = kill.take() {
                eprintln!("SIGKILL a partition leader while the group consumes");
                node.kill9();
                std::thread::sleep(Duration::from_millis(500));
                node.restart();
            }
        }
    }
    out
}

#[test]
fn a_group_consumer_reads_a_replicated_topic_through_a_leader_kill_and_resumes_from_its_commits() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = start_cluster(&runtime, 5);
    create_topic(&cluster.bootstrap);
    let produce_values = |from: usize, to: usize| {
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let p = producer(&cluster.bootstrap, true, &outcomes);
        for i in from..to {
            let value = format!("g-{i}");
            p.send(
                BaseRecord::<(), String>::to(TOPIC)
                    .partition((i % 3) as i32)
                    .payload(&value),
            )
            .unwrap();
            p.poll(Duration::ZERO);
        }
        p.flush(Duration::from_secs(60)).unwrap();
        assert!(outcomes.lock().unwrap().failed.is_empty());
    };
    produce_values(0, 600);
    // The coordinator is the lowest registered node (1); kill the leader of a partition that
    // another node leads, so the group itself stays up.
    let leaders = leaders(&cluster.bootstrap);
    let victim = leaders
        .iter()
        .copied()
        .find(|l| *l != 1)
        .unwrap_or(leaders[0]);
    let first = consume_in_group(
        &cluster.bootstrap,
        "readers",
        600,
        Some(&mut cluster.nodes[victim as usize - 1]),
    );
    let mut sorted = first.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 600, "every message once");
    produce_values(600, 610);
    // A new member of the same group starts from the group's commits: only the 10 new ones.
    let second = consume_in_group(&cluster.bootstrap, "readers", 10, None);
    let mut second_sorted = second.clone();
    second_sorted.sort();
    let expected: Vec<String> = {
        let mut v: Vec<String> = (600..610).map(|i| format!("g-{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(second_sorted, expected);
}
