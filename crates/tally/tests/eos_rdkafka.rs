//! Exactly-once read-process-write with an unchanged librdkafka: a group consumer
//! (read_committed) feeds a transactional producer that copies each input record to an output
//! topic and commits the consumed offsets with `send_offsets_to_transaction`, all through the
//! fault proxy (lost produce answers, connection resets), while the processor crashes (dropped
//! after writing, before committing) and the broker is SIGKILLed and restarted. At the end the
//! output holds each input record exactly once. The control run, with an idempotent producer
//! and a separate offset commit after each batch, stores duplicates under the same faults.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Message, Offset, TopicPartitionList};
use tally_chaos::{DropPolicy, FaultProxy, ProxyConfig};
use tally_testkit::{BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const INPUT: usize = 400;
const PER_TXN: usize = 15;
const DEADLINE: Duration = Duration::from_secs(150);

struct Run {
    /// How many times each input value is in the output (read_committed).
    copies: HashMap<String, usize>,
    faults: u64,
    crashes: usize,
    broker_kills: usize,
}

/// A deterministic coin (xorshift), so a seed replays the same crash schedule.
struct Coin(u64);

impl Coin {
    fn flip(&mut self, one_in: u64) -> bool {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0.is_multiple_of(one_in)
    }
}

fn consumer(bootstrap: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "eos")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", "6000")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .create()
        .unwrap();
    c.subscribe(&["in"]).unwrap();
    c
}

fn producer(bootstrap: &str, transactional: bool) -> Option<BaseProducer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("retry.backoff.ms", "10")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .set("message.timeout.ms", "20000");
    if transactional {
        config
            .set("transactional.id", "eos-processor")
            .set("transaction.timeout.ms", "20000");
    }
    let p: BaseProducer = config.create().unwrap();
    if transactional && p.init_transactions(Duration::from_secs(20)).is_err() {
        return None;
    }
    Some(p)
}

/// Up to `PER_TXN` records, waiting at most a second for the first.
fn poll_batch(c: &BaseConsumer) -> Vec<(String, i32, i64)> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1);
    while out.len() < PER_TXN && Instant::now() < deadline {
        match c.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let v = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
                out.push((v, m.partition(), m.offset()));
            }
            Some(Err(_)) | None => {
                if !out.is_empty() {
                    break;
                }
            }
        }
    }
    out
}

