//! ListOffsets in cluster mode, answered by the partition's leader: the log start, the high
//! watermark (latest, and the last stable offset: no transactions yet in cluster mode), or
//! the first record at or after a timestamp below the high watermark.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::Instant as _;
use tally_controller::HostedPartition;
use tally_log::LogReader;
use tally_protocol::ResponseError;

use super::{check_leader_epoch, ClusterMode};
use crate::broker::Broker;
use crate::handlers::list_offsets::first_record_at_or_after;
use crate::handlers::RequestContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterMode,
    ctx: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let version = ctx.api_version;
    let state = cluster.node.controller().cluster();
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let answer = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let topic = state.topic(&t.name.0).filter(|topic| {
                usize::try_from(p.partition_index).is_ok_and(|i| i < topic.partitions.len())
            });
            let Some(topic) = topic else {
                partitions
                    .push(answer.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let view = cluster.view(&t.name.0, p.partition_index as u32, topic);
            let hosted = match (view.hosted, view.is_leader) {
                (Some(h), true) => h,
                _ => {
                    partitions
                        .push(answer.with_error_code(ResponseError::NotLeaderOrFollower.code()));
                    continue;
                }
            };
            if version >= 4 {
                if let Some(e) = check_leader_epoch(p.current_leader_epoch, view.leader_epoch) {
                    partitions.push(answer.with_error_code(e.code()));
                    continue;
                }
            }
            // KIP-207: a new leader's high watermark is known once it has applied an entry
            // of its own term; before that it may be behind what the old leader answered.
            // An idle partition's lease has lapsed (its group sends no heartbeats of its own):
            // renew it first, as a produce would.
            let renewed = hosted.leader.renew_lease().await.is_ok();
            if !applied_own_term(&hosted) || !renewed || !lease_holds(&hosted) {
                partitions.push(answer.with_error_code(ResponseError::OffsetNotAvailable.code()));
                continue;
            }
            let reader = Arc::clone(hosted.replica.store.log_reader());
            let high_watermark = hosted.replica.state_machine.client_high_watermark();
            let found = match p.timestamp {
                EARLIEST => Ok(Some((-1, reader.log_start_offset()))),
                LATEST => Ok(Some((-1, high_watermark))),
                MAX_TIMESTAMP if version >= 7 => {
                    broker
                        .off_runtime(move || by_time(&reader, None, high_watermark))
                        .await
                }
                ts if ts >= 0 => {
                    broker
                        .off_runtime(move || by_time(&reader, Some(ts), high_watermark))
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
                        a.leader_epoch = view.leader_epoch;
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

/// Whether this leader heard from a quorum within the shortest election timeout, so no other
/// leader can have been elected since (openraft stamps an acknowledgement with the time its
/// request was sent). A leader cut off from the others would otherwise answer with a high
/// watermark older than one its successor has already given.
fn lease_holds(hosted: &HostedPartition) -> bool {
    let metrics = hosted.replica.raft.metrics();
    let m = metrics.borrow_watched();
    if m.membership_config.membership().voter_ids().count() <= 1 {
        return true;
    }
    let lease = Duration::from_millis(hosted.replica.raft.config().election_timeout_min);
    m.last_quorum_acked
        .as_ref()
        .is_some_and(|acked| acked.elapsed() < lease)
}

/// Whether this leader has applied an entry of its current term (its blank entry at least)
/// and everything its log held when it opened, so everything committed before its election
/// or its restart is applied.
fn applied_own_term(hosted: &HostedPartition) -> bool {
    let metrics = hosted.replica.raft.metrics();
    let m = metrics.borrow_watched();
    // A leader restarted in its own term (openraft resumes it from a committed vote for
    // itself) has applied only what it re-applied so far, which may be less than it applied
    // before: it must have applied everything its log held at the restart.
    let applied = m.last_applied.map(|l| l.index);
    m.last_applied
        .is_some_and(|l| l.leader_id.term == m.current_term)
        && applied >= hosted.replica.last_index_at_open
}

/// The first record at or after `target` (the largest timestamp when `None`), if it is
/// committed.
fn by_time(
    reader: &LogReader,
    target: Option<i64>,
    high_watermark: i64,
) -> Result<Option<(i64, i64)>, ResponseError> {
    let found = match target {
        Some(ts) => reader.read_batch_by_time(ts),
        None => reader.read_batch_with_max_timestamp(),
    }
    .map_err(|_| ResponseError::KafkaStorageError)?;
    Ok(found
        .filter(|(header, _)| header.base_offset < high_watermark)
        .map(|(header, bytes)| {
            let target = target.unwrap_or(header.max_timestamp);
            first_record_at_or_after(&header, bytes, target)
        }))
}

/// OffsetForLeaderEpoch in cluster mode, answered by the leader from its log: for the
/// requested epoch (a Raft term), the largest epoch at most it that has entries, and the offset
/// where the next epoch starts (the log end for the current one). Consumers use it to detect
/// that the log they read was cut after a leader change (KIP-320).
pub fn offset_for_leader_epoch(
    cluster: &ClusterMode,
    request: kafka_protocol::messages::OffsetForLeaderEpochRequest,
) -> kafka_protocol::messages::OffsetForLeaderEpochResponse {
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    let state = cluster.node.controller().cluster();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    let topic = state.topic(&t.topic).filter(|topic| {
                        usize::try_from(p.partition).is_ok_and(|i| i < topic.partitions.len())
                    });
                    let Some(topic) = topic else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let view = cluster.view(&t.topic, p.partition as u32, topic);
                    let hosted = match (view.hosted, view.is_leader) {
                        (Some(h), true) => h,
                        _ => {
                            return answer
                                .with_error_code(ResponseError::NotLeaderOrFollower.code())
                        }
                    };
                    if let Some(e) = check_leader_epoch(p.current_leader_epoch, view.leader_epoch) {
                        return answer.with_error_code(e.code());
                    }
                    let found = u64::try_from(p.leader_epoch)
                        .ok()
                        .and_then(|epoch| hosted.replica.store.end_offset_for_term(epoch));
                    match found {
                        Some((epoch, end)) => answer
                            .with_leader_epoch(i32::try_from(epoch).unwrap_or(i32::MAX))
                            .with_end_offset(end),
                        None => answer.with_leader_epoch(-1).with_end_offset(-1),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    kafka_protocol::messages::OffsetForLeaderEpochResponse::default().with_topics(topics)
}
