//! The APIs around produce: every advertised version answers, and Metadata, topic admin,
//! configs, offsets, fetch long-polling and the producer table behave as Kafka's do.

use std::path::Path;
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Request, StrBytes};
use tally_protocol::ADVERTISED_APIS;
use tally_testkit::requests::topic_name;
use tally_testkit::{batch, BatchSpec, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn answers_every_version<R: Request + Default>(c: &mut WireClient, request: R) {
    let range = ADVERTISED_APIS
        .iter()
        .find(|r| r.api_key as i16 == R::KEY)
        .unwrap();
    let min = if R::KEY == 0 { 3 } else { range.min };
    for version in min..=range.max {
        c.send(&request, version)
            .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", range.api_key));
    }
}

#[test]
fn every_advertised_version_gets_a_decodable_answer() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("v", 2).unwrap();
    c.produce(9, "v", 0, batch(-1, -1, -1, 3)).unwrap();
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("v"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let list = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("v"))
            .with_partitions(vec![
                ListOffsetsPartition::default().with_timestamp(-1)
            ])]);
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name("v"))),
    ]));
    let configs = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("v")),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("0")),
        ]);
    answers_every_version(&mut c, ApiVersionsRequest::default());
    answers_every_version(&mut c, metadata);
    answers_every_version(&mut c, MetadataRequest::default().with_topics(None));
    answers_every_version(&mut c, ProduceRequest::default().with_acks(1));
    answers_every_version(&mut c, fetch);
    answers_every_version(&mut c, list);
    answers_every_version(
        &mut c,
        InitProducerIdRequest::default().with_transactional_id(None),
    );
    answers_every_version(&mut c, CreateTopicsRequest::default());
    answers_every_version(&mut c, DeleteTopicsRequest::default());
    answers_every_version(&mut c, CreatePartitionsRequest::default());
    answers_every_version(&mut c, configs);
    answers_every_version(
        &mut c,
        DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
    );
    answers_every_version(&mut c, DescribeProducersRequest::default());
    answers_every_version(&mut c, OffsetForLeaderEpochRequest::default());
    // Groups: requests that fail (no such group or member) still get decodable answers.
    answers_every_version(&mut c, FindCoordinatorRequest::default());
    answers_every_version(&mut c, JoinGroupRequest::default());
    answers_every_version(&mut c, SyncGroupRequest::default());
    answers_every_version(&mut c, HeartbeatRequest::default());
    answers_every_version(&mut c, LeaveGroupRequest::default());
    answers_every_version(&mut c, OffsetCommitRequest::default());
    answers_every_version(&mut c, OffsetFetchRequest::default());
    answers_every_version(&mut c, ListGroupsRequest::default());
    answers_every_version(&mut c, DescribeGroupsRequest::default());
    answers_every_version(&mut c, DeleteGroupsRequest::default());
    answers_every_version(&mut c, OffsetDeleteRequest::default());
    // Transactions, likewise (unknown transactional ids and producers).
    answers_every_version(&mut c, AddPartitionsToTxnRequest::default());
    answers_every_version(&mut c, AddOffsetsToTxnRequest::default());
    answers_every_version(&mut c, EndTxnRequest::default());
    answers_every_version(&mut c, TxnOffsetCommitRequest::default());
    answers_every_version(&mut c, WriteTxnMarkersRequest::default());
    answers_every_version(&mut c, DescribeTransactionsRequest::default());
    answers_every_version(&mut c, ListTransactionsRequest::default());
}

