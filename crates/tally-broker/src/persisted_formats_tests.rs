//! Fuzzing that runs in the test suite (proptest): the broker's own files, read back, give an
//! error or a value, never a panic. `__consumer_offsets` records and `__transaction_state`
//! records (arbitrary and mutated), the topics file (arbitrary bytes and arbitrary topic
//! lists: nothing is opened outside the data directory), the producer-id block file.

use std::fs;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use crate::group::store::{CommittedOffset, StoreRecord, StoredGroup, StoredMember};
use crate::txn::log_record;
use crate::txn::{TxnMetadata, TxnState};
use crate::{BrokerConfig, WriterMode};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    }
}

fn mutate(mut bytes: Vec<u8>, flips: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for (at, bit) in flips {
        if !bytes.is_empty() {
            let i = at % bytes.len();
            bytes[i] ^= 1 << (bit % 8);
        }
    }
    if let Some(at) = cut {
        bytes.truncate(at % (bytes.len() + 1));
    }
    bytes
}

fn group_record() -> StoreRecord {
    StoreRecord::Group {
        group: "orders".into(),
        value: Some(StoredGroup {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                subscription: bytes::Bytes::from_static(b"sub"),
                assignment: bytes::Bytes::from_static(b"asg"),
            }],
        }),
    }
}

fn offset_record() -> StoreRecord {
    StoreRecord::Offset {
        group: "orders".into(),
        topic: "t".into(),
        partition: 2,
        value: Some(CommittedOffset {
            offset: 9,
            leader_epoch: -1,
            metadata: Some("meta".into()),
            commit_timestamp_ms: 5,
        }),
    }
}

fn txn_metadata() -> TxnMetadata {
    let mut m = TxnMetadata::new("payments", 4, 60_000, 1);
    m.state = TxnState::Ongoing;
    m.partitions.insert(("t".into(), 0));
    m
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_offsets_record_decodes_or_is_refused(
        key in proptest::collection::vec(any::<u8>(), 0..64),
        value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128)),
    ) {
        if let Some(r) = StoreRecord::decode(&key, value.as_deref()) {
            // Whatever decodes encodes again to the same record.
            prop_assert_eq!(StoreRecord::decode(&r.key(), r.value().as_deref()), Some(r));
        }
    }

    #[test]
    fn a_mutated_offsets_record_decodes_or_is_refused(
        which in any::<bool>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        in_key in any::<bool>(),
    ) {
        let r = if which { group_record() } else { offset_record() };
        let (mut key, mut value) = (r.key().to_vec(), r.value().unwrap().to_vec());
        if in_key {
            key = mutate(key, &flips, cut);
        } else {
            value = mutate(value, &flips, cut);
        }
        if let Some(r) = StoreRecord::decode(&key, Some(&value)) {
            prop_assert_eq!(StoreRecord::decode(&r.key(), r.value().as_deref()), Some(r));
        }
    }

    #[test]
    fn any_transaction_record_decodes_or_is_refused(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
        random in proptest::collection::vec(any::<u8>(), 0..96),
        use_random in any::<bool>(),
    ) {
        let m = txn_metadata();
        let value = if use_random {
            random.clone()
        } else {
            mutate(log_record::encode_value(&m), &flips, cut)
        };
        if let Some(back) = log_record::decode_value("payments", &value) {
            prop_assert_eq!(log_record::decode_value("payments", &log_record::encode_value(&back)), Some(back));
        }
        let key = mutate(log_record::encode_key("payments"), &flips, cut);
        let _ = log_record::decode_key(&key);
        let _ = log_record::decode_key(&random);
    }
}

/// A topics-file entry, possibly hostile.
fn topic_entry() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        6 => "[a-z]{1,8}",
        2 => Just("dup".to_string()),
        1 => Just("..".to_string()),
        1 => Just("../escape".to_string()),
        1 => Just("a/b".to_string()),
        1 => Just(String::new()),
        1 => "\\PC{0,12}",
    ];
    let partitions = prop_oneof![
        6 => 1i64..4,
        1 => Just(0),
        1 => Just(-1),
        1 => Just(1_000_000_000),
    ];
    (name, partitions).prop_map(|(n, p)| {
        format!(
            r#"{{"name":{},"id":"{}","partitions":{p}}}"#,
            serde_json::to_string(&n).unwrap(),
            uuid::Uuid::nil()
        )
    })
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn a_damaged_topics_file_opens_or_is_refused_and_stays_inside(
        entries in proptest::collection::vec(topic_entry(), 0..4),
        garbage in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
    ) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        fs::create_dir(&dir).unwrap();
        let text = match &garbage {
            Some(bytes) => bytes.clone(),
            None => format!(r#"{{"version":1,"topics":[{}]}}"#, entries.join(",")).into_bytes(),
        };
        fs::write(dir.join("tally-topics.json"), &text).unwrap();
        let mut config = BrokerConfig::new();
        config.set("log.dirs", &dir.to_string_lossy()).unwrap();
        // Partition writers in task mode are tasks of the current runtime.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _entered = runtime.enter();
        let opened = crate::topic_registry::TopicRegistry::open(
            &dir,
            Arc::new(config),
            0,
            WriterMode::Task,
        );
        let valid = garbage.is_none() && entries.iter().all(|e| {
            let v: serde_json::Value = serde_json::from_str(e).unwrap();
            let name = v["name"].as_str().unwrap();
            crate::topic_error::validate_topic_name(name).is_ok()
                && (1..4).contains(&v["partitions"].as_i64().unwrap())
        });
        let names: std::collections::HashSet<&str> = entries.iter().map(|e| &e[9..e.find(r#"","id""#).unwrap_or(9)]).collect();
        let distinct = names.len() == entries.len();
        match opened {
            Ok(registry) => {
                for topic in registry.list() {
                    prop_assert!(crate::topic_error::validate_topic_name(&topic.name).is_ok());
                }
                prop_assert!(garbage.is_some() || (valid && distinct), "opened a bad file: {}", String::from_utf8_lossy(&text));
            }
            Err(e) => prop_assert!(!(valid && distinct && garbage.is_none()), "refused a good file: {e}"),
        }
        let outside: Vec<_> = fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(outside, vec![std::ffi::OsString::from("data")], "nothing outside the data directory");
    }

    #[test]
    fn a_damaged_producer_id_file_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("producer-id-block"), &bytes).unwrap();
        let _ = crate::producer_id_manager::ProducerIdManager::open(dir.path());
    }
}
