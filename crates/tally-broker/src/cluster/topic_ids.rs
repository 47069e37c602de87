//! The ids of the topics this node proposes: random on a server, as Kafka's are; derived from
//! a seed under a simulation. Why: the ids name the partitions' Raft groups, and the groups
//! are kept in maps ordered by name, so random ids changed the order replicas were opened in
//! and a simulation seed could not replay exactly.

use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

pub(crate) struct TopicIds {
    /// The seed and this node's id; `None`: random ids.
    seeded: Option<(u64, u64)>,
    next: AtomicU64,
}

impl TopicIds {
    pub(crate) fn new(seed: Option<u64>, node_id: u64) -> TopicIds {
        TopicIds {
            seeded: seed.map(|s| (s, node_id)),
            next: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> Uuid {
        let Some((seed, node_id)) = self.seeded else {
            return Uuid::new_v4();
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let high = mix(seed ^ node_id.rotate_left(48) ^ n);
        Uuid::from_u64_pair(high, mix(high ^ n))
    }
}

/// SplitMix64's finaliser.
fn mix(z: u64) -> u64 {
    let z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_ids_repeat_per_seed_and_node_and_differ_otherwise() {
        let ids = |seed, node| {
            let t = TopicIds::new(Some(seed), node);
            (0..3).map(|_| t.next()).collect::<Vec<_>>()
        };
        assert_eq!(ids(5, 1), ids(5, 1));
        assert_ne!(ids(5, 1), ids(5, 2));
        assert_ne!(ids(5, 1), ids(6, 1));
        let a = ids(5, 1);
        assert!(a[0] != a[1] && a[1] != a[2]);
        let random = TopicIds::new(None, 1);
        assert_ne!(random.next(), random.next());
    }
}
