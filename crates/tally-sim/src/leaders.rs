//! Raft's election safety, as the oracle sees it: one leader per term of each group.

use std::collections::{BTreeMap, HashMap};

/// The leader seen in each term of each group.
#[derive(Debug, Default)]
pub struct TermLeaders {
    terms: HashMap<String, BTreeMap<u64, u64>>,
}

impl TermLeaders {
    /// Records that `node` leads `group` in `term`; names the violation when another node
    /// was already seen leading that term.
    pub fn record(&mut self, group: &str, term: u64, node: u64) -> Option<String> {
        let terms = self.terms.entry(group.to_string()).or_default();
        match terms.insert(term, node) {
            Some(other) if other != node => {
                // Keep the first: every later sighting of either is a violation too.
                terms.insert(term, other);
                Some(format!(
                    "group {group}: nodes {other} and {node} both led term {term}"
                ))
            }
            _ => None,
        }
    }

    /// How many (group, term) pairs had a leader.
    pub fn terms_seen(&self) -> usize {
        self.terms.values().map(BTreeMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_leader_in_a_term_is_a_violation() {
        let mut leaders = TermLeaders::default();
        assert_eq!(leaders.record("sim-0", 1, 1), None);
        assert_eq!(leaders.record("sim-0", 1, 1), None);
        assert_eq!(leaders.record("sim-0", 2, 2), None);
        // Another group's term 1 is its own.
        assert_eq!(leaders.record("sim-1", 1, 3), None);
        let v = leaders
            .record("sim-0", 2, 3)
            .expect("two leaders in term 2");
        assert!(v.contains("nodes 2 and 3 both led term 2"), "{v}");
        assert_eq!(leaders.terms_seen(), 3);
    }
}
