//! `ClusterState::apply`, command by command.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::cluster_state::{ClusterState, PRODUCER_ID_BLOCK_SIZE};
use crate::command::ControllerCommand;
use crate::outcome::{Outcome, Refusal};

/// Applies `commands` at offsets 0, 1, ... and returns the outcomes.
fn run(state: &mut ClusterState, commands: &[ControllerCommand]) -> Vec<Outcome> {
    commands
        .iter()
        .map(|c| {
            let offset = state.applied_end();
            state.apply(offset, Ok(c))
        })
        .collect()
}

fn register(node_id: u64) -> ControllerCommand {
    ControllerCommand::RegisterBroker {
        node_id,
        host: "127.0.0.1".into(),
        port: 9092 + node_id as u16,
        raft_addr: format!("127.0.0.1:{}", 9192 + node_id),
    }
}

fn create(name: &str, partitions: u32, replication_factor: u16) -> ControllerCommand {
    ControllerCommand::CreateTopic {
        name: name.into(),
        topic_id: Uuid::from_u128(name.len() as u128 + 1),
        partitions,
        replication_factor,
        configs: BTreeMap::new(),
    }
}

fn three_brokers() -> ClusterState {
    let mut state = ClusterState::default();
    run(&mut state, &[register(1), register(2), register(3)]);
    state
}

#[test]
fn a_registration_records_where_the_node_listens_and_a_new_epoch_each_time() {
    let mut state = ClusterState::default();
    let outcomes = run(&mut state, &[register(1), register(2), register(1)]);
    assert_eq!(outcomes[0], Outcome::BrokerRegistered { epoch: 0 });
    assert_eq!(outcomes[2], Outcome::BrokerRegistered { epoch: 2 });
    assert_eq!(state.brokers().len(), 2);
    assert_eq!(state.brokers()[&1].epoch, 2);
    assert_eq!(state.brokers()[&2].port, 9094);
}

#[test]
fn a_topic_gets_its_id_and_a_replica_set_per_partition() {
    let mut state = three_brokers();
    let outcome = run(&mut state, &[create("orders", 6, 3)]).remove(0);
    let Outcome::TopicCreated {
        topic_id,
        partitions,
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    let topic = state.topic("orders").unwrap();
    assert_eq!(topic.topic_id, topic_id);
    assert_eq!(topic.partitions, partitions);
    assert_eq!(partitions.len(), 6);
    let leaders: BTreeSet<u64> = partitions.iter().map(|r| r[0]).collect();
    assert_eq!(leaders, BTreeSet::from([1, 2, 3]));
}

#[test]
fn the_next_topic_starts_where_the_last_one_ended() {
    let mut state = three_brokers();
    run(&mut state, &[create("a", 1, 1), create("b", 1, 1)]);
    assert_ne!(
        state.topic("a").unwrap().partitions[0],
        state.topic("b").unwrap().partitions[0],
        "two single-partition topics should not both be led by the same broker"
    );
}

#[test]
fn refusals_name_kafkas_errors_and_change_nothing() {
    let mut state = three_brokers();
    run(&mut state, &[create("orders", 2, 2)]);
    let before = state.topics().clone();
    let outcomes = run(
        &mut state,
        &[
            create("orders", 3, 1),
            create("wide", 1, 4),
            create("empty", 0, 1),
            ControllerCommand::DeleteTopic {
                name: "nope".into(),
            },
            ControllerCommand::CreatePartitions {
                name: "orders".into(),
                count: 2,
            },
            ControllerCommand::ReassignPartition {
                topic: "orders".into(),
                partition: 0,
                replicas: vec![1, 9],
            },
            ControllerCommand::ReassignPartition {
                topic: "orders".into(),
                partition: 0,
                replicas: vec![2, 2],
            },
            ControllerCommand::ReassignPartition {
                topic: "orders".into(),
                partition: 5,
                replicas: vec![2],
            },
            ControllerCommand::AllocateProducerIds { node_id: 9 },
        ],
    );
    let codes: Vec<i16> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Refused(r) => r.error_code().code(),
            other => panic!("not refused: {other:?}"),
        })
        .collect();
    // TOPIC_ALREADY_EXISTS, INVALID_REPLICATION_FACTOR, INVALID_PARTITIONS,
    // UNKNOWN_TOPIC_OR_PARTITION, INVALID_PARTITIONS, INVALID_REPLICA_ASSIGNMENT (twice),
    // UNKNOWN_TOPIC_OR_PARTITION, BROKER_NOT_AVAILABLE.
    assert_eq!(codes, vec![36, 38, 37, 3, 37, 39, 39, 3, 8]);
    assert_eq!(state.topics(), &before);
}

#[test]
fn partitions_grow_with_the_topics_replication_factor() {
    let mut state = three_brokers();
    run(&mut state, &[create("orders", 2, 2)]);
    let outcome = run(
        &mut state,
        &[ControllerCommand::CreatePartitions {
            name: "orders".into(),
            count: 5,
        }],
    )
    .remove(0);
    let Outcome::PartitionsCreated { partitions } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(partitions.len(), 3);
    assert!(partitions.iter().all(|r| r.len() == 2));
    assert_eq!(state.topic("orders").unwrap().partitions.len(), 5);
}

