//! OffsetFetch: one group (v0-7) or several (v8+); all of a group's offsets when no topics are
//! named. Offsets committed in a transaction are invisible until it commits; with
//! RequireStable (v7+) a partition that has such offsets pending answers
//! UNSTABLE_OFFSET_COMMIT, and the client retries (KIP-447).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::broker::Broker;
use crate::group::store::CommittedOffset;
use crate::group::GroupCoordinator;
use crate::group::GroupOffsets as Found;

fn fields(offset: &Option<CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match offset {
        Some(o) => (
            o.offset,
            o.leader_epoch,
            Some(StrBytes::from_string(
                o.metadata.clone().unwrap_or_default(),
            )),
        ),
        None => (-1, -1, Some(StrBytes::default())),
    }
}

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let require_stable = ctx.api_version >= 7 && request.require_stable;
    let unstable = |groups: &GroupCoordinator, group: &str, topic: &str, partition: i32| -> i16 {
        if require_stable && groups.has_pending_txn_offset(group, topic, partition) {
            tally_protocol::ResponseError::UnstableOffsetCommit.code()
        } else {
            0
        }
    };
    if ctx.api_version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let coordinator = match broker.group_coordinator(&g.group_id.0) {
                    Ok(c) => c,
                    Err(e) => {
                        return OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id)
                            .with_error_code(e.code())
                    }
                };
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let found: Found = coordinator.fetch(&g.group_id.0, wanted);
                let topics = found
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(StrBytes::from_string(topic.clone())))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(p, o)| {
                                        let (offset, epoch, metadata) = fields(&o);
                                        OffsetFetchResponsePartitions::default()
                                            .with_error_code(unstable(
                                                &coordinator,
                                                &g.group_id.0,
                                                &topic,
                                                p,
                                            ))
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(metadata)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    // v0-1 always name topics; v2+ may send null for all.
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let coordinator = match broker.group_coordinator(&request.group_id.0) {
        Ok(c) => c,
        Err(e) if ctx.api_version >= 2 => {
            return OffsetFetchResponse::default().with_error_code(e.code())
        }
        // v0-1 have no top-level error: each named partition carries it.
        Err(e) => return per_partition_error(wanted.unwrap_or_default(), e.code()),
    };
    let found: Found = coordinator.fetch(&request.group_id.0, wanted);
    let topics = found
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(p, o)| {
                            let (offset, epoch, metadata) = fields(&o);
                            let mut r = OffsetFetchResponsePartition::default()
                                .with_error_code(unstable(
                                    &coordinator,
                                    &request.group_id.0,
                                    &topic,
                                    p,
                                ))
                                .with_partition_index(p)
                                .with_committed_offset(offset)
                                .with_metadata(metadata);
                            if ctx.api_version >= 5 {
                                r.committed_leader_epoch = epoch;
                            }
                            r
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// A v0-1 answer that fails every named partition with `code`.
fn per_partition_error(wanted: Vec<(String, Vec<i32>)>, code: i16) -> OffsetFetchResponse {
    let topics = wanted
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|p| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(-1)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
