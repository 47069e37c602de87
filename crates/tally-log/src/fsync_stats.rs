//! How long the broker's fsyncs take, process-wide: every `sync_data`, `sync_all` and
//! directory sync of the storage seam is timed into a fixed histogram of relaxed atomics (no
//! lock, no allocation). `/metrics` exposes it as `tally_fsync_latency_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the buckets: 100 µs doubling to about 3.3 s; slower ones go in +Inf.
pub const BUCKET_BOUNDS_SECONDS: [f64; 16] = {
    let mut b = [0.0; 16];
    let mut i = 0;
    let mut v = 0.0001;
    while i < 16 {
        b[i] = v;
        v *= 2.0;
        i += 1;
    }
    b
};

struct Histogram {
    /// Per bucket (not cumulative); the last is +Inf.
    counts: [AtomicU64; 17],
    sum_nanos: AtomicU64,
}

static FSYNCS: Histogram = Histogram {
    counts: [const { AtomicU64::new(0) }; 17],
    sum_nanos: AtomicU64::new(0),
};

/// A copy of the histogram.
#[derive(Debug, Clone, PartialEq)]
pub struct FsyncLatency {
    /// (upper bound in seconds, fsyncs in this bucket alone); the last bound is +Inf.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
}

/// Runs an fsync and records how long it took (failed ones too: they took that long).
pub(crate) fn timed<T>(fsync: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = fsync();
    record(start.elapsed());
    out
}

fn record(took: Duration) {
    let secs = took.as_secs_f64();
    let i = BUCKET_BOUNDS_SECONDS
        .iter()
        .position(|&b| secs <= b)
        .unwrap_or(BUCKET_BOUNDS_SECONDS.len());
    FSYNCS.counts[i].fetch_add(1, Ordering::Relaxed);
    let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    FSYNCS.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
}

/// The fsyncs of this process so far.
pub fn fsync_latency() -> FsyncLatency {
    let mut buckets: Vec<(f64, u64)> = BUCKET_BOUNDS_SECONDS
        .iter()
        .zip(&FSYNCS.counts)
        .map(|(b, c)| (*b, c.load(Ordering::Relaxed)))
        .collect();
    buckets.push((f64::INFINITY, FSYNCS.counts[16].load(Ordering::Relaxed)));
    FsyncLatency {
        count: buckets.iter().map(|(_, c)| c).sum(),
        sum_seconds: FSYNCS.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        buckets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsyncs_land_in_the_bucket_of_their_duration() {
        let before = fsync_latency();
        record(Duration::from_micros(50));
        record(Duration::from_micros(150));
        record(Duration::from_millis(1));
        record(Duration::from_secs(10));
        let after = fsync_latency();
        let added: Vec<u64> = after
            .buckets
            .iter()
            .zip(&before.buckets)
            .map(|(a, b)| a.1 - b.1)
            .collect();
        // 50 µs <= 100 µs; 150 µs <= 200 µs; 1 ms <= 1.6 ms; 10 s past every bound.
        let mut expected = [0u64; 17];
        expected[0] = 1;
        expected[1] = 1;
        expected[4] = 1;
        expected[16] = 1;
        // Other tests of this crate fsync concurrently: only the buckets we hit must have
        // grown at least by ours.
        for (i, e) in expected.iter().enumerate() {
            assert!(added[i] >= *e, "bucket {i}: {added:?}");
        }
        assert!(after.count >= before.count + 4);
        // Ours add 10.0012 s; other tests' fsyncs meanwhile add far less than a second.
        let added_seconds = after.sum_seconds - before.sum_seconds;
        assert!((10.0..11.0).contains(&added_seconds), "{added_seconds}");
        assert_eq!(after.buckets.last().unwrap().0, f64::INFINITY);
        assert!((BUCKET_BOUNDS_SECONDS[15] - 3.2768).abs() < 1e-9);
    }
}
