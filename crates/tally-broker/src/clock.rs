//! The broker's wall clock, injected: append timestamps, producer expiry, retention and the
//! group coordinator's times all read it, so a simulation can run the broker on its own time.
//! (Durations between events, such as session timeouts, use tokio's clock, which a simulation
//! controls already.)

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch: the clock Kafka uses for timestamps.
    fn now_ms(&self) -> i64;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}
