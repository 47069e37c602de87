//! A consumer of assigned partitions: positions set by seeking (earliest, latest, an offset, a
//! timestamp), fetches pipelined (the next fetch to a broker is sent as soon as an answer is
//! read, before the records are handed out), batches decompressed, control batches skipped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};
use tally_protocol::record_batch::batch_size_at;
use tally_protocol::{BatchHeader, ResponseError};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::record::{ConsumerRecord, Header};

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    Earliest,
    Latest,
    At(i64),
    /// The first offset whose record timestamp is at or after this time (ms); the end of the
    /// log if there is none.
    Timestamp(i64),
}

/// What to do when the position is out of range (deleted by retention, or past the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Report an error from `poll`.
    None,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    pub fetch_max_wait_ms: i32,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    pub max_partition_fetch_bytes: i32,
    /// 0 read_uncommitted, 1 read_committed (the default, as in librdkafka): only records of
    /// committed transactions, and nothing past the last stable offset.
    pub isolation_level: i8,
    pub auto_offset_reset: OffsetReset,
}

impl ConsumerConfig {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        ConsumerConfig {
            client: ClientConfig::new(bootstrap),
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            isolation_level: 1,
            auto_offset_reset: OffsetReset::Earliest,
        }
    }
}

type TopicPartition = (String, i32);
type FetchResult = (i32, u64, Result<FetchResponse, ClientError>);

pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    positions: BTreeMap<TopicPartition, i64>,
    buffered: VecDeque<ConsumerRecord>,
    fetches: JoinSet<FetchResult>,
    /// Nodes with a fetch in flight.
    fetching: BTreeMap<i32, u64>,
    /// Bumped by assign and seek: answers to fetches sent before are dropped.
    generation: u64,
}

