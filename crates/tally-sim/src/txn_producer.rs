//! The simulation's transactional producer and its oracle. It writes transactions of a few
//! records across the partitions of their own topic, commits most and aborts some, and when a
//! call fails it does what an application must: starts a new instance with the same
//! transactional id (which fences the old one and ends its transaction). The checker then
//! reads the topic read_committed: every transaction is there whole or not at all, each record
//! once, every committed one is there, no aborted one is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_client::{Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord};

use crate::oracle::Oracle;
use crate::world::{client_config, sleep_ms, SimOptions};

pub const TXN_TOPIC: &str = "simtxn";

/// What the producer was told about a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnFate {
    Committed,
    Aborted,
    /// A call failed: it may have committed or not, but all or nothing.
    Unknown,
}

async fn new_producer(options: &SimOptions) -> Producer {
    let transactional = options.transactional;
    let mut config = ProducerConfig::new(String::new());
    config.client = client_config(options);
    config.linger_ms = 2;
    config.retry_backoff_ms = 50;
    config.delivery_timeout_ms = 30_000;
    config.transactional_id = transactional.then(|| "sim-txn".into());
    config.transaction_timeout_ms = 10_000;
    loop {
        match Producer::new(config.clone()).await {
            Ok(p) => return p,
            Err(_) => sleep_ms(100).await,
        }
    }
}

/// One transaction; `Unknown` as soon as anything fails.
async fn one(producer: &Producer, id: usize, options: &SimOptions, commit: bool) -> TxnFate {
    if options.transactional && producer.begin_transaction().is_err() {
        return TxnFate::Unknown;
    }
    for i in 0..options.txn_size {
        let record = ProducerRecord::new(TXN_TOPIC, format!("t{id}-{i}"))
            .with_partition((i % options.partitions as usize) as i32)
            .with_timestamp(crate::world::sim_now_ms());
        if producer.send(record).await.is_err() {
            return TxnFate::Unknown;
        }
    }
    if !options.transactional {
        // The control: plain idempotent writes cannot be taken back.
        producer.flush().await;
        return if commit {
            TxnFate::Committed
        } else {
            TxnFate::Aborted
        };
    }
    let ended = if commit {
        producer
            .commit_transaction()
            .await
            .map(|_| TxnFate::Committed)
    } else {
        producer.abort_transaction().await.map(|_| TxnFate::Aborted)
    };
    ended.unwrap_or(TxnFate::Unknown)
}

pub async fn txn_producer_software(
    options: SimOptions,
    oracle: Arc<Mutex<Oracle>>,
) -> turmoil::Result {
    let mut rng = StdRng::seed_from_u64(7);
    let mut producer = new_producer(&options).await;
    let mut id = 0;
    let total = options.transactions + options.liveness_transactions;
    while id < total {
        if id == options.transactions {
            oracle.lock().unwrap().producers_done_with_faults += 1;
            while !oracle.lock().unwrap().healed {
                sleep_ms(20).await;
            }
        }
        let commit = rng.random_range(0..4) != 0;
        let fate = one(&producer, id, &options, commit).await;
        {
            let mut o = oracle.lock().unwrap();
            if id >= options.transactions && fate == TxnFate::Unknown {
                o.violation(format!("liveness: transaction {id} failed after healing"));
            }
            o.txn_fates.insert(id, fate);
        }
        if fate == TxnFate::Unknown {
            // A new instance fences the old one: its open transaction is aborted (or, if the
            // commit was already decided, completed).
            producer = new_producer(&options).await;
        }
        id += 1;
        sleep_ms(10).await;
    }
    oracle.lock().unwrap().producers_finished += 1;
    Ok(())
}

/// Reads the transactional topic read_committed and checks every transaction.
pub async fn check_transactions(
    options: &SimOptions,
    oracle: &Arc<Mutex<Oracle>>,
    ends: u64,
) -> turmoil::Result {
    let mut consumer = Consumer::new(ConsumerConfig {
        client: client_config(options),
        isolation_level: 1,
        ..ConsumerConfig::new(String::new())
    })
    .await?;
    consumer.assign_topic(TXN_TOPIC, Offset::Earliest).await?;
    // Read until the end of every partition has been passed (markers included): a few idle
    // polls in a row once something was read, bounded by the record count.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut idle = 0;
    while idle < 10 && (seen.values().sum::<usize>() as u64) < ends {
        let records = consumer.poll(std::time::Duration::from_millis(200)).await?;
        idle = if records.is_empty() { idle + 1 } else { 0 };
        for r in records {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            *seen.entry(v).or_default() += 1;
        }
    }
    let mut o = oracle.lock().unwrap();
    let fates: Vec<(usize, TxnFate)> = o.txn_fates.iter().map(|(k, v)| (*k, *v)).collect();
    for (id, fate) in fates {
        let present: Vec<usize> = (0..options.txn_size)
            .map(|i| seen.get(&format!("t{id}-{i}")).copied().unwrap_or(0))
            .collect();
        let all = present.iter().all(|n| *n == 1);
        let none = present.iter().all(|n| *n == 0);
        let ok = match fate {
            TxnFate::Committed => all,
            TxnFate::Aborted => none,
            TxnFate::Unknown => all || none,
        };
        if !ok {
            o.violation(format!(
                "transaction {id} ({fate:?}): read_committed sees its records {present:?} times"
            ));
        }
    }
    Ok(())
}
