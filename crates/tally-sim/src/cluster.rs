//! Three brokers in cluster mode (`options.brokers`), every partition a Raft group on all of
//! them, with the controller group's metadata. Raft's traffic between the brokers goes over
//! turmoil's network (`TurmoilRaftTransport`), so the driver's faults reach it: a broker
//! crashes or loses power and restarts on its data; a broker is cut off from the others
//! (clients still reach it); a link between two brokers is cut, holds its messages, or loses
//! them one way; a client loses a broker's answers or is cut off from it.
//!
//! The oracle checks what the single broker's run checks (each message once, at its
//! acknowledged offset, no sequence gap, the high watermark never back), after every step
//! that no group has two leaders in one term, and at the end that every two replicas of a
//! partition hold the same bytes where both have them (`replica_agreement.rs`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::ServerState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tally_raft::PartitionRaft;
use turmoil::Sim;

use crate::leaders::TermLeaders;
use crate::oracle::Oracle;
use crate::run::{
    add_clients, fault_line, new_sim, power_cut, producer_host, run_world, FaultDriver, TrackedDir,
};
use crate::world::{
    broker_host, broker_software, producer_hosts, BrokerSetup, Registry, SimFailure, SimOptions,
    SimReport,
};

/// Where each node listens for Raft.
const RAFT_PORT: u16 = 9193;

#[derive(Debug, Clone, Copy)]
enum Fault {
    Crash(usize),
    /// A crash that also loses what the node never fsynced.
    PowerCut(usize),
    /// The node is cut off from every other broker; clients still reach it.
    Isolate(usize),
    /// The link between two brokers is cut both ways.
    Link(usize, usize),
    /// Messages from the first broker to the second are lost.
    LostBetween(usize, usize),
    /// Messages between two brokers are held, then delivered.
    HoldBetween(usize, usize),
    /// A producer's requests reach the broker; its answers are lost.
    LostAnswers(usize, usize),
    /// A producer is cut off from a broker.
    ClientCut(usize, usize),
}

struct Driver {
    rng: StdRng,
    active: Option<Fault>,
    log: Vec<String>,
    hosts: Vec<String>,
    dirs: Vec<PathBuf>,
    producers: usize,
    power_cuts: bool,
    power_cut_losses: (usize, u64, usize),
    registry: Registry,
    /// Brokers crashed at the moment: their last Raft state is not looked at.
    down: Vec<bool>,
    leaders: TermLeaders,
    /// `SimOptions::retention`: some outages outlast the leaders' patience (see `start`).
    retention: bool,
    /// The snapshot installs last seen per replica (host and group), to count new ones.
    installs_seen: HashMap<(String, String), (u64, u64)>,
}

impl Driver {
    fn other_brokers(&self, k: usize) -> impl Iterator<Item = &String> {
        self.hosts
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != k)
            .map(|(_, h)| h)
    }

    /// The brokers that lead some partition now.
    fn partition_leaders(&self) -> Vec<usize> {
        let registry = self.registry.lock().unwrap();
        (0..self.hosts.len())
            .filter(|k| !self.down[*k])
            .filter(|k| {
                let broker = registry.get(&self.hosts[*k]).and_then(|b| b.upgrade());
                let Some(cluster) = broker.and_then(|b| b.cluster.clone()) else {
                    return false;
                };
                cluster
                    .node
                    .partitions()
                    .iter()
                    .any(|p| p.replica.raft.metrics().borrow_watched().state == ServerState::Leader)
            })
            .collect()
    }

    fn pick(&mut self) -> Fault {
        let n = self.hosts.len();
        // Crashes, power cuts and isolation mostly hit a partition's leader, so leaders move.
        let leaders = self.partition_leaders();
        let k = if !leaders.is_empty() && self.rng.random_bool(0.7) {
            leaders[self.rng.random_range(0..leaders.len())]
        } else {
            self.rng.random_range(0..n)
        };
        let other = (k + self.rng.random_range(1..n)) % n;
        let producer = self.rng.random_range(0..self.producers);
        match self.rng.random_range(0..12) {
            0..=1 if self.power_cuts => Fault::PowerCut(k),
            0..=1 => Fault::Crash(k),
            2..=3 => Fault::Isolate(k),
            4 => Fault::Link(k, other),
            5..=6 => Fault::LostBetween(k, other),
            7 => Fault::HoldBetween(k, other),
            8..=9 => Fault::LostAnswers(k, producer),
            _ => Fault::ClientCut(k, producer),
        }
    }

    /// Adds the snapshots `replica` installed since this was last looked at. Its counters
    /// start again at zero when its broker restarts.
    fn count_installs(
        &mut self,
        host: String,
        group: String,
        replica: &tally_raft::Replica,
        oracle: &Mutex<Oracle>,
    ) {
        let now = replica.state_machine.snapshots_installed();
        let seen = self.installs_seen.entry((host, group)).or_default();
        let new = if now.0 < seen.0 {
            now
        } else {
            (now.0 - seen.0, now.1.saturating_sub(seen.1))
        };
        *seen = now;
        let mut o = oracle.lock().unwrap();
        o.snapshots_installed.0 += new.0;
        o.snapshots_installed.1 += new.1;
    }

    /// Records who leads `raft`'s group now, if this replica does.
    fn observe(&mut self, group: String, raft: &PartitionRaft, oracle: &Mutex<Oracle>) {
        let (state, term, id) = {
            let m = raft.metrics();
            let m = m.borrow_watched();
            (m.state, m.current_term, m.id)
        };
        if state != ServerState::Leader {
            return;
        }
        if let Some(violation) = self.leaders.record(&group, term, id) {
            oracle.lock().unwrap().violation(violation);
        }
    }
}

