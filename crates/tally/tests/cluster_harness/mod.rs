//! The cluster the failover tests run: three real `tally serve` processes, each behind a
//! fault proxy for clients and reaching its peers through one `LinkProxy` per direction, and
//! the librdkafka producer and readers the tests use.

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

pub const TALLY: &str = env!("CARGO_BIN_EXE_tally");
pub const TOPIC: &str = "orders";

/// The topic's partitions: 3, or `CLUSTER_TEST_PARTITIONS` (the must-show of issue 12 is 6,
/// run outside CI).
pub fn partitions() -> i32 {
    std::env::var("CLUSTER_TEST_PARTITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}
/// The producer stops at this many messages whatever happens (a bound on the run).
pub const MAX_MESSAGES: usize = 40_000;

#[derive(Default)]
pub struct Outcomes {
    pub acked: HashMap<String, (i32, i64)>,
    pub failed: Vec<String>,
}

pub struct Recorder(pub Arc<Mutex<Outcomes>>);

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

pub struct Cluster {
    pub nodes: Vec<BrokerProcess>,
    pub proxies: Vec<FaultProxy>,
    /// `links[&(from, to)]` carries node `from`'s Raft traffic to node `to`.
    pub links: HashMap<(i32, i32), LinkProxy>,
    pub bootstrap: String,
}

/// Each node's voters list: its own Raft address, and each peer through the link that only
/// this node's traffic to that peer crosses.
pub fn voters_lists(links: &HashMap<(i32, i32), LinkProxy>, raft_ports: &[u16]) -> Vec<String> {
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

pub fn start_cluster(runtime: &tokio::runtime::Runtime, seed: u64) -> Cluster {
    start_cluster_with(runtime, seed, &[])
}

/// [`start_cluster`], each node started with `extra` arguments as well (`--set k=v`).
pub fn start_cluster_with(runtime: &tokio::runtime::Runtime, seed: u64, extra: &[&str]) -> Cluster {
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
        let mut args: Vec<&str> = vec![
            "--node-id",
            &node_id,
            "--voters",
            &voters[id as usize - 1],
            "--advertise",
            &advertise,
        ];
        args.extend_from_slice(extra);
        let node = BrokerProcess::start(Path::new(TALLY), &args);
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
pub fn isolate(cluster: &Cluster, node: i32, cut: bool) {
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
pub fn create_topic(bootstrap: &str) {
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
pub fn leaders_from(cluster: &Cluster, paused: i32) -> Vec<i32> {
    leaders(&bootstrap_without(cluster, paused))
}

/// The bootstrap list of every node but `node`.
pub fn bootstrap_without(cluster: &Cluster, node: i32) -> String {
    cluster
        .proxies
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as i32 + 1 != node)
        .map(|(_, p)| p.local_addr().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Each partition's leader (node id), once every partition has one.
pub fn leaders(bootstrap: &str) -> Vec<i32> {
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

pub fn producer(
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
pub fn produce(producer: &BaseProducer<Recorder>, stop: &AtomicBool, min: usize) -> usize {
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
pub fn read_all(bootstrap: &str, expected: usize) -> Vec<(i32, i64, String)> {
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

/// SIGKILLs the leader of each partition in turn, `kills` times, and restarts it on its data.
pub fn kill_leaders(cluster: &mut Cluster, kills: usize) {
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
}

/// A leader paused long enough for the others to elect a new one, then resumed: it must step
/// down, and nothing it accepted alone may count.
pub fn pause_a_leader(cluster: &Cluster) {
    std::thread::sleep(Duration::from_millis(700));
    let leader = leaders(&cluster.bootstrap)[0];
    let pid = cluster.nodes[leader as usize - 1].pid() as i32;
    eprintln!("SIGSTOP node {leader}, the leader of partition 0, for 3 s");
    // SAFETY: kill(2) on a child process of this test.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    std::thread::sleep(Duration::from_secs(3));
    let during = leaders_from(cluster, leader)[0];
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert_ne!(during, leader, "the paused node still led partition 0");
}

/// A leader cut off from the other two nodes while clients still reach it: it cannot commit
/// what it is sent, the others elect a new leader, and when the links heal its uncommitted
/// entries give way to the new leader's log.
pub fn cut_a_leader(cluster: &Cluster) {
    std::thread::sleep(Duration::from_millis(700));
    let leader = leaders(&cluster.bootstrap)[1];
    eprintln!("cut node {leader}, the leader of partition 1, off from the other nodes");
    isolate(cluster, leader, true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while leaders_from(cluster, leader)[1] == leader {
        assert!(Instant::now() < deadline, "no new leader behind the cut");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    eprintln!("heal node {leader}'s links");
    isolate(cluster, leader, false);
}

/// Produces on a thread of its own until `stop` (at least 2,000 messages), then flushes:
/// how many were sent, and librdkafka's fatal error if there was one.
pub fn start_producing(
    bootstrap: &str,
    idempotent: bool,
    outcomes: &Arc<Mutex<Outcomes>>,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, Option<String>)> {
    let (bootstrap, outcomes, stop) = (
        bootstrap.to_string(),
        Arc::clone(outcomes),
        Arc::clone(stop),
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
}

/// The node that coordinates `group`: the leader of its `__consumer_offsets` partition,
/// `abs(hashCode) % partitions` as Kafka places groups (Java's `String.hashCode`, masked).
/// The topic exists once a client has looked for a group's coordinator.
pub fn coordinator_of(bootstrap: &str, group: &str) -> i32 {
    let client: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(m) = client.fetch_metadata(Some("__consumer_offsets"), Duration::from_secs(5)) {
            if let Some(t) = m.topics().first().filter(|t| !t.partitions().is_empty()) {
                let index = (hash & 0x7fff_ffff) as usize % t.partitions().len();
                let leader = t.partitions()[index].leader();
                if leader > 0 {
                    return leader;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator for group {group}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
