use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::RequestContext;
use crate::broker::Broker;
use crate::group::CommitRequest;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let mut offsets = Vec::new();
    for t in &request.topics {
        for p in &t.partitions {
            offsets.push((
                t.name.0.to_string(),
                p.partition_index,
                p.committed_offset,
                if ctx.api_version >= 6 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                p.committed_metadata.as_ref().map(|m| m.to_string()),
            ));
        }
    }
    let groups = match broker.group_coordinator(&request.group_id.0) {
        Ok(groups) => groups,
        Err(e) => return answer(request, vec![e.code(); offsets.len()]),
    };
    let codes = groups
        .commit(
            CommitRequest {
                group_id: request.group_id.0.to_string(),
                generation: if ctx.api_version >= 1 {
                    request.generation_id_or_member_epoch
                } else {
                    -1
                },
                member_id: request.member_id.to_string(),
                group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
                offsets,
            },
            |topic, partition| broker.partition_exists(topic, partition),
        )
        .await;
    answer(request, codes)
}

/// Each partition of the request with its code, in request order.
fn answer(request: OffsetCommitRequest, codes: Vec<i16>) -> OffsetCommitResponse {
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
