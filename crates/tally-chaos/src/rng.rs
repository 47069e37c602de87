use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A seeded random source per connection: connection `n` of a proxy seeded with `seed` always
/// draws the same sequence, so a failing run can be replayed from its seed.
pub struct FaultRng(StdRng);

impl FaultRng {
    pub fn new(seed: u64, connection: u64) -> Self {
        FaultRng(StdRng::seed_from_u64(
            seed ^ connection.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        ))
    }

    /// True with probability `p` (0 never draws).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.random::<f64>() < p
    }

    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            low
        } else {
            self.0.random_range(low..=high)
        }
    }
}
