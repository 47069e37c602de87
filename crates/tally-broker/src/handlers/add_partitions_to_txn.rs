//! AddPartitionsToTxn: add partitions to a producer's open transaction before its first batch
//! to each. v0-v3 is the client's form (one transaction); v4+ is the batched form brokers send
//! to the coordinator, where `verify_only` asks whether the partitions are already in the
//! transaction (KIP-890 part 1) without adding them. If any partition is unknown, that
//! partition gets UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as in
//! Kafka.

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TransactionalId,
};
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;

/// One transaction's part of the request.
struct Ask<'a> {
    id: &'a TransactionalId,
    producer_id: ProducerId,
    producer_epoch: i16,
    verify_only: bool,
    topics: &'a [AddPartitionsToTxnTopic],
}

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if ctx.api_version < 4 {
        let ask = Ask {
            id: &request.v3_and_below_transactional_id,
            producer_id: request.v3_and_below_producer_id,
            producer_epoch: request.v3_and_below_producer_epoch,
            verify_only: false,
            topics: &request.v3_and_below_topics,
        };
        let results = answer(broker, ctx, ask).await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut by_transaction = Vec::with_capacity(request.transactions.len());
    for t in &request.transactions {
        let ask = Ask {
            id: &t.transactional_id,
            producer_id: t.producer_id,
            producer_epoch: t.producer_epoch,
            verify_only: t.verify_only,
            topics: &t.topics,
        };
        by_transaction.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(answer(broker, ctx, ask).await),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(by_transaction)
}

/// Per topic and partition, the error (or none).
async fn answer(
    broker: &Broker,
    ctx: &RequestContext,
    ask: Ask<'_>,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let wanted: Vec<(String, i32)> = ask
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
        .collect();
    let unknown = |t: &str, p: i32| {
        broker.topics.partition(t, p).is_none() || crate::topic_registry::is_internal(t)
    };
    let any_unknown = wanted.iter().any(|(t, p)| unknown(t, *p));
    let id = ask.id.0.to_string();
    let fenced_code = ctx.api_version >= 2;
    // Per partition: the error, in request order.
    let errors: Vec<Option<ResponseError>> = if any_unknown {
        wanted
            .iter()
            .map(|(t, p)| {
                Some(if unknown(t, *p) {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::OperationNotAttempted
                })
            })
            .collect()
    } else if ask.verify_only {
        match broker
            .txns
            .verify_partitions(&id, ask.producer_id.0, ask.producer_epoch, &wanted)
        {
            Ok(present) => present
                .into_iter()
                .map(|ok| (!ok).then_some(ResponseError::InvalidTxnState))
                .collect(),
            Err(e) => vec![Some(e.code(fenced_code)); wanted.len()],
        }
    } else {
        let n = wanted.len();
        let added = broker
            .txns
            .add_partitions(id, ask.producer_id.0, ask.producer_epoch, wanted)
            .await;
        vec![added.err().map(|e| e.code(fenced_code)); n]
    };
    let mut errors = errors.into_iter();
    ask.topics
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
                                .with_partition_error_code(super::code(errors.next().flatten()))
                        })
                        .collect(),
                )
        })
        .collect()
}
