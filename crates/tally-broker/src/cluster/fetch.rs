//! Fetch in cluster mode, from partition leaders only (KIP-392's fetch from followers is not
//! offered): whole batches from the replica's segment files up to the high watermark (what
//! the group has committed and applied), without Raft's own entries, with long polling on
//! the high watermarks. No transactions run in cluster mode yet, so the last stable offset is
//! the high watermark and read_committed reads the same.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tally_controller::HostedPartition;
use tally_log::LogError;
use tally_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{broker_id, check_leader_epoch, ClusterMode};
use crate::broker::Broker;
use crate::handlers::RequestContext;

const MAX_WAIT_MS: i32 = 300_000;

/// Each requested partition: the leader's replica here, or the error to answer.
type Target = Result<Arc<HostedPartition>, (ResponseError, Option<(u64, i32)>)>;

pub async fn handle(
    broker: &Broker,
    cluster: &ClusterMode,
    ctx: &RequestContext,
    request: FetchRequest,
) -> FetchResponse {
    let wait = Duration::from_millis(request.max_wait_ms.clamp(0, MAX_WAIT_MS) as u64);
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let state = cluster.node.controller().cluster();
    let targets: Arc<Vec<Vec<Target>>> = Arc::new(
        request
            .topics
            .iter()
            .map(|t| {
                t.partitions
                    .iter()
                    .map(|p| {
                        let topic = state
                            .topic(&t.topic.0)
                            .filter(|topic| {
                                usize::try_from(p.partition)
                                    .is_ok_and(|i| i < topic.partitions.len())
                            })
                            .ok_or((ResponseError::UnknownTopicOrPartition, None))?;
                        let view = cluster.view(&t.topic.0, p.partition as u32, topic);
                        let hint = view.leader.map(|l| (l, view.leader_epoch));
                        match view.hosted {
                            Some(hosted) if view.is_leader => {
                                match check_leader_epoch(p.current_leader_epoch, view.leader_epoch)
                                {
                                    Some(e) => Err((e, hint)),
                                    None => Ok(hosted),
                                }
                            }
                            _ => Err((ResponseError::NotLeaderOrFollower, hint)),
                        }
                    })
                    .collect()
            })
            .collect(),
    );
    let mut watches: Vec<watch::Receiver<i64>> = targets
        .iter()
        .flatten()
        .flatten()
        .map(|h| h.replica.state_machine.high_watermark())
        .collect();
    let request = Arc::new(request);
    let cap = broker.config.fetch_max_bytes();
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        let (t, r) = (Arc::clone(&targets), Arc::clone(&request));
        let version = ctx.api_version;
        let (response, bytes, error) = broker.off_runtime(move || read(&t, &r, cap, version)).await;
        if bytes >= min_bytes || error || Instant::now() >= deadline || broker.is_shutting_down() {
            return response;
        }
        let woken = if watches.is_empty() {
            tokio::time::sleep_until(deadline).await;
            false
        } else {
            let changed =
                futures_util::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::time::timeout_at(deadline, changed).await.is_ok()
        };
        if !woken {
            let (t, r) = (Arc::clone(&targets), Arc::clone(&request));
            return broker
                .off_runtime(move || read(&t, &r, cap, version))
                .await
                .0;
        }
    }
}

/// One pass over the partitions: the response, its record bytes, whether any had an error.
fn read(
    targets: &[Vec<Target>],
    request: &FetchRequest,
    fetch_max_bytes: usize,
    version: i16,
) -> (FetchResponse, usize, bool) {
    let mut remaining = (request.max_bytes.max(0) as usize).min(fetch_max_bytes);
    let mut total = 0usize;
    let mut any_error = false;
    let responses = request
        .topics
        .iter()
        .zip(targets)
        .map(|(topic, targets)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(targets)
                .map(|(p, target)| {
                    let mut data = PartitionData::default().with_partition_index(p.partition);
                    if request.isolation_level != 1 {
                        data.aborted_transactions = None;
                    } else {
                        data.aborted_transactions = Some(Vec::new());
                    }
                    let hosted = match target {
                        Ok(h) => h,
                        Err((e, hint)) => {
                            any_error = true;
                            data.error_code = e.code();
                            if let (Some((leader, epoch)), true) = (hint, version >= 12) {
                                data.current_leader = LeaderIdAndEpoch::default()
                                    .with_leader_id(broker_id(*leader))
                                    .with_leader_epoch(*epoch);
                            }
                            return data;
                        }
                    };
                    let reader = hosted.replica.store.log_reader();
                    let high_watermark = hosted.replica.state_machine.client_high_watermark();
                    data.high_watermark = high_watermark;
                    data.last_stable_offset = high_watermark;
                    if version >= 5 {
                        data.log_start_offset = reader.log_start_offset();
                    }
                    let limit = (p.partition_max_bytes.max(0) as usize).min(remaining);
                    match read_client_batches(reader, p.fetch_offset, limit, high_watermark, total == 0) {
                        Ok(records) => {
                            total += records.len();
                            remaining = remaining.saturating_sub(records.len());
                            data.records = Some(records);
                        }
                        Err(LogError::OffsetOutOfRange { .. }) => {
                            any_error = true;
                            data.error_code = ResponseError::OffsetOutOfRange.code();
                        }
                        Err(e) => {
                            tracing::error!(topic = %topic.topic.0, partition = p.partition, error = %e, "fetch read failed");
                            any_error = true;
                            data.error_code = ResponseError::KafkaStorageError.code();
                        }
                    }
                    data
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

/// Reads from `offset` as a Fetch does, without Raft's own entries. A read that held only
/// Raft entries (one at the end of a segment: a read stays within one segment) goes on
/// after them, so a consumer is never stuck in front of batches it cannot see.
fn read_client_batches(
    reader: &tally_log::LogReader,
    mut offset: i64,
    limit: usize,
    high_watermark: i64,
    min_one_batch: bool,
) -> Result<bytes::Bytes, LogError> {
    loop {
        let read = reader.read(offset, limit, high_watermark, min_one_batch)?;
        let next = tally_raft::next_offset(&read.records);
        let records = tally_raft::without_raft_entries(read.records);
        match next {
            Some(next) if records.is_empty() && next > offset && next < high_watermark => {
                offset = next;
            }
            _ => return Ok(records),
        }
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
