//! InitProducerId. Idempotent producers get a fresh producer id at epoch 0, whatever the
//! request carries (as Kafka does); they bump their epoch locally afterwards, and partitions
//! accept a higher epoch at sequence 0 without asking anyone. Transactional producers are the
//! transaction coordinator's: a new id, or the same id at a bumped epoch that fences older
//! instances (aborting their open transaction first).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tally_protocol::ResponseError;
use tracing::error;

use super::RequestContext;
use crate::broker::Broker;

pub async fn handle(
    broker: &Broker,
    ctx: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let fail = |e: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(e.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if ctx.api_version >= 3 && ((request.producer_id.0 == -1) != (request.producer_epoch == -1)) {
        return fail(ResponseError::InvalidRequest);
    }
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.0.is_empty())
    {
        return fail(ResponseError::InvalidRequest);
    }
    if let Some(id) = request.transactional_id {
        // `__transaction_state` keys carry the id with an i16 length, as Kafka's do: a longer
        // id (legal in the flexible versions) is refused rather than stored cut.
        if id.0.len() > crate::txn::log_record::MAX_ID_BYTES {
            return fail(ResponseError::InvalidRequest);
        }
        let expected = (ctx.api_version >= 3 && request.producer_id.0 >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        let answer = broker
            .txns
            .init_producer_id(id.0.to_string(), request.transaction_timeout_ms, expected)
            .await;
        return match answer {
            Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(e) => fail(e.code(ctx.api_version >= 4)),
        };
    }
    // Every thousandth id fsyncs the end of a new block: off the async workers.
    let ids = std::sync::Arc::clone(&broker.producer_ids);
    match broker.off_runtime(move || ids.next_producer_id()).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            error!(error = %e, "cannot persist a producer id block");
            // Kafka's answer when no id block is available; clients retry it.
            fail(ResponseError::CoordinatorLoadInProgress)
        }
    }
}
