//! An unchanged librdkafka idempotent producer (acks=all, five requests in flight) through the
//! fault proxy: thousands of lost acknowledgements and connection resets. Every acknowledged
//! message is read back exactly once, in per-partition order, with no fatal producer error.
//! The control run, same seed with idempotence off, must store duplicates.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::{ClientContext, Message};
use tally_chaos::{DropPolicy, FaultCountsSnapshot, FaultProxy, ProxyConfig};
use tally_client::{Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset};
use tally_testkit::BrokerProcess;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 90_000;
/// The control only has to show duplicates.
const CONTROL_MESSAGES: usize = 15_000;
const PARTITIONS: i32 = 3;

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

struct Run {
    counts: FaultCountsSnapshot,
    acked: HashMap<String, (i32, i64)>,
    failed: Vec<String>,
    fatal: Option<String>,
    stored: Vec<tally_client::ConsumerRecord>,
}

/// `keys`: the topic has `idempotency.key=key` and each message's key is its value.
fn run(idempotent: bool, keys: bool, seed: u64, messages: usize) -> Run {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime
        .block_on(FaultProxy::start({
            let mut c = ProxyConfig::new("127.0.0.1:9".parse().unwrap());
            c.seed = seed;
            c.drop_produce_responses = DropPolicy::Probability(0.10);
            c.reset_probability = 0.01;
            c
        }))
        .unwrap();
    let advertise = proxy.local_addr().to_string();
    let broker = BrokerProcess::start(Path::new(TALLY), &["--advertise", &advertise]);
    proxy.set_upstream(broker.addr);
    proxy.set_faults_enabled(false);
    runtime.block_on(async {
        Admin::new(ClientConfig::new(advertise.clone()))
            .await
            .unwrap()
            .create_topic({
                let mut topic = NewTopic::new("chaos", PARTITIONS);
                if keys {
                    topic.configs.push(("idempotency.key".into(), "key".into()));
                }
                topic
            })
            .await
            .unwrap();
    });
    proxy.set_faults_enabled(true);

    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let producer: BaseProducer<Recorder> = RdConfig::new()
        .set("bootstrap.servers", &advertise)
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("acks", "all")
        .set("max.in.flight.requests.per.connection", "5")
        .set("batch.num.messages", "10")
        .set("linger.ms", "1")
        .set("retry.backoff.ms", "10")
        .set("retry.backoff.max.ms", "50")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "50")
        .set("message.timeout.ms", "300000")
        .create_with_context(Recorder(Arc::clone(&outcomes)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    for i in 0..messages {
        let partition = (i % PARTITIONS as usize) as i32;
        let value = format!("p{partition}-{i}");
        let mut record: BaseRecord<String, String> =
            BaseRecord::to("chaos").partition(partition).payload(&value);
        if keys {
            record = record.key(&value);
        }
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
        if i % 500 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    let flushed = producer.flush(Duration::from_secs(240));
    let fatal = producer
        .client()
        .fatal_error()
        .map(|(code, reason)| format!("{code:?}: {reason}"));
    assert!(
        flushed.is_ok() || fatal.is_some(),
        "flush timed out: {flushed:?}"
    );
    let counts = proxy.counters();
    proxy.set_faults_enabled(false);
    drop(producer);

    let end: i64 = runtime.block_on(async {
        let admin = Admin::new(ClientConfig::new(advertise.clone()))
            .await
            .unwrap();
        let mut total = 0;
        for p in 0..PARTITIONS {
            total += admin.list_offset("chaos", p, -1).await.unwrap();
        }
        total
    });
    let stored = runtime.block_on(async {
        let mut consumer = Consumer::new(ConsumerConfig::new(advertise.clone()))
            .await
            .unwrap();
        consumer
            .assign_topic("chaos", Offset::Earliest)
            .await
            .unwrap();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        let mut quiet = 0;
        // With idempotency keys dropped records leave offset gaps: read until every message
        // is there and nothing more comes.
        while (out.len() as i64) < end && !(keys && out.len() >= messages && quiet >= 5) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "read {} of {end}",
                out.len()
            );
            let got = consumer.poll(Duration::from_millis(300)).await.unwrap();
            quiet = if got.is_empty() { quiet + 1 } else { 0 };
            out.extend(got);
        }
        out
    });
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    drop(broker);
    Run {
        counts,
        acked: outcomes.acked,
        failed: outcomes.failed,
        fatal,
        stored,
    }
}

/// Every acknowledged message stored exactly once. `exact`: also in per-partition order and at
/// the offset its acknowledgement gave (what idempotence promises; without it, a retry
/// reorders, and one answered by the key filter carries the retried batch's offset).
fn check_exactly_once(run: &Run, messages: usize, exact: bool) {
    assert_eq!(run.fatal, None, "fatal producer error");
    assert!(
        run.failed.is_empty(),
        "{} deliveries failed, first: {:?}",
        run.failed.len(),
        run.failed.first()
    );
    assert!(
        run.counts.faults() >= (messages / 90) as u64,
        "not enough faults to mean anything: {:?}",
        run.counts
    );
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut last: HashMap<i32, i64> = HashMap::new();
    for r in &run.stored {
        let value = String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap();
        let counter: i64 = value.split_once('-').unwrap().1.parse().unwrap();
        let previous = last.insert(r.partition, counter).unwrap_or(-1);
        if exact {
            assert!(
                counter > previous,
                "partition {}: {counter} after {previous}",
                r.partition
            );
            if let Some(&(partition, offset)) = run.acked.get(&value) {
                assert_eq!(
                    (r.partition, r.offset),
                    (partition, offset),
                    "{value} is not where its acknowledgement said"
                );
            }
        }
        *seen.entry(value).or_default() += 1;
    }
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(duplicates, 0);
    assert_eq!(run.acked.len(), messages, "every message acknowledged");
    assert!(
        run.acked.keys().all(|v| seen.contains_key(v)),
        "an acknowledged message is missing"
    );
}

#[test]
fn librdkafka_idempotent_producer_is_exactly_once_through_thousands_of_faults() {
    let run = run(true, false, 7, MESSAGES);
    eprintln!("librdkafka, idempotence on: {:?}", run.counts);
    check_exactly_once(&run, MESSAGES, true);
    let control = run_control();
    assert!(control > 0, "the control run must store duplicates");
}

/// The same faults with `idempotency.key=key` (the message is its own key): with idempotence
/// the guarantees are unchanged; without it, the same seed whose control stores duplicates
/// stores each message once, because the key filter drops the retried copies.
#[test]
fn with_idempotency_keys_the_faults_store_each_message_once_with_or_without_idempotence() {
    let run_on = run(true, true, 7, CONTROL_MESSAGES);
    eprintln!("librdkafka, idempotence and keys: {:?}", run_on.counts);
    check_exactly_once(&run_on, CONTROL_MESSAGES, true);
    let run_off = run(false, true, 7, CONTROL_MESSAGES);
    eprintln!("librdkafka, keys without idempotence: {:?}", run_off.counts);
    check_exactly_once(&run_off, CONTROL_MESSAGES, false);
}

fn run_control() -> usize {
    let run = run(false, false, 7, CONTROL_MESSAGES);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &run.stored {
        *seen
            .entry(String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .or_default() += 1;
    }
    let duplicates = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "librdkafka, idempotence off: {:?}; duplicates stored: {duplicates}",
        run.counts
    );
    duplicates
}
