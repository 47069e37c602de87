//! The idempotency-key path's cost per record, without sockets or disk: what the writer does
//! for a batch of unique keys on a topic with `idempotency.key=key` (the check's record walk,
//! the filter, and the index's transition), against the check alone (keys off).
//!
//!     cargo bench -p tally-partition --bench key_throughput
//!
//! Four partitions' indexes, each full (`idempotency.window.max.keys` = 1,000,000, so each key
//! stored forgets the oldest), fed round-robin batches of 2,000 records of 100 bytes with
//! 16-byte keys, as `benches/idempotency_keys_ab.sh` sends them. Prints nanoseconds per record.

use std::time::{Duration, Instant};

use tally_partition::{filter_batch, validate_client_batch, IdempotencyConfig, KeyClock, KeyIndex};
use tally_protocol::{BatchHeader, KeySource};
use tally_testkit::BatchSpec;

const PARTITIONS: usize = 4;
const MAX_KEYS: usize = 1_000_000;
const PER_BATCH: usize = 2_000;

fn batch(next_key: &mut u64) -> bytes::Bytes {
    let mut spec = BatchSpec::new(1, 0, 0, PER_BATCH);
    spec.values = vec![vec![b'v'; 100 - 16]; PER_BATCH];
    spec.record_keys = Some(
        (0..PER_BATCH)
            .map(|_| {
                *next_key += 1;
                Some(format!("{:016}", *next_key).into_bytes())
            })
            .collect(),
    );
    spec.encode()
}

/// Runs `records` records through every partition in turn; returns the time of the key path,
/// of its filter, and of the check alone.
fn run(indexes: &mut [KeyIndex], next_key: &mut u64, records: usize) -> [Duration; 3] {
    let (mut keys, mut check, mut filter) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut offset = 0i64;
    for b in 0..records / PER_BATCH {
        let bytes = batch(next_key);
        let index = &mut indexes[b % PARTITIONS];
        let started = Instant::now();
        let header = validate_client_batch(&bytes, usize::MAX).unwrap();
        let checked = Instant::now();
        let filtered = filter_batch(index, &header, &bytes, 0, 0).unwrap();
        let decided = Instant::now();
        let mut h: BatchHeader = header;
        h.base_offset = offset;
        index.index_batch(&h, &filtered.kept, None, KeyClock::Appended(0));
        let done = Instant::now();
        check += checked - started;
        filter += decided - checked;
        keys += done - checked;
        offset += PER_BATCH as i64;
    }
    [keys, filter, check]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let config = IdempotencyConfig {
        source: KeySource::RecordKey,
        window_ms: IdempotencyConfig::DEFAULT_WINDOW_MS,
        max_keys: MAX_KEYS,
    };
    let mut indexes: Vec<KeyIndex> = (0..PARTITIONS)
        .map(|_| KeyIndex::new(config.clone()))
        .collect();
    let mut next_key = 0;
    // Fill every index, and past it, so the measured part forgets a key for each it stores.
    run(&mut indexes, &mut next_key, PARTITIONS * MAX_KEYS * 3 / 2);
    for round in 0..3 {
        let records = 4_000_000;
        let [keys, filter, check] = run(&mut indexes, &mut next_key, records);
        let ns = |d: Duration| d.as_nanos() as f64 / records as f64;
        println!(
            "key_throughput/round {round}: key path {:.1} ns per record (filter {:.1}, index {:.1}), check alone {:.1} ns per record",
            ns(keys),
            ns(filter),
            ns(keys - filter),
            ns(check)
        );
    }
}
