//! Bad input gets Kafka's answer: an error code where Kafka answers one, a closed connection
//! where Kafka closes it. After every case the broker still serves other connections and the
//! data already stored is untouched.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;
use tally_testkit::requests::topic_name;
use tally_testkit::{batch, BatchSpec, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_REQUIRED_ACKS: i16 = 21;
const UNSUPPORTED_VERSION: i16 = 35;
const INVALID_TXN_STATE: i16 = 48;
const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
const INVALID_RECORD: i16 = 87;

fn start() -> BrokerProcess {
    BrokerProcess::start(
        Path::new(TALLY),
        &[
            "--set",
            "socket.request.max.bytes=100000",
            "--set",
            "message.max.bytes=5000",
            "--set",
            "max.connections=8",
        ],
    )
}

/// The broker answers a fresh connection and still holds exactly `expected_end` offsets.
fn still_serving(broker: &BrokerProcess, expected_end: i64) {
    let mut c = WireClient::connect(broker.addr).expect("broker accepts new connections");
    let versions = c
        .send(&ApiVersionsRequest::default(), 3)
        .expect("ApiVersions");
    assert_eq!(versions.error_code, 0);
    assert_eq!(
        c.list_offset("t", 0, -1).unwrap(),
        expected_end,
        "stored data changed"
    );
}

/// Writes 3 known batches; returns their bytes as fetched.
fn seed(broker: &BrokerProcess) -> Bytes {
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("t", 1).unwrap();
    for i in 0..3 {
        assert_eq!(
            c.produce(9, "t", 0, batch(1000 + i, 0, 0, 2))
                .unwrap()
                .error_code,
            0
        );
    }
    c.fetch_once("t", 0, 0, 1 << 20).unwrap().2
}

fn fix_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn mutated(f: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut b = batch(5, 0, 0, 3).to_vec();
    f(&mut b);
    Bytes::from(b)
}

#[test]
fn bad_batches_get_kafkas_error_codes_and_store_nothing() {
    let broker = start();
    let stored = seed(&broker);
    let mut c = WireClient::connect(broker.addr).unwrap();
    let big = {
        let mut spec = BatchSpec::new(5, 0, 0, 1);
        spec.values = vec![vec![7u8; 6000]];
        spec.encode()
    };
    let zstd = {
        let mut spec = BatchSpec::new(-1, -1, -1, 2);
        spec.compression = kafka_protocol::records::Compression::Zstd;
        spec.encode()
    };
    let transactional = {
        let mut spec = BatchSpec::new(5, 0, 0, 1);
        spec.transactional = true;
        spec.encode()
    };
    let cases: Vec<(&str, Bytes, i16)> = vec![
        ("magic 1", mutated(|b| b[16] = 1), INVALID_RECORD),
        ("magic 3", mutated(|b| b[16] = 3), INVALID_RECORD),
        (
            "wrong CRC",
            mutated(|b| {
                let n = b.len();
                b[n - 1] ^= 0x40
            }),
            CORRUPT_MESSAGE,
        ),
        (
            "count != lastOffsetDelta + 1",
            mutated(|b| {
                b[57..61].copy_from_slice(&7i32.to_be_bytes());
                fix_crc(b)
            }),
            INVALID_RECORD,
        ),
        (
            "negative sequence with a producer id",
            mutated(|b| {
                b[53..57].copy_from_slice(&(-1i32).to_be_bytes());
                fix_crc(b)
            }),
            INVALID_RECORD,
        ),
        (
            "control batch from a client",
            mutated(|b| {
                b[22] |= 0x20;
                fix_crc(b)
            }),
            INVALID_RECORD,
        ),
        (
            "count and delta inflated, CRC fixed",
            mutated(|b| {
                b[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
                b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
                fix_crc(b)
            }),
            INVALID_RECORD,
        ),
        (
            "record length varint corrupted, CRC fixed",
            mutated(|b| {
                b[61] = 0x02;
                fix_crc(b)
            }),
            CORRUPT_MESSAGE,
        ),
        (
            "nonzero base offset",
            mutated(|b| b[0..8].copy_from_slice(&42i64.to_be_bytes())),
            INVALID_RECORD,
        ),
        (
            "two batches",
            {
                let mut b = batch(5, 0, 0, 1).to_vec();
                b.extend_from_slice(&batch(5, 0, 1, 1));
                Bytes::from(b)
            },
            INVALID_RECORD,
        ),
        (
            "truncated batch",
            mutated(|b| b.truncate(b.len() - 10)),
            INVALID_RECORD,
        ),
        ("no batch at all", Bytes::new(), INVALID_RECORD),
        ("garbage", Bytes::from(vec![0xab; 80]), INVALID_RECORD),
        ("over message.max.bytes", big, MESSAGE_TOO_LARGE),
        ("transactional batch", transactional, INVALID_TXN_STATE),
    ];
    for version in [3i16, 7, 9, 11] {
        for (name, records, expected) in &cases {
            let r = c.produce(version, "t", 0, records.clone()).unwrap();
            assert_eq!(r.error_code, *expected, "v{version}: {name}");
            assert_eq!(r.base_offset, -1, "v{version}: {name}");
            if version >= 8 {
                assert!(
                    r.error_message.is_some(),
                    "v{version}: {name} carries a message"
                );
            }
        }
        // zstd needs Produce v7.
        let expected = if version < 7 {
            UNSUPPORTED_COMPRESSION_TYPE
        } else {
            0
        };
        let r = c.produce(version, "t", 0, zstd.clone()).unwrap();
        assert_eq!(r.error_code, expected, "v{version}: zstd");
    }
    // Unknown topic and partition.
    assert_eq!(
        c.produce(9, "nope", 0, batch(9, 0, 0, 1))
            .unwrap()
            .error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        c.produce(9, "t", 3, batch(9, 0, 0, 1)).unwrap().error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    assert_eq!(
        c.produce(9, "t", -1, batch(9, 0, 0, 1)).unwrap().error_code,
        UNKNOWN_TOPIC_OR_PARTITION
    );
    // Null records.
    let null = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(None)])]);
    assert_eq!(
        c.send(&null, 9).unwrap().responses[0].partition_responses[0].error_code,
        INVALID_RECORD
    );
    // acks must be -1, 0 or 1.
    let acks2 =
        ProduceRequest::default()
            .with_acks(2)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name("t"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(9, 0, 0, 1)))])]);
    assert_eq!(
        c.send(&acks2, 9).unwrap().responses[0].partition_responses[0].error_code,
        INVALID_REQUIRED_ACKS
    );

    // Only the four zstd batches (v7, v9, v11) were appended: 3 seeded batches of 2, then 3 of 2.
    let after = c.fetch_once("t", 0, 0, 1 << 20).unwrap().2;
    assert_eq!(
        &after[..stored.len()],
        &stored[..],
        "stored batches changed"
    );
    still_serving(&broker, 12);
}

