//! Where a new partition's replicas go: Kafka's rack-unaware assignment. The first replica
//! (the preferred leader) of consecutive partitions walks the broker list, and the followers
//! are shifted once per round, so leaders and followers spread evenly. Kafka starts at a
//! random broker; here the start is given (the number of partitions the cluster has created),
//! because every replica of the controller must compute the same assignment.

/// Replicas for partitions `first_partition .. first_partition + count`, each of
/// `replication_factor` distinct brokers of `brokers` (sorted, non-empty, at least
/// `replication_factor` long).
pub fn assign_replicas(
    brokers: &[u64],
    first_partition: u32,
    count: u32,
    replication_factor: u16,
    start: u64,
) -> Vec<Vec<u64>> {
    let n = brokers.len() as u64;
    assert!(
        n > 0 && u64::from(replication_factor) <= n,
        "checked by the caller"
    );
    let start_index = start % n;
    (first_partition..first_partition + count)
        .map(|p| {
            let p = u64::from(p);
            let first = (start_index + p) % n;
            // The followers' shift grows by one each time the leaders wrap around the list.
            let shift = start_index + p / n;
            let mut replicas = vec![brokers[first as usize]];
            for j in 0..u64::from(replication_factor) - 1 {
                let index = (first + 1 + (shift + j) % (n - 1)) % n;
                replicas.push(brokers[index as usize]);
            }
            replicas
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn leaders_and_replicas_spread_evenly_over_three_brokers() {
        let a = assign_replicas(&[1, 2, 3], 0, 6, 3, 0);
        let mut leaders = BTreeMap::new();
        for r in &a {
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
        // Six partitions over three brokers: not every partition has the same follower order.
        let orders: BTreeSet<_> = a.iter().map(|r| r[1..].to_vec()).collect();
        assert!(orders.len() > 3, "{a:?}");
    }

    #[test]
    fn the_start_moves_the_first_leader() {
        assert_eq!(assign_replicas(&[1, 2, 3], 0, 1, 1, 0), vec![vec![1]]);
        assert_eq!(assign_replicas(&[1, 2, 3], 0, 1, 1, 4), vec![vec![2]]);
        assert_eq!(assign_replicas(&[5], 0, 2, 1, 9), vec![vec![5], vec![5]]);
    }

    proptest! {
        #[test]
        fn replicas_are_distinct_registered_brokers(
            n in 1usize..8, rf_seed in 0u16..8, count in 0u32..40, first in 0u32..20, start in 0u64..100
        ) {
            let brokers: Vec<u64> = (1..=n as u64).map(|b| b * 10).collect();
            let rf = 1 + rf_seed % n as u16;
            let a = assign_replicas(&brokers, first, count, rf, start);
            prop_assert_eq!(a.len(), count as usize);
            for replicas in &a {
                prop_assert_eq!(replicas.len(), rf as usize);
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), replicas.len());
                prop_assert!(replicas.iter().all(|b| brokers.contains(b)));
            }
            // Leaders of n consecutive partitions are n different brokers.
            if count as usize >= n {
                let leaders: BTreeSet<_> = a[..n].iter().map(|r| r[0]).collect();
                prop_assert_eq!(leaders.len(), n);
            }
        }
    }
}
