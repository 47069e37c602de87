use std::collections::HashMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.to_string()).or_default() += 1;
    }
    let results = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let fail = |e: ResponseError, text: String| {
                result
                    .clone()
                    .with_error_code(e.code())
                    .with_error_message(super::message(text))
            };
            if seen[&name] > 1 {
                return fail(
                    ResponseError::InvalidRequest,
                    format!("topic '{name}' appears more than once"),
                );
            }
            if let Some(assignments) = &t.assignments {
                if assignments
                    .iter()
                    .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != broker.node_id)
                {
                    return fail(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "new partitions must be assigned to exactly this broker ({})",
                            broker.node_id
                        ),
                    );
                }
                let current = broker
                    .topics
                    .get(&name)
                    .map_or(0, |t| t.partitions.len() as i32);
                if assignments.len() as i32 != t.count - current {
                    return fail(
                        ResponseError::InvalidReplicaAssignment,
                        format!(
                            "{} assignments given for {} new partitions",
                            assignments.len(),
                            t.count - current
                        ),
                    );
                }
            }
            match broker.topics.add_partitions(
                &name,
                t.count,
                request.validate_only,
                broker.clock.now_ms(),
            ) {
                Ok(()) => result,
                Err(e) => fail(e.error_code(), e.to_string()),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
