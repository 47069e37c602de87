//! SIGKILL of the broker (a real process) while it replaces or deletes one of its own files,
//! then a restart on the same data directory: the topics file, a producer-id block, a
//! segment deleted by retention, and `__consumer_offsets` compacted. After each, the broker
//! starts, every earlier acknowledgement still holds, and nothing is half done.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest};
use kafka_protocol::protocol::StrBytes;
use tally_client::{Admin, ClientConfig, NewTopic};
use tally_testkit::requests::topic_name;
use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn armed(point: &str) -> BrokerProcess {
    BrokerProcess::start_with_env(Path::new(TALLY), &[], &[("TALLY_FAILPOINT", point)])
}

/// Waits for the failpoint's SIGKILL, then starts the broker again without it.
fn crashed_then_restarted(b: &mut BrokerProcess, point: &str) {
    assert!(
        b.wait_for_exit(Duration::from_secs(60)).is_some(),
        "{point} was never reached"
    );
    assert!(b.logs().contains(&format!("failpoint {point} reached")));
    b.set_env(&[]);
    b.restart();
}

fn connect(b: &BrokerProcess) -> WireClient {
    WireClient::connect(b.addr).unwrap()
}

#[test]
fn a_crash_while_the_topics_file_is_replaced_keeps_every_topic() {
    let mut b = BrokerProcess::start(Path::new(TALLY), &[]);
    let mut c = connect(&b);
    c.create_topic("kept", 2).unwrap();
    for i in 0..3 {
        let r = c.produce(9, "kept", 1, batch(-1, -1, -1, 2)).unwrap();
        assert_eq!((r.error_code, r.base_offset), (0, i * 2));
    }
    b.kill9();
    b.set_env(&[("TALLY_FAILPOINT", "topics.before_rename")]);
    b.restart();
    // The broker dies while it records the new topic: no answer comes.
    assert!(connect(&b).create_topic("torn", 3).is_err());
    crashed_then_restarted(&mut b, "topics.before_rename");

    let mut c = connect(&b);
    assert_eq!(
        c.list_offset("kept", 1, -1).unwrap(),
        6,
        "acknowledged data kept"
    );
    assert_eq!(c.read_batches("kept", 1).unwrap().len(), 3);
    // The topic whose creation was never acknowledged can be created now, whole.
    c.create_topic("torn", 3).unwrap();
    let r = c.produce(9, "torn", 2, batch(-1, -1, -1, 1)).unwrap();
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    b.kill9();
    b.restart();
    assert_eq!(connect(&b).list_offset("torn", 2, -1).unwrap(), 1);
}

#[test]
fn a_crash_while_a_producer_id_block_is_stored_never_reuses_an_id() {
    // The first block is stored at the first InitProducerId; the second, after 1,000 ids.
    let mut b = armed("producer_ids.before_rename@2");
    let mut c = connect(&b);
    let mut handed_out = HashSet::new();
    for _ in 0..1000 {
        let (id, epoch) = c.init_producer_id().unwrap();
        assert_eq!(epoch, 0);
        assert!(handed_out.insert(id), "id {id} handed out twice");
    }
    assert!(
        c.init_producer_id().is_err(),
        "the broker dies storing the next block"
    );
    crashed_then_restarted(&mut b, "producer_ids.before_rename");
    let mut c = connect(&b);
    for _ in 0..10 {
        let (id, _) = c.init_producer_id().unwrap();
        assert!(
            handed_out.insert(id),
            "id {id} was handed out before the crash"
        );
    }
}

/// The segment files of a partition directory: (log bases, index file bases).
fn segment_files(dir: &Path) -> (HashSet<i64>, HashSet<i64>) {
    let (mut logs, mut indexes) = (HashSet::new(), HashSet::new());
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let Some((stem, suffix)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        match suffix {
            "log" => {
                logs.insert(base);
            }
            "index" | "timeindex" | "txnindex" => {
                indexes.insert(base);
            }
            _ => {}
        }
    }
    (logs, indexes)
}

#[test]
fn a_crash_while_retention_deletes_a_segment_leaves_no_half_segment() {
    let mut b = BrokerProcess::start_with_env(
        Path::new(TALLY),
        &["--set", "log.retention.check.interval.ms=100"],
        &[("TALLY_FAILPOINT", "segment.delete.after_log")],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = Admin::new(ClientConfig::new(b.bootstrap())).await.unwrap();
        let mut topic = NewTopic::new("r", 1);
        topic.configs = vec![
            ("segment.bytes".into(), "1024".into()),
            ("retention.bytes".into(), "4096".into()),
        ];
        admin.create_topic(topic).await.unwrap();
    });
    let mut c = connect(&b);
    // Produce until retention deletes a segment and the broker dies halfway through.
    let mut acked = 0;
    for _ in 0..2000 {
        match c.produce(9, "r", 0, batch(-1, -1, -1, 4)) {
            Ok(r) if r.error_code == 0 => acked += 4,
            _ => break,
        }
    }
    assert!(acked > 0);
    crashed_then_restarted(&mut b, "segment.delete.after_log");
    let dir = b.data_dir.join("r-0");
    let (logs, indexes) = segment_files(&dir);
    assert!(
        indexes.is_subset(&logs),
        "index files without their segment: {:?}",
        indexes.difference(&logs).collect::<Vec<_>>()
    );
    let mut c = connect(&b);
    let start = c.list_offset("r", 0, -2).unwrap();
    assert_eq!(
        start,
        *logs.iter().min().unwrap(),
        "the log starts at its first segment"
    );
    let end = c.list_offset("r", 0, -1).unwrap();
    assert!(
        end >= acked,
        "acknowledged records past the retention point are kept"
    );
    let batches = c.read_batches("r", 0).unwrap();
    assert_eq!(batches.first().unwrap().base_offset, start);
    assert_eq!(batches.last().unwrap().last_offset() + 1, end);
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[test]
fn a_crash_while_the_offsets_log_is_compacted_keeps_the_latest_offsets() {
    const PARTITIONS: i32 = 100;
    let mut b = armed("group_store.compaction.before_delete");
    let mut c = connect(&b);
    c.create_topic("g", PARTITIONS).unwrap();
    // 101 commits of 100 offsets: past the 10,000 records that start a compaction, with 101
    // live keys.
    let mut round = 0;
    while round < 200 {
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("grp")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("g"))
                .with_partitions(
                    (0..PARTITIONS)
                        .map(|p| {
                            OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(round * 1000 + i64::from(p))
                        })
                        .collect(),
                )]);
        match c.send(&commit, 8) {
            Ok(r) if r.topics[0].partitions.iter().all(|p| p.error_code == 0) => round += 1,
            _ => break,
        }
        if round > 101 {
            // Committed enough; the compaction runs on the coordinator's tick.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        round > 100,
        "the compaction came too early: after {round} commits"
    );
    crashed_then_restarted(&mut b, "group_store.compaction.before_delete");
    let last = round - 1;
    let mut c = connect(&b);
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s("grp")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name("g"))
            .with_partition_indexes((0..PARTITIONS).collect())]));
    let r = c.send(&fetch, 7).unwrap();
    for p in &r.topics[0].partitions {
        assert_eq!(
            p.committed_offset,
            last * 1000 + i64::from(p.partition_index),
            "partition {}: the latest acknowledged commit",
            p.partition_index
        );
    }
}
