//! Tally's group consumer passes the rebalance test librdkafka passes (groups_rdkafka.rs):
//! two consumers split four partitions, one leaves and the other takes all four, it comes back
//! and they split again, and with synchronous commits nothing is lost or delivered twice. Run
//! with the eager protocol (range) and the cooperative one (cooperative-sticky), where a
//! member joining must not make the other give up more than it has to. The control: the same
//! run with the commits left out delivers messages twice.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_client::{
    Admin, Assignor, ClientConfig, GroupConsumer, GroupConsumerConfig, NewTopic, Producer,
    ProducerConfig, ProducerRecord, RebalanceEvent,
};
use tally_testkit::BrokerProcess;
use tokio::time::Instant;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

type Events = Arc<Mutex<Vec<RebalanceEvent>>>;

async fn produce(bootstrap: &str, topic: &str, from: usize, to: usize) {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await.unwrap();
    let mut deliveries = Vec::new();
    for i in from..to {
        let record = ProducerRecord::new(topic, format!("m{i}")).with_key(format!("k{i}"));
        deliveries.push(producer.send(record).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    producer.close().await;
}

async fn member(bootstrap: &str, assignor: Assignor) -> (GroupConsumer, Events) {
    member_with(bootstrap, "g1", assignor, None).await
}

async fn member_with(
    bootstrap: &str,
    group: &str,
    assignor: Assignor,
    instance: Option<&str>,
) -> (GroupConsumer, Events) {
    let mut config = GroupConsumerConfig::new(bootstrap, group);
    config.group_instance_id = instance.map(str::to_string);
    config.enable_auto_commit = false;
    config.session_timeout_ms = 6_000;
    config.rebalance_timeout_ms = 20_000;
    config.heartbeat_interval_ms = 300;
    config.assignors = vec![assignor];
    let mut consumer = GroupConsumer::new(config).await.unwrap();
    consumer.subscribe(&["grouped"]);
    let events: Events = Arc::default();
    let sink = Arc::clone(&events);
    consumer.on_rebalance(move |e| sink.lock().unwrap().push(e.clone()));
    (consumer, events)
}

/// What the consumers delivered, and whether they commit it (off only for the control).
struct Delivered {
    values: Vec<String>,
    commit: bool,
}

/// Polls each consumer in turn; what comes back is recorded, then committed synchronously.
async fn pump(consumers: &mut [&mut GroupConsumer], delivered: &mut Delivered) {
    for c in consumers.iter_mut() {
        let records = c.poll(Duration::from_millis(50)).await.expect("poll");
        if records.is_empty() {
            continue;
        }
        for r in &records {
            let value = String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned();
            delivered.values.push(value);
        }
        if delivered.commit {
            c.commit_sync().await.expect("synchronous commit");
        }
    }
}

async fn until(
    what: &str,
    consumers: &mut [&mut GroupConsumer],
    delivered: &mut Delivered,
    done: impl Fn(&[&mut GroupConsumer], &[String]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done(consumers, &delivered.values) {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        pump(consumers, delivered).await;
    }
}

fn owns(c: &GroupConsumer) -> usize {
    c.assignment().len()
}

/// A broker that starts rebalances at once, with the four-partition topic "grouped".
async fn grouped_topic() -> (BrokerProcess, Admin) {
    let broker = BrokerProcess::start(
        Path::new(TALLY),
        &["--set", "group.initial.rebalance.delay.ms=0"],
    );
    let admin = Admin::new(ClientConfig::new(broker.bootstrap()))
        .await
        .unwrap();
    admin
        .create_topic(NewTopic::new("grouped", 4))
        .await
        .unwrap();
    (broker, admin)
}

fn revoked(events: &Events) -> Vec<usize> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            RebalanceEvent::Revoked(tps) if !tps.is_empty() => Some(tps.len()),
            _ => None,
        })
        .collect()
}