impl FaultDriver for Driver {
    fn start(&mut self, sim: &mut Sim<'_>, now: Duration) -> Duration {
        let fault = self.pick();
        let mut length = Duration::from_millis(self.rng.random_range(50..2000));
        // With retention, three crashes or isolations in five last past the 2 s after which a
        // leader stops holding its purge back for the node: it returns to a snapshot.
        let outage = matches!(
            fault,
            Fault::Crash(_) | Fault::PowerCut(_) | Fault::Isolate(_)
        );
        if self.retention && outage && self.rng.random_bool(0.6) {
            length = Duration::from_millis(self.rng.random_range(2_500..4_000));
        }
        let h = self.hosts.clone();
        match fault {
            Fault::Crash(k) => {
                sim.crash(h[k].as_str());
                self.down[k] = true;
            }
            Fault::PowerCut(k) => {
                // The host's tasks are gone once crash returns, so nothing writes meanwhile.
                sim.crash(h[k].as_str());
                self.down[k] = true;
                power_cut(&self.dirs[k], &mut self.power_cut_losses, &mut self.log);
            }
            Fault::Isolate(k) => {
                for other in self.other_brokers(k) {
                    sim.partition(h[k].as_str(), other.as_str());
                }
            }
            Fault::Link(a, b) => sim.partition(h[a].as_str(), h[b].as_str()),
            Fault::LostBetween(a, b) => sim.partition_oneway(h[a].as_str(), h[b].as_str()),
            Fault::HoldBetween(a, b) => sim.hold(h[a].as_str(), h[b].as_str()),
            Fault::LostAnswers(k, p) => sim.partition_oneway(h[k].as_str(), producer_host(p)),
            Fault::ClientCut(k, p) => sim.partition(h[k].as_str(), producer_host(p)),
        }
        self.log.push(fault_line(now, &fault, length));
        self.active = Some(fault);
        length
    }

    fn end(&mut self, sim: &mut Sim<'_>) {
        let Some(fault) = self.active.take() else {
            return;
        };
        let h = self.hosts.clone();
        match fault {
            Fault::Crash(k) | Fault::PowerCut(k) => {
                sim.bounce(h[k].as_str());
                self.down[k] = false;
            }
            Fault::Isolate(k) => {
                for other in self.other_brokers(k) {
                    sim.repair(h[k].as_str(), other.as_str());
                }
            }
            Fault::Link(a, b) => sim.repair(h[a].as_str(), h[b].as_str()),
            Fault::LostBetween(a, b) => sim.repair_oneway(h[a].as_str(), h[b].as_str()),
            Fault::HoldBetween(a, b) => sim.release(h[a].as_str(), h[b].as_str()),
            Fault::LostAnswers(k, p) => sim.repair_oneway(h[k].as_str(), producer_host(p)),
            Fault::ClientCut(k, p) => sim.repair(h[k].as_str(), producer_host(p)),
        }
    }

    fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    fn log(&self) -> &[String] {
        &self.log
    }

    fn power_cut_losses(&self) -> (usize, u64, usize) {
        self.power_cut_losses
    }

