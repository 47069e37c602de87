use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let code = broker.groups.heartbeat(
        &request.group_id.0,
        request.generation_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
    );
    HeartbeatResponse::default().with_error_code(code)
}
