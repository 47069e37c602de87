//! Ready-made requests for tests: create a topic, produce one batch at a chosen version, read a
//! partition back, ask for offsets. Each returns the decoded response parts tests assert on.

use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tally_protocol::BatchHeader;

use crate::wire_client::WireClient;

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl WireClient {
    /// Creates a topic and checks the answer.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(10_000);
        let response = self.send(&request, 5)?;
        let code = response.topics[0].error_code;
        if code != 0 {
            bail!(
                "CreateTopics {name}: error {code} {:?}",
                response.topics[0].error_message
            );
        }
        Ok(())
    }

    /// Produces one batch (the records of one partition) at `version` with `acks`.
    pub fn produce(
        &mut self,
        version: i16,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> Result<PartitionProduceResponse> {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(records))])]);
        let response = self.send(&request, version)?;
        Ok(response.responses[0].partition_responses[0].clone())
    }

    /// Fetches once from `offset` (no waiting): (error code, high watermark, record bytes).
    pub fn fetch_once(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: i32,
    ) -> Result<(i16, i64, Bytes)> {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(partition)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(max_bytes)])]);
        let response = self.send(&request, 12)?;
        let p = &response.responses[0].partitions[0];
        Ok((
            p.error_code,
            p.high_watermark,
            p.records.clone().unwrap_or_default(),
        ))
    }

    /// Every batch header of a partition, read from the log start to the high watermark.
    pub fn read_batches(&mut self, topic: &str, partition: i32) -> Result<Vec<BatchHeader>> {
        let mut out = Vec::new();
        let mut offset = self.list_offset(topic, partition, -2)?;
        loop {
            let (code, hw, records) = self.fetch_once(topic, partition, offset, 1 << 20)?;
            if code != 0 {
                bail!("fetch {topic}-{partition} at {offset}: error {code}");
            }
            if offset >= hw {
                return Ok(out);
            }
            let mut rest = &records[..];
            if rest.is_empty() {
                bail!("fetch at {offset} below the high watermark {hw} returned nothing");
            }
            while !rest.is_empty() {
                let h = BatchHeader::parse_whole(rest)?;
                rest = &rest[h.size_in_bytes()..];
                if h.last_offset() >= offset {
                    offset = h.last_offset() + 1;
                    out.push(h);
                }
            }
        }
    }

    /// ListOffsets for one partition at `timestamp` (-1 latest, -2 earliest).
    pub fn list_offset(&mut self, topic: &str, partition: i32, timestamp: i64) -> Result<i64> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(partition)
                    .with_timestamp(timestamp)])]);
        let response = self.send(&request, 7)?;
        let p = &response.topics[0].partitions[0];
        if p.error_code != 0 {
            bail!("ListOffsets {topic}-{partition}: error {}", p.error_code);
        }
        Ok(p.offset)
    }

    /// A fresh idempotent producer id and epoch.
    pub fn init_producer_id(&mut self) -> Result<(i64, i16)> {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000);
        let response = self.send(&request, 4)?;
        if response.error_code != 0 {
            bail!("InitProducerId: error {}", response.error_code);
        }
        Ok((response.producer_id.0, response.producer_epoch))
    }
}
