//! A partition shared between connections: its writer and its read side.
//!
//! The writer owns the `Partition` and runs on a dedicated thread (or, under the simulation,
//! a task of the runtime it is given), fed by a bounded queue: nothing else ever touches the
//! partition's state, so no lock is held across disk I/O and a slow disk stalls only the
//! partition it belongs to. Each turn the writer drains what is queued, decides and applies
//! each append in queue order, then calls the flush policy once for all of them (group commit:
//! with `flush.messages=1`, one fsync per drained set), publishes the high watermark, and only
//! then answers. Readers (Fetch, ListOffsets) use the `PartitionReader` and never wait for it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tally_partition::{
    AppendError, AppendOutcome, Decision, Entry, EntryOrigin, Partition, PartitionReader,
};
use tally_protocol::{encode_marker, parse_marker, BatchHeader, EndTxnMarker};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::PartitionMetrics;

/// Appends and jobs queued per partition before producers wait (back-pressure).
const QUEUE_CAPACITY: usize = 1024;
/// Most commands the writer takes in one turn (one group commit).
const MAX_DRAIN: usize = 512;
/// How often a writer re-reads its log's size and segment count for `/metrics`.
const STORAGE_GAUGES_EVERY: Duration = Duration::from_secs(1);

pub type AppendResult = Result<AppendOutcome, AppendError>;
type Job = Box<dyn FnOnce(&mut Partition) + Send>;

/// Where the writer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriterMode {
    /// A dedicated OS thread per partition (the broker).
    #[default]
    Thread,
    /// A task on the current tokio runtime, so a deterministic simulation controls it.
    Task,
}

/// One batch for the writer: checked (clients), trusted (the broker's own records) or a
/// transaction marker (decided by the writer against the producer table).
pub struct AppendRequest {
    pub origin: EntryOrigin,
    pub header: BatchHeader,
    pub batch: Bytes,
    pub append_time_ms: i64,
    /// A client's transactional batch whose partition the transaction coordinator has in the
    /// producer's transaction (KIP-890 part 1).
    pub txn_verified: bool,
}

impl AppendRequest {
    /// A transaction marker for this partition, stamped with the broker's time.
    pub fn marker(marker: &EndTxnMarker, now_ms: i64) -> AppendRequest {
        let batch = encode_marker(marker, now_ms);
        let header = BatchHeader::parse(&batch).expect("an encoded marker parses");
        AppendRequest {
            origin: EntryOrigin::Coordinator,
            header,
            batch: Bytes::from(batch),
            append_time_ms: now_ms,
            txn_verified: false,
        }
    }
}

enum Command {
    Append(AppendRequest, oneshot::Sender<AppendResult>),
    Run(Job),
}

/// The writer has stopped (the topic was deleted or the broker is shutting down).
#[derive(Debug, Clone, Copy)]
pub struct WriterStopped;

impl From<WriterStopped> for AppendError {
    fn from(_: WriterStopped) -> AppendError {
        AppendError::Offline("the partition's writer has stopped".into())
    }
}

pub struct PartitionHandle {
    pub topic: String,
    pub index: i32,
    queue: mpsc::Sender<Command>,
    reader: Arc<PartitionReader>,
    high_watermark: watch::Receiver<i64>,
    /// `max.message.bytes`, for the check made before a batch is queued.
    max_message_bytes: usize,
    metrics: Arc<PartitionMetrics>,
}

impl PartitionHandle {
    /// Starts the partition's writer and returns the handle to it.
    pub fn start(topic: String, index: i32, partition: Partition, mode: WriterMode) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let reader = Arc::clone(partition.reader());
        let (hw_tx, high_watermark) = watch::channel(reader.high_watermark());
        let max_message_bytes = partition.config().max_message_bytes;
        let metrics = Arc::new(PartitionMetrics::default());
        metrics.observe(&partition, true);
        let writer = Writer {
            partition,
            rx,
            high_watermark: hw_tx,
            metrics: Arc::clone(&metrics),
            storage_observed: Instant::now(),
        };
        match mode {
            WriterMode::Thread => {
                std::thread::Builder::new()
                    .name(format!("writer-{topic}-{index}"))
                    .spawn(move || writer.run_blocking())
                    .expect("spawn a partition writer thread");
            }
            WriterMode::Task => {
                tokio::spawn(writer.run_task());
            }
        }
        PartitionHandle {
            topic,
            index,
            queue,
            reader,
            high_watermark,
            max_message_bytes,
            metrics,
        }
    }

    /// The writer's counters and gauges, for `/metrics`.
    pub fn metrics(&self) -> &Arc<PartitionMetrics> {
        &self.metrics
    }

    pub fn reader(&self) -> &Arc<PartitionReader> {
        &self.reader
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    /// Wakes whenever the high watermark moves: long-polling fetches wait on their partitions.
    pub fn subscribe_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.clone()
    }

    /// Queues an append (waiting for room) and returns where its answer will come. Batches
    /// queued by one caller reach the partition in the order they were queued.
    pub async fn submit(
        &self,
        request: AppendRequest,
    ) -> Result<oneshot::Receiver<AppendResult>, WriterStopped> {
        let (reply, rx) = oneshot::channel();
        self.submit_with_reply(request, reply).await?;
        Ok(rx)
    }

    /// [`PartitionHandle::submit`] with the answer sent to `reply`.
    pub async fn submit_with_reply(
        &self,
        request: AppendRequest,
        reply: oneshot::Sender<AppendResult>,
    ) -> Result<(), WriterStopped> {
        self.queue
            .send(Command::Append(request, reply))
            .await
            .map_err(|_| WriterStopped)
    }

    /// Runs `job` on the writer, after everything queued before it was applied and committed.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Partition) -> R + Send + 'static,
    ) -> Result<R, WriterStopped> {
        let (job, rx) = with_answer(job);
        self.queue
            .send(Command::Run(job))
            .await
            .map_err(|_| WriterStopped)?;
        rx.await.map_err(|_| WriterStopped)
    }

    /// Test hook: the writer blocks until the returned sender is dropped or sent to, so a test
    /// can show that a stalled partition stalls only itself.
    #[doc(hidden)]
    pub async fn hold_writer(&self) -> std::sync::mpsc::Sender<()> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let job: Job = Box::new(move |_| {
            let _ = rx.recv();
        });
        let _ = self.queue.send(Command::Run(job)).await;
        tx
    }
}