/// Produce v0-v2 are advertised (as Kafka 4 does) and refused with UNSUPPORTED_VERSION.
#[test]
fn produce_v0_to_v2_are_refused_per_partition() {
    let broker = start();
    seed(&broker);
    let mut c = WireClient::connect(broker.addr).unwrap();
    for version in 0..=2i16 {
        // Header v1, then acks, timeout, [topic [partition, records]].
        let mut body = Vec::new();
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&version.to_be_bytes());
        body.extend_from_slice(&(77 + i32::from(version)).to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&1000i32.to_be_bytes());
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
        body.push(b't');
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&0i32.to_be_bytes());
        let records = batch(-1, -1, -1, 1);
        body.extend_from_slice(&(records.len() as i32).to_be_bytes());
        body.extend_from_slice(&records);
        c.send_frame(&body).unwrap();
        let frame = c.read_frame().unwrap().expect("an answer");
        let mut expected = Vec::new();
        expected.extend_from_slice(&(77 + i32::from(version)).to_be_bytes());
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&1i16.to_be_bytes());
        expected.push(b't');
        expected.extend_from_slice(&1i32.to_be_bytes());
        expected.extend_from_slice(&0i32.to_be_bytes());
        expected.extend_from_slice(&UNSUPPORTED_VERSION.to_be_bytes());
        expected.extend_from_slice(&(-1i64).to_be_bytes());
        if version >= 2 {
            expected.extend_from_slice(&(-1i64).to_be_bytes());
        }
        if version >= 1 {
            expected.extend_from_slice(&0i32.to_be_bytes());
        }
        assert_eq!(frame, expected, "Produce v{version}");
    }
    still_serving(&broker, 6);
}

