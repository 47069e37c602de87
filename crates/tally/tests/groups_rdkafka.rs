//! Consumer groups with an unchanged librdkafka: two consumers split four partitions, one
//! leaves and the other takes all four, it comes back and they split again, and with
//! synchronous commits nothing is lost or delivered twice; committed offsets survive a
//! SIGKILL of the broker.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Message, Offset, TopicPartitionList};
use tally_testkit::{BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .unwrap()
}

fn produce(bootstrap: &str, topic: &str, from: usize, to: usize) {
    let producer: BaseProducer = RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in from..to {
        let value = format!("m{i}");
        let key = format!("k{i}");
        let mut record: BaseRecord<String, String> =
            BaseRecord::to(topic).key(&key).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
}

fn assigned(c: &BaseConsumer) -> usize {
    c.assignment().map(|a| a.count()).unwrap_or(0)
}

/// Polls each consumer in turn; every message is recorded and committed synchronously.
fn pump(consumers: &[&BaseConsumer], delivered: &mut Vec<String>, rounds: usize) {
    for _ in 0..rounds {
        for c in consumers {
            if let Some(m) = c.poll(Duration::from_millis(20)) {
                let m = m.expect("consume");
                delivered.push(String::from_utf8_lossy(m.payload().unwrap()).into_owned());
                c.commit_message(&m, CommitMode::Sync)
                    .expect("synchronous commit");
            }
        }
    }
}

fn until(
    what: &str,
    consumers: &[&BaseConsumer],
    delivered: &mut Vec<String>,
    done: impl Fn(&[&BaseConsumer], &[String]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(consumers, delivered) {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        pump(consumers, delivered, 5);
    }
}

#[test]
fn two_rdkafka_consumers_split_rebalance_and_deliver_each_message_once() {
    let broker = BrokerProcess::start(
        Path::new(TALLY),
        &["--set", "group.initial.rebalance.delay.ms=0"],
    );
    let b = broker.bootstrap();
    WireClient::connect(broker.addr)
        .unwrap()
        .create_topic("grouped", 4)
        .unwrap();
    produce(&b, "grouped", 0, 2000);
    let mut delivered = Vec::new();

    let a = consumer(&b, "g1");
    a.subscribe(&["grouped"]).unwrap();
    let first = consumer(&b, "g1");
    first.subscribe(&["grouped"]).unwrap();
    until(
        "the two consumers to split four partitions",
        &[&a, &first],
        &mut delivered,
        |cs, _| assigned(cs[0]) == 2 && assigned(cs[1]) == 2,
    );
    until(
        "some messages on both",
        &[&a, &first],
        &mut delivered,
        |_, d| d.len() >= 500,
    );

    // One leaves: the other takes all four.
    first.unsubscribe();
    drop(first);
    until(
        "the remaining consumer to own all four",
        &[&a],
        &mut delivered,
        |cs, _| assigned(cs[0]) == 4,
    );
    produce(&b, "grouped", 2000, 3000);
    until("more messages", &[&a], &mut delivered, |_, d| {
        d.len() >= 1800
    });

    // It comes back: they split again.
    let second = consumer(&b, "g1");
    second.subscribe(&["grouped"]).unwrap();
    until("a new split", &[&a, &second], &mut delivered, |cs, _| {
        assigned(cs[0]) == 2 && assigned(cs[1]) == 2
    });
    produce(&b, "grouped", 3000, 4000);
    until("every message", &[&a, &second], &mut delivered, |_, d| {
        d.len() >= 4000
    });
    pump(&[&a, &second], &mut delivered, 20);

    let mut counts: HashMap<&String, usize> = HashMap::new();
    for v in &delivered {
        *counts.entry(v).or_default() += 1;
    }
    let twice: Vec<_> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| (*v).clone())
        .collect();
    assert!(
        twice.is_empty(),
        "delivered twice: {:?}",
        &twice[..twice.len().min(10)]
    );
    let expected: BTreeSet<String> = (0..4000).map(|i| format!("m{i}")).collect();
    let got: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(got, expected, "lost messages");
}

#[test]
fn committed_offsets_survive_sigkill() {
    let mut broker = BrokerProcess::start(
        Path::new(TALLY),
        &["--set", "group.initial.rebalance.delay.ms=0"],
    );
    let b = broker.bootstrap();
    WireClient::connect(broker.addr)
        .unwrap()
        .create_topic("resume", 1)
        .unwrap();
    produce(&b, "resume", 0, 100);
    let c = consumer(&b, "g2");
    c.subscribe(&["resume"]).unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 37 {
        assert!(Instant::now() < deadline, "consumed only {}", seen.len());
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            seen.push(m.offset());
            c.commit_message(&m, CommitMode::Sync).unwrap();
        }
    }
    drop(c);
    broker.kill9();
    broker.restart();

    let c = consumer(&b, "g2");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition("resume", 0);
    let committed = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
    assert_eq!(
        committed.find_partition("resume", 0).unwrap().offset(),
        Offset::Offset(37)
    );
    c.subscribe(&["resume"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "nothing consumed after the restart"
        );
        if let Some(m) = c.poll(Duration::from_millis(100)) {
            break m.unwrap().offset();
        }
    };
    assert_eq!(
        first, 37,
        "the consumer resumes exactly after its last commit"
    );
}
