//! `tally-testkit` is test support only (never a dependency of a shipped crate): it builds real
//! RecordBatch v2 bytes with chosen producer fields, speaks the Kafka protocol at the level of
//! single frames (so tests can forge any request at any version, or send garbage), and runs the
//! `tally` binary as a child process that tests can SIGKILL and restart on the same data
//! directory, and cuts links between such processes (`LinkProxy`).

pub mod batch;
pub mod broker_process;
pub mod http_get;
pub mod link_proxy;
pub mod process;
pub mod requests;
pub mod sasl;
pub mod wire_client;

pub use batch::{batch, numbered_batches, BatchSpec};
pub use broker_process::{free_fixed_port, free_port, BrokerProcess};
pub use http_get::http_get;
pub use link_proxy::LinkProxy;
pub use process::run_with_stdin;
pub use wire_client::WireClient;
