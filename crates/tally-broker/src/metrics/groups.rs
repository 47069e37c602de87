//! Consumer-group metrics, read from the group coordinator at scrape time: members, completed
//! rebalances (the group's generation: one per rebalance) and, per committed partition, the
//! lag (high watermark minus committed offset).

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::broker::Broker;
use crate::group::GroupCoordinator;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: i64,
}

pub(crate) fn register(registry: &mut Registry, broker: &Broker) {
    let members = Family::<GroupLabels, Gauge<i64, AtomicI64>>::default();
    let rebalances = Family::<GroupLabels, Counter>::default();
    let lag = Family::<GroupPartitionLabels, Gauge<i64, AtomicI64>>::default();
    for groups in broker.group_coordinators() {
        register_groups(&groups, broker, &members, &rebalances, &lag);
    }
    registry.register("group_members", "Members of the consumer group", members);
    registry.register(
        "group_rebalances",
        "Rebalances the consumer group completed (its generation)",
        rebalances,
    );
    registry.register(
        "group_lag",
        "Messages between the group's committed offset and the high watermark",
        lag,
    );
}

/// One coordinator's groups: members, rebalances, and each committed partition's lag.
fn register_groups(
    groups: &GroupCoordinator,
    broker: &Broker,
    members: &Family<GroupLabels, Gauge<i64, AtomicI64>>,
    rebalances: &Family<GroupLabels, Counter>,
    lag: &Family<GroupPartitionLabels, Gauge<i64, AtomicI64>>,
) {
    for (group, _, _) in groups.list(&[]) {
        let d = groups.describe(&group);
        let labels = GroupLabels {
            group: group.clone(),
        };
        members.get_or_create(&labels).set(d.members.len() as i64);
        rebalances
            .get_or_create(&labels)
            .inc_by(d.generation.max(0) as u64);
        for (topic, partitions) in groups.fetch(&group, None) {
            for (partition, committed) in partitions {
                let (Some(committed), Some(handle)) =
                    (committed, broker.topics.partition(&topic, partition))
                else {
                    continue;
                };
                let end = handle.reader().high_watermark();
                lag.get_or_create(&GroupPartitionLabels {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: i64::from(partition),
                })
                .set((end - committed.offset).max(0));
            }
        }
    }
}
