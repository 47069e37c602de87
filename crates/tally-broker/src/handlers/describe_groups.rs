use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{operations_bitfield, RequestContext};
use crate::broker::Broker;

/// READ, DELETE, DESCRIBE on groups.
const GROUP_OPERATIONS: &[u8] = &[3, 6, 8];

pub fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let d = match broker.group_coordinator(&id.0) {
                Ok(groups) => groups.describe(&id.0),
                Err(e) => {
                    return DescribedGroup::default()
                        .with_group_id(id)
                        .with_error_code(e.code())
                }
            };
            let mut g = DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(StrBytes::from_static_str(d.state))
                .with_protocol_type(StrBytes::from_string(d.protocol_type))
                .with_protocol_data(StrBytes::from_string(d.protocol))
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            let mut member = DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.member_id))
                                .with_client_id(StrBytes::from_string(m.client_id))
                                .with_client_host(StrBytes::from_string(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment);
                            if ctx.api_version >= 4 {
                                member.group_instance_id =
                                    m.group_instance_id.map(StrBytes::from_string);
                            }
                            member
                        })
                        .collect(),
                );
            if ctx.api_version >= 3 && request.include_authorized_operations {
                g.authorized_operations = operations_bitfield(GROUP_OPERATIONS);
            }
            g
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