/// A job for the writer, and where its result will come.
fn with_answer<R: Send + 'static>(
    job: impl FnOnce(&mut Partition) -> R + Send + 'static,
) -> (Job, oneshot::Receiver<R>) {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |p| {
        let _ = tx.send(job(p));
    });
    (job, rx)
}

struct Writer {
    partition: Partition,
    rx: mpsc::Receiver<Command>,
    high_watermark: watch::Sender<i64>,
    metrics: Arc<PartitionMetrics>,
    storage_observed: Instant,
}

impl Writer {
    fn run_blocking(mut self) {
        while let Some(first) = self.rx.blocking_recv() {
            self.turn(first);
        }
    }

    async fn run_task(mut self) {
        while let Some(first) = self.rx.recv().await {
            self.turn(first);
        }
    }

    /// One turn: `first` and whatever else is queued, then one commit.
    fn turn(&mut self, first: Command) {
        let mut answers: Vec<(oneshot::Sender<AppendResult>, AppendResult)> = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(command) = next.take() {
            match command {
                Command::Append(request, reply) => {
                    let known = !request.header.has_producer_id()
                        || self
                            .partition
                            .producers()
                            .get(request.header.producer_id)
                            .is_some();
                    let result = self.apply(&request);
                    self.metrics.record(&request, known, &result);
                    answers.push((reply, result));
                }
                Command::Run(job) => {
                    // A job sees everything queued before it committed and answered.
                    self.commit(&mut answers);
                    job(&mut self.partition);
                    self.publish();
                }
            }
            taken += 1;
            if taken < MAX_DRAIN {
                next = self.rx.try_recv().ok();
            }
        }
        self.commit(&mut answers);
        self.observe();
    }

    /// Updates the gauges of `/metrics`; the log's size and segment count at most once a
    /// second (they cost a walk over the segments).
    fn observe(&mut self) {
        let storage = self.storage_observed.elapsed() >= STORAGE_GAUGES_EVERY;
        if storage {
            self.storage_observed = Instant::now();
        }
        self.metrics.observe(&self.partition, storage);
    }

    /// Decide (client batches and markers) then apply.
    fn apply(&mut self, request: &AppendRequest) -> AppendResult {
        match request.origin {
            EntryOrigin::Client => {
                let decision = self
                    .partition
                    .decide(&request.header, request.txn_verified)?;
                if let Decision::Duplicate(outcome) = decision {
                    return Ok(outcome);
                }
                // A new batch of a topic with idempotency keys loses the records whose key is
                // stored, decided here, just before apply, after every batch queued before it.
                let filtered = self.partition.filter_keys(
                    &request.header,
                    &request.batch,
                    request.append_time_ms,
                )?;
                if let Some(filtered) = &filtered {
                    let (header, bytes) = filtered.batch(&request.header, &request.batch);
                    return self.partition.apply(Entry {
                        origin: request.origin,
                        header,
                        bytes,
                        append_time_ms: request.append_time_ms,
                        keys: Some(filtered),
                    });
                }
            }
            EntryOrigin::Coordinator => {
                let marker = parse_marker(&request.header, &request.batch)
                    .map_err(|e| AppendError::InvalidRecord(e.to_string()))?;
                self.partition.decide_marker(&marker)?;
            }
            EntryOrigin::Broker => {}
        }
        self.partition.apply(Entry {
            origin: request.origin,
            header: &request.header,
            bytes: &request.batch,
            append_time_ms: request.append_time_ms,
            keys: None,
        })
    }

    /// The group commit: the flush policy once for everything applied this turn, then the
    /// high watermark, then the answers. Nothing is acknowledged before its flush.
    fn commit(&mut self, answers: &mut Vec<(oneshot::Sender<AppendResult>, AppendResult)>) {
        if answers.is_empty() {
            return;
        }
        tally_log::failpoint::hit("writer.group_commit.before_flush");
        if let Err(e) = self.partition.flush_if_due() {
            let reason = e.to_string();
            for (_, result) in answers.iter_mut() {
                if result.is_ok() {
                    *result = Err(AppendError::Offline(reason.clone()));
                }
            }
        }
        self.publish();
        for (reply, result) in answers.drain(..) {
            let _ = reply.send(result);
        }
    }

    fn publish(&self) {
        let hw = self.partition.reader().high_watermark();
        self.high_watermark.send_if_modified(|v| {
            let changed = *v != hw;
            *v = hw;
            changed
        });
    }
}
