//! ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first offset whose
//! record timestamp is at or after a given time.

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use tally_partition::{PartitionReader, MAX_DECOMPRESSED_BATCH_BYTES};
use tally_protocol::{walk_records, BatchHeader, ResponseError};

use super::{check_leader_epoch, RequestContext, LEADER_EPOCH};
use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let version = ctx.api_version;
    let read_committed = version >= 2 && request.isolation_level == 1;
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let Some(handle) = broker.topics.partition(&t.name.0, p.partition_index) else {
                partitions
                    .push(answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            if version >= 4 {
                if let Some(e) = check_leader_epoch(p.current_leader_epoch) {
                    partitions.push(answer.with_error_code(e.code()));
                    continue;
                }
            }
            let partition = Arc::clone(handle.reader());
            let found = match p.timestamp {
                EARLIEST => Ok(Some((-1, partition.log_start_offset()))),
                LATEST => Ok(Some((
                    -1,
                    if read_committed {
                        partition.last_stable_offset()
                    } else {
                        partition.high_watermark()
                    },
                ))),
                // Timestamp look-ups read the log: off the async workers.
                MAX_TIMESTAMP if version >= 7 => {
                    broker
                        .off_runtime(move || by_max_timestamp(&partition))
                        .await
                }
                ts if ts >= 0 => {
                    broker
                        .off_runtime(move || by_timestamp(&partition, ts))
                        .await
                }
                _ => {
                    partitions.push(answer.with_error_code(ResponseError::InvalidRequest.code()));
                    continue;
                }
            };
            partitions.push(match found {
                Ok(Some((timestamp, offset))) => {
                    let mut a = answer.with_timestamp(timestamp).with_offset(offset);
                    if version >= 4 {
                        a.leader_epoch = LEADER_EPOCH;
                    }
                    a
                }
                Ok(None) => answer,
                Err(e) => answer.with_error_code(e.code()),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset) of the first record at or after `target`.
fn by_timestamp(
    partition: &PartitionReader,
    target: i64,
) -> Result<Option<(i64, i64)>, ResponseError> {
    let found = partition
        .read_batch_by_time(target)
        .map_err(|_| ResponseError::KafkaStorageError)?;
    Ok(found.map(|(header, bytes)| first_record_at_or_after(&header, bytes, target)))
}

fn by_max_timestamp(partition: &PartitionReader) -> Result<Option<(i64, i64)>, ResponseError> {
    let found = partition
        .read_batch_with_max_timestamp()
        .map_err(|_| ResponseError::KafkaStorageError)?;
    Ok(found.map(|(header, bytes)| first_record_at_or_after(&header, bytes, header.max_timestamp)))
}

/// Walks the batch's records (decompressing as a bounded stream) to find the exact record.
/// With LogAppendTime every record carries the batch's time, so the first offset is the answer.
pub(crate) fn first_record_at_or_after(
    header: &BatchHeader,
    bytes: Bytes,
    target: i64,
) -> (i64, i64) {
    if header.is_log_append_time() {
        return (header.max_timestamp, header.base_offset);
    }
    let mut found = None;
    let walked = walk_records(header, &bytes, MAX_DECOMPRESSED_BATCH_BYTES, |r| {
        let timestamp = header.base_timestamp + r.timestamp_delta;
        if timestamp >= target {
            found = Some((timestamp, header.base_offset + i64::from(r.offset_delta)));
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    match (found, walked) {
        (Some(hit), _) => hit,
        // Stored batches were validated on the way in; if one still cannot be walked, its
        // header is the best answer there is.
        _ => (header.max_timestamp, header.base_offset),
    }
}