#[test]
fn a_reassignment_replaces_the_replicas_and_a_deleted_topic_can_come_back_with_a_new_id() {
    let mut state = three_brokers();
    run(&mut state, &[create("orders", 1, 1)]);
    let topic_id = state.topic("orders").unwrap().topic_id;
    let reassign = ControllerCommand::ReassignPartition {
        topic: "orders".into(),
        partition: 0,
        replicas: vec![3, 1],
    };
    // Not before the group has a leader: its first replica may still be forming it.
    let early = run(&mut state, std::slice::from_ref(&reassign));
    assert!(
        matches!(&early[..], [Outcome::Refused(Refusal::NotReady(_))]),
        "{early:?}"
    );
    let replicas = state.topic("orders").unwrap().partitions[0].clone();
    let voters = |voters: Vec<u64>| ControllerCommand::RecordVoters {
        topic: "orders".into(),
        topic_id,
        partition: 0,
        voters,
    };
    let outcomes = run(
        &mut state,
        &[
            ControllerCommand::RecordLeader {
                topic: "orders".into(),
                topic_id,
                partition: 0,
                leader: replicas[0],
                epoch: 1,
            },
            reassign,
            voters(vec![3, 1]),
            voters(vec![1, 3]),
        ],
    );
    assert_eq!(
        outcomes[1..],
        [
            Outcome::PartitionReassigned,
            Outcome::VotersRecorded { changed: true },
            Outcome::VotersRecorded { changed: false },
        ]
    );
    assert_eq!(state.topic("orders").unwrap().partitions[0], vec![3, 1]);
    assert_eq!(state.topic("orders").unwrap().voters[0], Some(vec![1, 3]));
    let outcomes = run(
        &mut state,
        &[ControllerCommand::DeleteTopic {
            name: "orders".into(),
        }],
    );
    assert_eq!(outcomes, vec![Outcome::TopicDeleted]);
    assert!(state.topic("orders").is_none());
    let again = ControllerCommand::CreateTopic {
        name: "orders".into(),
        topic_id: Uuid::from_u128(99),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::new(),
    };
    run(&mut state, &[again]);
    assert_eq!(state.topic("orders").unwrap().topic_id, Uuid::from_u128(99));
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut state = three_brokers();
    let outcomes = run(
        &mut state,
        &[
            ControllerCommand::AllocateProducerIds { node_id: 1 },
            ControllerCommand::AllocateProducerIds { node_id: 2 },
            ControllerCommand::AllocateProducerIds { node_id: 1 },
        ],
    );
    let firsts: Vec<i64> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::ProducerIds { first, count } => {
                assert_eq!(*count, PRODUCER_ID_BLOCK_SIZE);
                *first
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(firsts, vec![0, 1000, 2000]);
}

#[test]
fn an_unreadable_record_is_skipped_and_remembered_as_such() {
    let mut state = three_brokers();
    let before = state.clone();
    let outcome = state.apply(3, Err("not json"));
    assert!(matches!(outcome, Outcome::Refused(Refusal::Unreadable(_))));
    assert_eq!(state.topics(), before.topics());
    assert_eq!(state.applied_end(), 4);
    assert_eq!(state.outcome_at(3), Some(&outcome));
}

#[test]
fn only_recent_outcomes_are_kept() {
    let mut state = three_brokers();
    for _ in 0..5000 {
        run(&mut state, &[register(1)]);
    }
    assert!(state.outcome_at(0).is_none());
    assert!(state.outcome_at(state.applied_end() - 1).is_some());
}

#[test]
fn a_leader_report_is_recorded_only_when_its_term_is_newer() {
    let mut state = three_brokers();
    run(&mut state, &[create("orders", 2, 3)]);
    let topic_id = state.topic("orders").unwrap().topic_id;
    let report = |leader: u64, epoch: u64, partition: u32| ControllerCommand::RecordLeader {
        topic: "orders".into(),
        topic_id,
        partition,
        leader,
        epoch,
    };
    let outcomes = run(
        &mut state,
        &[
            report(2, 3, 1),
            report(1, 2, 1),
            report(3, 4, 1),
            report(3, 4, 1),
        ],
    );
    let changed: Vec<bool> = outcomes
        .iter()
        .map(|o| matches!(o, Outcome::LeaderRecorded { changed: true }))
        .collect();
    assert_eq!(changed, vec![true, false, true, false]);
    assert_eq!(
        state.topic("orders").unwrap().leaders,
        vec![None, Some((3, 4))]
    );
    let stale_topic = ControllerCommand::RecordLeader {
        topic: "orders".into(),
        topic_id: Uuid::from_u128(12345),
        partition: 0,
        leader: 1,
        epoch: 9,
    };
    let unknown_partition = report(1, 9, 7);
    for command in [stale_topic, unknown_partition] {
        let outcome = run(&mut state, &[command]).remove(0);
        assert!(
            matches!(outcome, Outcome::Refused(Refusal::UnknownTopic(_))),
            "{outcome:?}"
        );
    }
    assert_eq!(state.topic("orders").unwrap().leaders[0], None);
}

#[test]
fn the_first_cluster_id_applied_wins() {
    let mut state = ClusterState::default();
    assert_eq!(state.cluster_id(), None);
    let init = |id: &str| ControllerCommand::InitCluster {
        cluster_id: id.into(),
    };
    let outcomes = run(&mut state, &[init("a"), init("b")]);
    for o in outcomes {
        assert_eq!(
            o,
            Outcome::ClusterId {
                cluster_id: "a".into()
            }
        );
    }
    assert_eq!(state.cluster_id(), Some("a"));
}