    fn describe(&self) -> String {
        let registry = self.registry.lock().unwrap();
        let mut out = String::new();
        for (k, host) in self.hosts.iter().enumerate() {
            let broker = registry.get(host).and_then(|b| b.upgrade());
            let Some(cluster) = broker.as_ref().and_then(|b| b.cluster.clone()) else {
                out += &format!("\n{host}: not running");
                continue;
            };
            let mut groups = vec![(
                "metadata".to_string(),
                cluster.node.controller().raft().clone(),
            )];
            for p in cluster.node.partitions() {
                groups.push((format!("{}-{}", p.topic, p.index), p.replica.raft.clone()));
            }
            for (name, raft) in groups {
                let m = raft.metrics().borrow_watched().clone();
                out += &format!(
                    "\n{host}{}: {name} {:?} term {} leader {:?} last log {:?} applied {:?}; \
                     voters {:?}; replication {:?}",
                    if self.down[k] { " (down)" } else { "" },
                    m.state,
                    m.current_term,
                    m.current_leader,
                    m.last_log_index,
                    m.last_applied.map(|l| l.index),
                    m.membership_config
                        .membership()
                        .voter_ids()
                        .collect::<Vec<_>>(),
                    m.replication.as_ref().map(|r| r
                        .iter()
                        .map(|(id, l)| (*id, l.map(|l| l.index)))
                        .collect::<Vec<_>>()),
                );
            }
        }
        out
    }

    fn at_end(&mut self, oracle: &Mutex<Oracle>) {
        let differ = crate::replica_agreement::disagreements(&self.registry, &self.hosts);
        let mut o = oracle.lock().unwrap();
        for line in differ {
            o.violation(line);
        }
    }

    fn after_step(&mut self, oracle: &Mutex<Oracle>) {
        let brokers: Vec<_> = {
            let registry = self.registry.lock().unwrap();
            self.hosts
                .iter()
                .enumerate()
                .filter(|(k, _)| !self.down[*k])
                .filter_map(|(_, host)| {
                    let broker = registry.get(host).and_then(|b| b.upgrade())?;
                    Some((host.clone(), broker))
                })
                .collect()
        };
        for (host, broker) in brokers {
            let Some(cluster) = broker.cluster.clone() else {
                continue;
            };
            let group = tally_controller::CONTROLLER_GROUP.to_string();
            self.observe(group, cluster.node.controller().raft(), oracle);
            for p in cluster.node.partitions() {
                let group = format!("{}-{}", p.topic, p.index);
                self.observe(group.clone(), &p.replica.raft, oracle);
                self.count_installs(host.clone(), group, &p.replica, oracle);
            }
        }
    }
}

/// Runs one seeded simulation of a cluster to the end and checks it.
pub fn run_cluster_seed(seed: u64, options: &SimOptions) -> Result<SimReport, SimFailure> {
    let data = crate::run::data_dir(seed, options)?;
    let oracle = Arc::new(Mutex::new(Oracle::default()));
    let mut sim = new_sim(seed, options, 10);
    let n = options.brokers;
    let hosts: Vec<String> = (0..n).map(|k| broker_host(n, k)).collect();
    let dirs: Vec<PathBuf> = hosts.iter().map(|h| data.path().join(h)).collect();
    let voters: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(k, h)| format!("{}@{h}:{RAFT_PORT}", k + 1))
        .collect();
    let power_cuts = options.power_cuts && seed % 2 == 1;
    let tracked: Vec<TrackedDir> = dirs
        .iter()
        .map(|d| TrackedDir::new(d, power_cuts))
        .collect();
    let registry = Registry::default();
    for (k, host) in hosts.iter().enumerate() {
        let setup = BrokerSetup {
            dir: dirs[k].clone(),
            host: host.clone(),
            partitions: options.partitions,
            flush_each: false,
            cluster: Some((k + 1, voters.join(","), n)),
            registry: Some(Arc::clone(&registry)),
            idempotency_keys: false,
            retention: options.retention,
            seed,
        };
        sim.host(host.as_str(), move || broker_software(setup.clone()));
    }
    add_clients(&mut sim, options, &oracle);
    let mut driver = Driver {
        rng: StdRng::seed_from_u64(seed),
        active: None,
        log: Vec::new(),
        hosts,
        dirs,
        producers: producer_hosts(options),
        power_cuts,
        power_cut_losses: (0, 0, 0),
        registry,
        down: vec![false; n],
        leaders: TermLeaders::default(),
        retention: options.retention,
        installs_seen: HashMap::new(),
    };
    let report = run_world(seed, options, sim, &oracle, &mut driver);
    drop(tracked);
    report.map(|mut r| {
        r.leader_terms = driver.leaders.terms_seen();
        r
    })
}
