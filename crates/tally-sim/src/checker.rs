//! The simulation's observers: a monitor that samples every partition's high watermark while
//! faults run, and the checker that reads everything back at the end and holds it against the
//! oracle (each message once, at its acknowledged offset, no sequence gap, transactions all or
//! nothing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tally_client::{audit_topic, Admin, Consumer, ConsumerConfig, Offset};

use crate::oracle::{Fate, Oracle};
use crate::world::{client_config, producer_hosts, sleep_ms, SimOptions, TOPIC};

/// Samples every partition's high watermark until the check is done.
pub(crate) async fn monitor_software(
    options: SimOptions,
    oracle: Arc<Mutex<Oracle>>,
) -> turmoil::Result {
    let mut admin = None;
    while !oracle.lock().unwrap().checked {
        sleep_ms(25).await;
        if admin.is_none() {
            admin = Admin::new(client_config(&options)).await.ok();
            continue;
        }
        let a = admin.as_ref().unwrap();
        for p in 0..options.partitions {
            let Ok(Ok(hw)) =
                tokio::time::timeout(Duration::from_millis(500), a.list_offset(TOPIC, p, -1)).await
            else {
                admin = None;
                break;
            };
            let mut o = oracle.lock().unwrap();
            let previous = o.high_watermarks.get(&p).copied().unwrap_or(0);
            if hw < previous {
                o.violation(format!(
                    "high watermark of partition {p} went back from {previous} to {hw}"
                ));
            }
            o.high_watermarks.insert(p, hw.max(previous));
        }
    }
    Ok(())
}

/// After every producer finished: read everything back and check the invariants.
pub(crate) async fn checker_software(
    options: SimOptions,
    oracle: Arc<Mutex<Oracle>>,
) -> turmoil::Result {
    while oracle.lock().unwrap().producers_finished < producer_hosts(&options) {
        sleep_ms(50).await;
    }
    let admin = Admin::new(client_config(&options)).await?;
    let mut ends = HashMap::new();
    for p in 0..options.partitions {
        // A cluster's broker that was down a moment ago may not know the topic yet.
        let mut tries = 0;
        let end = loop {
            match admin.list_offset(TOPIC, p, -1).await {
                Ok(end) => break end,
                Err(_) if tries < 100 => {
                    tries += 1;
                    sleep_ms(100).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        ends.insert(p, end);
    }
    let mut consumer = Consumer::new(ConsumerConfig {
        client: client_config(&options),
        ..ConsumerConfig::new(String::new())
    })
    .await?;
    consumer.assign_topic(TOPIC, Offset::Earliest).await?;
    let mut records = Vec::new();
    let mut idle_polls = 0;
    loop {
        let at_end = ends
            .iter()
            .all(|(p, end)| consumer.position(TOPIC, *p).unwrap_or(0) >= *end);
        if at_end {
            break;
        }
        // Ten simulated seconds without a record while short of the end: the consumer is stuck
        // (as it would be on a Raft entry at the end of a cluster's log, were the high
        // watermark clients see not the end of the last batch they can read).
        if idle_polls >= 50 {
            oracle.lock().unwrap().violation(format!(
                "the consumer cannot read to the end: at {:?}, ends {ends:?}",
                ends.keys()
                    .map(|p| consumer.position(TOPIC, *p))
                    .collect::<Vec<_>>()
            ));
            break;
        }
        let polled = consumer.poll(Duration::from_millis(200)).await?;
        idle_polls = if polled.is_empty() { idle_polls + 1 } else { 0 };
        records.extend(polled);
    }
    // Where each partition's log starts once read: retention may have deleted acknowledged
    // messages below it, and may have moved it while the consumer read.
    let mut log_starts = HashMap::new();
    if options.retention {
        for p in 0..options.partitions {
            log_starts.insert(p, admin.list_offset(TOPIC, p, -2).await?);
        }
    }
    let audit = audit_topic(client_config(&options), TOPIC).await?;
    if options.transactions > 0 {
        let mut txn_end = 0;
        for p in 0..options.partitions {
            txn_end += admin
                .list_offset(crate::txn_producer::TXN_TOPIC, p, -1)
                .await? as u64;
        }
        crate::txn_producer::check_transactions(&options, &oracle, txn_end).await?;
    }

    let mut o = oracle.lock().unwrap();
    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    for r in &records {
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        let previous = next.insert(r.partition, r.offset + 1);
        // With retention the first record read is wherever the log starts.
        let expected = match previous {
            None if options.retention => r.offset,
            p => p.unwrap_or(0),
        };
        // A cluster's offsets skip Raft's entries: they only grow.
        let out_of_order = if options.brokers > 1 {
            r.offset < expected
        } else {
            r.offset != expected
        };
        if out_of_order {
            o.violation(format!(
                "partition {}: offset {} follows {}",
                r.partition,
                r.offset,
                expected - 1
            ));
        }
        *stored.entry(value).or_default() += 1;
    }
    for (value, n) in &stored {
        if *n > 1 {
            o.violation(format!("{value} is stored {n} times"));
        }
    }
    let positions: HashMap<String, (i32, i64)> = records
        .iter()
        .map(|r| {
            (
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                (r.partition, r.offset),
            )
        })
        .collect();
    let fates: Vec<(String, Fate)> = o.fates.iter().map(|(k, v)| (k.clone(), *v)).collect();
    for (value, fate) in fates {
        match fate {
            Fate::Acked { partition, offset } => {
                let deleted = log_starts.get(&partition).is_some_and(|s| offset < *s);
                let found = positions.get(&value);
                if found != Some(&(partition, offset)) && !(deleted && found.is_none()) {
                    o.violation(format!(
                        "{value} was acknowledged at {partition}/{offset} but is at {:?}",
                        positions.get(&value)
                    ));
                }
            }
            Fate::Failed => {
                if positions.contains_key(&value) {
                    o.violation(format!(
                        "{value} was reported failed (not written) but is stored"
                    ));
                }
            }
            Fate::Unknown => {
                if positions.contains_key(&value) {
                    o.unknown_stored += 1;
                }
            }
        }
    }
    for p in &audit.producers {
        for d in &p.duplicates {
            o.violation(format!(
                "producer {} partition {}: sequences {}-{} stored twice",
                p.producer_id, p.partition, d.first_sequence, d.last_sequence
            ));
        }
        for g in &p.gaps {
            o.violation(format!(
                "producer {} partition {} epoch {}: sequence gap, {} expected, {} found",
                p.producer_id, p.partition, g.epoch, g.expected, g.found
            ));
        }
    }
    o.log_starts = log_starts;
    o.checked = true;
    Ok(())
}
