//! SIGKILL of the broker at exact moments of its write path (failpoints: during an append,
//! inside the writer's group commit, during a segment roll, while saving an index or the
//! recovery point, during a producer snapshot), while an idempotent producer is producing.
//! The broker is restarted on the same data directory; the producer keeps retrying. For some
//! points the first restart is killed again while it recovers (`log.recovery.after_segment`).
//! The end state is exactly once, with every acknowledged message at its acknowledged offset.
//! The control: with start-up replay turned off (`TALLY_CONTROL=skip-replay`), the same run
//! stores a message twice.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tally_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord,
};
use tally_testkit::BrokerProcess;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 3000;

/// (failpoint, the hit that crashes, crash again while recovering)
const POINTS: &[(&str, u32, bool)] = &[
    ("log.append.before_write", 60, false),
    ("log.append.after_write", 60, true),
    ("writer.group_commit.before_flush", 40, false),
    ("log.roll.after_flush", 3, false),
    ("log.roll.after_new_segment", 3, true),
    ("log.recovery_point.before_rename", 3, false),
    ("index.save.before_rename", 3, false),
    ("partition.roll.after_snapshot", 3, false),
    ("snapshot.before_rename", 3, false),
    ("snapshot.after_rename", 3, false),
];

/// What a run ended with: messages not at their acknowledged place, stored twice, lost.
#[derive(Debug, Default, PartialEq)]
struct Verdict {
    misplaced: usize,
    twice: usize,
    lost: usize,
}

fn crash_at(point: &str, hit: u32, again_in_recovery: bool, controls: &str) -> Verdict {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let failpoint = format!("{point}@{hit}");
    let mut broker = BrokerProcess::start_with_env(
        Path::new(TALLY),
        &["--set", "log.segment.bytes=4096"],
        &[("TALLY_FAILPOINT", &failpoint), ("TALLY_CONTROL", controls)],
    );
    let bootstrap = broker.bootstrap();
    runtime.block_on(async {
        Admin::new(ClientConfig::new(bootstrap.clone()))
            .await
            .unwrap()
            .create_topic(NewTopic::new("crash", 2))
            .await
            .unwrap();
    });
    let producing = runtime.spawn({
        let bootstrap = bootstrap.clone();
        async move {
            let mut config = ProducerConfig::new(bootstrap);
            config.linger_ms = 1;
            config.batch_size = 400;
            config.retry_backoff_ms = 20;
            config.delivery_timeout_ms = 60_000;
            config.client.request_timeout_ms = 3_000;
            config.client.reconnect_backoff_ms = 20;
            config.client.reconnect_backoff_max_ms = 200;
            let producer = Producer::new(config).await.unwrap();
            let mut deliveries = Vec::new();
            for i in 0..MESSAGES {
                let partition = (i % 2) as i32;
                let value = format!("p{partition}-{i}");
                deliveries.push((
                    value.clone(),
                    producer
                        .send(ProducerRecord::new("crash", value).with_partition(partition))
                        .await
                        .unwrap(),
                ));
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            let mut acked = HashMap::new();
            for (value, d) in deliveries {
                let meta = d
                    .await
                    .unwrap_or_else(|e| panic!("{value} not delivered: {e}"));
                acked.insert(value, (meta.partition, meta.offset));
            }
            producer.close().await;
            acked
        }
    });
    let status = broker.wait_for_exit(Duration::from_secs(60));
    assert!(
        status.is_some(),
        "{failpoint}: the broker never reached the failpoint"
    );
    assert!(
        broker
            .logs()
            .contains(&format!("failpoint {point} reached")),
        "{failpoint}"
    );
    if again_in_recovery {
        broker.set_env(&[
            ("TALLY_FAILPOINT", "log.recovery.after_segment"),
            ("TALLY_CONTROL", controls),
        ]);
        let status = broker.restart_expecting_exit(Duration::from_secs(60));
        assert!(
            status.is_some(),
            "{failpoint}: recovery never reached its failpoint"
        );
        assert!(
            broker
                .logs()
                .contains("failpoint log.recovery.after_segment reached"),
            "{failpoint}: killed during recovery"
        );
    }
    broker.set_env(&[("TALLY_CONTROL", controls)]);
    broker.restart();
    let acked = runtime.block_on(producing).unwrap();
    assert_eq!(acked.len(), MESSAGES, "{failpoint}");

    let stored = runtime.block_on(async {
        let mut consumer = Consumer::new(ConsumerConfig::new(bootstrap.clone()))
            .await
            .unwrap();
        consumer
            .assign_topic("crash", Offset::Earliest)
            .await
            .unwrap();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while out.len() < MESSAGES {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{failpoint}: read {} of {MESSAGES}",
                out.len()
            );
            out.extend(consumer.poll(Duration::from_millis(300)).await.unwrap());
        }
        // Whatever is stored beyond them (copies) comes next.
        loop {
            let more = consumer.poll(Duration::from_millis(300)).await.unwrap();
            if more.is_empty() {
                break out;
            }
            out.extend(more);
        }
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut verdict = Verdict::default();
    for r in &stored {
        let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
        if acked.get(&value) != Some(&(r.partition, r.offset)) {
            eprintln!(
                "{failpoint}: {value} at {}/{} is not where it was acknowledged ({:?})",
                r.partition,
                r.offset,
                acked.get(&value)
            );
            verdict.misplaced += 1;
        }
        *seen.entry(value).or_default() += 1;
    }
    verdict.twice = seen.values().filter(|&&n| n > 1).count();
    verdict.lost = MESSAGES - seen.len();
    verdict
}

#[test]
fn sigkill_at_each_crash_point_keeps_exactly_once() {
    for (point, hit, again) in POINTS {
        let verdict = crash_at(point, *hit, *again, "");
        assert_eq!(verdict, Verdict::default(), "{point}@{hit}");
    }
}

/// The control: the broker that forgets to replay its log at start-up (its producer state
/// comes from the last snapshot alone) stores the retried batch again.
#[test]
fn without_replay_a_crash_stores_a_message_twice() {
    let verdict = crash_at("log.append.after_write", 60, false, "skip-replay");
    eprintln!("without replay: {verdict:?}");
    assert!(
        verdict.twice > 0,
        "without replay nothing was stored twice: {verdict:?}"
    );
}
