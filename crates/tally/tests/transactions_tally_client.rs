//! Tally's own client passes the transaction scenarios librdkafka passes: commit and abort
//! across 3 partitions of 2 topics (its consumer, read_committed by default, sees exactly the
//! committed records; read_uncommitted sees all, neither a control record), a second instance
//! fences the first and its open transaction is aborted, an abandoned transaction holds
//! read_committed readers until its timeout aborts it, and offsets sent to a transaction
//! count only if it commits. Tally's broker serves transaction version 2, so the client uses
//! it here: no AddPartitionsToTxn or AddOffsetsToTxn, a new epoch after every commit and abort.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use tally_client::coordinator::Committer;
use tally_client::{
    Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, Offset, Producer, ProducerConfig,
    ProducerRecord, TransactionError,
};
use tally_testkit::BrokerProcess;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const PARTITIONS: [(&str, i32); 3] = [("ca", 0), ("ca", 1), ("cb", 0)];

type Seen = BTreeMap<(String, i32), Vec<String>>;

async fn setup(bootstrap: &str) {
    let admin = Admin::new(ClientConfig::new(bootstrap.to_string()))
        .await
        .unwrap();
    admin.create_topic(NewTopic::new("ca", 2)).await.unwrap();
    admin.create_topic(NewTopic::new("cb", 1)).await.unwrap();
}

async fn producer(bootstrap: &str, id: &str) -> Producer {
    let mut config = ProducerConfig::new(bootstrap.to_string());
    config.transactional_id = Some(id.to_string());
    config.linger_ms = 1;
    Producer::new(config).await.unwrap()
}

async fn send_all(p: &Producer, prefix: &str) -> Vec<((String, i32), String)> {
    let mut sent = Vec::new();
    for (t, part) in PARTITIONS {
        let value = format!("{prefix}-{t}-{part}");
        let record = ProducerRecord::new(t, value.clone()).with_partition(part);
        p.send(record).await.unwrap();
        sent.push(((t.to_string(), part), value));
    }
    sent
}

async fn read(bootstrap: &str, isolation: i8, want: usize) -> Seen {
    let mut config = ConsumerConfig::new(bootstrap.to_string());
    config.isolation_level = isolation;
    let mut c = Consumer::new(config).await.unwrap();
    let all: Vec<(String, i32, Offset)> = PARTITIONS
        .iter()
        .map(|(t, p)| (t.to_string(), *p, Offset::Earliest))
        .collect();
    c.assign(&all).await.unwrap();
    let mut seen = Seen::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.values().map(Vec::len).sum::<usize>() < want + 1
        && tokio::time::Instant::now() < deadline
    {
        for r in c.poll(Duration::from_millis(200)).await.unwrap() {
            let v = String::from_utf8(r.value.unwrap_or_default().to_vec()).unwrap();
            seen.entry((r.topic, r.partition)).or_default().push(v);
        }
    }
    seen
}