impl Consumer {
    pub async fn new(config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Consumer {
            cluster,
            config,
            positions: BTreeMap::new(),
            buffered: VecDeque::new(),
            fetches: JoinSet::new(),
            fetching: BTreeMap::new(),
            generation: 0,
        })
    }

    /// Replaces the assignment with these partitions, each starting at its offset.
    pub async fn assign(
        &mut self,
        partitions: &[(String, i32, Offset)],
    ) -> Result<(), ClientError> {
        self.positions.clear();
        self.reset_fetches();
        for (topic, partition, offset) in partitions {
            self.seek(topic, *partition, *offset).await?;
        }
        Ok(())
    }

    /// Every partition of `topic`, from `offset`.
    pub async fn assign_topic(&mut self, topic: &str, offset: Offset) -> Result<(), ClientError> {
        let info = self.cluster.topic_or_fetch(topic, false).await?;
        let all: Vec<(String, i32, Offset)> = info
            .partitions
            .iter()
            .map(|p| (topic.to_string(), p.partition, offset))
            .collect();
        self.assign(&all).await
    }

    pub async fn seek(
        &mut self,
        topic: &str,
        partition: i32,
        offset: Offset,
    ) -> Result<(), ClientError> {
        let info = self.cluster.topic_or_fetch(topic, false).await?;
        if !info.partitions.iter().any(|p| p.partition == partition) {
            return Err(ClientError::UnknownPartition(topic.to_string(), partition));
        }
        let position = match offset {
            Offset::At(o) => o,
            Offset::Earliest => self.list_offset(topic, partition, -2).await?,
            Offset::Latest => self.list_offset(topic, partition, -1).await?,
            Offset::Timestamp(t) => match self.list_offset(topic, partition, t).await? {
                -1 => self.list_offset(topic, partition, -1).await?,
                o => o,
            },
        };
        self.positions
            .insert((topic.to_string(), partition), position);
        self.buffered
            .retain(|r| !(r.topic == topic && r.partition == partition));
        self.reset_fetches();
        Ok(())
    }

    fn reset_fetches(&mut self) {
        self.generation += 1;
        self.fetching.clear();
        self.fetches.abort_all();
        self.fetches = JoinSet::new();
    }

    /// Adds partitions at known positions, keeping the others (incremental assignment).
    pub fn add_partitions(&mut self, partitions: &[(String, i32, i64)]) {
        for (topic, partition, position) in partitions {
            self.positions
                .insert((topic.clone(), *partition), *position);
        }
        self.reset_fetches();
    }

    /// Stops reading these partitions; records already fetched for them are dropped.
    pub fn remove_partitions(&mut self, partitions: &[(String, i32)]) {
        for tp in partitions {
            self.positions.remove(tp);
        }
        self.buffered.retain(|r| {
            !partitions
                .iter()
                .any(|(t, p)| *t == r.topic && *p == r.partition)
        });
        self.reset_fetches();
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(&(topic.to_string(), partition)).copied()
    }

    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.positions.keys().cloned().collect()
    }

    /// ListOffsets on the partition's leader: -1 latest, -2 earliest, or a timestamp.
    pub async fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<i64, ClientError> {
        list_offset(
            &self.cluster,
            topic,
            partition,
            timestamp,
            self.config.isolation_level,
        )
        .await
    }

    /// Records fetched since the last call, waiting up to `timeout` for some.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.buffered.is_empty() {
                return Ok(self.buffered.drain(..).collect());
            }
            self.start_fetches().await?;
            if self.fetches.is_empty() {
                if Instant::now() >= deadline {
                    return Ok(Vec::new());
                }
                tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(100)))
                    .await;
                continue;
            }
            let joined = tokio::time::timeout_at(deadline, self.fetches.join_next()).await;
            let Ok(Some(joined)) = joined else {
                return Ok(Vec::new());
            };
            let Ok((node, generation, result)) = joined else {
                continue;
            };
            if generation != self.generation {
                continue;
            }
            self.fetching.remove(&node);
            match result {
                Ok(response) => self.absorb(response).await?,
                Err(e) if e.is_retriable() => {
                    self.cluster.refresh(&self.assigned_topics()).await.ok();
                }
                Err(e) => return Err(e),
            }
            // Pipelining: ask again before handing out what arrived.
            self.start_fetches().await?;
        }
    }

    fn assigned_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.positions.keys().map(|(t, _)| t.clone()).collect();
        topics.dedup();
        topics
    }

    async fn start_fetches(&mut self) -> Result<(), ClientError> {
        let mut by_node: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        let mut stale = false;
        for tp in self.positions.keys() {
            match self.cluster.leader(&tp.0, tp.1) {
                Some(node) => by_node.entry(node).or_default().push(tp.clone()),
                None => stale = true,
            }
        }
        if stale {
            self.cluster.refresh(&self.assigned_topics()).await.ok();
        }
        for (node, tps) in by_node {
            if self.fetching.contains_key(&node) {
                continue;
            }
            let connection = match self.cluster.connection(node).await {
                Ok(c) => c,
                Err(_) => continue,
            };
            let version = connection.version(ApiKey::Fetch, 4, 12)?;
            let mut topics: BTreeMap<String, Vec<FetchPartition>> = BTreeMap::new();
            for tp in &tps {
                topics.entry(tp.0.clone()).or_default().push(
                    FetchPartition::default()
                        .with_partition(tp.1)
                        .with_fetch_offset(self.positions[tp])
                        .with_partition_max_bytes(self.config.max_partition_fetch_bytes),
                );
            }
            let mut request = FetchRequest::default()
                .with_max_wait_ms(self.config.fetch_max_wait_ms)
                .with_min_bytes(self.config.fetch_min_bytes)
                .with_max_bytes(self.config.fetch_max_bytes)
                .with_isolation_level(self.config.isolation_level)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            FetchTopic::default()
                                .with_topic(TopicName(StrBytes::from_string(t)))
                                .with_partitions(ps)
                        })
                        .collect(),
                );
            if version <= 14 {
                request.replica_id = BrokerId(-1);
            }
            if version >= 7 {
                request.session_id = 0;
                request.session_epoch = -1;
            }
            let generation = self.generation;
            let timeout = self.config.client.request_timeout()
                + Duration::from_millis(self.config.fetch_max_wait_ms.max(0) as u64);
            self.fetching.insert(node, generation);
            self.fetches.spawn(async move {
                let result = connection.send(&request, version, timeout).await;
                (node, generation, result)
            });
        }
        Ok(())
    }

    async fn absorb(&mut self, response: FetchResponse) -> Result<(), ClientError> {
        if response.error_code != 0 {
            return Err(ClientError::broker(response.error_code, Some("Fetch")));
        }
        let mut refresh = false;
        for topic in response.responses {
            let name = topic.topic.0.to_string();
            for p in topic.partitions {
                let tp = (name.clone(), p.partition_index);
                let Some(&position) = self.positions.get(&tp) else {
                    continue;
                };
                match p.error_code {
                    0 => {}
                    1 => {
                        let target = match self.config.auto_offset_reset {
                            OffsetReset::Earliest => -2,
                            OffsetReset::Latest => -1,
                            OffsetReset::None => {
                                return Err(ClientError::broker(
                                    1,
                                    Some(&format!("{}-{} at offset {position}", tp.0, tp.1)),
                                ))
                            }
                        };
                        let reset = self.list_offset(&tp.0, tp.1, target).await?;
                        self.positions.insert(tp, reset);
                        continue;
                    }
                    code if ResponseError::try_from_code(code)
                        .is_some_and(|e| e.is_retriable()) =>
                    {
                        refresh = true;
                        continue;
                    }
                    code => {
                        return Err(ClientError::broker(
                            code,
                            Some(&format!("fetching {}-{}", tp.0, tp.1)),
                        ))
                    }
                }
                let records = p.records.unwrap_or_default();
                let mut aborted: Vec<(i64, i64)> = p
                    .aborted_transactions
                    .unwrap_or_default()
                    .iter()
                    .map(|a| (a.first_offset, a.producer_id.0))
                    .collect();
                aborted.sort_unstable();
                let next = decode_batches(
                    &name,
                    p.partition_index,
                    records,
                    position,
                    Aborted::new(aborted),
                    &mut self.buffered,
                )?;
                self.positions.insert(tp, next);
            }
        }
        if refresh {
            self.cluster.refresh(&self.assigned_topics()).await.ok();
        }
        Ok(())
    }
}

