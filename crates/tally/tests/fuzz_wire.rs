//! Bad input at scale: thousands of random and mutated request frames against a real broker
//! process. Every frame gets an answer or a closed connection; the broker never panics, keeps
//! serving, and its log stays whole (every stored batch passes its CRC, and a restart recovers
//! without cutting anything).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use proptest::prelude::*;
use tally_testkit::requests::topic_name;
use tally_testkit::{batch, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

/// Valid requests that the mutations start from.
fn seeds() -> Vec<Vec<u8>> {
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("f"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch(77, 0, 0, 3)))])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("f"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 16)])]);
    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("f"))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(1000)
            ])]);
    let create = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name("fz"))
        .with_num_partitions(1)]);
    vec![
        WireClient::encode(&produce, 9, 1).unwrap(),
        WireClient::encode(&produce, 3, 1).unwrap(),
        WireClient::encode(&fetch, 12, 1).unwrap(),
        WireClient::encode(&list, 7, 1).unwrap(),
        WireClient::encode(&MetadataRequest::default().with_topics(None), 12, 1).unwrap(),
        WireClient::encode(&ApiVersionsRequest::default(), 3, 1).unwrap(),
        WireClient::encode(&create, 7, 1).unwrap(),
        WireClient::encode(
            &InitProducerIdRequest::default().with_transactional_id(None),
            4,
            1,
        )
        .unwrap(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { keep: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Header { key: i16, version: i16 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (-2i16..80, -1i16..20).prop_map(|(key, version)| Mutation::Header { key, version }),
    ]
}

fn apply(mut frame: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        match m {
            Mutation::Flip { at, mask } if !frame.is_empty() => {
                let i = at % frame.len();
                frame[i] ^= mask;
            }
            Mutation::Truncate { keep } => frame.truncate(keep % (frame.len() + 1)),
            Mutation::Insert { at, bytes } => {
                let i = at % (frame.len() + 1);
                frame.splice(i..i, bytes.iter().copied());
            }
            Mutation::Header { key, version } if frame.len() >= 4 => {
                frame[0..2].copy_from_slice(&key.to_be_bytes());
                frame[2..4].copy_from_slice(&version.to_be_bytes());
            }
            _ => {}
        }
    }
    frame
}

/// Sends one frame on a fresh connection; Ok when an answer or a close came back in time.
fn exchange(addr: SocketAddr, body: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    let _ = s.write_all(&frame);
    // A frame whose size prefix we wrote honestly but whose content is short must still end:
    // half-close our side so the broker sees EOF instead of waiting for more.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    match s.read_to_end(&mut buf) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        // A Fetch may rightly wait its max_wait_ms (a flipped bit can make that a minute):
        // acceptable only while the broker demonstrably serves everyone else meanwhile.
        Err(_) if long_poll_ms(body).is_some_and(|ms| ms >= 10_000) => serving(addr),
        Err(e) => Err(format!("no answer and no close: {e}")),
    }
}

/// Whether a new connection gets an ApiVersions answer within two seconds.
fn serving(addr: SocketAddr) -> Result<(), String> {
    let mut c = WireClient::connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(2)));
    c.send(&ApiVersionsRequest::default(), 3)
        .map(|_| ())
        .map_err(|e| format!("the broker stopped serving while a fetch waited: {e}"))
}

/// The run's seed: fixed, so a failure replays; `TALLY_FUZZ_SEED` picks another.
fn fuzz_seed() -> u64 {
    std::env::var("TALLY_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7a11_f022)
}

#[test]
fn random_and_mutated_frames_never_break_the_broker() {
    let mut broker = BrokerProcess::start(
        Path::new(TALLY),
        &["--set", "socket.request.max.bytes=65536"],
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("f", 1).unwrap();
    let seeds = seeds();
    let addr = broker.addr;
    let seed = fuzz_seed();
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = proptest::test_runner::TestRng::from_seed(
        proptest::test_runner::RngAlgorithm::ChaCha,
        &bytes,
    );
    let config = ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(config, rng);
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec(mutation(), 1..4),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(seed, mutations, random, use_random)| {
            let frame = if use_random {
                random
            } else {
                apply(seeds[seed].clone(), &mutations)
            };
            let result = exchange(addr, &frame);
            prop_assert!(
                result.is_ok(),
                "{:?} for frame {:?} (TALLY_FUZZ_SEED={seed} replays this run)",
                result,
                frame
            );
            Ok(())
        })
        .unwrap();

    // Still serving, and whatever was stored is whole.
    let mut c = WireClient::connect(broker.addr).unwrap();
    let stored = c.read_batches("f", 0).unwrap();
    let end = c.list_offset("f", 0, -1).unwrap();
    assert_eq!(stored.last().map_or(0, |b| b.last_offset() + 1), end);
    let logs = broker.logs();
    assert!(!logs.contains("panicked"), "the broker panicked:\n{logs}");
    drop(c);
    broker.kill9();
    broker.restart();
    assert!(
        !broker.logs().contains("torn or corrupt"),
        "recovery had to cut the log"
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    assert_eq!(c.list_offset("f", 0, -1).unwrap(), end);
    eprintln!(
        "{} batches stored by mutated requests survived intact",
        stored.len()
    );
}

/// The max_wait_ms of a frame that decodes as a whole Fetch request.
fn long_poll_ms(body: &[u8]) -> Option<i32> {
    use kafka_protocol::protocol::{Decodable, HeaderVersion};
    let mut buf = bytes::Bytes::copy_from_slice(body);
    if body.len() < 4 || i16::from_be_bytes([body[0], body[1]]) != ApiKey::Fetch as i16 {
        return None;
    }
    let version = i16::from_be_bytes([body[2], body[3]]);
    let header = RequestHeader::decode(&mut buf, FetchRequest::header_version(version)).ok()?;
    let fetch = FetchRequest::decode(&mut buf, header.request_api_version).ok()?;
    Some(fetch.max_wait_ms)
}

/// The frame proptest found: a Fetch whose flipped bits ask to wait 65 s for 16 MiB. Sent to
/// a broker, it waits (no answer within a second) while the broker serves other connections,
/// and closing it ends the wait without harm.
#[test]
fn a_mutated_fetch_may_long_poll() {
    let frame = [
        0u8, 1, 0, 12, 0, 0, 0, 1, 0, 13, 116, 97, 108, 108, 121, 45, 116, 101, 115, 116, 107, 105,
        116, 0, 255, 255, 255, 255, 0, 1, 0, 0, 1, 0, 0, 0, 127, 255, 255, 255, 0, 0, 0, 0, 0, 255,
        255, 255, 255, 2, 2, 102, 2, 0, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 255,
        255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 1, 0, 0, 0, 0, 1, 1, 0,
    ];
    assert_eq!(long_poll_ms(&frame), Some(65_536));
    assert_eq!(long_poll_ms(&frame[..40]), None);

    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    // The topic it names exists (for an unknown one the broker answers at once).
    WireClient::connect(broker.addr)
        .unwrap()
        .create_topic("f", 1)
        .unwrap();
    let mut s = TcpStream::connect(broker.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut framed = (frame.len() as i32).to_be_bytes().to_vec();
    framed.extend_from_slice(&frame);
    s.write_all(&framed).unwrap();
    let mut buf = [0u8; 4];
    let waited = s.read(&mut buf);
    assert!(
        matches!(&waited, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the fetch answered or closed at once: {waited:?}"
    );
    assert_eq!(serving(broker.addr), Ok(()));
    drop(s);
    assert_eq!(serving(broker.addr), Ok(()));
    assert!(!broker.logs().contains("panicked"));
}
