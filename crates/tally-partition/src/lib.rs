//! `tally-partition` owns the append path of one partition: validating a produced batch, the
//! producer table that decides whether the batch is new, a retry of one of the producer's last
//! five batches, a sequence gap or a stale epoch, the producer-state snapshots that make that
//! memory survive restarts, and the high watermark and log start offset.
//!
//! The decision ([`ProducerTable::check`]) is a pure function of the table and the batch
//! header, with no I/O; the table is a pure function of the log, because appends and start-up
//! replay go through the same [`ProducerTable::apply_batch`]. It knows nothing about sockets or
//! the wire protocol beyond the batch header.

mod append_error;
mod batch_metadata;
mod batch_validation;
mod partition;
mod producer_state_entry;
mod producer_table;
mod snapshot;

pub use append_error::{AppendError, OpenError};
pub use batch_metadata::BatchMetadata;
pub use batch_validation::{validate_client_batch, MAX_DECOMPRESSED_BATCH_BYTES};
pub use partition::{AppendOutcome, OpenReport, Partition, PartitionConfig};
pub use producer_state_entry::{ProducerStateEntry, NUM_BATCHES_TO_RETAIN};
pub use producer_table::{AppendDecision, ProducerTable};
pub use snapshot::{list_snapshots, read_snapshot, write_snapshot, SnapshotError};