/// The scenario; with `commit` off (the control) it returns what was delivered twice
/// instead of asserting that nothing was.
async fn split_leave_rejoin(assignor: Assignor, commit: bool) -> Vec<String> {
    let (broker, admin) = grouped_topic().await;
    let b = broker.bootstrap();
    produce(&b, "grouped", 0, 2000).await;
    let mut delivered = Delivered {
        values: Vec::new(),
        commit,
    };

    let (mut a, a_events) = member(&b, assignor).await;
    let (mut first, _) = member(&b, assignor).await;
    until(
        "the two consumers to split four partitions",
        &mut [&mut a, &mut first],
        &mut delivered,
        |cs, _| owns(cs[0]) == 2 && owns(cs[1]) == 2,
    )
    .await;
    assert_eq!(a.protocol(), Some(assignor.name()));
    until(
        "some messages on both",
        &mut [&mut a, &mut first],
        &mut delivered,
        |_, d| d.len() >= 500,
    )
    .await;

    // One leaves: the other takes all four.
    first.close().await.unwrap();
    until(
        "the remaining consumer to own all four",
        &mut [&mut a],
        &mut delivered,
        |cs, _| owns(cs[0]) == 4,
    )
    .await;
    produce(&b, "grouped", 2000, 3000).await;
    until("more messages", &mut [&mut a], &mut delivered, |_, d| {
        d.len() >= 1800
    })
    .await;

    // It comes back: they split again.
    let revocations_before = revoked(&a_events).len();
    let (mut second, _) = member(&b, assignor).await;
    until(
        "a new split",
        &mut [&mut a, &mut second],
        &mut delivered,
        |cs, _| owns(cs[0]) == 2 && owns(cs[1]) == 2,
    )
    .await;
    let revocations = revoked(&a_events)[revocations_before..].to_vec();
    if assignor.is_cooperative() {
        assert_eq!(
            revocations,
            vec![2],
            "cooperative: the member gives up only the two partitions that move"
        );
    } else {
        assert_eq!(
            revocations,
            vec![4],
            "eager: the member gives up everything before rejoining"
        );
    }
    produce(&b, "grouped", 3000, 4000).await;
    until(
        "every message",
        &mut [&mut a, &mut second],
        &mut delivered,
        |_, d| d.len() >= 4000,
    )
    .await;
    for _ in 0..10 {
        pump(&mut [&mut a, &mut second], &mut delivered).await;
    }

    let delivered = delivered.values;
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for v in &delivered {
        *counts.entry(v).or_default() += 1;
    }
    let twice: Vec<_> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(v, _)| (*v).clone())
        .collect();
    let expected: BTreeSet<String> = (0..4000).map(|i| format!("m{i}")).collect();
    let got: BTreeSet<String> = delivered.iter().cloned().collect();
    assert_eq!(got, expected, "lost messages");
    if !commit {
        return twice;
    }
    assert!(
        twice.is_empty(),
        "delivered twice: {:?}",
        &twice[..twice.len().min(10)]
    );

    // The group's committed offsets are the log end offsets.
    let committed = admin.group_offsets("g1").await.unwrap();
    for p in 0..4 {
        let end = admin.list_offset("grouped", p, -1).await.unwrap();
        assert_eq!(committed.get(&("grouped".to_string(), p)), Some(&end));
    }
    a.close().await.unwrap();
    second.close().await.unwrap();
    let description = admin.describe_group("g1").await.unwrap();
    assert_eq!(description.state, "Empty");
    twice
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_group_consumers_eager_range() {
    split_leave_rejoin(Assignor::Range, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_group_consumers_cooperative_sticky() {
    split_leave_rejoin(Assignor::CooperativeSticky, true).await;
}

/// The control: without the commits, partitions that move restart from the earliest offset
/// and their messages are delivered again, which the test above would report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_commits_the_same_run_delivers_messages_twice() {
    let twice = split_leave_rejoin(Assignor::CooperativeSticky, false).await;
    assert!(
        !twice.is_empty(),
        "no message was delivered twice without commits: the test cannot fail"
    );
}

/// Static membership (KIP-345): a member with a group.instance.id that restarts within its
/// session timeout gets its partitions back, and the other member sees no rebalance at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_restarts_without_a_rebalance() {
    let (broker, admin) = grouped_topic().await;
    let b = broker.bootstrap();
    produce(&b, "grouped", 0, 400).await;
    let mut delivered = Delivered {
        values: Vec::new(),
        commit: true,
    };
    let (mut a, _) = member_with(&b, "static", Assignor::Range, Some("member-a")).await;
    let (mut other, other_events) =
        member_with(&b, "static", Assignor::Range, Some("member-b")).await;
    until(
        "the two static members to split four partitions",
        &mut [&mut a, &mut other],
        &mut delivered,
        |cs, _| owns(cs[0]) == 2 && owns(cs[1]) == 2,
    )
    .await;
    let a_partitions = a.assignment();
    let other_partitions = other.assignment();
    let generation = other.generation();
    let events_before = other_events.lock().unwrap().len();

    // A static member's close does not leave the group; a new process with the same instance
    // id takes its place.
    a.close().await.unwrap();
    let (mut restarted, _) = member_with(&b, "static", Assignor::Range, Some("member-a")).await;
    until(
        "the restarted member to get its partitions",
        &mut [&mut restarted, &mut other],
        &mut delivered,
        |cs, _| owns(cs[0]) == 2,
    )
    .await;
    // Keep the other member busy for a few heartbeats: a rebalance would show up now.
    for _ in 0..20 {
        pump(&mut [&mut restarted, &mut other], &mut delivered).await;
    }
    assert_eq!(restarted.assignment(), a_partitions);
    assert_eq!(other.assignment(), other_partitions);
    assert_eq!(other.generation(), generation, "no new generation");
    assert_eq!(
        other_events.lock().unwrap().len(),
        events_before,
        "the other member saw no rebalance"
    );
    let description = admin.describe_group("static").await.unwrap();
    assert_eq!(description.members.len(), 2, "{description:?}");
    restarted.close().await.unwrap();
    other.close().await.unwrap();
}