#[test]
fn metadata_topics_and_auto_creation() {
    let broker = BrokerProcess::start(
        Path::new(TALLY),
        &[
            "--set",
            "num.partitions=4",
            "--advertise",
            "localhost:19999",
        ],
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    let ask = |names: &[&str], auto: bool| {
        MetadataRequest::default()
            .with_allow_auto_topic_creation(auto)
            .with_topics(Some(
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect(),
            ))
    };
    let r = c.send(&ask(&["absent"], false), 12).unwrap();
    assert_eq!(
        r.topics[0].error_code, 3,
        "not created when the client forbids it"
    );
    assert_eq!(r.brokers[0].host.as_str(), "localhost");
    assert_eq!(
        r.brokers[0].port, 19999,
        "Metadata carries the advertised address"
    );
    assert!(r.cluster_id.as_ref().is_some_and(|id| id.len() == 22));
    let r = c.send(&ask(&["auto"], true), 12).unwrap();
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].partitions.len(), 4, "num.partitions");
    assert_ne!(
        r.topics[0].topic_id,
        uuid::Uuid::nil(),
        "topic ids from v10"
    );
    let id = r.topics[0].topic_id;
    let p = &r.topics[0].partitions[2];
    assert_eq!(
        (p.partition_index, p.leader_id.0, p.leader_epoch),
        (2, 0, 0)
    );
    assert_eq!(p.replica_nodes, vec![BrokerId(0)]);
    // Invalid name.
    let r = c.send(&ask(&["bad name!"], true), 12).unwrap();
    assert_eq!(r.topics[0].error_code, 17);
    // By id.
    let by_id = MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
        .with_topic_id(id)
        .with_name(None)]));
    let r = c.send(&by_id, 12).unwrap();
    assert_eq!(r.topics[0].name.as_ref().unwrap().0.as_str(), "auto");
    // All topics (the auto-created one and the two internal topics): null at v1+, empty at v0.
    assert_eq!(
        c.send(&MetadataRequest::default().with_topics(None), 12)
            .unwrap()
            .topics
            .len(),
        3
    );
    assert_eq!(
        c.send(&MetadataRequest::default().with_topics(Some(vec![])), 0)
            .unwrap()
            .topics
            .len(),
        3
    );
    assert_eq!(
        c.send(&MetadataRequest::default().with_topics(Some(vec![])), 1)
            .unwrap()
            .topics
            .len(),
        0
    );
    // v0-v3 have no flag and always auto-create.
    assert_eq!(
        c.send(&ask(&["old"], true), 3).unwrap().topics[0].error_code,
        0
    );
}

#[test]
fn topic_admin_apis() {
    let mut broker = BrokerProcess::start(
        Path::new(TALLY),
        &["--set", "auto.create.topics.enable=false"],
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    let create = |name: &str, partitions: i32, rf: i16, configs: &[(&str, &str)]| {
        CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )])
    };
    let r = c
        .send(&create("a", 3, 1, &[("retention.ms", "60000")]), 7)
        .unwrap();
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].num_partitions, 3);
    assert_ne!(r.topics[0].topic_id, uuid::Uuid::nil());
    let configs = r.topics[0].configs.as_ref().unwrap();
    let retention = configs
        .iter()
        .find(|c| c.name.as_str() == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_ref().unwrap().as_str(), "60000");
    assert_eq!(retention.config_source, 1, "DYNAMIC_TOPIC_CONFIG");
    let codes = |c: &mut WireClient, req: CreateTopicsRequest| {
        c.send(&req, 7).unwrap().topics[0].error_code
    };
    assert_eq!(
        codes(&mut c, create("a", 3, 1, &[])),
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        codes(&mut c, create("b", 0, 1, &[])),
        37,
        "INVALID_PARTITIONS"
    );
    assert_eq!(
        codes(&mut c, create("b", 1, 3, &[])),
        38,
        "INVALID_REPLICATION_FACTOR"
    );
    assert_eq!(
        codes(&mut c, create("b", 1, 1, &[("cleanup.policy", "compact")])),
        40,
        "INVALID_CONFIG"
    );
    assert_eq!(codes(&mut c, create("b", 1, 1, &[("no.such", "1")])), 40);
    assert_eq!(
        codes(&mut c, create("..", 1, 1, &[])),
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    assert_eq!(codes(&mut c, create("b", -1, -1, &[])), 0, "defaults");
    let validate = create("c", 2, 1, &[]).with_validate_only(true);
    assert_eq!(codes(&mut c, validate), 0);
    let r = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .unwrap();
    let mut names: Vec<String> = r
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["__consumer_offsets", "__transaction_state", "a", "b"],
        "validate_only created nothing"
    );
    assert!(
        r.topics.iter().any(|t| t.is_internal),
        "the offsets topic is internal"
    );

    // CreatePartitions.
    let grow = |name: &str, count: i32| {
        CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)
            .with_assignments(None)])
    };
    assert_eq!(c.send(&grow("a", 5), 3).unwrap().results[0].error_code, 0);
    assert_eq!(c.send(&grow("a", 4), 3).unwrap().results[0].error_code, 37);
    assert_eq!(c.send(&grow("zz", 4), 3).unwrap().results[0].error_code, 3);
    assert_eq!(
        c.produce(9, "a", 4, batch(-1, -1, -1, 1))
            .unwrap()
            .error_code,
        0
    );

    // DescribeConfigs.
    let describe = DescribeConfigsRequest::default()
        .with_include_synonyms(true)
        .with_include_documentation(true)
        .with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("a")),
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("nope")),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(StrBytes::from_static_str("0"))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                    "auto.create.topics.enable",
                )])),
        ]);
    let r = c.send(&describe, 4).unwrap();
    let seg = r.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "segment.bytes")
        .unwrap();
    assert_eq!(
        (seg.value.as_ref().unwrap().as_str(), seg.config_source),
        ("1073741824", 5)
    );
    assert_eq!(seg.synonyms[0].name.as_str(), "log.segment.bytes");
    assert_eq!(seg.config_type, 3, "INT");
    assert!(seg.documentation.as_ref().is_some_and(|d| !d.is_empty()));
    assert_eq!(r.results[1].error_code, 3);
    assert_eq!(r.results[2].configs.len(), 1);
    assert_eq!(
        r.results[2].configs[0].value.as_ref().unwrap().as_str(),
        "false"
    );
    assert_eq!(
        r.results[2].configs[0].config_source, 4,
        "STATIC_BROKER_CONFIG"
    );

    // DescribeCluster.
    let r = c.send(&DescribeClusterRequest::default(), 1).unwrap();
    assert_eq!(r.brokers.len(), 1);
    assert_eq!(r.controller_id.0, 0);

    // Topics survive a restart with their ids and configs; deletion frees the name.
    let id_before = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .unwrap()
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "a")
        .unwrap()
        .topic_id;
    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = WireClient::connect(broker.addr).unwrap();
    let r = c
        .send(&MetadataRequest::default().with_topics(None), 12)
        .unwrap();
    let a = r
        .topics
        .iter()
        .find(|t| t.name.as_ref().unwrap().0.as_str() == "a")
        .unwrap();
    assert_eq!((a.topic_id, a.partitions.len()), (id_before, 5));
    assert_eq!(c.list_offset("a", 4, -1).unwrap(), 1);
    let r = c
        .send(
            &DeleteTopicsRequest::default()
                .with_topic_names(vec![topic_name("a"), topic_name("zz")]),
            5,
        )
        .unwrap();
    assert_eq!(
        (r.responses[0].error_code, r.responses[1].error_code),
        (0, 3)
    );
    let r = c
        .send(
            &DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default()
                .with_name(None)
                .with_topic_id(uuid::Uuid::new_v4())]),
            6,
        )
        .unwrap();
    assert_eq!(r.responses[0].error_code, 100, "UNKNOWN_TOPIC_ID");
    assert!(!broker.data_dir.join("a-0").exists());
    assert_eq!(
        c.produce(9, "a", 0, batch(-1, -1, -1, 1))
            .unwrap()
            .error_code,
        3
    );
    c.create_topic("a", 1).unwrap();
    assert_eq!(
        c.list_offset("a", 0, -1).unwrap(),
        0,
        "a re-created topic starts empty"
    );
}

