//! Power cuts of a real broker process. With `TALLY_POWER_CUT=<data dir>` the storage seam
//! (`tally_log::storage`) records what was never fsynced, and the failpoint named by
//! `TALLY_FAILPOINT` drops it (file data since each file's last fsync, directory entries since
//! each directory's last fsync) before its SIGKILL: what a machine losing power would find.
//!
//! - With `log.flush.interval.messages=1`, every acknowledged batch survives a power cut at
//!   any point of the write path (and a second one during the recovery that follows).
//! - With the default flush policy, acknowledged batches that were never flushed are lost, as
//!   in Kafka without replicas; the broker recovers a consistent prefix with the producer
//!   state that matches it, and answers as Kafka does: a retry of a recovered batch is a
//!   duplicate at its offset, a gap is OUT_OF_ORDER_SEQUENCE_NUMBER, and the lost batches sent
//!   again are stored once each.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const TOPIC: &str = "cut";
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// Records per batch: batch k has sequences and offsets 2k and 2k+1.
const RECORDS: usize = 2;

struct Cut {
    _work: tempfile::TempDir,
    data: PathBuf,
    broker: BrokerProcess,
}

fn start(failpoint: &str, flush_each_message: bool) -> Cut {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let mut args = vec!["--set", "log.segment.bytes=2048"];
    if flush_each_message {
        args.extend(["--set", "log.flush.interval.messages=1"]);
    }
    let data_text = data.to_string_lossy().into_owned();
    let broker = BrokerProcess::start_in(
        Path::new(TALLY),
        Some(data.clone()),
        &args,
        &[
            ("TALLY_POWER_CUT", &data_text),
            ("TALLY_FAILPOINT", failpoint),
        ],
    );
    Cut {
        _work: work,
        data,
        broker,
    }
}

impl Cut {
    /// Waits for the failpoint's power cut to end the broker.
    fn wait_for_the_cut(&mut self) {
        let status = self.broker.wait_for_exit(Duration::from_secs(30));
        assert!(status.is_some(), "the failpoint never fired");
        assert!(
            self.broker.logs().contains("power cut under"),
            "no power cut in the broker's output:\n{}",
            self.broker.logs()
        );
    }

    /// Base offsets of the partition's segments now on disk.
    fn segment_bases(&self) -> Vec<i64> {
        let mut bases: Vec<i64> = std::fs::read_dir(self.data.join(format!("{TOPIC}-0")))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        bases.sort_unstable();
        bases
    }
}

/// Sends batch `k`; `None` when the broker is gone (the cut happened during it).
fn send(client: &mut WireClient, pid: i64, k: i32) -> Option<(i16, i64)> {
    let r = client
        .produce(9, TOPIC, 0, batch(pid, 0, k * RECORDS as i32, RECORDS))
        .ok()?;
    Some((r.error_code, r.base_offset))
}

/// Sends batches 0, 1, ... until the broker dies; the acknowledged ones, in order.
fn produce_until_the_cut(client: &mut WireClient, pid: i64, limit: i32) -> i32 {
    for k in 0..limit {
        match send(client, pid, k) {
            Some((0, offset)) => assert_eq!(offset, i64::from(k) * RECORDS as i64, "batch {k}"),
            Some(other) => panic!("batch {k}: {other:?}"),
            None => return k,
        }
    }
    panic!("the broker was still up after {limit} batches");
}

/// The stored batches must be batches 0..n of `pid`, in order, each once, at their offsets.
fn assert_prefix(client: &mut WireClient, pid: i64) -> i32 {
    let batches = client.read_batches(TOPIC, 0).unwrap();
    for (k, b) in batches.iter().enumerate() {
        let k = k as i64;
        assert_eq!(
            (b.producer_id, b.base_offset, i64::from(b.base_sequence)),
            (pid, k * RECORDS as i64, k * RECORDS as i64),
            "stored batch {k}: {b:?}"
        );
    }
    batches.len() as i32
}

fn connect(cut: &Cut) -> WireClient {
    let mut client = WireClient::connect(cut.broker.addr).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(10)));
    client
}