/// The aborted transactions of a read_committed fetch, consumed in offset order (Kafka's
/// consumer does the same): a producer is "aborting" from its aborted transaction's first
/// offset until its ABORT marker, and its transactional batches meanwhile are dropped.
struct Aborted {
    /// (first offset, producer id), ascending.
    pending: VecDeque<(i64, i64)>,
    aborting: std::collections::BTreeSet<i64>,
}

impl Aborted {
    fn new(sorted: Vec<(i64, i64)>) -> Aborted {
        Aborted {
            pending: sorted.into(),
            aborting: Default::default(),
        }
    }

    /// Whether `header`'s records are to be dropped; control batches end an abort.
    fn drops(&mut self, header: &BatchHeader, batch: &[u8]) -> bool {
        while let Some(&(first, pid)) = self.pending.front() {
            if first > header.last_offset() {
                break;
            }
            self.aborting.insert(pid);
            self.pending.pop_front();
        }
        if header.is_control() {
            let abort = tally_protocol::parse_marker(header, batch)
                .is_ok_and(|m| m.result == tally_protocol::TxnResult::Abort);
            if abort {
                self.aborting.remove(&header.producer_id);
            }
            return true;
        }
        header.is_transactional() && self.aborting.contains(&header.producer_id)
    }
}

/// Appends the records at or after `position` to `out` (without aborted transactions'
/// records and control records); returns the next position.
fn decode_batches(
    topic: &str,
    partition: i32,
    records: Bytes,
    mut position: i64,
    mut aborted: Aborted,
    out: &mut VecDeque<ConsumerRecord>,
) -> Result<i64, ClientError> {
    let mut at = 0usize;
    while at < records.len() {
        let Some(size) = batch_size_at(&records[at..]) else {
            break;
        };
        let size = size as usize;
        if at + size > records.len() {
            // A partial batch at the end of a fetch: it comes whole in the next one.
            break;
        }
        let header = BatchHeader::parse(&records[at..])
            .map_err(|e| ClientError::Protocol(format!("bad batch: {e}")))?;
        let batch = records.slice(at..at + size);
        at += size;
        if header.last_offset() < position {
            continue;
        }
        if !aborted.drops(&header, &batch) {
            let mut buf = batch;
            let set = RecordBatchDecoder::decode(&mut buf)
                .map_err(|e| ClientError::Protocol(format!("cannot decode a batch: {e}")))?;
            for r in set.records {
                if r.offset < position {
                    continue;
                }
                out.push_back(ConsumerRecord {
                    topic: topic.to_string(),
                    partition,
                    offset: r.offset,
                    timestamp_ms: if r.timestamp_type == TimestampType::LogAppend {
                        header.max_timestamp
                    } else {
                        r.timestamp
                    },
                    key: r.key,
                    value: r.value,
                    headers: r
                        .headers
                        .into_iter()
                        .map(|(k, v)| Header {
                            key: k.to_string(),
                            value: v,
                        })
                        .collect(),
                    producer_id: header.producer_id,
                });
            }
        }
        position = header.last_offset() + 1;
    }
    Ok(position)
}

