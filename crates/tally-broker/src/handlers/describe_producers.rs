//! DescribeProducers (API 61): the producer table of each partition, as
//! `kafka-transactions.sh describe-producers` shows it.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use tally_protocol::{
    ResponseError, DESCRIBE_PRODUCERS_KEY_INDEX_TAG, DESCRIBE_PRODUCERS_LAST_OFFSET_TAG,
};

use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        let mut partitions = Vec::with_capacity(t.partition_indexes.len());
        for &index in &t.partition_indexes {
            let unknown = PartitionResponse::default()
                .with_partition_index(index)
                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
            let Some(handle) = broker.topics.partition(&t.name, index) else {
                partitions.push(unknown);
                continue;
            };
            // The producer table belongs to the partition's writer: ask it.
            let active = handle.run(active_producers).await;
            partitions.push(match active {
                Ok((active, keys)) => {
                    let mut response = PartitionResponse::default()
                        .with_partition_index(index)
                        .with_active_producers(active);
                    if let Some(keys) = keys {
                        response
                            .unknown_tagged_fields
                            .insert(DESCRIBE_PRODUCERS_KEY_INDEX_TAG, keys);
                    }
                    response
                }
                Err(_) => unknown,
            });
        }
        topics.push(
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}

/// The producer table, and the key index's counters when the topic has idempotency keys.
fn active_producers(
    partition: &mut tally_partition::Partition,
) -> (Vec<ProducerState>, Option<bytes::Bytes>) {
    let keys = partition.key_index().map(|index| {
        let stats = index.stats();
        let mut b = Vec::with_capacity(24);
        b.extend_from_slice(&(index.len() as u64).to_be_bytes());
        b.extend_from_slice(&stats.dropped_records.to_be_bytes());
        b.extend_from_slice(&stats.evicted_keys.to_be_bytes());
        bytes::Bytes::from(b)
    });
    (producer_states(partition.producers()), keys)
}

/// A producer table as DescribeProducers reports it (cluster mode reads a replica's).
pub(crate) fn producer_states(table: &tally_partition::ProducerTable) -> Vec<ProducerState> {
    table
        .entries()
        .into_iter()
        .map(|e| {
            ProducerState::default()
                .with_producer_id(ProducerId(e.producer_id))
                .with_producer_epoch(i32::from(e.producer_epoch))
                .with_last_sequence(e.last_seq())
                .with_last_timestamp(e.last_timestamp)
                .with_coordinator_epoch(e.coordinator_epoch)
                .with_current_txn_start_offset(e.current_txn_first_offset.unwrap_or(-1))
                .with_unknown_tagged_field(
                    DESCRIBE_PRODUCERS_LAST_OFFSET_TAG,
                    bytes::Bytes::copy_from_slice(&e.last_offset.to_be_bytes()),
                )
        })
        .collect()
}
