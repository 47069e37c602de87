//! FindCoordinator: this broker coordinates every group and every transactional id.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let host = StrBytes::from_string(broker.advertised.host.clone());
    let port = i32::from(broker.advertised.port);
    let answer = |key_type: i8| -> (i16, Option<StrBytes>) {
        if key_type == GROUP || key_type == TRANSACTION {
            (0, None)
        } else {
            (
                ResponseError::CoordinatorNotAvailable.code(),
                super::message(format!("unknown coordinator key type {key_type}")),
            )
        }
    };
    if ctx.api_version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let (error, message) = answer(request.key_type);
                let c = Coordinator::default()
                    .with_key(key)
                    .with_error_code(error)
                    .with_error_message(message);
                if error == 0 {
                    c.with_node_id(BrokerId(broker.node_id))
                        .with_host(host.clone())
                        .with_port(port)
                } else {
                    c.with_node_id(BrokerId(-1))
                        .with_host(StrBytes::default())
                        .with_port(-1)
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (error, message) = answer(if ctx.api_version >= 1 {
        request.key_type
    } else {
        GROUP
    });
    let mut response = FindCoordinatorResponse::default().with_error_code(error);
    if ctx.api_version >= 1 {
        response.error_message = message;
    }
    if error == 0 {
        response
            .with_node_id(BrokerId(broker.node_id))
            .with_host(host)
            .with_port(port)
    } else {
        response
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1)
    }
}
