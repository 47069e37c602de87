//! From a request frame to a response frame: peek at the header, answer what needs no
//! decoding (unknown API, unsupported version, a too-new ApiVersions), decode with
//! `kafka-protocol`, call the API's handler, and encode the answer with the right header.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ProduceRequest, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tally_protocol::api_versions::PRODUCE_MIN_IMPLEMENTED;
use tally_protocol::{advertised_range, RequestPeek};
use tracing::error;

use crate::broker::Broker;
use crate::handlers::{self, RequestContext};

pub enum Outcome {
    Respond(Bytes),
    /// acks=0 produce: the client expects nothing back.
    NoResponse,
    /// Kafka closes the connection on malformed or unsupported requests.
    Close(String),
}

/// A decoded request, or what to answer without decoding it.
pub struct Decoded {
    pub api_key: ApiKey,
    pub ctx: RequestContext,
    pub request: RequestKind,
}

/// Peeks at the header and decodes the request: unknown APIs and versions, Produce v0-v2 and
/// malformed requests are answered (or closed) here.
pub fn decode(frame: Bytes, peer: &str) -> Result<Decoded, Outcome> {
    let Some(peek) = RequestPeek::read(&frame) else {
        return Err(Outcome::Close(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        )));
    };
    let Ok(api_key) = ApiKey::try_from(peek.api_key) else {
        return Err(Outcome::Close(format!("unknown api key {}", peek.api_key)));
    };
    let Some(range) = advertised_range(peek.api_key) else {
        return Err(Outcome::Close(format!(
            "{api_key:?} (key {}) is not supported",
            peek.api_key
        )));
    };
    let version = peek.api_version;
    if api_key == ApiKey::ApiVersions && version > range.max {
        // KIP-511: answer a too-new ApiVersions in v0 with UNSUPPORTED_VERSION and our
        // versions, without parsing the body, so the client can retry with one we know.
        let response = handlers::api_versions::unsupported_version_response();
        return Err(encode(
            api_key,
            0,
            peek.correlation_id,
            &ResponseKind::ApiVersions(response),
        ));
    }
    if version < range.min || version > range.max {
        return Err(Outcome::Close(format!(
            "{api_key:?} v{version} is not supported (v{}-v{})",
            range.min, range.max
        )));
    }
    if api_key == ApiKey::Produce && version < PRODUCE_MIN_IMPLEMENTED {
        return Err(legacy_produce(&frame, peek));
    }
    let mut buf = frame;
    let header = match RequestHeader::decode(&mut buf, api_key.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => {
            return Err(Outcome::Close(format!(
                "malformed {api_key:?} v{version} request header: {e}"
            )))
        }
    };
    let request = match RequestKind::decode(api_key, &mut buf, version) {
        Ok(r) => r,
        Err(e) => {
            return Err(Outcome::Close(format!(
                "malformed {api_key:?} v{version} request: {e}"
            )))
        }
    };
    let ctx = RequestContext {
        api_version: version,
        correlation_id: header.correlation_id,
        client_id: header
            .client_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.rsplit_once(':').map_or(peer, |(host, _)| host)),
        principal: crate::security::ANONYMOUS.into(),
        listener: "".into(),
    };
    Ok(Decoded {
        api_key,
        ctx,
        request,
    })
}

/// Queues a Produce's batches on their writers and returns the future of its answer, so the
/// connection can read the next request while the writers work.
pub async fn submit_produce(
    broker: &Broker,
    ctx: RequestContext,
    request: ProduceRequest,
) -> impl std::future::Future<Output = Outcome> + Send + 'static {
    use handlers::authorize::{check, Fixup, Verdict};
    // Topics the principal may not write are taken out here and refused in the answer.
    let (request, fixup) = match check(broker, &ctx, RequestKind::Produce(request)) {
        Verdict::Serve(RequestKind::Produce(r), fixup) => (r, fixup),
        _ => (ProduceRequest::default(), Fixup::None),
    };
    let answer: std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>> =
        match &broker.cluster {
            Some(cluster) => crate::cluster::produce::submit(broker, cluster, &ctx, request).await,
            None => Box::pin(
                handlers::produce::submit(broker, &ctx, request)
                    .await
                    .finish(),
            ),
        };
    async move {
        match answer.await {
            handlers::produce::ProduceOutcome::Respond(r) => {
                let mut response = ResponseKind::Produce(r);
                fixup.apply(&mut response, &|_, _, _| true);
                encode(
                    ApiKey::Produce,
                    ctx.api_version,
                    ctx.correlation_id,
                    &response,
                )
            }
            handlers::produce::ProduceOutcome::NoResponse => Outcome::NoResponse,
            handlers::produce::ProduceOutcome::Close(reason) => Outcome::Close(reason),
        }
    }
}

