//! Produce, in two stages so a connection can pipeline: `submit` checks each partition's batch
//! (stateless: sizes, CRC, the record walk) and queues it on the partition's writer, in request
//! order; `PendingProduce::finish` waits for the writers' answers (each after the group commit
//! that covers it) and builds the response with the assigned, or for a retried batch the
//! original, base offset.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use tally_partition::{validate_client_batch, AppendError, EntryOrigin};
use tally_protocol::ResponseError;
use tokio::sync::oneshot;
use tracing::debug;

use super::RequestContext;
use crate::broker::Broker;
use crate::partition_handle::{AppendRequest, AppendResult};
use crate::txn::TxnError;

pub enum ProduceOutcome {
    Respond(ProduceResponse),
    NoResponse,
    Close(String),
}

/// A Produce whose batches are queued on their writers.
pub struct PendingProduce {
    version: i16,
    acks: i16,
    topics: Vec<(TopicName, Vec<Slot>)>,
    first_error: Option<String>,
}

enum Slot {
    Done(PartitionProduceResponse),
    Waiting(PartitionProduceResponse, oneshot::Receiver<AppendResult>),
}

/// Compression codec of a batch, read from its attributes without parsing the rest.
fn compression_of(records: &[u8]) -> Option<i16> {
    records
        .get(21..23)
        .map(|a| i16::from_be_bytes([a[0], a[1]]) & 0x07)
}

/// The request's `acks`: -1, 0 or 1.
pub(crate) fn check_acks(acks: i16) -> Result<(), (ResponseError, String)> {
    if matches!(acks, -1..=1) {
        return Ok(());
    }
    Err((
        ResponseError::InvalidRequiredAcks,
        format!("acks must be -1, 0 or 1, not {acks}"),
    ))
}

/// A partition's records, present and in a codec its Produce version allows.
pub(crate) fn check_records(
    version: i16,
    records: Option<bytes::Bytes>,
) -> Result<bytes::Bytes, (ResponseError, String)> {
    let Some(records) = records else {
        return Err((
            ResponseError::InvalidRecord,
            "the partition carries no records".into(),
        ));
    };
    if version < 7 && compression_of(&records) == Some(4) {
        return Err((
            ResponseError::UnsupportedCompressionType,
            "zstd needs Produce v7 or later".into(),
        ));
    }
    Ok(records)
}

pub(crate) fn rejected(
    version: i16,
    first_error: &mut Option<String>,
    topic: &str,
    answer: PartitionProduceResponse,
    e: ResponseError,
    text: String,
) -> PartitionProduceResponse {
    debug!(topic, partition = answer.index, error = ?e, %text, "produce rejected");
    first_error.get_or_insert_with(|| format!("{topic}-{}: {text}", answer.index));
    let mut answer = answer.with_error_code(e.code());
    if version >= 8 {
        answer.error_message = super::message(text);
    }
    answer
}

/// Checks each partition's batch and queues it on its writer. Returns once everything is
/// queued, so the next request's batches queue behind these.
pub async fn submit(
    broker: &Broker,
    ctx: &RequestContext,
    request: ProduceRequest,
) -> PendingProduce {
    let version = ctx.api_version;
    let acks = request.acks;
    let transactional_id = request.transactional_id.as_ref().map(|id| id.0.to_string());
    let now = broker.clock.now_ms();
    let mut first_error = None;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic_data in request.topic_data {
        let name = topic_data.name.0.to_string();
        let topic = broker.topics.get(&name);
        let mut slots = Vec::with_capacity(topic_data.partition_data.len());
        for data in topic_data.partition_data {
            let answer = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1);
            let mut fail = |answer, e, text| {
                Slot::Done(rejected(version, &mut first_error, &name, answer, e, text))
            };
            if let Err((e, text)) = check_acks(acks) {
                slots.push(fail(answer, e, text));
                continue;
            }
            let handle = topic.as_ref().and_then(|t| {
                usize::try_from(data.index)
                    .ok()
                    .and_then(|i| t.partitions.get(i))
            });
            let (Some(topic), Some(handle)) = (topic.as_ref(), handle) else {
                slots.push(fail(
                    answer,
                    ResponseError::UnknownTopicOrPartition,
                    "unknown topic or partition".into(),
                ));
                continue;
            };
            if crate::topic_registry::is_internal(&name) {
                slots.push(fail(
                    answer,
                    ResponseError::InvalidTopicException,
                    "cannot append to an internal topic".into(),
                ));
                continue;
            }
            let records = match check_records(version, data.records) {
                Ok(records) => records,
                Err((e, text)) => {
                    slots.push(fail(answer, e, text));
                    continue;
                }
            };
            if acks == -1 {
                let min_isr = topic.min_insync_replicas;
                if min_isr > 1 {
                    slots.push(fail(
                        answer,
                        ResponseError::NotEnoughReplicas,
                        format!(
                            "min.insync.replicas is {min_isr} but this broker is the only replica"
                        ),
                    ));
                    continue;
                }
            }
            // Check: stateless, here on the connection's task, before anything is queued.
            let header = match validate_client_batch(&records, handle.max_message_bytes()) {
                Ok(h) => h,
                Err(e) => {
                    slots.push(fail(answer, e.error_code(), e.to_string()));
                    continue;
                }
            };
            // KIP-890: a transactional batch may open a transaction on this partition only
            // if the coordinator has the partition in that producer's transaction (part 1);
            // from Produce v12 (transaction version 2) the broker adds it itself (part 2).
            let txn_verified = match (header.is_transactional(), transactional_id.as_deref()) {
                (true, Some(id)) => {
                    match verify_or_add(broker, id, &header, &name, data.index, version).await {
                        Ok(verified) => verified,
                        Err((e, text)) => {
                            slots.push(fail(answer, e, text));
                            continue;
                        }
                    }
                }
                _ => false,
            };
            let request = AppendRequest {
                origin: EntryOrigin::Client,
                header,
                batch: records,
                append_time_ms: now,
                txn_verified,
            };
            match handle.submit(request).await {
                Ok(rx) => slots.push(Slot::Waiting(answer, rx)),
                Err(stopped) => {
                    let e = AppendError::from(stopped);
                    slots.push(fail(answer, e.error_code(), e.to_string()));
                }
            }
        }
        topics.push((topic_data.name, slots));
    }
    PendingProduce {
        version,
        acks,
        topics,
        first_error,
    }
}

