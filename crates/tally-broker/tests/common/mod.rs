//! What the in-process broker tests share: a runtime with two async workers (as on the
//! two-core machines this runs on) and a broker on a loopback port in a temporary directory.

use std::path::Path;

use tally_broker::{Broker, BrokerConfig, RunningBroker};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A broker with its data in `dir`, listening on a free loopback port, with `sets` applied.
pub fn start(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    sets: &[(&str, &str)],
) -> RunningBroker {
    let mut config = BrokerConfig::new();
    config.set("log.dirs", &dir.to_string_lossy()).unwrap();
    config.set("listeners", "127.0.0.1:0").unwrap();
    config.set("http.listeners", "").unwrap();
    for (key, value) in sets {
        config.set(key, value).unwrap();
    }
    runtime
        .block_on(Broker::start(config))
        .expect("broker starts")
}
