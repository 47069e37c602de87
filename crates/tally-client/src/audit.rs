//! An audit of what a topic stores, from the batch headers alone (it only fetches, so it works
//! against any Kafka-compatible broker): per producer and partition, how many batches and
//! records, which epochs, where a producer's sequence jumps within an epoch (a gap), and which
//! sequence ranges are stored more than once (a duplicate: exactly what idempotence must
//! prevent).

use std::collections::BTreeMap;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::record_batch::batch_size_at;
use tally_protocol::sequence::increment_sequence;
use tally_protocol::{BatchHeader, ResponseError};

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::consumer::list_offset;
use crate::error::ClientError;

/// A sequence range stored again after it was first stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRange {
    pub epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub again_at_offset: i64,
}

/// A jump in a producer's sequence within one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceGap {
    pub epoch: i16,
    pub expected: i32,
    pub found: i32,
    pub at_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerAudit {
    pub partition: i32,
    pub producer_id: i64,
    pub epochs: Vec<i16>,
    pub batches: u64,
    pub records: u64,
    pub gaps: Vec<SequenceGap>,
    pub duplicates: Vec<DuplicateRange>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub topic: String,
    pub partitions: i32,
    pub batches: u64,
    /// Batches without a producer id (non-idempotent producers): not auditable.
    pub batches_without_producer: u64,
    pub producers: Vec<ProducerAudit>,
}

impl AuditReport {
    pub fn duplicate_ranges(&self) -> usize {
        self.producers.iter().map(|p| p.duplicates.len()).sum()
    }

    pub fn gaps(&self) -> usize {
        self.producers.iter().map(|p| p.gaps.len()).sum()
    }
}

#[derive(Default)]
struct Tracker {
    audit: ProducerAudit,
    /// Per epoch: ranges seen (first sequence -> (last sequence, base offset)).
    ranges: BTreeMap<i16, BTreeMap<i32, (i32, i64)>>,
    /// Per epoch: the last sequence of the newest batch.
    last: BTreeMap<i16, i32>,
}

impl Tracker {
    fn add(&mut self, h: &BatchHeader) {
        let (epoch, first, last) = (h.producer_epoch, h.base_sequence, h.last_sequence());
        self.audit.batches += 1;
        self.audit.records += h.records_count.max(0) as u64;
        if !self.audit.epochs.contains(&epoch) {
            self.audit.epochs.push(epoch);
        }
        let ranges = self.ranges.entry(epoch).or_default();
        // An overlap with any earlier range of the same epoch means the sequences were stored
        // twice (ranges of one epoch never wrap within the retention of a real log; a range
        // that wraps is checked by its two ends).
        let overlapping = ranges
            .range(..=last.max(first))
            .next_back()
            .filter(|(&f, &(l, _))| f <= last && l >= first)
            .map(|(&f, &(l, o))| (f, l, o));
        if let Some((f, l, o)) = overlapping {
            self.audit.duplicates.push(DuplicateRange {
                epoch,
                first_sequence: f.max(first),
                last_sequence: l.min(last),
                first_offset: o,
                again_at_offset: h.base_offset,
            });
            return;
        }
        if let Some(&previous) = self.last.get(&epoch) {
            let expected = increment_sequence(previous, 1);
            if first != expected {
                self.audit.gaps.push(SequenceGap {
                    epoch,
                    expected,
                    found: first,
                    at_offset: h.base_offset,
                });
            }
        }
        ranges.insert(first, (last, h.base_offset));
        self.last.insert(epoch, last);
    }
}

const STALL_WAIT_MS: u64 = 100;

