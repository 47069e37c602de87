//! `tally-partition` owns the append path of one partition: validating a produced batch, the
//! producer table that decides whether the batch is new, a retry of one of the producer's last
//! five batches, a sequence gap or a stale epoch, the producer-state snapshots that make that
//! memory survive restarts, and the high watermark and log start offset.
//!
//! A write goes in three steps: *check* ([`validate_client_batch`], stateless: CRC, record
//! walk, sizes, flags), *decide* ([`Partition::decide`], pure: the producer table's
//! [`ProducerTable::check`]) and *apply* ([`Partition::apply`], the one function through which
//! every entry enters the partition, whatever its [`EntryOrigin`]). The table is a pure
//! function of the log, because apply and start-up replay move it through the same transition.
//! A topic with `idempotency.key` set also keeps a [`KeyIndex`]: decide drops the records whose
//! key is stored ([`Partition::filter_keys`]), and apply and replay index the keys of what is
//! written, so that index too is a function of the log.
//! Readers use the [`PartitionReader`], never the writer. It knows nothing about sockets,
//! threads or the wire protocol beyond the batch header.

mod append_error;
mod batch_metadata;
mod batch_validation;
mod entry;
mod idempotency_key;
mod key_filter;
mod key_index;
mod key_snapshot;
mod key_table;
mod partition;
mod partition_reader;
mod position_table;
mod prefetch;
mod producer_state_entry;
mod producer_table;
mod snapshot;
mod snapshot_frame;

pub use append_error::{AppendError, OpenError};
pub use batch_metadata::BatchMetadata;
pub use batch_validation::{validate_client_batch, MAX_DECOMPRESSED_BATCH_BYTES};
pub use entry::{Decision, Entry, EntryOrigin};
pub use idempotency_key::IdempotencyKey;
pub use key_filter::{filter_batch, keys_in_batch, FilteredBatch};
pub use key_index::{
    IdempotencyConfig, KeptKey, KeyClock, KeyIndex, KeyList, KeyStats, StagedKeys, StoredKey,
};
pub use partition::{AppendOutcome, OpenReport, Partition, PartitionConfig};
pub use partition_reader::PartitionReader;
pub use producer_state_entry::{ProducerStateEntry, NUM_BATCHES_TO_RETAIN};
pub use producer_table::{AppendDecision, CompletedTxn, ProducerTable};
pub use snapshot::{
    decode_producer_state, encode_producer_state, list_snapshots, read_snapshot, write_snapshot,
    SnapshotError,
};
