//! OffsetDelete: removes committed offsets of topics the group no longer consumes.

use bytes::Bytes;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetDeleteRequest, OffsetDeleteResponse,
};
use kafka_protocol::protocol::Decodable;

use super::RequestContext;
use crate::broker::Broker;
use crate::group::GroupDescription;

/// Whether any member's consumer-protocol subscription names `topic`.
fn subscribed(group: &GroupDescription, topic: &str) -> bool {
    group.members.iter().any(|m| {
        let mut bytes: Bytes = m.metadata.clone();
        if bytes.len() < 2 {
            return false;
        }
        let version = i16::from_be_bytes([bytes[0], bytes[1]]);
        let _ = bytes::Buf::get_i16(&mut bytes);
        ConsumerProtocolSubscription::decode(&mut bytes, version)
            .is_ok_and(|s| s.topics.iter().any(|t| t.as_str() == topic))
    })
}

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let deleted = match broker.group_coordinator(&request.group_id.0) {
        Ok(groups) => {
            groups
                .delete_offsets(&request.group_id.0, &partitions, subscribed)
                .await
        }
        Err(e) => Err(e.code()),
    };
    match deleted {
        Err(code) => OffsetDeleteResponse::default().with_error_code(code),
        Ok(codes) => {
            let mut codes = codes.into_iter();
            OffsetDeleteResponse::default().with_topics(
                request
                    .topics
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                OffsetDeleteResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(codes.next().unwrap_or(0))
                            })
                            .collect();
                        OffsetDeleteResponseTopic::default()
                            .with_name(t.name)
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
        }
    }
}
