//! `tally-client` (work in progress): an async Kafka client.

pub mod error;
pub mod partitioner;
pub mod record;