#[test]
fn offsets_fetch_and_producers() {
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("o", 1).unwrap();
    // Batches with timestamps 1000.., 2000.., 3000.. (three records each, 1 ms apart).
    for (i, ts) in [1000i64, 2000, 3000].iter().enumerate() {
        let mut spec = BatchSpec::new(77, 0, i as i32 * 3, 3);
        spec.timestamp_ms = *ts;
        assert_eq!(c.produce(9, "o", 0, spec.encode()).unwrap().error_code, 0);
    }
    assert_eq!(c.list_offset("o", 0, -2).unwrap(), 0);
    assert_eq!(c.list_offset("o", 0, -1).unwrap(), 9);
    assert_eq!(
        c.list_offset("o", 0, 2001).unwrap(),
        4,
        "first record at or after 2001"
    );
    assert_eq!(c.list_offset("o", 0, 1500).unwrap(), 3);
    assert_eq!(c.list_offset("o", 0, 0).unwrap(), 0);
    assert_eq!(c.list_offset("o", 0, -3).unwrap(), 8, "max timestamp");
    assert_eq!(
        c.list_offset("o", 0, 9999).unwrap(),
        -1,
        "nothing that late"
    );

    // Fetch: out of range, max_bytes, and a fetch from the middle of a batch.
    let (code, hw, _) = c.fetch_once("o", 0, 10, 1 << 20).unwrap();
    assert_eq!((code, hw), (1, 9), "OFFSET_OUT_OF_RANGE");
    let (_, _, one) = c.fetch_once("o", 0, 0, 10).unwrap();
    let first = tally_protocol::BatchHeader::parse_whole(&one).unwrap();
    assert_eq!(
        (first.base_offset, one.len()),
        (0, first.size_in_bytes()),
        "at least one whole batch"
    );
    let (_, _, mid) = c.fetch_once("o", 0, 4, 1 << 20).unwrap();
    assert_eq!(
        tally_protocol::BatchHeader::parse(&mid)
            .unwrap()
            .base_offset,
        3
    );

    // Long poll: waits for min_bytes, and returns as soon as data arrives.
    let poll = |offset: i64, wait_ms: i32| {
        FetchRequest::default()
            .with_max_wait_ms(wait_ms)
            .with_min_bytes(1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name("o"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])])
    };
    let started = Instant::now();
    let r = c.send(&poll(9, 300), 12).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "returned before max_wait with no data"
    );
    assert_eq!(
        r.responses[0].partitions[0]
            .records
            .as_ref()
            .map_or(0, |r| r.len()),
        0
    );
    let id = c.send_only(&poll(9, 20_000), 12).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut other = WireClient::connect(broker.addr).unwrap();
    other.produce(9, "o", 0, batch(77, 0, 9, 1)).unwrap();
    let r = c.receive::<FetchRequest>(12, id).unwrap();
    let records = r.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(
        tally_protocol::BatchHeader::parse(&records)
            .unwrap()
            .base_offset,
        9,
        "woken by the append"
    );

    // OffsetForLeaderEpoch: one epoch covering the log.
    let epoch_req = |epoch: i32| {
        OffsetForLeaderEpochRequest::default().with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name("o"))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_leader_epoch(epoch)
                .with_current_leader_epoch(0)])])
    };
    let p = c.send(&epoch_req(0), 4).unwrap().topics[0].partitions[0].clone();
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 10));
    let p = c.send(&epoch_req(3), 4).unwrap().topics[0].partitions[0].clone();
    assert_eq!((p.leader_epoch, p.end_offset), (-1, -1));

    // DescribeProducers shows the producer table.
    let r = c
        .send(
            &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                .with_name(topic_name("o"))
                .with_partition_indexes(vec![0, 5])]),
            0,
        )
        .unwrap();
    let active = &r.topics[0].partitions[0].active_producers;
    assert_eq!(active.len(), 1);
    assert_eq!(
        (
            active[0].producer_id.0,
            active[0].producer_epoch,
            active[0].last_sequence
        ),
        (77, 0, 9)
    );
    assert_eq!(r.topics[0].partitions[1].error_code, 3);
}

