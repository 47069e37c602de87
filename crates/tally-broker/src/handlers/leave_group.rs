use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::RequestContext;
use crate::broker::Broker;

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    // v0-2 name one member; v3+ a list, with static ids.
    let members: Vec<(String, Option<String>)> = if ctx.api_version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let left = broker
        .group_coordinator(&request.group_id.0)
        .map_err(|e| e.code())
        .and_then(|groups| groups.leave(&request.group_id.0, members.clone()));
    match left {
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
        Ok(codes) => {
            if ctx.api_version >= 3 {
                LeaveGroupResponse::default().with_members(
                    members
                        .into_iter()
                        .zip(codes)
                        .map(|((id, instance), code)| {
                            MemberResponse::default()
                                .with_member_id(id.into())
                                .with_group_instance_id(instance.map(Into::into))
                                .with_error_code(code)
                        })
                        .collect(),
                )
            } else {
                LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
            }
        }
    }
}
