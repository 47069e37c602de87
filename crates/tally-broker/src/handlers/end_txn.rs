//! EndTxn: commit or abort the producer's open transaction. Answered once PrepareCommit or
//! PrepareAbort is in `__transaction_state`; the coordinator then writes the markers.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let answer = broker
        .txns
        .end_txn(
            request.transactional_id.0.to_string(),
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await;
    EndTxnResponse::default().with_error_code(match answer {
        Ok(()) => 0,
        Err(e) => e.code(ctx.api_version >= 2).code(),
    })
}
