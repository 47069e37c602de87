use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;

use super::{operations_bitfield, RequestContext, CLUSTER_OPERATIONS};
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut response = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.node_id));
    if ctx.api_version >= 1 {
        response.endpoint_type = 1;
        if request.endpoint_type != 1 {
            response.error_code = ResponseError::UnsupportedEndpointType.code();
            response.error_message =
                super::message("this node serves the broker endpoint type (1) only");
            return response;
        }
    }
    response.brokers = vec![DescribeClusterBroker::default()
        .with_broker_id(BrokerId(broker.node_id))
        .with_host(StrBytes::from_string(
            broker.advertised_for(&ctx.listener).host.clone(),
        ))
        .with_port(i32::from(broker.advertised_for(&ctx.listener).port))];
    if request.include_cluster_authorized_operations {
        response.cluster_authorized_operations = operations_bitfield(CLUSTER_OPERATIONS);
    }
    response
}