/// The offsets after `batch`: what the group commits.
fn next_offsets(batch: &[(String, i32, i64)]) -> TopicPartitionList {
    let mut last: HashMap<i32, i64> = HashMap::new();
    for (_, p, o) in batch {
        last.insert(*p, (*o + 1).max(last.get(p).copied().unwrap_or(0)));
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in last {
        tpl.add_partition_offset("in", p, Offset::Offset(o))
            .unwrap();
    }
    tpl
}

/// One batch through one processor incarnation. `Ok(true)`: committed; `Ok(false)`: the
/// processor "crashed" after writing (the caller drops it); `Err`: it failed and is replaced.
fn process(
    c: &BaseConsumer,
    p: &BaseProducer,
    batch: &[(String, i32, i64)],
    transactional: bool,
    crash: bool,
) -> Result<bool, String> {
    let e = |e: rdkafka::error::KafkaError| e.to_string();
    if transactional {
        p.begin_transaction().map_err(e)?;
    }
    for (v, _, _) in batch {
        p.send(BaseRecord::<(), String>::to("out").payload(v))
            .map_err(|(err, _)| err.to_string())?;
    }
    p.flush(Duration::from_secs(20)).map_err(e)?;
    if crash {
        return Ok(false);
    }
    let offsets = next_offsets(batch);
    if transactional {
        let meta = c.group_metadata().ok_or("no group metadata")?;
        p.send_offsets_to_transaction(&offsets, &meta, Duration::from_secs(20))
            .map_err(e)?;
        p.commit_transaction(Duration::from_secs(20)).map_err(e)?;
    } else {
        c.commit(&offsets, CommitMode::Sync).map_err(e)?;
    }
    Ok(true)
}

fn run(transactional: bool, seed: u64) -> Run {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime
        .block_on(FaultProxy::start({
            let mut c = ProxyConfig::new("127.0.0.1:9".parse().unwrap());
            c.seed = seed;
            c.drop_produce_responses = DropPolicy::Probability(0.2);
            c.reset_probability = 0.02;
            c
        }))
        .unwrap();
    let advertise = proxy.local_addr().to_string();
    let mut broker = BrokerProcess::start(
        Path::new(TALLY),
        &[
            "--advertise",
            &advertise,
            "--set",
            "group.initial.rebalance.delay.ms=0",
        ],
    );
    proxy.set_upstream(broker.addr);
    proxy.set_faults_enabled(false);
    let mut admin = WireClient::connect(broker.addr).unwrap();
    admin.create_topic("in", 2).unwrap();
    admin.create_topic("out", 2).unwrap();
    let input = producer(&advertise, false).unwrap();
    for i in 0..INPUT {
        let v = format!("v{i}");
        input
            .send(
                BaseRecord::<(), String>::to("in")
                    .partition((i % 2) as i32)
                    .payload(&v),
            )
            .unwrap();
    }
    input.flush(Duration::from_secs(30)).unwrap();
    drop(input);
    proxy.set_faults_enabled(true);

    let mut coin = Coin(seed | 1);
    let (mut crashes, mut broker_kills, mut committed) = (0, 0, 0usize);
    let started = Instant::now();
    let mut round = 0;
    'incarnations: while committed < INPUT && started.elapsed() < DEADLINE {
        let c = consumer(&advertise);
        let Some(p) = producer(&advertise, transactional) else {
            continue;
        };
        loop {
            if started.elapsed() > DEADLINE {
                break 'incarnations;
            }
            let batch = poll_batch(&c);
            if batch.is_empty() {
                continue 'incarnations; // e.g. a rebalance after a restart: start afresh
            }
            round += 1;
            // At least one crash for sure (round 3), then about one batch in six.
            let crash = round == 3 || coin.flip(6);
            match process(&c, &p, &batch, transactional, crash) {
                Ok(true) => committed += batch.len(),
                Ok(false) => {
                    crashes += 1;
                    continue 'incarnations;
                }
                Err(_) => continue 'incarnations,
            }
            if broker_kills < 3 && coin.flip(8) {
                broker.kill9();
                broker.restart();
                broker_kills += 1;
                continue 'incarnations;
            }
        }
    }
    assert!(
        committed >= INPUT,
        "processed {committed} of {INPUT} in time"
    );
    let faults = proxy.counters().faults();
    proxy.set_faults_enabled(false);
    Run {
        copies: read_output(&broker.addr.to_string()),
        faults,
        crashes,
        broker_kills,
    }
}

/// Every value in `out`, read_committed, with how many times it is there.
fn read_output(bootstrap: &str) -> HashMap<String, usize> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "eos-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset("out", p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut copies = HashMap::new();
    let mut idle_since = Instant::now();
    while idle_since.elapsed() < Duration::from_secs(3) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let v = String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap();
            *copies.entry(v).or_insert(0) += 1;
            idle_since = Instant::now();
        }
    }
    copies
}

#[test]
fn read_process_write_is_exactly_once_through_crashes_and_faults() {
    let run = run(true, 0x5eed_0001);
    assert!(
        run.crashes >= 1 && run.faults > 0,
        "faults happened: {} crashes, {} faults",
        run.crashes,
        run.faults
    );
    let missing: Vec<String> = (0..INPUT)
        .map(|i| format!("v{i}"))
        .filter(|v| !run.copies.contains_key(v))
        .collect();
    let duplicated: Vec<(&String, &usize)> = run.copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(missing.is_empty(), "missing in the output: {missing:?}");
    assert!(
        duplicated.is_empty(),
        "duplicated in the output: {duplicated:?}"
    );
    assert_eq!(run.copies.len(), INPUT);
    eprintln!(
        "exactly once: {} records, {} processor crashes, {} broker SIGKILLs, {} proxy faults",
        INPUT, run.crashes, run.broker_kills, run.faults
    );
}

#[test]
fn control_without_transactions_stores_duplicates() {
    let run = run(false, 0x5eed_0001);
    let duplicated = run.copies.values().filter(|n| **n > 1).count();
    assert!(
        duplicated > 0,
        "an offset commit separate from the writes must duplicate after a crash ({} crashes)",
        run.crashes
    );
}
