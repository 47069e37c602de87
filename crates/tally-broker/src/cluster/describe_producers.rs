//! DescribeProducers (API 61) in cluster mode: a partition's producer table as its leader's
//! state machine holds it (the table of the committed log, the same on every replica). A node
//! that does not lead the partition answers NOT_LEADER_OR_FOLLOWER, as Kafka does.

use kafka_protocol::messages::describe_producers_response::{PartitionResponse, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse};
use tally_protocol::ResponseError;

use super::ClusterMode;
use crate::handlers::describe_producers::producer_states;
use crate::handlers::RequestContext;

pub fn handle(
    cluster: &ClusterMode,
    _ctx: &RequestContext,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let state = cluster.node.controller().cluster();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let record = state.topic(&name);
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    let known = record
                        .filter(|r| usize::try_from(index).is_ok_and(|i| i < r.partitions.len()));
                    let Some(record) = known else {
                        return answer
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let view = cluster.view(&name, index as u32, record);
                    match (&view.hosted, view.is_leader) {
                        (Some(hosted), true) => answer.with_active_producers(producer_states(
                            &hosted.replica.state_machine.producers(),
                        )),
                        _ => answer.with_error_code(ResponseError::NotLeaderOrFollower.code()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