#[test]
fn with_a_flush_per_message_every_acknowledged_batch_survives_a_power_cut() {
    // (failpoint, hit, cut again while recovering)
    let points: &[(&str, u32, bool)] = &[
        ("log.append.after_write", 40, true),
        ("writer.group_commit.before_flush", 40, false),
        ("log.roll.after_flush", 2, false),
        ("log.roll.after_new_segment", 2, true),
        ("log.recovery_point.before_rename", 2, false),
        ("index.save.before_rename", 2, false),
        ("partition.roll.after_snapshot", 2, false),
        ("snapshot.after_rename", 2, false),
    ];
    for &(point, hit, again) in points {
        let mut cut = start(&format!("{point}@{hit}"), true);
        let mut client = connect(&cut);
        client.create_topic(TOPIC, 1).unwrap();
        let (pid, _) = client.init_producer_id().unwrap();
        let acked = produce_until_the_cut(&mut client, pid, 500);
        cut.wait_for_the_cut();
        if again {
            // A second power cut in the middle of the recovery of the first.
            let data = cut.data.to_string_lossy().into_owned();
            cut.broker.set_env(&[
                ("TALLY_POWER_CUT", &data),
                ("TALLY_FAILPOINT", "log.recovery.after_segment@1"),
            ]);
            let status = cut.broker.restart_expecting_exit(Duration::from_secs(30));
            assert!(status.is_some(), "{point}: recovery was not cut");
        }
        cut.broker.set_env(&[]);
        cut.broker.restart();
        let mut client = connect(&cut);
        let stored = assert_prefix(&mut client, pid);
        eprintln!("{point}@{hit}: {acked} batches acknowledged, {stored} stored after the cut");
        // Every acknowledged batch, and perhaps the one in flight at the cut.
        assert!(
            stored == acked || stored == acked + 1,
            "{point}: {acked} batches acknowledged, {stored} stored after the power cut"
        );
        // The one in flight, sent again, is stored once; so is the next.
        assert_eq!(
            send(&mut client, pid, acked),
            Some((0, i64::from(acked) * 2))
        );
        assert_eq!(
            send(&mut client, pid, acked + 1),
            Some((0, i64::from(acked + 1) * 2))
        );
        assert_eq!(assert_prefix(&mut client, pid), acked + 2, "{point}");
    }
}

#[test]
fn with_the_default_flush_a_power_cut_keeps_a_consistent_prefix_and_kafkas_answers() {
    let mut cut = start("log.append.after_write@120", false);
    let mut client = connect(&cut);
    client.create_topic(TOPIC, 1).unwrap();
    let (pid, _) = client.init_producer_id().unwrap();
    // Everything in segments rolled before the cut was flushed by the roll.
    let acked = produce_until_the_cut(&mut client, pid, 500);
    let flushed_below = *cut.segment_bases().last().unwrap();
    assert_eq!(acked, 119);
    cut.wait_for_the_cut();
    cut.broker.set_env(&[]);
    cut.broker.restart();
    let mut client = connect(&cut);
    let stored = assert_prefix(&mut client, pid);
    eprintln!("{acked} batches acknowledged, {stored} stored after the cut, segments rolled up to offset {flushed_below}");
    assert!(
        stored < acked,
        "nothing acknowledged was lost: the power cut dropped nothing ({stored} stored)"
    );
    assert!(
        i64::from(stored) * RECORDS as i64 >= flushed_below,
        "flushed data was lost: {stored} batches stored, segments rolled up to offset {flushed_below}"
    );
    assert!(stored > 0);

    // The producer state matches the recovered log: a retry of the last stored batch is a
    // duplicate at its offset, a batch after a gap is refused.
    let last = stored - 1;
    assert_eq!(send(&mut client, pid, last), Some((0, i64::from(last) * 2)));
    let gap = client
        .produce(9, TOPIC, 0, batch(pid, 0, (stored + 1) * 2, RECORDS))
        .unwrap();
    assert_eq!(gap.error_code, OUT_OF_ORDER_SEQUENCE_NUMBER);

    // The lost batches sent again are stored once each, and retries of them are duplicates.
    for k in stored..=acked {
        assert_eq!(
            send(&mut client, pid, k),
            Some((0, i64::from(k) * 2)),
            "batch {k}"
        );
    }
    for k in acked - 4..=acked {
        assert_eq!(
            send(&mut client, pid, k),
            Some((0, i64::from(k) * 2)),
            "retry {k}"
        );
    }
    assert_eq!(assert_prefix(&mut client, pid), acked + 1);

    // And across a plain restart (SIGKILL, the page cache kept) nothing changes.
    cut.broker.kill9();
    cut.broker.restart();
    let mut client = connect(&cut);
    assert_eq!(assert_prefix(&mut client, pid), acked + 1);
}