/// ListOffsets for one partition on its leader.
/// How long ListOffsets asks again about a topic or partition the broker does not know.
const UNKNOWN_TOPIC_RETRY: Duration = Duration::from_secs(1);

pub(crate) async fn list_offset(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    timestamp: i64,
    isolation_level: i8,
) -> Result<i64, ClientError> {
    // A leader that moved, or a new one whose high watermark has not caught up
    // (OFFSET_NOT_AVAILABLE, KIP-207), is asked again after a metadata refresh, for as long
    // as one request may take.
    let started = Instant::now();
    let deadline = started + cluster.config().request_timeout();
    loop {
        match list_offset_once(cluster, topic, partition, timestamp, isolation_level).await {
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = cluster.refresh(&[topic.to_string()]).await;
            }
            // A broker whose metadata lags (in a cluster) may not know the topic yet; one
            // that really does not exist is reported within a second.
            Err(ClientError::UnknownPartition(..) | ClientError::UnknownTopic(..))
                if started.elapsed() < UNKNOWN_TOPIC_RETRY =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = cluster.refresh(&[topic.to_string()]).await;
            }
            other => return other,
        }
    }
}

async fn list_offset_once(
    cluster: &Cluster,
    topic: &str,
    partition: i32,
    timestamp: i64,
    isolation_level: i8,
) -> Result<i64, ClientError> {
    let leader = match cluster.leader(topic, partition) {
        Some(l) => l,
        None => {
            cluster.refresh(&[topic.to_string()]).await?;
            cluster
                .leader(topic, partition)
                .ok_or_else(|| ClientError::UnknownPartition(topic.to_string(), partition))?
        }
    };
    let connection = cluster.connection(leader).await?;
    let version = connection.version(ApiKey::ListOffsets, 1, 7)?;
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(if version >= 2 { isolation_level } else { 0 })
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let response = connection
        .send(&request, version, cluster.config().request_timeout())
        .await?;
    let p = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .ok_or_else(|| ClientError::Protocol("empty ListOffsets answer".into()))?;
    if p.error_code != 0 {
        return Err(ClientError::broker(
            p.error_code,
            Some(&format!("ListOffsets {topic}-{partition}")),
        ));
    }
    Ok(p.offset)
}
