//! FindCoordinator: this broker coordinates every group and every transactional id. In
//! cluster mode a group's coordinator is the leader of its `__consumer_offsets` partition
//! (`cluster::group_partitions`), and transactions are not offered yet.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

/// A coordinator's id, host and port, or the error and message that answer the key.
type Found = Result<(BrokerId, StrBytes, i32), (i16, Option<StrBytes>)>;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if ctx.api_version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let found = find(broker, &ctx.listener, request.key_type, &key).await;
            let c = Coordinator::default().with_key(key);
            coordinators.push(match found {
                Ok((node_id, host, port)) => {
                    c.with_node_id(node_id).with_host(host).with_port(port)
                }
                Err((error, message)) => c
                    .with_error_code(error)
                    .with_error_message(message)
                    .with_node_id(BrokerId(-1))
                    .with_host(StrBytes::default())
                    .with_port(-1),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let key_type = if ctx.api_version >= 1 {
        request.key_type
    } else {
        GROUP
    };
    match find(broker, &ctx.listener, key_type, &request.key).await {
        Ok((node_id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(node_id)
            .with_host(host)
            .with_port(port),
        Err((error, message)) => {
            let mut response = FindCoordinatorResponse::default()
                .with_error_code(error)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1);
            if ctx.api_version >= 1 {
                response.error_message = message;
            }
            response
        }
    }
}

async fn find(broker: &Broker, listener: &str, key_type: i8, key: &str) -> Found {
    let unavailable = |text: String| {
        (
            ResponseError::CoordinatorNotAvailable.code(),
            super::message(text),
        )
    };
    if key_type != GROUP && key_type != TRANSACTION {
        return Err(unavailable(format!(
            "unknown coordinator key type {key_type}"
        )));
    }
    let Some(cluster) = &broker.cluster else {
        let advertised = broker.advertised_for(listener);
        return Ok((
            BrokerId(broker.node_id),
            StrBytes::from_string(advertised.host.clone()),
            i32::from(advertised.port),
        ));
    };
    if key_type == TRANSACTION {
        return Err(unavailable(
            "transactions are not supported in cluster mode yet".into(),
        ));
    }
    let node = cluster.groups.find(cluster, key).await.map_err(|e| {
        (
            e.code(),
            super::message("the group's coordinator is not known yet"),
        )
    })?;
    let registered = cluster
        .node
        .controller()
        .read(|s| s.brokers().get(&node).cloned());
    match registered {
        Some(b) => Ok((
            crate::cluster::broker_id(b.node_id),
            StrBytes::from_string(b.host),
            i32::from(b.port),
        )),
        None => Err(unavailable(format!(
            "the group's coordinator, node {node}, has not registered"
        ))),
    }
}
