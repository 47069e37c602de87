//! Fetch with long polling: answer at once when there is an error or at least `min_bytes`,
//! otherwise wait for appends until `max_wait_ms`. Whole batches only, read straight from the
//! segment files. No fetch sessions: session id 0 means full fetches, which every client
//! accepts.

use std::time::Duration;

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tally_log::LogError;
use tally_protocol::ResponseError;
use tokio::time::Instant;

use super::{check_leader_epoch, RequestContext};
use crate::broker::Broker;

/// Upper bound on how long one fetch may wait, whatever the client asks.
const MAX_WAIT_MS: i32 = 300_000;

pub async fn handle(broker: &Broker, ctx: &RequestContext, request: FetchRequest) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS) as u64);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let mut appends = broker.subscribe_appends();
    loop {
        appends.borrow_and_update();
        let (response, bytes, error) = read_once(broker, ctx.api_version, &request);
        if bytes >= min_bytes || error || Instant::now() >= deadline || broker.is_shutting_down() {
            return response;
        }
        if tokio::time::timeout_at(deadline, appends.changed())
            .await
            .is_err()
        {
            // Deadline reached: answer with whatever there is now.
            return read_once(broker, ctx.api_version, &request).0;
        }
    }
}

/// One pass over the requested partitions: the response, its record bytes, whether any
/// partition had an error.
fn read_once(
    broker: &Broker,
    version: i16,
    request: &FetchRequest,
) -> (FetchResponse, usize, bool) {
    let read_committed = request.isolation_level == 1;
    let mut remaining = if request.max_bytes <= 0 {
        0
    } else {
        request.max_bytes as usize
    };
    let mut total = 0usize;
    let mut any_error = false;
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let mut data = PartitionData::default().with_partition_index(p.partition);
                    if !read_committed {
                        data.aborted_transactions = None;
                    }
                    let mut fail = |mut data: PartitionData, e: ResponseError| {
                        any_error = true;
                        data.error_code = e.code();
                        data
                    };
                    let Some(handle) = broker.topics.partition(&topic.topic.0, p.partition) else {
                        return fail(data, ResponseError::UnknownTopicOrPartition);
                    };
                    if let Some(e) = check_leader_epoch(p.current_leader_epoch) {
                        return fail(data, e);
                    }
                    let partition = handle.lock();
                    data.high_watermark = partition.high_watermark();
                    data.last_stable_offset = partition.last_stable_offset();
                    if version >= 5 {
                        data.log_start_offset = partition.log_start_offset();
                    }
                    let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                    // The first partition with data returns at least one whole batch, even
                    // past the limits, so a large batch can never block a consumer.
                    match partition.read(p.fetch_offset, limit, total == 0) {
                        Ok(read) => {
                            let n = read.records.len();
                            total += n;
                            remaining = remaining.saturating_sub(n);
                            data.records = Some(read.records);
                            data
                        }
                        Err(LogError::OffsetOutOfRange { .. }) => fail(data, ResponseError::OffsetOutOfRange),
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
    (
        FetchResponse::default().with_responses(responses),
        total,
        any_error,
    )
}