/// Reads every batch of `topic` from the log start to the high watermark and audits it.
pub async fn audit_topic(config: ClientConfig, topic: &str) -> Result<AuditReport, ClientError> {
    let cluster = Cluster::connect(config).await?;
    let info = cluster.topic_or_fetch(topic, false).await?;
    let mut report = AuditReport {
        topic: topic.to_string(),
        partitions: info.partitions.len() as i32,
        ..AuditReport::default()
    };
    for p in &info.partitions {
        let mut trackers: BTreeMap<i64, Tracker> = BTreeMap::new();
        let mut offset = list_offset(&cluster, topic, p.partition, -2, 0).await?;
        let end = list_offset(&cluster, topic, p.partition, -1, 0).await?;
        let mut stalled = 0;
        while offset < end {
            let leader = cluster
                .leader(topic, p.partition)
                .ok_or_else(|| ClientError::UnknownPartition(topic.to_string(), p.partition))?;
            let connection = cluster.connection(leader).await?;
            let version = connection.version(ApiKey::Fetch, 4, 12)?;
            let mut request = FetchRequest::default()
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(8 * 1024 * 1024)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(p.partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(4 * 1024 * 1024)])]);
            if version <= 14 {
                request.replica_id = BrokerId(-1);
            }
            let response = connection
                .send(&request, version, cluster.config().request_timeout())
                .await?;
            let data = response
                .responses
                .first()
                .and_then(|t| t.partitions.first())
                .ok_or_else(|| ClientError::Protocol("empty Fetch answer".into()))?;
            // Retention moved the log start past the audit while it read (a cluster's leader
            // purges once a lagging follower catches up): go on from the new start. No
            // sequence gap is claimed across the records it deleted.
            if data.error_code == ResponseError::OffsetOutOfRange.code() {
                let start = list_offset(&cluster, topic, p.partition, -2, 0).await?;
                if start > offset {
                    offset = start;
                    for tracker in trackers.values_mut() {
                        tracker.last.clear();
                    }
                    continue;
                }
            }
            if data.error_code != 0 {
                return Err(ClientError::broker(
                    data.error_code,
                    Some(&format!("fetching {topic}-{}", p.partition)),
                ));
            }
            let records = data.records.clone().unwrap_or_default();
            let mut at = 0;
            let before = offset;
            while at < records.len() {
                let Some(size) = batch_size_at(&records[at..]) else {
                    break;
                };
                let size = size as usize;
                if at + size > records.len() {
                    break;
                }
                let header = BatchHeader::parse(&records[at..])
                    .map_err(|e| ClientError::Protocol(format!("bad batch: {e}")))?;
                at += size;
                if header.last_offset() < offset {
                    continue;
                }
                offset = header.last_offset() + 1;
                report.batches += 1;
                if header.is_control() {
                    continue;
                }
                if !header.has_producer_id() {
                    report.batches_without_producer += 1;
                    continue;
                }
                trackers
                    .entry(header.producer_id)
                    .or_insert_with(|| Tracker {
                        audit: ProducerAudit {
                            partition: p.partition,
                            producer_id: header.producer_id,
                            ..ProducerAudit::default()
                        },
                        ..Tracker::default()
                    })
                    .add(&header);
            }
            if offset == before {
                // A leader elected since `end` was read may not know its high watermark yet
                // (in a cluster): ask again, for as long as one request may take.
                stalled += 1;
                if stalled * STALL_WAIT_MS > cluster.config().request_timeout_ms {
                    return Err(ClientError::Protocol(format!(
                        "no progress reading {topic}-{} at offset {offset} (up to {end}): node \
                         {leader} answered a high watermark of {} with {} bytes",
                        p.partition,
                        data.high_watermark,
                        records.len()
                    )));
                }
                tokio::time::sleep(std::time::Duration::from_millis(STALL_WAIT_MS)).await;
                let _ = cluster.refresh(&[topic.to_string()]).await;
            } else {
                stalled = 0;
            }
        }
        report
            .producers
            .extend(trackers.into_values().map(|t| t.audit));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn finds_gaps_and_duplicates() {
        let mut t = Tracker::default();
        t.add(&h(1, 0, 0, 3, 0));
        t.add(&h(1, 0, 3, 3, 3));
        t.add(&h(1, 0, 3, 3, 6)); // stored twice
        t.add(&h(1, 0, 8, 2, 9)); // gap: 6 expected
        t.add(&h(1, 1, 0, 2, 11)); // new epoch restarts at 0
        t.add(&h(1, 1, 1, 2, 13)); // partial overlap with 0-1
        assert_eq!(t.audit.batches, 6);
        assert_eq!(t.audit.epochs, vec![0, 1]);
        assert_eq!(
            t.audit.duplicates,
            vec![
                DuplicateRange {
                    epoch: 0,
                    first_sequence: 3,
                    last_sequence: 5,
                    first_offset: 3,
                    again_at_offset: 6
                },
                DuplicateRange {
                    epoch: 1,
                    first_sequence: 1,
                    last_sequence: 1,
                    first_offset: 11,
                    again_at_offset: 13
                },
            ]
        );
        assert_eq!(
            t.audit.gaps,
            vec![SequenceGap {
                epoch: 0,
                expected: 6,
                found: 8,
                at_offset: 9
            }]
        );
    }
}
