use std::time::{Duration, Instant};

/// Holds a sender to a rate: after `sent` messages it may not be ahead of `rate * elapsed`.
/// Sleeps in steps of at least a millisecond, so a high rate is reached in small bursts.
pub struct Pacer {
    start: Instant,
    per_second: Option<u64>,
}

impl Pacer {
    pub fn new(per_second: Option<u64>) -> Pacer {
        Pacer {
            start: Instant::now(),
            per_second,
        }
    }

    /// How long to wait before sending message number `sent` (0-based).
    pub fn delay(&self, sent: u64) -> Option<Duration> {
        let rate = self.per_second?;
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        let elapsed = self.start.elapsed();
        (due > elapsed + Duration::from_millis(1)).then(|| due - elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpaced_never_waits_and_paced_waits_when_ahead() {
        assert!(Pacer::new(None).delay(1_000_000).is_none());
        let p = Pacer::new(Some(1000));
        assert!(p.delay(0).is_none());
        let wait = p
            .delay(500)
            .expect("500 messages at 1000/s are due in 0.5 s");
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500));
    }
}
