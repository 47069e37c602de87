//! Partition assignors of the consumer protocol, run by the group leader: `range` (Kafka's
//! RangeAssignor) and `cooperative-sticky` (KIP-429: balanced, keeps what members own, and
//! never gives a partition to a new owner in the same round its previous owner still holds it;
//! the previous owner revokes it first and a follow-up rebalance hands it over).

use std::collections::{BTreeMap, BTreeSet};

/// (topic, partition)
pub type TopicPartition = (String, i32);

/// What the leader knows of a member: subscribed topics and the partitions it owns now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSubscription {
    pub topics: Vec<String>,
    pub owned: Vec<TopicPartition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Range,
    CooperativeSticky,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    pub fn is_cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }

    /// Assignment per member id. `partitions` gives each topic's partition count.
    pub fn assign(
        self,
        members: &BTreeMap<String, MemberSubscription>,
        partitions: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        match self {
            Assignor::Range => range(members, partitions),
            Assignor::CooperativeSticky => cooperative_sticky(members, partitions),
        }
    }
}

fn range(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> =
        members.keys().map(|m| (m.clone(), Vec::new())).collect();
    for (topic, &count) in partitions {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let n = count as usize / subscribers.len();
        let extra = count as usize % subscribers.len();
        let mut next = 0i32;
        for (i, member) in subscribers.iter().enumerate() {
            let take = n + usize::from(i < extra);
            for _ in 0..take {
                out.get_mut(*member)
                    .expect("member")
                    .push((topic.clone(), next));
                next += 1;
            }
        }
    }
    out
}

fn cooperative_sticky(
    members: &BTreeMap<String, MemberSubscription>,
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let all: BTreeSet<TopicPartition> = partitions
        .iter()
        .filter(|(t, _)| members.values().any(|s| s.topics.contains(t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
        .collect();
    let eligible = |member: &str, tp: &TopicPartition| members[member].topics.contains(&tp.0);
    // Previous owners (a partition claimed by two members goes to neither: it is reassigned).
    let mut owners: BTreeMap<TopicPartition, Vec<&String>> = BTreeMap::new();
    for (m, s) in members {
        for tp in &s.owned {
            owners.entry(tp.clone()).or_default().push(m);
        }
    }
    let mut assignment: BTreeMap<String, BTreeSet<TopicPartition>> = members
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let quota = all.len().div_ceil(members.len().max(1));
    for tp in &all {
        if let Some(list) = owners.get(tp) {
            if list.len() == 1 && eligible(list[0], tp) && assignment[list[0]].len() < quota {
                assignment
                    .get_mut(list[0])
                    .expect("member")
                    .insert(tp.clone());
            }
        }
    }
    // Unowned partitions to the least loaded eligible member.
    for tp in &all {
        if assignment.values().any(|a| a.contains(tp)) {
            continue;
        }
        let target = members
            .keys()
            .filter(|m| eligible(m, tp))
            .min_by_key(|m| (assignment[*m].len(), (*m).clone()));
        if let Some(m) = target {
            assignment.get_mut(m).expect("member").insert(tp.clone());
        }
    }
    // Even out: move from the most to the least loaded while they differ by more than one.
    loop {
        let (max_m, max_n) = assignment
            .iter()
            .map(|(m, a)| (m.clone(), a.len()))
            .max_by_key(|(m, n)| (*n, std::cmp::Reverse(m.clone())))
            .unwrap_or_default();
        let movable = assignment[&max_m].iter().rev().find_map(|tp| {
            members
                .keys()
                .filter(|m| eligible(m, tp) && assignment[*m].len() + 1 < max_n)
                .min_by_key(|m| (assignment[*m].len(), (*m).clone()))
                .map(|to| (tp.clone(), to.clone()))
        });
        match movable {
            Some((tp, to)) => {
                assignment.get_mut(&max_m).expect("member").remove(&tp);
                assignment.get_mut(&to).expect("member").insert(tp);
            }
            None => break,
        }
    }
    // Cooperative: a partition still owned by another member is not handed over this round.
    for (m, a) in assignment.iter_mut() {
        a.retain(|tp| {
            owners
                .get(tp)
                .is_none_or(|list| list.iter().all(|o| *o == m))
        });
    }
    assignment
        .into_iter()
        .map(|(m, a)| (m, a.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (member, subscribed topics, owned partitions)
    type Spec<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, i32)]);

    fn subs(members: &[Spec]) -> BTreeMap<String, MemberSubscription> {
        members
            .iter()
            .map(|(m, topics, owned)| {
                (
                    m.to_string(),
                    MemberSubscription {
                        topics: topics.iter().map(|t| t.to_string()).collect(),
                        owned: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
                    },
                )
            })
            .collect()
    }

    fn tps(v: &[(&str, i32)]) -> Vec<TopicPartition> {
        v.iter().map(|(t, p)| (t.to_string(), *p)).collect()
    }

    #[test]
    fn range_matches_kafka() {
        let members = subs(&[("a", &["t", "u"], &[]), ("b", &["t", "u"], &[])]);
        let partitions: BTreeMap<String, i32> = [("t".to_string(), 3), ("u".to_string(), 2)].into();
        let out = Assignor::Range.assign(&members, &partitions);
        assert_eq!(out["a"], tps(&[("t", 0), ("t", 1), ("u", 0)]));
        assert_eq!(out["b"], tps(&[("t", 2), ("u", 1)]));
    }

    #[test]
    fn cooperative_sticky_keeps_owned_and_withholds_moves() {
        let partitions: BTreeMap<String, i32> = [("t".to_string(), 4)].into();
        // A alone owns everything; B joins.
        let members = subs(&[
            ("a", &["t"], &[("t", 0), ("t", 1), ("t", 2), ("t", 3)]),
            ("b", &["t"], &[]),
        ]);
        let first = Assignor::CooperativeSticky.assign(&members, &partitions);
        assert_eq!(first["a"].len(), 2, "A keeps two and gives two up");
        assert!(
            first["b"].is_empty(),
            "B gets nothing while A still owns them"
        );
        // Second round: A owns its two, B still nothing.
        let members = subs(&[
            (
                "a",
                &["t"],
                &first["a"]
                    .iter()
                    .map(|(t, p)| (t.as_str(), *p))
                    .collect::<Vec<_>>(),
            ),
            ("b", &["t"], &[]),
        ]);
        let second = Assignor::CooperativeSticky.assign(&members, &partitions);
        assert_eq!(second["a"], first["a"], "sticky");
        assert_eq!(second["b"].len(), 2);
        let all: BTreeSet<TopicPartition> = second.values().flatten().cloned().collect();
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn cooperative_sticky_is_balanced_from_scratch() {
        let partitions: BTreeMap<String, i32> = [("t".to_string(), 7), ("u".to_string(), 2)].into();
        let members = subs(&[
            ("a", &["t", "u"], &[]),
            ("b", &["t", "u"], &[]),
            ("c", &["t", "u"], &[]),
        ]);
        let out = Assignor::CooperativeSticky.assign(&members, &partitions);
        let sizes: Vec<usize> = out.values().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 3, 3]);
        let all: BTreeSet<TopicPartition> = out.values().flatten().cloned().collect();
        assert_eq!(all.len(), 9);
    }
}
