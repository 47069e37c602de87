//! `tally-bench` owns Tally's load generator and its measurements, shared by `tally bench`
//! (Tally's client) and `rdkafka-bench` (librdkafka), so both print the same table from the
//! same options: produce, consume and end-to-end modes, payloads that carry their send time,
//! HDR latency histograms (microseconds), pacing to a target rate, and the result as a table
//! or JSON.
//!
//! Timing is measured here, never asserted: the figures go to BENCHMARKS.md.

pub mod error;
pub mod latency;
pub mod options;
pub mod pacer;
pub mod payload;
pub mod progress;
pub mod report;
pub mod tally_driver;
pub mod topic;

pub use error::BenchError;
pub use latency::Latencies;
pub use options::{Acks, BenchOptions, CompressionArg, Mode};
pub use pacer::Pacer;
pub use report::Report;
pub use tally_driver::run_tally;
pub use topic::prepare_topic;
