//! `tally-broker` owns the Kafka-compatible server of one node: configuration (Kafka's key
//! names), the data directory, the topic registry and its durable record, producer-id
//! allocation, the TCP listener with its limits, request framing and dispatch, and one handler
//! per API under `handlers/`, the group coordinator (`group/`) and the transaction coordinator
//! (`txn/`), TLS for an SSL listener (`tls.rs`), the HTTP listener with metrics, health and
//! the web console (`console/`), and cluster mode (`cluster/`: partitions served through their
//! Raft groups, metadata from the controller group). Handlers translate between the wire and the partitions; the
//! decision whether a batch is appended belongs to `tally-partition`, not here.

mod broker;
pub mod broker_config;
pub mod clock;
pub mod cluster;
pub mod config_def;
mod connection;
pub mod console;
mod data_dir;
mod dispatch;
mod endpoint;
pub mod group;
mod handlers;
pub mod http;
mod internal_log;
mod listener_config;
pub mod metrics;
pub mod partition_handle;
mod producer_id_manager;
pub mod security;
mod server;
pub mod tls;
mod topic_error;
mod topic_registry;
pub mod txn;

#[cfg(test)]
mod persisted_formats_tests;

pub use broker::{Broker, BrokerOptions, StartError};
pub use broker_config::{BrokerConfig, ConfigError, Endpoint, SecurityProtocol};
pub use clock::{Clock, SystemClock};
pub use partition_handle::{AppendRequest, PartitionHandle, WriterMode, WriterStopped};
pub use server::RunningBroker;
pub use topic_error::TopicError;
