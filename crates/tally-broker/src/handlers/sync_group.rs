use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let assignments = request
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let result = match broker.group_coordinator(&request.group_id.0) {
        Ok(groups) => {
            groups
                .sync(
                    &request.group_id.0,
                    request.generation_id,
                    &request.member_id,
                    request.group_instance_id.as_deref(),
                    assignments,
                )
                .await
        }
        Err(e) => Err(e.code()),
    };
    match result {
        Ok(r) => {
            let mut response = SyncGroupResponse::default().with_assignment(r.assignment);
            if ctx.api_version >= 5 {
                response.protocol_type = r.protocol_type.map(StrBytes::from_string);
                response.protocol_name = r.protocol.map(StrBytes::from_string);
            }
            response
        }
        Err(code) => SyncGroupResponse::default().with_error_code(code),
    }
}