/// The first Produce version of transaction version 2: the broker adds the partition to the
/// transaction instead of only verifying it (Kafka's `ADD_PARTITION` operation).
const TRANSACTION_V2_VERSION: i16 = 12;

/// Whether the batch's partition is in its producer's open transaction, adding it first for
/// a Produce v12+ request. The coordinator's refusals map as Kafka maps them for Produce.
async fn verify_or_add(
    broker: &Broker,
    transactional_id: &str,
    header: &tally_protocol::BatchHeader,
    topic: &str,
    partition: i32,
    version: i16,
) -> Result<bool, (ResponseError, String)> {
    let (producer_id, epoch) = (header.producer_id, header.producer_epoch);
    if broker
        .txns
        .verify(transactional_id, producer_id, epoch, topic, partition)
    {
        return Ok(true);
    }
    if version < TRANSACTION_V2_VERSION {
        return Ok(false);
    }
    let added = broker
        .txns
        .add_partitions(
            transactional_id.to_string(),
            producer_id,
            epoch,
            vec![(topic.to_string(), partition)],
        )
        .await;
    added.map(|()| true).map_err(|e| {
        let code = match e {
            TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
            TxnError::CoordinatorNotAvailable => ResponseError::NotEnoughReplicas,
            other => other.code(true),
        };
        (
            code,
            format!("the partition could not be added to the transaction: {e:?}"),
        )
    })
}

impl PendingProduce {
    /// Waits for every queued batch's answer and builds the response.
    pub async fn finish(self) -> ProduceOutcome {
        let PendingProduce {
            version,
            acks,
            topics,
            mut first_error,
        } = self;
        let mut responses = Vec::with_capacity(topics.len());
        for (name, slots) in topics {
            let mut partition_responses = Vec::with_capacity(slots.len());
            for slot in slots {
                let answer = match slot {
                    Slot::Done(answer) => answer,
                    Slot::Waiting(mut answer, rx) => {
                        let result = rx.await.unwrap_or_else(|_| {
                            Err(AppendError::from(crate::partition_handle::WriterStopped))
                        });
                        match result {
                            Ok(outcome) => {
                                answer.base_offset = outcome.base_offset;
                                answer.log_append_time_ms = outcome.log_append_time_ms;
                                if version >= 5 {
                                    answer.log_start_offset = outcome.log_start_offset;
                                }
                                answer
                            }
                            Err(e) => rejected(
                                version,
                                &mut first_error,
                                &name.0,
                                answer,
                                e.error_code(),
                                e.to_string(),
                            ),
                        }
                    }
                };
                partition_responses.push(answer);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partition_responses),
            );
        }
        if acks == 0 {
            // The client reads no answer; Kafka closes the connection so it notices a failure.
            return match first_error {
                Some(reason) => ProduceOutcome::Close(format!("acks=0 produce failed: {reason}")),
                None => ProduceOutcome::NoResponse,
            };
        }
        ProduceOutcome::Respond(ProduceResponse::default().with_responses(responses))
    }
}
