use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the epoch: the clock Kafka uses for timestamps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
