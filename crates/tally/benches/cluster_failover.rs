//! Failover of a real three-node cluster (release `tally serve` processes on this machine):
//! librdkafka's idempotent producer (acks=all) sends a message every 5 ms to a topic of one
//! partition with three replicas; the partition's leader is SIGKILLed, and the time from the
//! kill to the first acknowledgement of a message sent after it is the failover time as a
//! client sees it (election, the new leader taking office, the client's metadata refresh and
//! retry). The killed node is restarted before the next round. Prints p50 and max.
//!
//!     cargo bench -p tally --bench cluster_failover [-- KILLS]   (default 20)

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Message};
use tally_testkit::{free_fixed_port, BrokerProcess};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const TOPIC: &str = "failover";

/// Each acknowledged message's send time (µs since the start) and when it was acknowledged.
struct Acks {
    start: Instant,
    acked: Arc<Mutex<Vec<(u64, Instant)>>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Ok(m) = result {
            let sent: u64 = String::from_utf8_lossy(m.payload().unwrap())
                .parse()
                .unwrap();
            self.acked.lock().unwrap().push((sent, Instant::now()));
        }
        let _ = self.start;
    }
}

fn leader(bootstrap: &str) -> Option<i32> {
    let client: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .ok()?;
    let m = client
        .fetch_metadata(Some(TOPIC), Duration::from_secs(2))
        .ok()?;
    let l = m.topics().first()?.partitions().first()?.leader();
    (l > 0).then_some(l)
}

fn main() {
    let kills: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(20);
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
    // Again while the controller is elected and the nodes register.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::process::Command::new(TALLY)
            .args(["--bootstrap", &nodes[0].bootstrap()])
            .args(["topic", "create", TOPIC, "--partitions", "1"])
            .args(["--replication-factor", "3"])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "topic create: {out:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    while leader(&bootstrap).is_none() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let start = Instant::now();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let producer: BaseProducer<Acks> = RdConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("retry.backoff.ms", "10")
        .set("retry.backoff.max.ms", "100")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .set("topic.metadata.refresh.fast.interval.ms", "50")
        .set("message.timeout.ms", "60000")
        .create_with_context(Acks {
            start,
            acked: Arc::clone(&acked),
        })
        .unwrap();
    let send_for = |duration: Duration| {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            let sent = start.elapsed().as_micros().to_string();
            let _ = producer.send(BaseRecord::<(), String>::to(TOPIC).payload(&sent));
            producer.poll(Duration::from_millis(5));
        }
    };
    send_for(Duration::from_secs(2));
    let mut times = Vec::new();
    for round in 0..kills {
        let Some(victim) = leader(&bootstrap) else {
            panic!("no leader before round {round}");
        };
        let killed_at = Instant::now();
        let killed_us = start.elapsed().as_micros() as u64;
        nodes[victim as usize - 1].kill9();
        send_for(Duration::from_secs(4));
        let first = acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _)| *sent >= killed_us)
            .map(|(_, at)| *at)
            .min();
        let Some(first) = first else {
            panic!("round {round}: nothing sent after the kill was acknowledged within 4 s");
        };
        let took = first.duration_since(killed_at);
        println!(
            "round {round}: killed node {victim}, first acknowledgement after {} ms",
            took.as_millis()
        );
        times.push(took);
        nodes[victim as usize - 1].restart();
        send_for(Duration::from_secs(2));
    }
    let _ = producer.flush(Duration::from_secs(30));
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "failover over {kills} leader kills (3 processes, RF 3): p50 {:.0} ms, max {:.0} ms",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1])
    );
}
