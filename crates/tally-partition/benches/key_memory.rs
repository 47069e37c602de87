//! Memory per remembered idempotency key, measured with a counting allocator through the real
//! append path (a partition with `idempotency.key=key`, batches of 100 keyed records):
//!
//!     cargo bench -p tally-partition --bench key_memory
//!
//! Prints, for 16-byte and 36-byte (UUID text) keys, the heap the key index holds per key.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use tally_log::LogConfig;
use tally_partition::{IdempotencyConfig, Partition, PartitionConfig};
use tally_protocol::KeySource;
use tally_testkit::BatchSpec;

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only the byte count is
// added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HELD.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const KEYS: usize = 1_000_000;
const PER_BATCH: usize = 100;

fn measure(key_len: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let config = PartitionConfig {
        log: LogConfig::default(),
        idempotency: Some(IdempotencyConfig {
            source: KeySource::RecordKey,
            window_ms: IdempotencyConfig::DEFAULT_WINDOW_MS,
            max_keys: 2 * KEYS,
        }),
        ..PartitionConfig::default()
    };
    let (mut p, _) = Partition::open(dir.path(), config.clone(), 0).unwrap();
    // Warm up what does not grow with keys (segment buffers, the producer table).
    let mut spec = BatchSpec::new(1, 0, 0, 1);
    spec.record_keys = Some(vec![Some(vec![b'w'; key_len])]);
    p.append_client_batch(&spec.encode(), 1).unwrap();
    let before = HELD.load(Ordering::Relaxed);
    for b in 0..KEYS / PER_BATCH {
        let mut spec = BatchSpec::new(1, 0, 1 + (b * PER_BATCH) as i32, PER_BATCH);
        spec.values = vec![b"v".to_vec(); PER_BATCH];
        spec.record_keys = Some(
            (0..PER_BATCH)
                .map(|i| {
                    let mut key = format!("{:0width$}", b * PER_BATCH + i, width = key_len);
                    key.truncate(key_len);
                    Some(key.into_bytes())
                })
                .collect(),
        );
        p.append_client_batch(&spec.encode(), 1).unwrap();
    }
    let after = HELD.load(Ordering::Relaxed);
    assert_eq!(p.key_index().unwrap().len(), KEYS + 1);
    (after - before) as f64 / KEYS as f64
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it quick there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for key_len in [16, 36] {
        let per_key = measure(key_len);
        println!(
            "key_memory/{key_len}-byte keys: {per_key:.1} bytes per remembered key ({:.1} beyond the key itself), {KEYS} keys",
            per_key - key_len as f64
        );
    }
}
