//! `tally-client` owns Tally's async Kafka client, on tokio: a producer that is idempotent by
//! default (producer id and epoch from InitProducerId, per-partition sequences stamped once
//! and kept on every retry, in-order retries within the broker's five-batch memory, and epoch
//! bumps to close sequence gaps), a consumer of assigned partitions, and an admin client. It
//! speaks the Kafka protocol through `kafka-protocol` and works against Tally and any Kafka
//! broker. It does not depend on the broker crates.
//!
//! A runnable version of the example below: `cargo run -p tally-client --example
//! produce_consume -- 127.0.0.1:9092` with a broker running (`tally serve`).
//!
//! ```no_run
//! use std::time::Duration;
//! use tally_client::{Consumer, ConsumerConfig, Offset, Producer, ProducerConfig, ProducerRecord};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! // Idempotent by default: a retried batch is stored once.
//! let producer = Producer::new(ProducerConfig::new("127.0.0.1:9092")).await?;
//! let delivered = producer
//!     .send(ProducerRecord::new("events", "hello").with_key("user-1"))
//!     .await?
//!     .await?;
//! println!("stored at partition {} offset {}", delivered.partition, delivered.offset);
//! producer.close().await;
//!
//! let mut consumer = Consumer::new(ConsumerConfig::new("127.0.0.1:9092")).await?;
//! consumer.assign_topic("events", Offset::Earliest).await?;
//! for record in consumer.poll(Duration::from_secs(1)).await? {
//!     println!("{}@{}: {:?}", record.partition, record.offset, record.value);
//! }
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod admin_acls;
pub mod admin_cluster;
pub mod admin_groups;
pub mod admin_txns;
pub mod admin_users;
pub mod assignor;
pub mod audit;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod consumer_protocol;
pub mod coordinator;
pub mod error;
pub mod group_consumer;
pub mod partitioner;
pub mod producer;
pub mod record;
mod sasl_login;
pub mod security;
pub mod transport;

pub use admin::{Admin, KeyIndexDescription, NewTopic, ProducerDescription};
pub use admin_acls::Acl;
pub use admin_cluster::{QuorumDescription, QuorumMember, METADATA_TOPIC};
pub use admin_groups::{GroupDescription, GroupListing, GroupMember};
pub use admin_txns::TransactionDescription;
pub use admin_users::ScramUser;
pub use assignor::Assignor;
pub use audit::{audit_topic, AuditReport, DuplicateRange, ProducerAudit, SequenceGap};
pub use cluster::{PartitionInfo, TopicInfo};
pub use config::ClientConfig;
pub use consumer::{Consumer, ConsumerConfig, Offset, OffsetReset};
pub use error::{ClientError, ProduceError, TransactionError};
pub use group_consumer::{GroupConsumer, GroupConsumerConfig, RebalanceEvent};
pub use producer::{Compression, DeliveryFuture, Producer, ProducerConfig};
pub use record::{ConsumerRecord, Header, ProducerRecord, RecordMetadata};
pub use security::{SaslConfig, SecurityProtocol, TlsTransport};
pub use transport::{TcpTransport, Transport};
