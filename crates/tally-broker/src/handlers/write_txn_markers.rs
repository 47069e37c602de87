//! WriteTxnMarkers (API 27): end a producer's transaction on the named partitions with a
//! COMMIT or ABORT marker. In Kafka the transaction coordinator sends it to each partition's
//! leader; Tally's coordinator will write markers through the same path, and the API is served
//! on the wire too (as Kafka's brokers do), which is also how tests place markers.
//!
//! Each marker is queued on its partition's writer like a produced batch, decided there
//! against the producer table (a stale producer epoch gets INVALID_PRODUCER_EPOCH, a stale
//! coordinator epoch TRANSACTION_COORDINATOR_FENCED) and answered after the group commit.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use tally_partition::AppendError;
use tally_protocol::{EndTxnMarker, ResponseError, TxnResult};
use tokio::sync::oneshot;

use super::RequestContext;
use crate::broker::Broker;
use crate::group::store::OFFSETS_TOPIC;
use crate::partition_handle::{AppendRequest, AppendResult};

/// A partition's answer: known now, or coming from its writer.
enum Pending {
    Done(Option<ResponseError>),
    Waiting(oneshot::Receiver<AppendResult>),
}

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let now_ms = broker.clock.now_ms();
    // Queue every marker first, then wait: the writers of different partitions work at once.
    let mut queued = Vec::with_capacity(request.markers.len());
    for m in request.markers {
        let marker = EndTxnMarker {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            coordinator_epoch: m.coordinator_epoch,
            result: TxnResult::from_committed(m.transaction_result),
        };
        let mut topics = Vec::with_capacity(m.topics.len());
        for t in m.topics {
            let mut partitions = Vec::with_capacity(t.partition_indexes.len());
            for index in t.partition_indexes {
                partitions.push((index, queue(broker, &t.name, index, &marker, now_ms).await));
            }
            topics.push((t.name, partitions));
        }
        queued.push((m.producer_id, m.transaction_result, topics));
    }
    let mut markers = Vec::with_capacity(queued.len());
    for (producer_id, committed, topics) in queued {
        let mut results = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut answers = Vec::with_capacity(partitions.len());
            for (index, pending) in partitions {
                let error = match pending {
                    Pending::Done(e) => e,
                    Pending::Waiting(rx) => match rx.await {
                        Ok(Ok(_)) if name.0.as_str() == OFFSETS_TOPIC => {
                            broker.groups.complete_txn(producer_id.0, committed);
                            None
                        }
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) => Some(e.error_code()),
                        Err(_) => Some(ResponseError::NotLeaderOrFollower),
                    },
                };
                answers.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(super::code(error)),
                );
            }
            results.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(name)
                    .with_partitions(answers),
            );
        }
        markers.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(producer_id)
                .with_topics(results),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(markers)
}

async fn queue(
    broker: &Broker,
    topic: &str,
    index: i32,
    marker: &EndTxnMarker,
    now_ms: i64,
) -> Pending {
    let Some(handle) = broker.topics.partition(topic, index) else {
        return Pending::Done(Some(ResponseError::UnknownTopicOrPartition));
    };
    match handle.submit(AppendRequest::marker(marker, now_ms)).await {
        Ok(rx) => Pending::Waiting(rx),
        Err(stopped) => Pending::Done(Some(AppendError::from(stopped).error_code())),
    }
}
