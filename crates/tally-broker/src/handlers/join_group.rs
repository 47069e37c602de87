use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::broker::Broker;
use crate::group::JoinRequest;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let version = ctx.api_version;
    let join = JoinRequest {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id.clone(),
        client_host: ctx.client_host.clone(),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves.
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let mut response = JoinGroupResponse::default().with_generation_id(-1);
    let joined = match broker.group_coordinator(&join.group_id) {
        Ok(groups) => groups.join(join).await,
        Err(e) => Err((e.code(), join.member_id)),
    };
    match joined {
        Ok(result) => {
            response.generation_id = result.generation;
            response.leader = StrBytes::from_string(result.leader);
            response.member_id = StrBytes::from_string(result.member_id);
            if version >= 7 {
                response.protocol_type = result.protocol_type.map(StrBytes::from_string);
                response.protocol_name = result.protocol.clone().map(StrBytes::from_string);
            } else {
                response.protocol_name =
                    Some(StrBytes::from_string(result.protocol.unwrap_or_default()));
            }
            response.members = result
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    let mut m = JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_metadata(metadata);
                    if version >= 5 {
                        m.group_instance_id = instance.map(StrBytes::from_string);
                    }
                    m
                })
                .collect();
        }
        Err((error, member_id)) => {
            response.error_code = error;
            response.member_id = StrBytes::from_string(member_id);
            if version < 7 {
                response.protocol_name = Some(StrBytes::default());
            }
        }
    }
    response
}
