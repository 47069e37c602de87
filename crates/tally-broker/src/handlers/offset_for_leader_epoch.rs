//! OffsetForLeaderEpoch: consumers use it to validate their position after a reconnect. There
//! is one leader epoch (0), which covers the whole log, so its end offset is the log end.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use tally_protocol::ResponseError;

use super::{check_leader_epoch, code, RequestContext, LEADER_EPOCH};
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    let Some(handle) = broker.topics.partition(&t.topic, p.partition) else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if let Some(e) = check_leader_epoch(p.current_leader_epoch) {
                        return answer.with_error_code(code(Some(e)));
                    }
                    if p.leader_epoch < 0 || p.leader_epoch > LEADER_EPOCH {
                        return answer.with_leader_epoch(-1).with_end_offset(-1);
                    }
                    let end = handle.reader().high_watermark();
                    answer.with_leader_epoch(LEADER_EPOCH).with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
