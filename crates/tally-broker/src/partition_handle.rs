use parking_lot::{Mutex, MutexGuard};
use tally_partition::Partition;

/// A partition shared between connections. Appends and reads of one partition take turns on
/// its lock, so batches for a partition are decided one at a time in arrival order.
pub struct PartitionHandle {
    pub topic: String,
    pub index: i32,
    partition: Mutex<Partition>,
}

impl PartitionHandle {
    pub fn new(topic: String, index: i32, partition: Partition) -> Self {
        PartitionHandle {
            topic,
            index,
            partition: Mutex::new(partition),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Partition> {
        self.partition.lock()
    }
}
