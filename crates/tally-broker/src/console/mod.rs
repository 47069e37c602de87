//! The web console (issue 14): one page embedded in the binary (`console.html`, served at `/`)
//! and the data it shows, an [`Overview`] of the broker built on demand: topics and
//! partitions with their offsets and sizes, each partition's live producer table with the
//! retries the broker absorbed, consumer groups with their members and lag, and totals.
//! `/api/overview` answers it once as JSON; `/api/events` streams it as server-sent events.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use serde::Serialize;

use crate::broker::Broker;

/// The page, with its CSS and script inline: no CDN, no build step.
pub const CONSOLE_HTML: &str = include_str!("console.html");

/// Producers shown per partition, the most recently active first (the table can hold many
/// thousands; the page is for reading).
pub const MAX_PRODUCERS_PER_PARTITION: usize = 100;

#[derive(Debug, Serialize)]
pub struct Overview {
    pub time_ms: i64,
    pub broker: BrokerInfo,
    pub totals: Totals,
    pub topics: Vec<TopicView>,
    pub groups: Vec<GroupView>,
}

#[derive(Debug, Serialize)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub version: &'static str,
    pub listeners: Vec<String>,
    pub data_dir: String,
    pub uptime_ms: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub duplicates_absorbed: u64,
    pub out_of_order: u64,
    pub fenced: u64,
}

#[derive(Debug, Serialize)]
pub struct TopicView {
    pub name: String,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Serialize)]
pub struct PartitionView {
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: i64,
    pub segments: i64,
    pub messages_in: u64,
    pub duplicates_absorbed: u64,
    pub producers: Vec<ProducerView>,
}

#[derive(Debug, Serialize)]
pub struct ProducerView {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub last_sequence: i32,
    pub last_offset: i64,
    pub last_timestamp: i64,
    pub duplicates_absorbed: u64,
    pub txn_start_offset: i64,
}

#[derive(Debug, Serialize)]
pub struct GroupView {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    pub protocol: String,
    pub generation: i32,
    pub members: Vec<MemberView>,
    pub offsets: Vec<GroupOffsetView>,
}

#[derive(Debug, Serialize)]
pub struct MemberView {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub assignment: Vec<AssignedTopic>,
}

#[derive(Debug, Serialize)]
pub struct AssignedTopic {
    pub topic: String,
    pub partitions: Vec<i32>,
}

#[derive(Debug, Serialize)]
pub struct GroupOffsetView {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    pub log_end_offset: i64,
    pub lag: i64,
}

/// Builds the overview. Producer tables belong to the partitions' writers, so each is asked
/// through its queue; everything else is read from shared state.
pub async fn overview(broker: &Broker, started: Instant) -> Overview {
    let mut totals = Totals::default();
    let mut by_topic: BTreeMap<String, Vec<PartitionView>> = BTreeMap::new();
    for handle in broker.topics.all_partitions() {
        let counts = handle.metrics().snapshot();
        totals.messages_in += counts.messages_in;
        totals.bytes_in += counts.bytes_in;
        totals.duplicates_absorbed += counts.duplicates;
        totals.out_of_order += counts.out_of_order;
        totals.fenced += counts.fenced;
        if crate::topic_registry::is_internal(&handle.topic) {
            continue;
        }
        let by_producer = handle.metrics().duplicates_by_producer();
        let mut producers = handle
            .run(move |p| {
                let mut entries = p.producers().entries();
                entries.sort_by_key(|e| std::cmp::Reverse(e.last_append_ms));
                entries.truncate(MAX_PRODUCERS_PER_PARTITION);
                entries
                    .into_iter()
                    .map(|e| ProducerView {
                        producer_id: e.producer_id,
                        producer_epoch: e.producer_epoch,
                        last_sequence: e.last_seq(),
                        last_offset: e.last_offset,
                        last_timestamp: e.last_timestamp,
                        duplicates_absorbed: by_producer.get(&e.producer_id).copied().unwrap_or(0),
                        txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        producers.sort_by_key(|p| p.producer_id);
        by_topic
            .entry(handle.topic.clone())
            .or_default()
            .push(PartitionView {
                partition: handle.index,
                log_start_offset: counts.log_start_offset,
                log_end_offset: counts.log_end_offset,
                high_watermark: handle.reader().high_watermark(),
                size_bytes: counts.size_bytes,
                segments: counts.segments,
                messages_in: counts.messages_in,
                duplicates_absorbed: counts.duplicates,
                producers,
            });
    }
    let topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition);
            TopicView { name, partitions }
        })
        .collect();
    Overview {
        time_ms: broker.clock.now_ms(),
        broker: BrokerInfo {
            node_id: broker.node_id,
            version: env!("CARGO_PKG_VERSION"),
            listeners: vec![format!(
                "{}:{}",
                broker.advertised.host, broker.advertised.port
            )],
            data_dir: broker.config.log_dir().display().to_string(),
            uptime_ms: started.elapsed().as_millis() as u64,
        },
        totals,
        topics,
        groups: groups(broker),
    }
}

fn groups(broker: &Broker) -> Vec<GroupView> {
    let coordinators = broker.group_coordinators();
    let mut out: Vec<GroupView> = coordinators
        .iter()
        .flat_map(|groups| groups.list(&[]).into_iter().map(move |g| (groups, g)))
        .map(|(groups, (group_id, _, _))| {
            let d = groups.describe(&group_id);
            let offsets = groups
                .fetch(&group_id, None)
                .into_iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .into_iter()
                        .filter_map(move |(p, o)| o.map(|o| (topic.clone(), p, o.offset)))
                })
                .map(|(topic, partition, committed)| {
                    let end = broker
                        .topics
                        .partition(&topic, partition)
                        .map_or(committed, |h| h.reader().high_watermark());
                    GroupOffsetView {
                        lag: (end - committed).max(0),
                        topic,
                        partition,
                        committed_offset: committed,
                        log_end_offset: end,
                    }
                })
                .collect();
            GroupView {
                group_id,
                state: d.state,
                protocol_type: d.protocol_type,
                protocol: d.protocol,
                generation: d.generation,
                members: d
                    .members
                    .into_iter()
                    .map(|m| MemberView {
                        assignment: decode_assignment(&m.assignment),
                        member_id: m.member_id,
                        client_id: m.client_id,
                        host: m.client_host,
                    })
                    .collect(),
                offsets,
            }
        })
        .collect();
    out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    out
}

/// A consumer's assignment in the consumer protocol's format; anything else (another
/// protocol type, bytes a client made up) shows as no assignment.
fn decode_assignment(bytes: &Bytes) -> Vec<AssignedTopic> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version) else {
        return Vec::new();
    };
    a.assigned_partitions
        .into_iter()
        .map(|t| AssignedTopic {
            topic: t.topic.to_string(),
            partitions: t.partitions,
        })
        .collect()
}
