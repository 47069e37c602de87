use std::sync::atomic::{AtomicU64, Ordering};

/// Every fault the proxy injected, and the traffic it forwarded.
#[derive(Debug, Default)]
pub struct FaultCounters {
    pub connections: AtomicU64,
    pub requests_forwarded: AtomicU64,
    pub produce_requests: AtomicU64,
    pub produce_responses_dropped: AtomicU64,
    pub connections_reset: AtomicU64,
    pub responses_delayed: AtomicU64,
    pub connections_stalled: AtomicU64,
}

/// A plain copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCountsSnapshot {
    pub connections: u64,
    pub requests_forwarded: u64,
    pub produce_requests: u64,
    pub produce_responses_dropped: u64,
    pub connections_reset: u64,
    pub responses_delayed: u64,
    pub connections_stalled: u64,
}

impl FaultCountsSnapshot {
    /// Faults injected: lost acknowledgements, resets and stalls (delays are not failures).
    pub fn faults(&self) -> u64 {
        self.produce_responses_dropped + self.connections_reset + self.connections_stalled
    }
}

impl FaultCounters {
    pub fn snapshot(&self) -> FaultCountsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultCountsSnapshot {
            connections: g(&self.connections),
            requests_forwarded: g(&self.requests_forwarded),
            produce_requests: g(&self.produce_requests),
            produce_responses_dropped: g(&self.produce_responses_dropped),
            connections_reset: g(&self.connections_reset),
            responses_delayed: g(&self.responses_delayed),
            connections_stalled: g(&self.connections_stalled),
        }
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
