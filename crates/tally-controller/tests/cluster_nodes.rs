//! Three cluster nodes in one process over real TCP and real files: they register with the
//! controller, a topic created through any node is hosted by the replicas the metadata
//! assigns, each partition group elects a leader that takes produce, a deleted topic's
//! replicas close and their files go, and a restarted node hosts its partitions again from
//! its metadata log and catches up.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use tally_controller::{
    ClusterConfig, ClusterNode, ControllerCommand, Outcome, RetentionSchedule, TopicLogConfig,
};
use tally_log::LogConfig;
use tally_raft::{RaftTimeouts, ReplicaConfig};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// Free loopback ports for the voters, outside the ephemeral range.
fn voters(n: u64) -> BTreeMap<u64, String> {
    (1..=n)
        .map(|id| {
            (
                id,
                format!("127.0.0.1:{}", tally_testkit::free_fixed_port()),
            )
        })
        .collect()
}

fn config(id: u64, voters: &BTreeMap<u64, String>, dir: &Path) -> ClusterConfig {
    ClusterConfig {
        node_id: id,
        voters: voters.clone(),
        data_dir: dir.join(format!("node-{id}")),
        cluster_id: format!("node-{id}-cluster"),
        advertised_host: "127.0.0.1".into(),
        advertised_port: 19092 + id as u16,
        raft_listener: None,
        preferred_leader_check: None,
        replica: ReplicaConfig::new(LogConfig::default(), RaftTimeouts::default()).unwrap(),
        max_message_bytes: 1 << 20,
        transport: tally_raft::TokioTcp::shared(),
        // New at each start, as a broker's clock gives it.
        incarnation: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        topic_log_config: None,
        retention: None,
    }
}

/// Three voters with their data under `dir`, started; the voters' addresses too, to restart
/// one.
async fn start_three(dir: &Path) -> (BTreeMap<u64, String>, BTreeMap<u64, ClusterNode>) {
    let voters = voters(3);
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let node = ClusterNode::start(config(id, &voters, dir)).await.unwrap();
        nodes.insert(id, node);
    }
    (voters, nodes)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Produces one batch to `topic`-`index` through whichever node leads it.