/// The APIs cluster mode answers itself (`cluster/`); any other request is given back.
async fn cluster_mode(
    broker: &Broker,
    cluster: &crate::cluster::ClusterMode,
    ctx: &RequestContext,
    request: RequestKind,
) -> Result<ResponseKind, RequestKind> {
    use crate::cluster;
    Ok(match request {
        RequestKind::Fetch(r) => {
            ResponseKind::Fetch(cluster::fetch::handle(broker, cluster, ctx, r).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(cluster::list_offsets::handle(broker, cluster, ctx, r).await)
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(cluster::metadata::handle(broker, cluster, ctx, r).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(cluster::admin::create_topics(broker, cluster, ctx, r).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(cluster::admin::delete_topics(cluster, ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(cluster::admin::init_producer_id(cluster, ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            cluster::list_offsets::offset_for_leader_epoch(cluster, r),
        ),
        RequestKind::DescribeQuorum(r) => {
            ResponseKind::DescribeQuorum(cluster::describe_quorum::handle(cluster, ctx, r))
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(cluster::describe_producers::handle(cluster, ctx, r))
        }
        RequestKind::CreatePartitions(r) => ResponseKind::CreatePartitions(
            cluster::create_partitions::handle(cluster, ctx, r).await,
        ),
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            cluster::reassign::handle(cluster, ctx, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(cluster::reassign::list(cluster, r))
        }
        other => return Err(other),
    })
}

/// Handles a decoded request other than Produce, start to finish.
pub async fn handle(broker: &Arc<Broker>, decoded: Decoded) -> Outcome {
    let Decoded {
        api_key,
        ctx,
        request,
    } = decoded;
    let (version, correlation_id) = (ctx.api_version, ctx.correlation_id);
    if matches!(request, RequestKind::Produce(_)) {
        let RequestKind::Produce(r) = request else {
            unreachable!("matched")
        };
        return submit_produce(broker, ctx, r).await.await;
    }
    let (request, fixup) = match handlers::authorize::check(broker, &ctx, request) {
        handlers::authorize::Verdict::Serve(request, fixup) => (request, fixup),
        handlers::authorize::Verdict::Refuse(response) => {
            return encode(api_key, version, correlation_id, &response)
        }
        handlers::authorize::Verdict::Close(reason) => return Outcome::Close(reason),
    };
    let auth_ctx = ctx.clone();
    let may = |op, resource_type, name: &str| {
        handlers::authorize::may(broker, &auth_ctx, op, resource_type, name)
    };

    let request = match &broker.cluster {
        Some(cluster) => match cluster_mode(broker, cluster, &ctx, request).await {
            Ok(mut response) => {
                fixup.apply(&mut response, &may);
                return encode(api_key, version, correlation_id, &response);
            }
            Err(request) => request,
        },
        None => request,
    };
    let response = match request {
        RequestKind::Produce(r) => return submit_produce(broker, ctx, r).await.await,
        RequestKind::Fetch(r) => {
            ResponseKind::Fetch(handlers::fetch::handle(broker, &ctx, r).await)
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(handlers::list_offsets::handle(broker, &ctx, r).await)
        }
        RequestKind::Metadata(r) if handlers::metadata::may_create_topics(broker, version, &r) => {
            admin(
                broker,
                ctx,
                Box::new(move |b, ctx| {
                    ResponseKind::Metadata(handlers::metadata::handle(b, ctx, r))
                }),
            )
            .await
        }
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(handlers::metadata::handle(broker, &ctx, r))
        }
        RequestKind::ApiVersions(_) => {
            ResponseKind::ApiVersions(handlers::api_versions::response())
        }
        RequestKind::CreateTopics(r) => {
            admin(
                broker,
                ctx,
                Box::new(move |b, ctx| {
                    ResponseKind::CreateTopics(handlers::create_topics::handle(b, ctx, r))
                }),
            )
            .await
        }
        RequestKind::DeleteTopics(r) => {
            admin(
                broker,
                ctx,
                Box::new(move |b, ctx| {
                    ResponseKind::DeleteTopics(handlers::delete_topics::handle(b, ctx, r))
                }),
            )
            .await
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(handlers::init_producer_id::handle(broker, &ctx, r).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            handlers::offset_for_leader_epoch::handle(broker, &ctx, r),
        ),
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(handlers::describe_configs::handle(broker, &ctx, r))
        }
        RequestKind::CreatePartitions(r) => {
            admin(
                broker,
                ctx,
                Box::new(move |b, ctx| {
                    ResponseKind::CreatePartitions(handlers::create_partitions::handle(b, ctx, r))
                }),
            )
            .await
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(handlers::describe_cluster::handle(broker, &ctx, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(handlers::find_coordinator::handle(broker, &ctx, r).await)
        }
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(handlers::join_group::handle(broker, &ctx, r).await)
        }
        RequestKind::SyncGroup(r) => {
            ResponseKind::SyncGroup(handlers::sync_group::handle(broker, &ctx, r).await)
        }
        RequestKind::Heartbeat(r) => {
            ResponseKind::Heartbeat(handlers::heartbeat::handle(broker, &ctx, r))
        }
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(handlers::leave_group::handle(broker, &ctx, r))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(handlers::offset_commit::handle(broker, &ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(handlers::offset_fetch::handle(broker, &ctx, r))
        }
        RequestKind::ListGroups(r) => {
            ResponseKind::ListGroups(handlers::list_groups::handle(broker, &ctx, r))
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(handlers::describe_groups::handle(broker, &ctx, r))
        }
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(handlers::delete_groups::handle(broker, &ctx, r).await)
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(handlers::offset_delete::handle(broker, &ctx, r).await)
        }
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(crate::cluster::reassign::not_a_cluster(r))
        }
        // A broker alone moves nothing: no reassignment is ever in progress.
        RequestKind::ListPartitionReassignments(_) => {
            ResponseKind::ListPartitionReassignments(Default::default())
        }
        RequestKind::DescribeQuorum(_) => {
            ResponseKind::DescribeQuorum(crate::cluster::describe_quorum::not_a_cluster(&ctx))
        }
        RequestKind::DescribeProducers(r) => ResponseKind::DescribeProducers(
            handlers::describe_producers::handle(broker, &ctx, r).await,
        ),
        RequestKind::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(
            handlers::add_partitions_to_txn::handle(broker, &ctx, r).await,
        ),
        RequestKind::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(
            handlers::txn_offset_commit::add_offsets(broker, &ctx, r).await,
        ),
        RequestKind::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(
            handlers::txn_offset_commit::commit(broker, &ctx, r).await,
        ),
        RequestKind::EndTxn(r) => {
            ResponseKind::EndTxn(handlers::end_txn::handle(broker, &ctx, r).await)
        }
        RequestKind::DescribeTransactions(r) => ResponseKind::DescribeTransactions(
            handlers::describe_transactions::describe(broker, &ctx, r),
        ),
        RequestKind::ListTransactions(r) => {
            ResponseKind::ListTransactions(handlers::describe_transactions::list(broker, &ctx, r))
        }
        RequestKind::WriteTxnMarkers(r) => ResponseKind::WriteTxnMarkers(
            handlers::write_txn_markers::handle(broker, &ctx, r).await,
        ),
        RequestKind::DescribeUserScramCredentials(r) => ResponseKind::DescribeUserScramCredentials(
            handlers::scram_credentials::describe(broker, &ctx, r),
        ),
        RequestKind::AlterUserScramCredentials(r) => ResponseKind::AlterUserScramCredentials(
            handlers::scram_credentials::alter(broker, &ctx, r).await,
        ),
        RequestKind::CreateAcls(r) => {
            ResponseKind::CreateAcls(handlers::acls::create(broker, &ctx, r).await)
        }
        RequestKind::DescribeAcls(r) => {
            ResponseKind::DescribeAcls(handlers::acls::describe(broker, &ctx, r))
        }
        RequestKind::DeleteAcls(r) => {
            ResponseKind::DeleteAcls(handlers::acls::delete(broker, &ctx, r).await)
        }
        _ => return Outcome::Close(format!("{api_key:?} has no handler")),
    };
    let mut response = response;
    fixup.apply(&mut response, &may);
    encode(api_key, version, correlation_id, &response)
}

type AdminHandler = Box<dyn FnOnce(&Broker, &RequestContext) -> ResponseKind + Send>;

/// Topic administration creates, renames and deletes directories and files: such a request is
/// handled whole on the blocking pool, never on an async worker.
async fn admin(broker: &Arc<Broker>, ctx: RequestContext, handler: AdminHandler) -> ResponseKind {
    let b = Arc::clone(broker);
    broker.off_runtime(move || handler(&b, &ctx)).await
}

/// Size prefix, response header (v0 for ApiVersions whatever the version), body.
pub fn encode(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &ResponseKind,
) -> Outcome {
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let result = ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .and_then(|_| response.encode(&mut buf, version));
    if let Err(e) = result {
        // A response we cannot encode is our bug; say so loudly and drop the connection
        // rather than send the client something it cannot parse.
        error!(?api_key, version, error = %e, "failed to encode response");
        return Outcome::Close(format!(
            "internal error encoding {api_key:?} v{version} response"
        ));
    }
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Outcome::Respond(buf.freeze())
}

/// Produce v0-v2 are advertised (old librdkafka looks for v0) but, as in Kafka 4, refused:
/// every partition gets UNSUPPORTED_VERSION. `kafka-protocol` has no codec for these versions,
/// so the body is read and the answer written here.
fn legacy_produce(frame: &[u8], peek: RequestPeek) -> Outcome {
    let Some(answer) = tally_protocol::legacy_produce::unsupported_answer(frame, peek.api_version)
    else {
        return Outcome::Close(format!("malformed Produce v{} request", peek.api_version));
    };
    match answer {
        None => Outcome::Close("acks=0 Produce v0-v2 is not supported".into()),
        Some(body) => {
            let mut out = BytesMut::with_capacity(body.len() + 8);
            out.put_i32(body.len() as i32 + 4);
            out.put_i32(peek.correlation_id);
            out.extend_from_slice(&body);
            Outcome::Respond(out.freeze())
        }
    }
}
