use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;
use uuid::Uuid;

use super::RequestContext;
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let version = ctx.api_version;
    // v6 names topics by name or id; earlier versions by name only.
    let targets: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n), Uuid::nil()))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let mut result = DeletableTopicResult::default().with_name(name.clone());
            if version >= 6 {
                result.topic_id = id;
            }
            let fail = |mut result: DeletableTopicResult, e: ResponseError, text: String| {
                result.error_code = e.code();
                if version >= 5 {
                    result.error_message = super::message(text);
                }
                result
            };
            let topic_name = match (&name, id.is_nil()) {
                (Some(n), true) => n.0.to_string(),
                (None, false) => match broker.topics.get_by_id(id) {
                    Some(t) => {
                        result.name = Some(TopicName(StrBytes::from_string(t.name.clone())));
                        t.name.clone()
                    }
                    None => {
                        return fail(
                            result,
                            ResponseError::UnknownTopicId,
                            format!("no topic has id {id}"),
                        )
                    }
                },
                _ => {
                    return fail(
                        result,
                        ResponseError::InvalidRequest,
                        "give either a topic name or a topic id".into(),
                    )
                }
            };
            if crate::topic_registry::is_internal(&topic_name) {
                return fail(
                    result,
                    ResponseError::InvalidTopicException,
                    "internal topics cannot be deleted".into(),
                );
            }
            match broker.topics.delete(&topic_name) {
                Ok(deleted_id) => {
                    if version >= 6 {
                        result.topic_id = deleted_id;
                    }
                    result
                }
                Err(e) => fail(result, e.error_code(), e.to_string()),
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
