//! One broker: faults between it and the clients, crashes and power cuts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use turmoil::Sim;

use crate::oracle::Oracle;
use crate::run::{
    add_clients, fault_line, new_sim, power_cut, producer_host, run_world, FaultDriver, TrackedDir,
};
use crate::world::{
    broker_host, broker_software, producer_hosts, BrokerSetup, SimFailure, SimOptions, SimReport,
};

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Requests reach the broker, answers do not come back: the write happens, the ack is lost.
    LostAnswers(usize),
    Hold(usize),
    Partition(usize),
    Crash,
    /// A crash that also loses what was never fsynced.
    PowerCut,
}

struct Driver {
    rng: StdRng,
    active: Option<Fault>,
    log: Vec<String>,
    producers: usize,
    broker: String,
    /// The broker's data directory, and whether crashes there are power cuts.
    dir: PathBuf,
    power_cuts: bool,
    power_cut_losses: (usize, u64, usize),
}

impl FaultDriver for Driver {
    fn start(&mut self, sim: &mut Sim<'_>, now: Duration) -> Duration {
        let broker = self.broker.clone();
        let k = self.rng.random_range(0..self.producers);
        let fault = match self.rng.random_range(0..10) {
            0..=3 => Fault::LostAnswers(k),
            4..=5 => Fault::Hold(k),
            6..=7 => Fault::Partition(k),
            _ if self.power_cuts => Fault::PowerCut,
            _ => Fault::Crash,
        };
        let length = Duration::from_millis(self.rng.random_range(50..1500));
        match fault {
            Fault::LostAnswers(k) => sim.partition_oneway(broker, producer_host(k)),
            Fault::Hold(k) => sim.hold(broker, producer_host(k)),
            Fault::Partition(k) => sim.partition(broker, producer_host(k)),
            Fault::Crash => sim.crash(broker),
            Fault::PowerCut => {
                // The host's tasks are gone once crash returns, so nothing writes meanwhile.
                sim.crash(broker);
                power_cut(&self.dir, &mut self.power_cut_losses, &mut self.log);
            }
        }
        self.log.push(fault_line(now, &fault, length));
        self.active = Some(fault);
        length
    }

    fn end(&mut self, sim: &mut Sim<'_>) {
        let broker = self.broker.clone();
        if let Some(fault) = self.active.take() {
            match fault {
                Fault::LostAnswers(k) => sim.repair_oneway(broker, producer_host(k)),
                Fault::Hold(k) => sim.release(broker, producer_host(k)),
                Fault::Partition(k) => sim.repair(broker, producer_host(k)),
                Fault::Crash | Fault::PowerCut => sim.bounce(broker),
            }
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
}

/// Runs one seeded simulation of a single broker to the end and checks it.
pub fn run_seed(seed: u64, options: &SimOptions) -> Result<SimReport, SimFailure> {
    if options.brokers > 1 {
        return crate::cluster::run_cluster_seed(seed, options);
    }
    let data = crate::run::data_dir(seed, options)?;
    let oracle = Arc::new(Mutex::new(Oracle::default()));
    let mut sim = new_sim(seed, options, 100);
    let dir = data.path().to_path_buf();
    let power_cuts = options.power_cuts_without_flush || (options.power_cuts && seed % 2 == 1);
    let flush_each = power_cuts && !options.power_cuts_without_flush;
    let tracked = TrackedDir::new(&dir, power_cuts);
    let broker = broker_host(1, 0);
    let setup = BrokerSetup {
        dir: dir.clone(),
        host: broker.clone(),
        partitions: options.partitions,
        flush_each,
        cluster: None,
        registry: None,
        idempotency_keys: options.idempotency_keys,
        retention: options.retention,
        seed,
    };
    sim.host(broker.as_str(), move || broker_software(setup.clone()));
    add_clients(&mut sim, options, &oracle);
    let mut driver = Driver {
        rng: StdRng::seed_from_u64(seed),
        active: None,
        log: Vec::new(),
        producers: producer_hosts(options),
        broker,
        dir,
        power_cuts,
        power_cut_losses: (0, 0, 0),
    };
    let report = run_world(seed, options, sim, &oracle, &mut driver);
    drop(tracked);
    report
}
