//! DescribeTransactions and ListTransactions: the coordinator's view of transactional ids, as
//! `kafka-transactions.sh describe` and `list` show it.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as Listed;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;
use crate::txn::TxnState;

pub fn describe(
    broker: &Broker,
    _ctx: &RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let Some(m) = broker
                .txns
                .describe(&id.0)
                .filter(|m| m.state != TxnState::Dead)
            else {
                return TransactionState::default()
                    .with_transactional_id(id)
                    .with_error_code(ResponseError::TransactionalIdNotFound.code())
                    .with_transaction_state(StrBytes::from_static_str(""))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            };
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in &m.partitions {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            TransactionState::default()
                .with_transactional_id(id)
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.txn_start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(
                    by_topic
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default()
                                .with_topic(TopicName(StrBytes::from_string(t)))
                                .with_partitions(ps)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub fn list(
    broker: &Broker,
    _ctx: &RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let known = |name: &str| TxnState::ALL.iter().any(|s| s.name() == name);
    let unknown_filters: Vec<StrBytes> = request
        .state_filters
        .iter()
        .filter(|f| !known(f))
        .cloned()
        .collect();
    let now = broker.clock.now_ms();
    let states = broker
        .txns
        .list()
        .into_iter()
        .filter(|m| m.state != TxnState::Dead)
        .filter(|m| {
            request.state_filters.is_empty()
                || request.state_filters.iter().any(|f| &**f == m.state.name())
        })
        .filter(|m| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(m.producer_id))
        })
        // v1: only transactions running longer than the filter (ms), when it is set.
        .filter(|m| {
            request.duration_filter < 0
                || (m.txn_start_ms >= 0 && now - m.txn_start_ms > request.duration_filter)
        })
        .map(|m| {
            Listed::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(m.transactional_id)))
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(StrBytes::from_static_str(m.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown_filters)
        .with_transaction_states(states)
}
