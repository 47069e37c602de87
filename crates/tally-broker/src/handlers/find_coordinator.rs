//! FindCoordinator: this broker coordinates every group and every transactional id; in
//! cluster mode the lowest registered node coordinates every group, and transactions are
//! not offered yet.

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
    let (node_id, host, port) = coordinator(broker, &ctx.listener);
    let answer = |key_type: i8| -> (i16, Option<StrBytes>) {
        if broker.cluster.is_some() && key_type == TRANSACTION {
            (
                ResponseError::CoordinatorNotAvailable.code(),
                super::message("transactions are not supported in cluster mode yet"),
            )
        } else if node_id.0 < 0 {
            (
                ResponseError::CoordinatorNotAvailable.code(),
                super::message("no broker has registered with the controller yet"),
            )
        } else if key_type == GROUP || key_type == TRANSACTION {
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
                    c.with_node_id(node_id)
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
            .with_node_id(node_id)
            .with_host(host)
            .with_port(port)
    } else {
        response
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1)
    }
}

/// This broker, or in cluster mode the lowest registered node (every broker answers alike,
/// so a group's members meet at one coordinator).
fn coordinator(broker: &Broker, listener: &str) -> (BrokerId, StrBytes, i32) {
    let Some(cluster) = &broker.cluster else {
        let advertised = broker.advertised_for(listener);
        return (
            BrokerId(broker.node_id),
            StrBytes::from_string(advertised.host.clone()),
            i32::from(advertised.port),
        );
    };
    let registered = cluster
        .node
        .controller()
        .read(|s| s.brokers().values().next().cloned());
    match registered {
        Some(b) => (
            crate::cluster::broker_id(b.node_id),
            StrBytes::from_string(b.host),
            i32::from(b.port),
        ),
        None => (BrokerId(-1), StrBytes::default(), -1),
    }
}
