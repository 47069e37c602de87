//! A librdkafka group consumer that reads and commits all through the failover test, and what
//! it must show afterwards: the group holds, for every partition, the last offset whose commit
//! was acknowledged (no failover lost or rolled back a commit), and a new member that starts
//! from those offsets reads every stored message after them (no gap).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Commit after this many messages of a partition.
const COMMIT_EVERY: i64 = 50;

pub struct GroupRun {
    /// Each partition's last commit the coordinator acknowledged (the next offset to read).
    pub acknowledged: HashMap<i32, i64>,
    pub commits: usize,
    pub commit_errors: usize,
    /// What the group holds at the end, asked by a new client.
    pub held: HashMap<i32, i64>,
    /// What a new member read from the held offsets on.
    pub resumed: Vec<(i32, i64, String)>,
}

pub struct GroupReader {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<(HashMap<i32, i64>, usize, usize)>,
}

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    RdConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .unwrap()
}

/// Starts reading `topic` in `group`, committing as it goes.
pub fn start(bootstrap: &str, topic: &str, group: &str) -> GroupReader {
    let stop = Arc::new(AtomicBool::new(false));
    let (bootstrap, topic, group) = (bootstrap.to_string(), topic.to_string(), group.to_string());
    let stopped = Arc::clone(&stop);
    let handle = std::thread::spawn(move || {
        let c = consumer(&bootstrap, &group);
        c.subscribe(&[&topic]).unwrap();
        let mut acknowledged = HashMap::new();
        let (mut commits, mut errors) = (0, 0);
        let mut since_commit: HashMap<i32, i64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(300);
        while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
            let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
                continue;
            };
            let n = since_commit.entry(m.partition()).or_default();
            *n += 1;
            if *n < COMMIT_EVERY {
                continue;
            }
            *n = 0;
            match c.commit_message(&m, CommitMode::Sync) {
                Ok(()) => {
                    commits += 1;
                    acknowledged.insert(m.partition(), m.offset() + 1);
                }
                Err(_) => errors += 1,
            }
        }
        (acknowledged, commits, errors)
    });
    GroupReader { stop, handle }
}

/// What the reader did: each partition's last acknowledged commit, commits, failed commits.
pub type Committed = (HashMap<i32, i64>, usize, usize);

impl GroupReader {
    /// Stops reading and committing, once the commit under way is answered.
    pub fn stop(self) -> Committed {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// Asks what the group holds and reads on from there as a new member, expecting to find
/// every stored message past the held offsets.
pub fn finish(
    committed: Committed,
    bootstrap: &str,
    topic: &str,
    group: &str,
    partitions: i32,
    stored: &[(i32, i64, String)],
) -> GroupRun {
    let (acknowledged, commits, commit_errors) = committed;
    let c = consumer(bootstrap, group);
    let mut wanted = TopicPartitionList::new();
    for p in 0..partitions {
        wanted.add_partition(topic, p);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let list = loop {
        match c.committed_offsets(wanted.clone(), Duration::from_secs(5)) {
            Ok(list) => break list,
            Err(e) if Instant::now() < deadline => {
                eprintln!("reading the group's offsets: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the group's offsets are unreadable: {e}"),
        }
    };
    let held: HashMap<i32, i64> = list
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect();
    let expected: HashSet<&str> = stored
        .iter()
        .filter(|(p, o, _)| *o >= held.get(p).copied().unwrap_or(0))
        .map(|(_, _, v)| v.as_str())
        .collect();
    let mut from = TopicPartitionList::new();
    for p in 0..partitions {
        let offset = held
            .get(&p)
            .map_or(Offset::Beginning, |o| Offset::Offset(*o));
        from.add_partition_offset(topic, p, offset).unwrap();
    }
    c.assign(&from).unwrap();
    let mut resumed = Vec::new();
    let mut found: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while found.len() < expected.len() && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if expected.contains(value.as_str()) {
                found.insert(value.clone());
            }
            resumed.push((m.partition(), m.offset(), value));
        }
    }
    GroupRun {
        acknowledged,
        commits,
        commit_errors,
        held,
        resumed,
    }
}

/// The checks: every acknowledged commit is what the group holds, and every stored message
/// from the held offsets on was read again by the new member.
pub fn check(group: &GroupRun, stored: &[(i32, i64, String)]) {
    assert!(group.commits > 0, "the group never committed");
    for (partition, offset) in &group.acknowledged {
        assert_eq!(
            group.held.get(partition),
            Some(offset),
            "partition {partition}: the group holds another offset than its last acknowledged \
             commit ({} commits, {} failed)",
            group.commits,
            group.commit_errors
        );
    }
    let resumed: HashSet<&str> = group.resumed.iter().map(|(_, _, v)| v.as_str()).collect();
    for (partition, offset, value) in stored {
        if *offset >= group.held.get(partition).copied().unwrap_or(0) {
            assert!(
                resumed.contains(value.as_str()),
                "{value} (partition {partition}, offset {offset}) is past the group's offset \
                 but a new member did not read it"
            );
        }
    }
}
