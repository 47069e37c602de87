//! AddPartitionsToTxn (v0-v3, the client's form): add partitions to the producer's open
//! transaction before its first batch to each. If any partition is unknown, that partition
//! gets UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as in Kafka.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let topics = &request.v3_and_below_topics;
    let wanted: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    let unknown = |t: &str, p: i32| {
        broker.topics.partition(t, p).is_none() || crate::topic_registry::is_internal(t)
    };
    let any_unknown = wanted.iter().any(|(t, p)| unknown(t, *p));
    let txn_error = if any_unknown {
        None
    } else {
        broker
            .txns
            .add_partitions(
                request.v3_and_below_transactional_id.0.to_string(),
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                wanted,
            )
            .await
            .err()
            .map(|e| e.code(ctx.api_version >= 2))
    };
    let error_for = |t: &str, p: i32| -> Option<ResponseError> {
        if !any_unknown {
            txn_error
        } else if unknown(t, p) {
            Some(ResponseError::UnknownTopicOrPartition)
        } else {
            Some(ResponseError::OperationNotAttempted)
        }
    };
    let results = topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(super::code(error_for(&t.name.0, *p)))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
