//! EndTxn: commit or abort the producer's open transaction. Answered once PrepareCommit or
//! PrepareAbort is in `__transaction_state`; the coordinator then writes the markers. v5 is
//! transaction version 2 (KIP-890 part 2): every commit and abort bumps the producer's epoch,
//! and the answer carries the producer id and epoch for the next transaction.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::RequestContext;
use crate::broker::Broker;
use crate::txn::EndRequest;

/// The first EndTxn version of transaction version 2.
const TRANSACTION_V2_VERSION: i16 = 5;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let answer = broker
        .txns
        .end_txn(
            request.transactional_id.0.to_string(),
            EndRequest {
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
                commit: request.committed,
                tv2: ctx.api_version >= TRANSACTION_V2_VERSION,
            },
        )
        .await;
    let (code, (producer_id, producer_epoch)) = match answer {
        Ok(next) => (0, next),
        Err(e) => (e.code(ctx.api_version >= 2).code(), (-1, -1)),
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
}
