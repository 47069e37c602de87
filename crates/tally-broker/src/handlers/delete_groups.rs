use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let ids: Vec<String> = request
        .groups_names
        .iter()
        .map(|g| g.0.to_string())
        .collect();
    let mut codes = Vec::with_capacity(ids.len());
    for id in ids {
        codes.push(match broker.group_coordinator(&id) {
            Ok(groups) => groups.delete_groups(&[id]).await[0],
            Err(e) => e.code(),
        });
    }
    DeleteGroupsResponse::default().with_results(
        request
            .groups_names
            .into_iter()
            .zip(codes)
            .map(|(id, code)| {
                DeletableGroupResult::default()
                    .with_group_id(id)
                    .with_error_code(code)
            })
            .collect(),
    )
}
