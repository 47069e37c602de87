//! AddOffsetsToTxn and TxnOffsetCommit: a transactional producer's consumed offsets become
//! part of its transaction (exactly-once read-process-write). AddOffsetsToTxn adds the group's
//! `__consumer_offsets` partition to the transaction; TxnOffsetCommit writes the offsets there
//! as the producer's transactional records, applied only if the transaction commits. From
//! TxnOffsetCommit v5 (transaction version 2) the commit adds the partition itself.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;
use crate::group::store::OFFSETS_TOPIC;
use crate::group::{CommitRequest, TxnProducer};
use crate::txn::TxnError;

/// The first TxnOffsetCommit version of transaction version 2.
const TRANSACTION_V2_VERSION: i16 = 5;

pub async fn add_offsets(
    broker: &Broker,
    ctx: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    // One offsets partition: every group's offsets live in partition 0.
    let answer = broker
        .txns
        .add_partitions(
            request.transactional_id.0.to_string(),
            request.producer_id.0,
            request.producer_epoch,
            vec![(OFFSETS_TOPIC.to_string(), 0)],
        )
        .await;
    AddOffsetsToTxnResponse::default().with_error_code(match answer {
        Ok(()) => 0,
        Err(e) => e.code(ctx.api_version >= 2).code(),
    })
}

pub async fn commit(
    broker: &Broker,
    ctx: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let id = request.transactional_id.0.to_string();
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    // v5 is transaction version 2: the offsets partition joins the transaction here, without
    // AddOffsetsToTxn (KIP-890 part 2).
    let added = if ctx.api_version >= TRANSACTION_V2_VERSION {
        broker
            .txns
            .add_partitions(
                id.clone(),
                producer_id,
                epoch,
                vec![(OFFSETS_TOPIC.to_string(), 0)],
            )
            .await
    } else {
        Ok(())
    };
    let refused = match added {
        Err(TxnError::ProducerFenced) => Some(ResponseError::InvalidProducerEpoch),
        Err(e) => Some(e.code(true)),
        Ok(()) => match broker.txns.verify_offsets(&id, producer_id, epoch) {
            Ok(()) => None,
            Err(true) => Some(ResponseError::InvalidProducerEpoch),
            Err(false) => Some(ResponseError::InvalidTxnState),
        },
    };
    let mut offsets = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            offsets.push((
                t.name.0.to_string(),
                p.partition_index,
                p.committed_offset,
                if ctx.api_version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                p.committed_metadata.as_ref().map(|m| m.to_string()),
            ));
        }
    }
    let count = offsets.len();
    let codes = match refused {
        Some(e) => vec![e.code(); count],
        None => {
            let v3 = ctx.api_version >= 3;
            let commit = CommitRequest {
                group_id: request.group_id.0.to_string(),
                generation: if v3 { request.generation_id } else { -1 },
                member_id: if v3 {
                    request.member_id.to_string()
                } else {
                    String::new()
                },
                group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
                offsets,
            };
            let txn = TxnProducer {
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
            };
            broker
                .groups
                .txn_commit(commit, txn, |topic, partition| {
                    broker.topics.partition(topic, partition).is_some()
                })
                .await
        }
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(codes.next().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