async fn produce(nodes: &BTreeMap<u64, ClusterNode>, topic: &str, index: u32, seq: i32) -> i64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        for node in nodes.values() {
            let Some(p) = node.partition(topic, index) else {
                continue;
            };
            let batch = tally_testkit_batch(seq);
            match p.leader.produce(batch).await {
                Ok(produced) => return produced.base_offset,
                Err(e) => tracing::debug!(node = node.node_id(), "produce: {e}"),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no leader took produce"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tally_testkit_batch(seq: i32) -> bytes::Bytes {
    tally_testkit::BatchSpec::new(42, 0, seq * 2, 2).encode()
}

fn high_watermark(node: &ClusterNode, topic: &str, index: u32) -> i64 {
    node.partition(topic, index)
        .map_or(-1, |p| *p.replica.state_machine.high_watermark().borrow())
}

fn create(name: &str, partitions: u32) -> ControllerCommand {
    ControllerCommand::CreateTopic {
        name: name.into(),
        topic_id: Uuid::new_v4(),
        partitions,
        replication_factor: 3,
        configs: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_through_any_node_is_hosted_replicated_and_removed_with_its_files() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let (_, nodes) = start_three(dir.path()).await;
    wait_until("every node sees three registered brokers", || {
        nodes
            .values()
            .all(|n| n.controller().cluster().brokers().len() == 3)
    })
    .await;
    // One cluster id, whichever node proposed it first.
    let ids: std::collections::BTreeSet<Option<String>> = nodes
        .values()
        .map(|n| n.controller().cluster().cluster_id().map(str::to_string))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids.iter().all(Option::is_some));

    // Through every node in turn: at least two of them forward to the leader.
    for (i, node) in nodes.values().enumerate() {
        let name = format!("orders-{i}");
        let outcome = node.submit(&create(&name, 2), WAIT).await.unwrap();
        assert!(
            matches!(outcome, Outcome::TopicCreated { .. }),
            "{outcome:?}"
        );
    }
    let outcome = nodes[&2]
        .submit(&create("orders-0", 1), WAIT)
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Refused(_)), "{outcome:?}");
    wait_until("every node hosts its six replicas", || {
        nodes.values().all(|n| n.partitions().len() == 6)
    })
    .await;

    for index in 0..2 {
        let first = produce(&nodes, "orders-1", index, 0).await;
        let second = produce(&nodes, "orders-1", index, 1).await;
        assert_eq!(second, first + 2);
        wait_until("the replicas commit both batches", || {
            nodes
                .values()
                .all(|n| high_watermark(n, "orders-1", index) == second + 2)
        })
        .await;
        // A retry of the first batch is answered with its offset and not stored again.
        assert_eq!(produce(&nodes, "orders-1", index, 0).await, first);
        assert!(nodes
            .values()
            .all(|n| high_watermark(n, "orders-1", index) == second + 2));
    }

    let dirs: Vec<_> = nodes
        .values()
        .filter_map(|n| n.partition("orders-1", 0))
        .map(|p| p.replica.dir.clone())
        .collect();
    assert_eq!(dirs.len(), 3);
    assert!(dirs.iter().all(|d| d.exists()));
    let deleted = nodes[&3]
        .submit(
            &ControllerCommand::DeleteTopic {
                name: "orders-1".into(),
            },
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(deleted, Outcome::TopicDeleted);
    wait_until("every node closes the deleted topic's replicas", || {
        nodes.values().all(|n| n.partitions().len() == 4)
    })
    .await;
    wait_until("their files are gone", || dirs.iter().all(|d| !d.exists())).await;
    for (_, node) in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_hosts_its_partitions_again_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (voters, mut nodes) = start_three(dir.path()).await;
    wait_until("three registered brokers", || {
        nodes[&1].controller().cluster().brokers().len() == 3
    })
    .await;
    nodes[&1].submit(&create("events", 1), WAIT).await.unwrap();
    wait_until("every node hosts the replica", || {
        nodes.values().all(|n| n.partition("events", 0).is_some())
    })
    .await;
    let first = produce(&nodes, "events", 0, 0).await;

    // Stop a node that does not lead the partition, write while it is away, restart it.
    let leader = nodes
        .values()
        .find_map(|n| {
            let p = n.partition("events", 0)?;
            let m = p.replica.raft.metrics().borrow_watched().clone();
            m.current_leader
        })
        .unwrap();
    let away = *nodes.keys().find(|&&id| id != leader).unwrap();
    nodes.remove(&away).unwrap().shutdown().await.unwrap();
    produce(&nodes, "events", 0, 1).await;
    produce(&nodes, "events", 0, 2).await;
    nodes.insert(
        away,
        ClusterNode::start(config(away, &voters, dir.path()))
            .await
            .unwrap(),
    );
    wait_until("the restarted node hosts and catches up", || {
        high_watermark(&nodes[&away], "events", 0) == first + 6
    })
    .await;
    for (_, node) in nodes {
        node.shutdown().await.unwrap();
    }
}

/// The node leading `topic`-`index`, as its own replica says.
fn leader_of(nodes: &BTreeMap<u64, ClusterNode>, topic: &str, index: u32) -> Option<u64> {
    nodes.values().find_map(|n| {
        let p = n.partition(topic, index)?;
        let m = p.replica.raft.metrics().borrow_watched().clone();
        (m.state == openraft::ServerState::Leader).then_some(n.node_id())
    })
}

