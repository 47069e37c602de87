//! The idempotent producer's drain must end even when a batch the broker refused stands
//! before one whose answer was lost. A scripted broker (a loopback listener speaking just
//! enough Kafka) answers the first Produce with OUT_OF_ORDER_SEQUENCE_NUMBER only after a
//! second, pipelined Produce arrived, and closes the connection without answering that one.
//! The producer must resend the batch of unknown fate, settle, bump its epoch and deliver
//! everything long before its delivery timeout. (The soak found a producer idle for minutes
//! in this state: the drain waited for a batch it would never send.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, InitProducerIdResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, RequestHeader, ResponseHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tally_client::{ClientConfig, Producer, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TOPIC: &str = "drain";
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;

/// What the scripted broker saw.
#[derive(Default)]
struct Script {
    produces: AtomicUsize,
    next_offset: AtomicUsize,
}

async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let len = stream.read_i32().await.ok()?;
    let mut body = vec![0; len as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

async fn write_answer<R: Encodable>(
    stream: &mut TcpStream,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) {
    let header_version = if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(version)
    };
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, header_version)
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    let _ = stream.write_all(&buf).await;
}

fn api_versions() -> ApiVersionsResponse {
    let range = |key: ApiKey, min: i16, max: i16| {
        ApiVersion::default()
            .with_api_key(key as i16)
            .with_min_version(min)
            .with_max_version(max)
    };
    ApiVersionsResponse::default().with_api_keys(vec![
        range(ApiKey::Produce, 3, 9),
        range(ApiKey::Metadata, 0, 12),
        range(ApiKey::ApiVersions, 0, 3),
        range(ApiKey::InitProducerId, 0, 4),
    ])
}

fn metadata(port: u16) -> MetadataResponse {
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(0))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(i32::from(port))])
        .with_controller_id(BrokerId(0))
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC))))
            .with_partitions(vec![MetadataResponsePartition::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(0))
                .with_replica_nodes(vec![BrokerId(0)])
                .with_isr_nodes(vec![BrokerId(0)])])])
}

fn produce_answer(error_code: i16, base_offset: i64) -> ProduceResponse {
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
        .with_partition_responses(vec![PartitionProduceResponse::default()
            .with_index(0)
            .with_error_code(error_code)
            .with_base_offset(base_offset)])])
}

/// Records in the one batch of a Produce request.
fn record_count(request: &ProduceRequest) -> usize {
    let records = request.topic_data[0].partition_data[0]
        .records
        .as_ref()
        .expect("records");
    // records count: the last 4 bytes of the 61-byte batch header.
    let mut header = &records[57..61];
    header.get_i32() as usize
}

/// One connection: the first Produce is held until a second arrives, then answered with
/// OUT_OF_ORDER_SEQUENCE_NUMBER, and the connection closes with the second unanswered.
/// Every later Produce is appended.
async fn serve(mut stream: TcpStream, port: u16, script: Arc<Script>) {
    let mut held: Option<(i16, i32)> = None;
    while let Some(mut frame) = read_frame(&mut stream).await {
        let mut peek = &frame[..4];
        let api_key = ApiKey::try_from(peek.get_i16()).unwrap();
        let version = peek.get_i16();
        let header =
            RequestHeader::decode(&mut frame, api_key.request_header_version(version)).unwrap();
        let id = header.correlation_id;
        match api_key {
            ApiKey::ApiVersions => {
                write_answer(&mut stream, api_key, version, id, &api_versions()).await
            }
            ApiKey::Metadata => {
                MetadataRequest::decode(&mut frame, version).unwrap();
                write_answer(&mut stream, api_key, version, id, &metadata(port)).await
            }
            ApiKey::InitProducerId => {
                let answer = InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(1000))
                    .with_producer_epoch(0);
                write_answer(&mut stream, api_key, version, id, &answer).await
            }
            ApiKey::Produce => {
                let request = ProduceRequest::decode(&mut frame, version).unwrap();
                match script.produces.fetch_add(1, Ordering::SeqCst) {
                    0 => held = Some((version, id)),
                    1 => {
                        let (v, first) = held.take().expect("the first is held");
                        let refused = produce_answer(OUT_OF_ORDER_SEQUENCE_NUMBER, -1);
                        write_answer(&mut stream, api_key, v, first, &refused).await;
                        return;
                    }
                    _ => {
                        let n = record_count(&request);
                        let base = script.next_offset.fetch_add(n, Ordering::SeqCst);
                        let answer = produce_answer(0, base as i64);
                        write_answer(&mut stream, api_key, version, id, &answer).await
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_drain_ends_when_a_refused_batch_stands_before_one_of_unknown_fate() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = Arc::new(Script::default());
    let server = tokio::spawn({
        let script = Arc::clone(&script);
        async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, port, Arc::clone(&script)));
            }
        }
    });

    let mut config = ProducerConfig::new(format!("127.0.0.1:{port}"));
    config.client = ClientConfig {
        request_timeout_ms: 1_000,
        reconnect_backoff_ms: 20,
        reconnect_backoff_max_ms: 100,
        ..ClientConfig::new(format!("127.0.0.1:{port}"))
    };
    config.linger_ms = 0;
    config.retry_backoff_ms = 20;
    config.delivery_timeout_ms = 60_000;
    let producer = Producer::new(config).await.unwrap();
    let mut deliveries = Vec::new();
    for i in 0..6 {
        let record = ProducerRecord::new(TOPIC, format!("m{i}")).with_partition(0);
        deliveries.push(producer.send(record).await.unwrap());
        // The first two go out as two pipelined requests.
        tokio::time::sleep(Duration::from_millis(if i == 0 { 20 } else { 1 })).await;
    }
    let all = async {
        let mut results = Vec::new();
        for d in deliveries {
            results.push(d.await);
        }
        results
    };
    let results = tokio::time::timeout(Duration::from_secs(15), all)
        .await
        .expect("the producer stalled: its deliveries did not complete within 15 s");
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "message {i}: {r:?}");
    }
    assert!(script.produces.load(Ordering::SeqCst) >= 3);
    // Six records, each stored once by the scripted broker (the refused and the unanswered
    // first requests stored nothing).
    assert_eq!(script.next_offset.load(Ordering::SeqCst), 6);
    server.abort();
}
