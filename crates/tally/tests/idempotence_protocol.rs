//! Kafka's idempotent-producer rules, checked on the wire against a real `tally serve`
//! process with forged batches at every Produce version we implement (3 to 11), then across
//! SIGKILL, clean restarts and a torn log tail.

use std::path::{Path, PathBuf};

use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;

/// Sends one batch and returns (error code, base offset).
fn send(
    client: &mut WireClient,
    version: i16,
    topic: &str,
    pid: i64,
    epoch: i16,
    seq: i32,
    count: usize,
) -> (i16, i64) {
    let r = client
        .produce(version, topic, 0, batch(pid, epoch, seq, count))
        .unwrap();
    (r.error_code, r.base_offset)
}

fn log_end(client: &mut WireClient, topic: &str) -> i64 {
    client.list_offset(topic, 0, -1).unwrap()
}

#[test]
fn idempotence_rules_at_every_produce_version() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let mut client = WireClient::connect(broker.addr).unwrap();
    for version in 3..=11i16 {
        let topic = format!("idem-v{version}");
        client.create_topic(&topic, 1).unwrap();
        let (pid, epoch) = client.init_producer_id().unwrap();
        assert_eq!(epoch, 0);

        // Eight batches of three records.
        let mut offsets = Vec::new();
        for i in 0..8 {
            let (code, offset) = send(&mut client, version, &topic, pid, 0, i * 3, 3);
            assert_eq!(code, 0, "v{version} batch {i}");
            offsets.push(offset);
        }
        assert_eq!(
            offsets,
            (0..8).map(|i| i * 3).collect::<Vec<i64>>(),
            "v{version}"
        );
        let end = log_end(&mut client, &topic);
        assert_eq!(end, 24);

        // A retry of each of the last five gets its original offset and appends nothing.
        for i in 3..8 {
            let (code, offset) = send(&mut client, version, &topic, pid, 0, i * 3, 3);
            assert_eq!(
                (code, offset),
                (0, offsets[i as usize]),
                "v{version} retry of batch {i}"
            );
        }
        assert_eq!(
            log_end(&mut client, &topic),
            end,
            "v{version}: retries appended"
        );

        // The sixth-oldest is beyond the window.
        assert_eq!(
            send(&mut client, version, &topic, pid, 0, 2 * 3, 3).0,
            OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        // A gap (24 expected).
        assert_eq!(
            send(&mut client, version, &topic, pid, 0, 25, 1).0,
            OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        // A partial overlap of the last batch is not a duplicate either.
        assert_eq!(
            send(&mut client, version, &topic, pid, 0, 22, 2).0,
            OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        // A higher epoch must start at sequence 0.
        assert_eq!(
            send(&mut client, version, &topic, pid, 1, 7, 1).0,
            OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        let (code, bumped_offset) = send(&mut client, version, &topic, pid, 1, 0, 2);
        assert_eq!(
            (code, bumped_offset),
            (0, 24),
            "v{version}: epoch bump at sequence 0"
        );
        // Now the old epoch is stale.
        assert_eq!(
            send(&mut client, version, &topic, pid, 0, 24, 1).0,
            INVALID_PRODUCER_EPOCH
        );
        // A producer id the broker has never seen is accepted at any sequence.
        let (code, unknown_offset) = send(&mut client, version, &topic, 7_777_777, 3, 500, 1);
        assert_eq!(
            (code, unknown_offset),
            (0, 26),
            "v{version}: unknown producer"
        );

        // The log holds each accepted batch exactly once, at contiguous offsets.
        assert_eq!(log_end(&mut client, &topic), 27);
        let batches = client.read_batches(&topic, 0).unwrap();
        let seen: Vec<(i64, i16, i32, i64)> = batches
            .iter()
            .map(|b| {
                (
                    b.producer_id,
                    b.producer_epoch,
                    b.base_sequence,
                    b.base_offset,
                )
            })
            .collect();
        let mut expected: Vec<(i64, i16, i32, i64)> =
            (0..8).map(|i| (pid, 0, i * 3, i as i64 * 3)).collect();
        expected.push((pid, 1, 0, 24));
        expected.push((7_777_777, 3, 500, 26));
        assert_eq!(seen, expected, "v{version}");
    }
}

/// Writes ten batches of four records as one producer; returns (pid, offsets).
fn write_ten(client: &mut WireClient, topic: &str) -> (i64, Vec<i64>) {
    let (pid, _) = client.init_producer_id().unwrap();
    let offsets = (0..10)
        .map(|i| {
            let (code, offset) = send(client, 9, topic, pid, 0, i * 4, 4);
            assert_eq!(code, 0);
            offset
        })
        .collect();
    (pid, offsets)
}

fn check_retries_after_restart(
    client: &mut WireClient,
    topic: &str,
    pid: i64,
    offsets: &[i64],
    how: &str,
) {
    let end = log_end(client, topic);
    assert_eq!(end, 40, "{how}: log end after restart");
    for i in 5..10 {
        let (code, offset) = send(client, 9, topic, pid, 0, i * 4, 4);
        assert_eq!(
            (code, offset),
            (0, offsets[i as usize]),
            "{how}: retry of batch {i} after restart"
        );
    }
    assert_eq!(
        log_end(client, topic),
        end,
        "{how}: a retry was appended again"
    );
    assert_eq!(
        send(client, 9, topic, pid, 0, 4 * 4, 4).0,
        OUT_OF_ORDER_SEQUENCE_NUMBER,
        "{how}"
    );
    assert_eq!(
        send(client, 9, topic, pid, 0, 40, 1),
        (0, 40),
        "{how}: next batch"
    );
}

fn restart_case(kill: bool, extra: &[&str]) {
    let how = format!(
        "{} {:?}",
        if kill { "SIGKILL" } else { "clean shutdown" },
        extra
    );
    let mut broker = BrokerProcess::start(Path::new(TALLY), extra);
    let mut client = WireClient::connect(broker.addr).unwrap();
    client.create_topic("restart", 1).unwrap();
    let (pid, offsets) = write_ten(&mut client, "restart");
    drop(client);
    if kill {
        broker.kill9();
    } else {
        assert!(broker.terminate().success(), "clean shutdown exit status");
    }
    broker.restart();
    let mut client = WireClient::connect(broker.addr).unwrap();
    check_retries_after_restart(&mut client, "restart", pid, &offsets, &how);
}

#[test]
fn retries_are_recognised_after_sigkill() {
    restart_case(true, &[]);
}

#[test]
fn retries_are_recognised_after_clean_shutdown() {
    restart_case(false, &[]);
}

/// Small segments: the ten batches span several segments, so recovery goes through a producer
/// snapshot taken at a roll plus a replay of the segments after it.
#[test]
fn retries_are_recognised_after_sigkill_across_segment_rolls() {
    restart_case(true, &["--set", "log.segment.bytes=400"]);
}

#[test]
fn retries_are_recognised_after_clean_shutdown_across_segment_rolls() {
    restart_case(false, &["--set", "log.segment.bytes=400"]);
}

fn active_segment(data_dir: &Path, topic: &str) -> PathBuf {
    let dir = data_dir.join(format!("{topic}-0"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

/// Cut the tail of the active segment and corrupt what is left of the last batch; the broker
/// must come back at the last whole batch, serve everything before it unchanged, and (as the
/// cut batch is gone) accept the producer's retry of it as new.
fn torn_tail_case(kill: bool) {
    let mut broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let mut client = WireClient::connect(broker.addr).unwrap();
    client.create_topic("torn", 1).unwrap();
    let (pid, offsets) = write_ten(&mut client, "torn");
    let before = client.fetch_once("torn", 0, 0, 1 << 20).unwrap().2;
    drop(client);
    if kill {
        broker.kill9();
    } else {
        assert!(broker.terminate().success());
    }
    let segment = active_segment(&broker.data_dir, "torn");
    let mut bytes = std::fs::read(&segment).unwrap();
    assert_eq!(bytes.len(), before.len());
    bytes.truncate(bytes.len() - 9);
    let n = bytes.len();
    bytes[n - 5] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();

    broker.restart();
    let mut client = WireClient::connect(broker.addr).unwrap();
    assert_eq!(
        log_end(&mut client, "torn"),
        36,
        "recovered to the last whole batch"
    );
    let after = client.fetch_once("torn", 0, 0, 1 << 20).unwrap().2;
    let last_batch = before.len() - after.len();
    assert_eq!(
        &after[..],
        &before[..before.len() - last_batch],
        "everything before the cut is served unchanged"
    );
    // The lost batch was never durable in this log: its retry is new, the one before it is a
    // duplicate.
    assert_eq!(send(&mut client, 9, "torn", pid, 0, 32, 4), (0, offsets[8]));
    assert_eq!(send(&mut client, 9, "torn", pid, 0, 36, 4), (0, 36));
    assert_eq!(log_end(&mut client, "torn"), 40);
    assert!(
        broker.logs().contains("torn or corrupt"),
        "recovery is logged"
    );
}

#[test]
fn torn_tail_after_sigkill() {
    torn_tail_case(true);
}

#[test]
fn torn_tail_after_clean_shutdown() {
    torn_tail_case(false);
}