/// Idle partition groups cost nothing per group: the nodes ping each other, and no group
/// heartbeats its followers (openraft's per-group heartbeats would send 12 groups x 2
/// followers x 10 a second). Yet when a leading node goes away, its partitions get new
/// leaders on the others, elected by the group driver, and take produce.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_send_no_heartbeats_and_a_lost_leader_is_replaced() {
    const PARTITIONS: u32 = 12;
    let dir = tempfile::tempdir().unwrap();
    let (_, mut nodes) = start_three(dir.path()).await;
    wait_until("three registered brokers", || {
        nodes[&1].controller().cluster().brokers().len() == 3
    })
    .await;
    nodes[&1]
        .submit(&create("idle", PARTITIONS), WAIT)
        .await
        .unwrap();
    for index in 0..PARTITIONS {
        produce(&nodes, "idle", index, 0).await;
    }
    wait_until("every replica has committed its partition's batch", || {
        (0..PARTITIONS).all(|i| nodes.values().all(|n| high_watermark(n, "idle", i) >= 2))
    })
    .await;

    let appends = |nodes: &BTreeMap<u64, ClusterNode>| -> u64 {
        nodes
            .values()
            .map(ClusterNode::partition_append_requests)
            .sum()
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = appends(&nodes);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = appends(&nodes) - before;
    assert!(
        sent < u64::from(PARTITIONS),
        "{sent} AppendEntries in 2 s between idle groups: heartbeats per group"
    );
    assert!(
        nodes.values().all(|n| (1..=3)
            .filter(|peer| *peer != n.node_id())
            .all(|peer| n.liveness().heard_within(peer, Duration::from_secs(1)))),
        "every node hears from the others"
    );

    // The node leading the most partitions goes away.
    let mut led: BTreeMap<u64, u32> = BTreeMap::new();
    for index in 0..PARTITIONS {
        *led.entry(leader_of(&nodes, "idle", index).unwrap())
            .or_default() += 1;
    }
    let (&gone, _) = led.iter().max_by_key(|(_, n)| **n).unwrap();
    nodes.remove(&gone).unwrap().shutdown().await.unwrap();
    for index in 0..PARTITIONS {
        produce(&nodes, "idle", index, 1).await;
        let leader = leader_of(&nodes, "idle", index);
        assert!(leader.is_some_and(|l| l != gone), "{index}: {leader:?}");
    }
    for (_, node) in nodes {
        node.shutdown().await.unwrap();
    }
}

/// A leader whose node still answers pings but whose replica of the partition has stopped
/// (its Raft core ended, as on a fatal storage error) is replaced: the node's pings name the
/// stopped group, and the followers elect as if the node were gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_group_stopped_is_replaced_while_its_node_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (_, nodes) = start_three(dir.path()).await;
    wait_until("three registered brokers", || {
        nodes[&1].controller().cluster().brokers().len() == 3
    })
    .await;
    nodes[&1].submit(&create("stops", 1), WAIT).await.unwrap();
    produce(&nodes, "stops", 0, 0).await;
    let stopped = leader_of(&nodes, "stops", 0).unwrap();
    let replica = nodes[&stopped].partition("stops", 0).unwrap();
    replica.replica.raft.shutdown().await.unwrap();

    produce(&nodes, "stops", 0, 1).await;
    let leader = nodes
        .values()
        .filter(|n| n.node_id() != stopped)
        .find_map(|n| {
            let m = n
                .partition("stops", 0)?
                .replica
                .raft
                .metrics()
                .borrow_watched()
                .clone();
            (m.state == openraft::ServerState::Leader).then_some(n.node_id())
        });
    assert!(leader.is_some(), "no other node leads");
    assert!(
        nodes.values().all(|n| (1..=3)
            .filter(|peer| *peer != n.node_id())
            .all(|peer| n.liveness().heard_within(peer, Duration::from_secs(1)))),
        "the stopped group's node still answered pings"
    );
    for (_, node) in nodes {
        node.shutdown().await.unwrap();
    }
}

