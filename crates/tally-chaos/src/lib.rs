//! `tally-chaos` owns the fault-injecting proxy: a TCP proxy that understands Kafka framing
//! (4-byte size, then a request header with api key, version and correlation id) and injects
//! seeded faults between clients and a broker:
//!
//! - lose an acknowledgement: after the broker answered a Produce, drop the answer and close
//!   the client's connection (the write happened, the client cannot know);
//! - reset a connection before a request reaches the broker;
//! - delay answers, with jitter;
//! - stall a connection: accept it and never forward anything.
//!
//! It counts every fault it injects and can record the Produce traffic it saw (producer id,
//! sequence, the broker's offset, what the proxy did), which `tally demo` prints. Tests use it
//! in process; `tally chaos-proxy` runs it from the command line. Traffic stays on the
//! addresses it is given (loopback in tests).

mod counters;
mod events;
mod proxy;
mod rng;

pub use counters::{FaultCounters, FaultCountsSnapshot};
pub use events::{ProduceEvent, ProduceOutcome, ProducePartition};
pub use proxy::{DropPolicy, FaultProxy, ProxyConfig};
