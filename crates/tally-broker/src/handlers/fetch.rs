//! Fetch with long polling: answer at once when there is an error or at least `min_bytes`,
//! otherwise wait for appends until `max_wait_ms`. Whole batches only, read straight from the
//! segment files. No fetch sessions: session id 0 means full fetches, which every client
//! accepts. With `isolation_level=1` (read_committed) reads stop at the last stable offset and
//! the answer lists the aborted transactions in range.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tally_log::{LogError, ReadMode};
use tally_partition::PartitionReader;
use tally_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{check_leader_epoch, RequestContext};
use crate::broker::Broker;
use crate::partition_handle::PartitionHandle;

/// Upper bound on how long one fetch may wait, whatever the client asks.
const MAX_WAIT_MS: i32 = 300_000;

/// The partitions a fetch names, resolved once: `None` where the topic or partition is unknown.
type Targets = Vec<Vec<Option<Arc<PartitionHandle>>>>;

pub async fn handle(broker: &Broker, ctx: &RequestContext, request: FetchRequest) -> FetchResponse {
    let (response, targets) = fetch(broker, ctx, request).await;
    count_out(&targets, &response);
    response
}

/// Bytes and messages out, per partition, of the answer actually sent.
fn count_out(targets: &Targets, response: &FetchResponse) {
    for (topic, handles) in response.responses.iter().zip(targets.iter()) {
        for (p, handle) in topic.partitions.iter().zip(handles.iter()) {
            if let (Some(handle), Some(records)) = (handle, &p.records) {
                if !records.is_empty() {
                    handle.metrics().record_fetched(records);
                }
            }
        }
    }
}

async fn fetch(
    broker: &Broker,
    ctx: &RequestContext,
    request: FetchRequest,
) -> (FetchResponse, Arc<Targets>) {
    let wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS) as u64);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let targets: Arc<Targets> = Arc::new(
        request
            .topics
            .iter()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|p| broker.topics.partition(&t.topic.0, p.partition))
                    .collect()
            })
            .collect(),
    );
    // Woken by the high watermarks of the partitions asked for, and by shutdown.
    let mut watches: Vec<watch::Receiver<i64>> = targets
        .iter()
        .flatten()
        .flatten()
        .map(|h| h.subscribe_high_watermark())
        .collect();
    let mut shutdown = broker.subscribe_appends();
    let request = Arc::new(request);
    let version = ctx.api_version;
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        shutdown.borrow_and_update();
        let (response, bytes, error) = read(broker, &targets, version, &request).await;
        if bytes >= min_bytes || error || Instant::now() >= deadline || broker.is_shutting_down() {
            return (response, targets);
        }
        if tokio::time::timeout_at(deadline, any_changed(&mut watches, &mut shutdown))
            .await
            .is_err()
        {
            // Deadline reached: answer with whatever there is now.
            let response = read(broker, &targets, version, &request).await.0;
            return (response, targets);
        }
    }
}

/// Reads on the worker when everything needed is in the page cache (the common case: a
/// consumer reading what was just written), and off the async workers when any of it is not.
async fn read(
    broker: &Broker,
    targets: &Arc<Targets>,
    version: i16,
    request: &Arc<FetchRequest>,
) -> (FetchResponse, usize, bool) {
    let cap = broker.config.fetch_max_bytes();
    if let Some(done) = read_once(targets, version, request, cap, ReadMode::NoWait) {
        return done;
    }
    let (targets, request) = (Arc::clone(targets), Arc::clone(request));
    broker
        .off_runtime(move || {
            read_once(&targets, version, &request, cap, ReadMode::Block)
                .expect("a blocking read never reports WouldBlock")
        })
        .await
}

type Changed<'a> = Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>;

/// Resolves when any of the watches changes (or its partition's writer stops).
async fn any_changed(watches: &mut [watch::Receiver<i64>], shutdown: &mut watch::Receiver<u64>) {
    let mut waits: Vec<Changed<'_>> = watches
        .iter_mut()
        .map(|w| Box::pin(w.changed()) as Changed<'_>)
        .collect();
    let mut stop = Box::pin(shutdown.changed());
    poll_fn(|cx| {
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        for w in &mut waits {
            if w.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// One pass over the requested partitions, on their readers (never their writers): the
/// response, its record bytes, whether any partition had an error. `None`: with
/// `ReadMode::NoWait`, something needed was not in the page cache.
fn read_once(
    targets: &Targets,
    version: i16,
    request: &FetchRequest,
    fetch_max_bytes: usize,
    mode: ReadMode,
) -> Option<(FetchResponse, usize, bool)> {
    let read_committed = request.isolation_level == 1;
    let mut remaining = if request.max_bytes <= 0 {
        0
    } else {
        (request.max_bytes as usize).min(fetch_max_bytes)
    };
    let mut total = 0usize;
    let mut any_error = false;
    let mut would_block = false;
    let responses = request
        .topics
        .iter()
        .zip(targets.iter())
        .map(|(topic, handles)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(handles.iter())
                .map(|(p, handle)| {
                    let mut data = PartitionData::default().with_partition_index(p.partition);
                    if !read_committed {
                        data.aborted_transactions = None;
                    }
                    let mut fail = |mut data: PartitionData, e: ResponseError| {
                        any_error = true;
                        data.error_code = e.code();
                        data
                    };
                    let Some(handle) = handle else {
                        return fail(data, ResponseError::UnknownTopicOrPartition);
                    };
                    if let Some(e) = check_leader_epoch(p.current_leader_epoch) {
                        return fail(data, e);
                    }
                    let partition = handle.reader();
                    data.high_watermark = partition.high_watermark();
                    // Read after the high watermark, which it never passes when published
                    // together; a later LSO may have passed the earlier high watermark.
                    data.last_stable_offset =
                        partition.last_stable_offset().min(data.high_watermark);
                    if version >= 5 {
                        data.log_start_offset = partition.log_start_offset();
                    }
                    // read_committed: nothing at or past the LSO, and the aborted transactions
                    // in range, so the consumer can drop their records.
                    let bound = if read_committed {
                        data.last_stable_offset
                    } else {
                        data.high_watermark
                    };
                    let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                    // The first partition with data returns at least one whole batch, even
                    // past the limits, so a large batch can never block a consumer.
                    match partition.read_to(p.fetch_offset, limit, bound, total == 0, mode) {
                        Ok(read) => {
                            if read_committed {
                                data.aborted_transactions =
                                    Some(aborted_in(partition, p.fetch_offset, bound));
                            }
                            let n = read.records.len();
                            total += n;
                            remaining = remaining.saturating_sub(n);
                            data.records = Some(read.records);
                            data
                        }
                        Err(LogError::OffsetOutOfRange { .. }) => fail(data, ResponseError::OffsetOutOfRange),
                        Err(LogError::WouldBlock) => {
                            would_block = true;
                            data
                        }
                        Err(e) => {
                            tracing::error!(topic = %topic.topic.0, partition = p.partition, error = %e, "fetch read failed");
                            fail(data, ResponseError::KafkaStorageError)
                        }
                    }
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    if would_block {
        return None;
    }
    Some((
        FetchResponse::default().with_responses(responses),
        total,
        any_error,
    ))
}

/// The aborted transactions a read_committed fetch from `fetch_offset` up to `bound` needs.
fn aborted_in(
    partition: &PartitionReader,
    fetch_offset: i64,
    bound: i64,
) -> Vec<AbortedTransaction> {
    partition
        .aborted_txns(fetch_offset, bound)
        .into_iter()
        .map(|a| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(a.producer_id))
                .with_first_offset(a.first_offset)
        })
        .collect()
}