/// A node whose topics resolve `segment.bytes` and `retention.bytes` from their configs, and
/// that applies retention every 200 ms.
fn retaining(id: u64, voters: &BTreeMap<u64, String>, dir: &Path) -> ClusterConfig {
    let num = |c: &BTreeMap<String, String>, key: &str, default: i64| -> i64 {
        c.get(key).map_or(default, |v| v.parse().unwrap())
    };
    ClusterConfig {
        topic_log_config: Some(TopicLogConfig(std::sync::Arc::new(move |c| LogConfig {
            segment_bytes: num(c, "segment.bytes", 1 << 30) as u64,
            retention_bytes: num(c, "retention.bytes", -1),
            index_interval_bytes: 256,
            ..LogConfig::default()
        }))),
        retention: Some(RetentionSchedule {
            down_after: Duration::from_secs(10),
            every: Duration::from_millis(200),
            now_ms: std::sync::Arc::new(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64
            }),
        }),
        ..config(id, voters, dir)
    }
}

/// Retention in cluster mode: a topic's `retention.bytes` deletes old segments on every
/// replica; a node that was down while they went is sent a snapshot with the leader's
/// retained log when it returns, and holds the same records from the same log start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_segments_and_a_returning_node_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let voters = voters(3);
    let mut nodes = BTreeMap::new();
    for id in 1..=3 {
        let node = ClusterNode::start(retaining(id, &voters, dir.path()))
            .await
            .unwrap();
        nodes.insert(id, node);
    }
    wait_until("three registered brokers", || {
        nodes[&1].controller().cluster().brokers().len() == 3
    })
    .await;
    let topic = ControllerCommand::CreateTopic {
        name: "logs".into(),
        topic_id: Uuid::new_v4(),
        partitions: 1,
        replication_factor: 3,
        configs: [("segment.bytes", "1024"), ("retention.bytes", "2048")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    nodes[&1].submit(&topic, WAIT).await.unwrap();
    wait_until("every node hosts the replica", || {
        nodes.values().all(|n| n.partition("logs", 0).is_some())
    })
    .await;
    for seq in 0..10 {
        produce(&nodes, "logs", 0, seq).await;
    }
    let leader = loop {
        if let Some(id) = leader_of(&nodes, "logs", 0) {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let away = *nodes.keys().find(|&&id| id != leader).unwrap();
    let away_end = {
        let p = nodes[&away].partition("logs", 0).unwrap();
        p.replica.store.log_reader().log_end_offset()
    };
    nodes.remove(&away).unwrap().shutdown().await.unwrap();
    for seq in 10..80 {
        produce(&nodes, "logs", 0, seq).await;
    }
    let log_start = |node: &ClusterNode| {
        node.partition("logs", 0)
            .map_or(-1, |p| p.replica.store.log_reader().log_start_offset())
    };
    wait_until("the others delete what the stopped node lacks", || {
        nodes.values().all(|n| log_start(n) > away_end)
    })
    .await;

    nodes.insert(
        away,
        ClusterNode::start(retaining(away, &voters, dir.path()))
            .await
            .unwrap(),
    );
    produce(&nodes, "logs", 0, 80).await;
    let leader = leader_of(&nodes, "logs", 0).unwrap();
    wait_until("the returning node catches up", || {
        high_watermark(&nodes[&away], "logs", 0) == high_watermark(&nodes[&leader], "logs", 0)
    })
    .await;
    let p = nodes[&away].partition("logs", 0).unwrap();
    let m = p.replica.raft.metrics().borrow_watched().clone();
    assert!(m.snapshot.is_some(), "it was sent entries, not a snapshot");
    assert!(log_start(&nodes[&away]) > away_end);
    let reference = nodes[&leader].partition("logs", 0).unwrap();
    let hw = high_watermark(&nodes[&leader], "logs", 0);
    let from = log_start(&nodes[&leader]).max(log_start(&nodes[&away]));
    let read = |p: &tally_controller::HostedPartition| {
        p.replica
            .store
            .log_reader()
            .read(from, 1 << 20, hw, true)
            .unwrap()
            .records
    };
    assert_eq!(read(&p), read(&reference));
    for (_, node) in nodes {
        node.shutdown().await.unwrap();
    }
}
