//! Produce in cluster mode: each partition's batch goes to its Raft group through the
//! leader's `PartitionLeader` (check, decide against the term's producer table, propose), in
//! request order, and is answered once the group has committed and applied it.
//!
//! `acks=all` and `acks=1` are both answered after the quorum commits: a leader never
//! acknowledges a batch a majority does not hold (the README lists this difference).
//! `min.insync.replicas` is checked against the replicas in sync before a batch is proposed,
//! as Kafka checks it.

use std::future::Future;
use std::pin::Pin;

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tally_partition::AppendError;
use tally_protocol::{BatchHeader, ResponseError};
use tally_raft::{ProduceAnswer, ProduceError};

use super::{broker_id, ClusterMode};
use crate::broker::Broker;
use crate::handlers::produce::{check_acks, check_records, rejected, ProduceOutcome};
use crate::handlers::RequestContext;

enum Slot {
    Done(PartitionProduceResponse),
    Waiting(PartitionProduceResponse, ProduceAnswer, Option<i64>),
}

pub fn error_code(e: &ProduceError) -> ResponseError {
    match e {
        ProduceError::NotLeader { .. } | ProduceError::Superseded => {
            ResponseError::NotLeaderOrFollower
        }
        ProduceError::TimedOut(_) => ResponseError::RequestTimedOut,
        // A batch ahead of the producer's next sequence: the ones before it are still on
        // their way (in flight to a leader that lost its office, or refused and about to be
        // retried). Kafka answers OUT_OF_ORDER_SEQUENCE_NUMBER, and librdkafka (2.12) then
        // bumps its epoch and resends under the new epoch every batch it has not seen
        // acknowledged, including ones in other partitions whose answer was lost and which
        // are stored: duplicates (librdkafka#4953). NOT_LEADER_OR_FOLLOWER means "not
        // stored, retry": the client retries in order with the same sequences, no bump. A
        // batch behind the next sequence is still OUT_OF_ORDER_SEQUENCE_NUMBER.
        ProduceError::Refused(AppendError::OutOfOrderSequence {
            first_seq,
            expected_seq,
            ..
        }) if first_seq > expected_seq => ResponseError::NotLeaderOrFollower,
        ProduceError::Refused(e) => e.error_code(),
    }
}

/// Proposes each partition's batch, in request order, and returns the future of the answer.
pub async fn submit(
    broker: &Broker,
    cluster: &ClusterMode,
    ctx: &RequestContext,
    request: ProduceRequest,
) -> Pin<Box<dyn Future<Output = ProduceOutcome> + Send>> {
    let version = ctx.api_version;
    let acks = request.acks;
    let state = cluster.node.controller().cluster();
    let mut first_error = None;
    let mut endpoints = Vec::new();
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = state.topic(&name);
        let mut slots = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let answer = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1);
            let mut fail = |answer, e, text| {
                Slot::Done(rejected(version, &mut first_error, &name, answer, e, text))
            };
            if let Err((e, text)) = check_acks(acks) {
                slots.push(fail(answer, e, text));
                continue;
            }
            let replicas = topic.and_then(|t| {
                usize::try_from(data.index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            });
            let (Some(topic), Some(_)) = (topic, replicas) else {
                slots.push(fail(
                    answer,
                    ResponseError::UnknownTopicOrPartition,
                    "unknown topic or partition".into(),
                ));
                continue;
            };
            if crate::topic_registry::is_internal(&name) {
                slots.push(fail(
                    answer,
                    ResponseError::InvalidTopicException,
                    "cannot append to an internal topic".into(),
                ));
                continue;
            }
            let records = match check_records(version, data.records) {
                Ok(records) => records,
                Err((e, text)) => {
                    slots.push(fail(answer, e, text));
                    continue;
                }
            };
            if BatchHeader::parse(&records).is_ok_and(|h| h.is_transactional()) {
                slots.push(fail(
                    answer,
                    ResponseError::InvalidTxnState,
                    "transactions are not supported in cluster mode yet".into(),
                ));
                continue;
            }
            let view = cluster.view(&name, data.index as u32, topic);
            let hosted = match (&view.hosted, view.is_leader) {
                (Some(hosted), true) => hosted.clone(),
                _ => {
                    let mut answer = answer;
                    if version >= 10 {
                        if let Some(leader) = view.leader {
                            answer.current_leader = LeaderIdAndEpoch::default()
                                .with_leader_id(broker_id(leader))
                                .with_leader_epoch(view.leader_epoch);
                            endpoints.push(leader);
                        }
                    }
                    slots.push(fail(
                        answer,
                        ResponseError::NotLeaderOrFollower,
                        "this node does not lead the partition".into(),
                    ));
                    continue;
                }
            };
            if acks == -1 {
                let min_isr = broker.config.min_insync_replicas(&topic.configs);
                if (view.isr.len() as i64) < min_isr {
                    slots.push(fail(
                        answer,
                        ResponseError::NotEnoughReplicas,
                        format!(
                            "{} replicas in sync, min.insync.replicas is {min_isr}",
                            view.isr.len()
                        ),
                    ));
                    continue;
                }
            }
            let log_start =
                (version >= 5).then(|| hosted.replica.store.log_reader().log_start_offset());
            match hosted.leader.submit(records).await {
                Ok(waiting) => slots.push(Slot::Waiting(answer, waiting, log_start)),
                Err(e) => slots.push(fail(answer, error_code(&e), e.to_string())),
            }
        }
        topics.push((topic_data.name, slots));
    }
    let node_endpoints = node_endpoints(&state, endpoints);
    Box::pin(finish(version, acks, topics, first_error, node_endpoints))
}

/// KIP-951: the host and port of every leader a NOT_LEADER_OR_FOLLOWER answer names.
fn node_endpoints(
    state: &tally_controller::ClusterState,
    mut leaders: Vec<u64>,
) -> Vec<NodeEndpoint> {
    leaders.sort_unstable();
    leaders.dedup();
    leaders
        .into_iter()
        .filter_map(|id| state.brokers().get(&id))
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(broker_id(b.node_id))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_port(i32::from(b.port))
        })
        .collect()
}

async fn finish(
    version: i16,
    acks: i16,
    topics: Vec<(TopicName, Vec<Slot>)>,
    mut first_error: Option<String>,
    node_endpoints: Vec<NodeEndpoint>,
) -> ProduceOutcome {
    let mut responses = Vec::with_capacity(topics.len());
    for (name, slots) in topics {
        let mut partition_responses = Vec::with_capacity(slots.len());
        for slot in slots {
            let answer = match slot {
                Slot::Done(answer) => answer,
                Slot::Waiting(mut answer, waiting, log_start) => match waiting.await {
                    Ok(produced) => {
                        answer.base_offset = produced.base_offset;
                        answer.log_append_time_ms = -1;
                        if let Some(start) = log_start {
                            answer.log_start_offset = start;
                        }
                        answer
                    }
                    Err(e) => rejected(
                        version,
                        &mut first_error,
                        &name.0,
                        answer,
                        error_code(&e),
                        e.to_string(),
                    ),
                },
            };
            partition_responses.push(answer);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses),
        );
    }
    if acks == 0 {
        return match first_error {
            Some(reason) => ProduceOutcome::Close(format!("acks=0 produce failed: {reason}")),
            None => ProduceOutcome::NoResponse,
        };
    }
    let mut response = ProduceResponse::default().with_responses(responses);
    if version >= 10 {
        response.node_endpoints = node_endpoints;
    }
    ProduceOutcome::Respond(response)
}
