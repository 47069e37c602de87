use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::RequestContext;
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let code = match broker.group_coordinator(&request.group_id.0) {
        Ok(groups) => groups.heartbeat(
            &request.group_id.0,
            request.generation_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
        ),
        Err(e) => e.code(),
    };
    HeartbeatResponse::default().with_error_code(code)
}
