//! The partition writer with fsync before each acknowledgement (`flush.messages=1`), with
//! producers pipelining their batches: every producer's batches are answered in order, each at
//! its place, and the high watermark ends at the log end. After an fsync fails, nothing of
//! that group or any later one is acknowledged, and the high watermark stays where the last
//! good fsync left it, even once fsyncs succeed again (the pages a failed fsync covered may be
//! gone): an answer or a watermark sent before its own group's fsync would show up here.

use tally_broker::partition_handle::AppendResult;
use tally_broker::{AppendRequest, PartitionHandle, WriterMode};
use tally_log::LogConfig;
use tally_partition::{
    validate_client_batch, AppendError, EntryOrigin, Partition, PartitionConfig,
};
use tokio::sync::oneshot;

const PRODUCERS: i64 = 4;
const BATCHES: i32 = 60;
const RECORDS: usize = 3;
const KAFKA_STORAGE_ERROR: i16 = 56;

fn durable_partition(dir: &std::path::Path) -> Partition {
    let config = PartitionConfig {
        log: LogConfig {
            flush_interval_messages: 1,
            // Small segments: rolls happen, also once fsyncs fail (a failed roll must take
            // the partition offline too).
            segment_bytes: 16 * 1024,
            ..LogConfig::default()
        },
        ..PartitionConfig::default()
    };
    Partition::open(dir, config, 0).unwrap().0
}

fn request(producer_id: i64, batch_index: i32) -> AppendRequest {
    let seq = batch_index * RECORDS as i32;
    let batch = tally_testkit::batch(producer_id, 0, seq, RECORDS);
    AppendRequest {
        origin: EntryOrigin::Client,
        header: validate_client_batch(&batch, 1 << 20).unwrap(),
        batch,
        append_time_ms: 1_000,
        txn_verified: false,
    }
}

/// Queues `BATCHES` batches per producer, interleaved, without waiting for any answer (as
/// pipelining producers do), from `first` on.
async fn submit_all(
    handle: &PartitionHandle,
    first: i32,
) -> Vec<(i64, oneshot::Receiver<AppendResult>)> {
    let mut answers = Vec::new();
    for b in first..first + BATCHES {
        for pid in 1..=PRODUCERS {
            answers.push((pid, handle.submit(request(pid, b)).await.unwrap()));
        }
    }
    answers
}

#[test]
fn durable_group_commits_answer_in_order_and_acknowledge_nothing_after_a_failed_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let partition = durable_partition(dir.path());
        let handle = PartitionHandle::start("durable".into(), 0, partition, WriterMode::Thread);

        let mut last: Vec<i64> = vec![-1; PRODUCERS as usize + 1];
        let mut offsets = Vec::new();
        for (pid, answer) in submit_all(&handle, 0).await {
            let outcome = answer.await.unwrap().expect("acknowledged");
            assert!(!outcome.duplicate);
            assert!(
                outcome.base_offset > last[pid as usize],
                "producer {pid}'s batches out of order"
            );
            last[pid as usize] = outcome.base_offset;
            offsets.push(outcome.base_offset);
        }
        offsets.sort_unstable();
        let expected: Vec<i64> = (0..(PRODUCERS * i64::from(BATCHES)))
            .map(|i| i * RECORDS as i64)
            .collect();
        assert_eq!(offsets, expected, "each batch at its own place");
        let end = handle.run(|p| p.log_end_offset()).await.unwrap();
        assert_eq!(handle.reader().high_watermark(), end);
        assert_eq!(*handle.subscribe_high_watermark().borrow(), end);

        // The disk starts failing fsyncs: nothing more is acknowledged or made visible.
        handle.run(|p| p.inject_flush_failures(true)).await.unwrap();
        for (pid, answer) in submit_all(&handle, BATCHES).await {
            let result = answer.await.unwrap();
            let code = result.as_ref().map_err(AppendError::error_code);
            assert_eq!(
                code.map_err(|c| c.code()).err(),
                Some(KAFKA_STORAGE_ERROR),
                "producer {pid}: acknowledged after a failed fsync: {result:?}"
            );
        }
        assert_eq!(
            handle.reader().high_watermark(),
            end,
            "the high watermark moved past the last good fsync"
        );
        // A disk that works again does not bring the partition back: what the failed fsync
        // covered may be lost, so a restart must recover from what is on disk.
        handle
            .run(|p| p.inject_flush_failures(false))
            .await
            .unwrap();
        let late = handle.submit(request(1, 2 * BATCHES)).await.unwrap();
        assert!(late.await.unwrap().is_err(), "offline until restart");
        assert_eq!(handle.reader().high_watermark(), end);
    });
}