/// Each of these closes the connection, as Kafka does; the broker goes on serving.
#[test]
fn malformed_frames_close_only_their_connection() {
    let broker = start();
    seed(&broker);
    let metadata = WireClient::encode(&MetadataRequest::default().with_topics(None), 9, 1).unwrap();
    let mut truncated = metadata.clone();
    truncated.truncate(metadata.len() - 2);
    let mut unknown_key = metadata.clone();
    unknown_key[0..2].copy_from_slice(&999i16.to_be_bytes());
    // A well-formed request of an API the broker does not serve (AlterConfigs): the only
    // reason to close is that it is not served.
    let unsupported_api = WireClient::encode(
        &kafka_protocol::messages::AlterConfigsRequest::default(),
        0,
        1,
    )
    .unwrap();
    assert!(tally_protocol::advertised_range(ApiKey::AlterConfigs as i16).is_none());
    let mut too_new = metadata.clone();
    too_new[2..4].copy_from_slice(&99i16.to_be_bytes());
    let mut produce_garbage = WireClient::encode(&ProduceRequest::default(), 9, 1).unwrap();
    produce_garbage.truncate(12);
    produce_garbage.extend_from_slice(&[0xff; 40]);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "frame larger than socket.request.max.bytes",
            200_000i32.to_be_bytes().to_vec(),
        ),
        ("negative frame size", (-7i32).to_be_bytes().to_vec()),
        ("zero frame size", 0i32.to_be_bytes().to_vec()),
        ("frame shorter than a header", framed(&[0, 3, 0])),
        ("truncated request body", framed(&truncated)),
        ("unknown api key", framed(&unknown_key)),
        ("api not served", framed(&unsupported_api)),
        ("unsupported version", framed(&too_new)),
        ("malformed produce body", framed(&produce_garbage)),
    ];
    for (name, bytes) in cases {
        let mut c = WireClient::connect(broker.addr).unwrap();
        c.send_raw(&bytes).unwrap();
        assert!(c.is_closed_by_peer(), "{name}: connection should be closed");
        still_serving(&broker, 6);
    }
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as i32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// KIP-511: a too-new ApiVersions gets a v0 answer with UNSUPPORTED_VERSION and our table.
#[test]
fn too_new_api_versions_gets_a_v0_answer() {
    let broker = start();
    let mut c = WireClient::connect(broker.addr).unwrap();
    let mut body = WireClient::encode(&ApiVersionsRequest::default(), 3, 42).unwrap();
    body[2..4].copy_from_slice(&17i16.to_be_bytes());
    c.send_frame(&body).unwrap();
    let frame = c.read_frame().unwrap().expect("answer");
    let mut bytes = Bytes::from(frame);
    let header = ResponseHeader::decode(&mut bytes, 0).unwrap();
    assert_eq!(header.correlation_id, 42);
    let response = ApiVersionsResponse::decode(&mut bytes, 0).unwrap();
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    let entry = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .unwrap();
    assert_eq!((entry.min_version, entry.max_version), (0, 4));
    // The connection stays usable.
    assert_eq!(
        c.send(&ApiVersionsRequest::default(), 3)
            .unwrap()
            .error_code,
        0
    );
}

/// acks=0 gets no answer; a failed acks=0 produce closes the connection so the client notices.
#[test]
fn acks_zero() {
    let broker = start();
    seed(&broker);
    let mut c = WireClient::connect(broker.addr).unwrap();
    let request = |records: Bytes| {
        ProduceRequest::default()
            .with_acks(0)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name("t"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records))])])
    };
    c.send_only(&request(batch(-1, -1, -1, 4)), 9).unwrap();
    // The next answer on the connection is for the next request: nothing came for acks=0.
    let versions = c.send(&ApiVersionsRequest::default(), 3).unwrap();
    assert_eq!(versions.error_code, 0);
    assert_eq!(c.list_offset("t", 0, -1).unwrap(), 10);
    c.send_only(&request(mutated(|b| b[16] = 0)), 9).unwrap();
    assert!(c.is_closed_by_peer());
    still_serving(&broker, 10);
}

/// A connection the broker answers, waiting for a slot while earlier connections' closes are
/// noticed (asynchronously) by the broker.
fn connect_served(broker: &BrokerProcess) -> WireClient {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = WireClient::connect(broker.addr).unwrap();
        if c.send(&ApiVersionsRequest::default(), 3).is_ok() {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection slot freed within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Past max.connections new connections are closed at once; the ones open keep working.
#[test]
fn connection_limit_holds() {
    let broker = start();
    seed(&broker);
    let mut open: Vec<WireClient> = (0..8).map(|_| connect_served(&broker)).collect();
    for _ in 0..3 {
        let mut extra = WireClient::connect(broker.addr).unwrap();
        let _ =
            extra.send_frame(&WireClient::encode(&ApiVersionsRequest::default(), 3, 1).unwrap());
        assert!(
            extra.is_closed_by_peer(),
            "a ninth connection must be refused"
        );
    }
    for c in open.iter_mut() {
        assert_eq!(
            c.list_offset("t", 0, -1).unwrap(),
            6,
            "open connections keep working"
        );
    }
    open.pop();
    let mut again = connect_served(&broker);
    assert_eq!(again.list_offset("t", 0, -1).unwrap(), 6);
}