fn group(sent: &[((String, i32), String)]) -> Seen {
    let mut seen = Seen::new();
    for (k, v) in sent {
        seen.entry(k.clone()).or_default().push(v.clone());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_abort_across_partitions_of_two_topics() {
    let b = BrokerProcess::start(Path::new(TALLY), &[]);
    setup(&b.bootstrap()).await;
    let p = producer(&b.bootstrap(), "tally-commit-abort").await;
    assert!(
        p.send(ProducerRecord::new("ca", "outside")).await.is_err(),
        "a transactional producer sends only inside a transaction"
    );
    let (mut committed, mut everything) = (Vec::new(), Vec::new());
    for (round, commit) in [true, false, true, false].into_iter().enumerate() {
        let (id, epoch) = p.producer_id_and_epoch();
        p.begin_transaction().unwrap();
        let sent = send_all(&p, &format!("r{round}")).await;
        everything.extend(sent.clone());
        if commit {
            p.commit_transaction().await.unwrap();
            committed.extend(sent);
        } else {
            p.abort_transaction().await.unwrap();
        }
        // Transaction version 2: every commit and abort moves the producer to a new epoch;
        // the next round's batches start again at sequence 0 under it.
        assert_eq!(p.producer_id_and_epoch(), (id, epoch + 1));
    }
    let (committed, everything) = (group(&committed), group(&everything));
    assert_eq!(
        read(&b.bootstrap(), 1, 6).await,
        committed,
        "read_committed"
    );
    assert_eq!(
        read(&b.bootstrap(), 0, 12).await,
        everything,
        "read_uncommitted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_fences_the_old_one() {
    let b = BrokerProcess::start(Path::new(TALLY), &[]);
    setup(&b.bootstrap()).await;
    let old = producer(&b.bootstrap(), "tally-zombie").await;
    old.begin_transaction().unwrap();
    send_all(&old, "zombie").await;
    old.flush().await;
    let new = producer(&b.bootstrap(), "tally-zombie").await;
    new.begin_transaction().unwrap();
    let sent = send_all(&new, "new").await;
    new.commit_transaction().await.unwrap();
    let e = old.commit_transaction().await.unwrap_err();
    assert!(e.is_fatal(), "the fenced producer's commit is fatal: {e}");
    assert!(matches!(
        old.begin_transaction(),
        Err(TransactionError::Fatal(_))
    ));
    assert_eq!(read(&b.bootstrap(), 1, 3).await, group(&sent));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_to_a_transaction_count_only_if_it_commits() {
    let b = BrokerProcess::start(Path::new(TALLY), &[]);
    setup(&b.bootstrap()).await;
    let admin = Admin::new(ClientConfig::new(b.bootstrap())).await.unwrap();
    let p = producer(&b.bootstrap(), "tally-offsets").await;
    let standalone = Committer::standalone();
    for (offset, commit) in [(5i64, true), (9, false)] {
        p.begin_transaction().unwrap();
        send_all(&p, &format!("o{offset}")).await;
        p.send_offsets_to_transaction(&[("ca".to_string(), 0, offset)], "txn-group", &standalone)
            .await
            .unwrap();
        if commit {
            p.commit_transaction().await.unwrap();
        } else {
            p.abort_transaction().await.unwrap();
        }
    }
    let offsets = admin.group_offsets("txn-group").await.unwrap();
    let committed: Vec<_> = offsets.into_iter().collect();
    assert_eq!(
        committed,
        vec![(("ca".to_string(), 0), 5)],
        "the aborted 9 never counts"
    );
}

/// An abandoned transaction (the producer dropped without ending it: no EndTxn ever comes)
/// holds Tally's read_committed consumer at its first offset, including a non-transactional
/// record written after it began, until the coordinator aborts it at its timeout; then the
/// later record is readable and the abandoned ones never are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_transaction_holds_readers_until_its_timeout_aborts_it() {
    let b = BrokerProcess::start(
        Path::new(TALLY),
        &[
            "--set",
            "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
        ],
    );
    setup(&b.bootstrap()).await;
    let admin = Admin::new(ClientConfig::new(b.bootstrap())).await.unwrap();
    let mut config = ProducerConfig::new(b.bootstrap());
    config.transactional_id = Some("tally-abandoned".into());
    config.transaction_timeout_ms = 8_000;
    config.linger_ms = 1;
    let abandoned = Producer::new(config).await.unwrap();
    abandoned.begin_transaction().unwrap();
    let open = send_all(&abandoned, "abandoned").await;
    abandoned.flush().await;
    drop(abandoned);
    let plain = Producer::new(ProducerConfig::new(b.bootstrap()))
        .await
        .unwrap();
    plain
        .send_and_wait(ProducerRecord::new("ca", "plain").with_partition(0))
        .await
        .unwrap();

    // While the transaction is open (checked on both sides of the read), nothing of it and
    // nothing after it is readable.
    let state = || async {
        admin
            .describe_transaction("tally-abandoned")
            .await
            .unwrap()
            .state
    };
    assert_eq!(state().await, "Ongoing");
    let mut config = ConsumerConfig::new(b.bootstrap());
    config.isolation_level = 1;
    let mut c = Consumer::new(config).await.unwrap();
    c.assign(&[("ca".to_string(), 0, Offset::Earliest)])
        .await
        .unwrap();
    let mut held = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < until {
        held.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(
        state().await,
        "Ongoing",
        "the read above ran while it was open"
    );
    assert!(
        held.is_empty(),
        "read_committed is held at the open transaction"
    );

    // The coordinator aborts it at its timeout; then the later record arrives, alone.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.is_empty() && tokio::time::Instant::now() < deadline {
        for r in c.poll(Duration::from_millis(200)).await.unwrap() {
            seen.push(String::from_utf8(r.value.unwrap_or_default().to_vec()).unwrap());
        }
    }
    assert_eq!(seen, vec!["plain".to_string()]);
    // Aborted, not committed (the marker of this partition may come before the others').
    assert!(matches!(
        state().await.as_str(),
        "PrepareAbort" | "CompleteAbort"
    ));
    let all = read(&b.bootstrap(), 0, 4).await;
    let everything = all.values().map(Vec::len).sum::<usize>();
    assert_eq!(
        everything,
        open.len() + 1,
        "the aborted records are in the log"
    );
}