/// Retention deletes old segments and moves the log start offset, but the producer's state
/// survives: its retry is still a duplicate and its next batch still in sequence.
#[test]
fn retention_moves_log_start_and_keeps_producer_state() {
    let broker = BrokerProcess::start(
        Path::new(TALLY),
        &[
            "--set",
            "log.segment.bytes=300",
            "--set",
            "log.retention.bytes=600",
            "--set",
            "log.retention.check.interval.ms=100",
        ],
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic("r", 1).unwrap();
    let (pid, _) = c.init_producer_id().unwrap();
    for i in 0..30 {
        assert_eq!(
            c.produce(9, "r", 0, batch(pid, 0, i, 1))
                .unwrap()
                .error_code,
            0
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.list_offset("r", 0, -2).unwrap() == 0 {
        assert!(Instant::now() < deadline, "retention never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Retention runs every 100 ms and may take more than one pass: wait until the log start
    // has held still for five passes, so the retry below is answered with the same one.
    let mut start = c.list_offset("r", 0, -2).unwrap();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = c.list_offset("r", 0, -2).unwrap();
        if now == start {
            break;
        }
        assert!(Instant::now() < deadline, "the log start never settled");
        start = now;
    }
    assert!(start > 10, "log start {start}");
    let (code, _, _) = c.fetch_once("r", 0, 0, 1000).unwrap();
    assert_eq!(code, 1, "deleted offsets are out of range");
    let retry = c.produce(9, "r", 0, batch(pid, 0, 29, 1)).unwrap();
    assert_eq!((retry.error_code, retry.base_offset), (0, 29));
    assert_eq!(retry.log_start_offset, start);
    assert_eq!(
        c.produce(9, "r", 0, batch(pid, 0, 31, 1))
            .unwrap()
            .error_code,
        45
    );
    assert_eq!(
        c.produce(9, "r", 0, batch(pid, 0, 30, 1))
            .unwrap()
            .base_offset,
        30
    );
}
