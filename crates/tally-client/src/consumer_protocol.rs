//! The consumer protocol's embedded messages (subscription and assignment), each a version
//! (i16) followed by the message at that version, as Kafka clients exchange them through
//! JoinGroup and SyncGroup.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::assignor::{MemberSubscription, TopicPartition};

/// Version written: 1 carries the owned partitions the cooperative protocol needs.
const VERSION: i16 = 1;

fn grouped(partitions: &[TopicPartition]) -> BTreeMap<String, Vec<i32>> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    by_topic
}

pub fn encode_subscription(topics: &[String], owned: &[TopicPartition]) -> Bytes {
    let message = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_owned_partitions(
            grouped(owned)
                .into_iter()
                .map(|(t, ps)| {
                    OwnedPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(t)))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let mut buf = BytesMut::new();
    buf.put_i16(VERSION);
    message
        .encode(&mut buf, VERSION)
        .expect("subscription encodes");
    buf.freeze()
}

pub fn decode_subscription(bytes: &Bytes) -> Option<MemberSubscription> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16().clamp(0, 3);
    let s = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(MemberSubscription {
        topics: s.topics.iter().map(|t| t.to_string()).collect(),
        owned: s
            .owned_partitions
            .iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(move |p| (tp.topic.0.to_string(), *p))
            })
            .collect(),
    })
}

pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        grouped(partitions)
            .into_iter()
            .map(|(t, ps)| {
                AssignedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_string(t)))
                    .with_partitions(ps)
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(VERSION);
    message
        .encode(&mut buf, VERSION)
        .expect("assignment encodes");
    buf.freeze()
}

pub fn decode_assignment(bytes: &Bytes) -> Vec<TopicPartition> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().clamp(0, 3);
    ConsumerProtocolAssignment::decode(&mut buf, version)
        .map(|a| {
            a.assigned_partitions
                .iter()
                .flat_map(|tp| {
                    tp.partitions
                        .iter()
                        .map(move |p| (tp.topic.0.to_string(), *p))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let owned = vec![
            ("t".to_string(), 1),
            ("t".to_string(), 3),
            ("u".to_string(), 0),
        ];
        let s =
            decode_subscription(&encode_subscription(&["t".into(), "u".into()], &owned)).unwrap();
        assert_eq!(s.topics, vec!["t", "u"]);
        assert_eq!(s.owned, owned);
        assert_eq!(decode_assignment(&encode_assignment(&owned)), owned);
        assert!(decode_assignment(&Bytes::new()).is_empty());
    }
}
