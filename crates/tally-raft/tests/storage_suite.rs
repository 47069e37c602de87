//! openraft's storage conformance suite (`openraft::testing::log::Suite`) against the log
//! store over real segment files and the partition state machine: every case gets a new
//! data directory.

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;
use tally_log::LogConfig;
use tally_raft::{PartitionStateMachine, SegmentLogStore, TallyRaft};
use tempfile::TempDir;

struct SegmentStoreBuilder {
    config: LogConfig,
}

impl StoreBuilder<TallyRaft, SegmentLogStore, PartitionStateMachine, TempDir>
    for SegmentStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<(TempDir, SegmentLogStore, PartitionStateMachine), StorageError<TallyRaft>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SegmentLogStore::open(dir.path(), self.config.clone()).expect("open store");
        let sm = PartitionStateMachine::open(dir.path(), store.clone(), 1_000).expect("open sm");
        Ok((dir, store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_on_one_segment() {
    Suite::test_all(SegmentStoreBuilder {
        config: LogConfig::default(),
    })
    .await
    .expect("suite");
}

/// The same suite with segments of ~3 entries, so reads, truncation and purge cross
/// segment boundaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes_across_many_segments() {
    Suite::test_all(SegmentStoreBuilder {
        config: LogConfig {
            segment_bytes: 256,
            index_interval_bytes: 64,
            ..LogConfig::default()
        },
    })
    .await
    .expect("suite");
}
