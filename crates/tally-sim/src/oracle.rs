//! What the producers were told about each message, and what the checkers found.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Acked {
        partition: i32,
        offset: i64,
    },
    /// Certainly not written (refused, or timed out before ever being sent).
    Failed,
    /// Timed out after being sent: it may or may not be in the log.
    Unknown,
}

#[derive(Debug, Default)]
pub struct Oracle {
    pub fates: HashMap<String, Fate>,
    pub producers_done_with_faults: usize,
    pub producers_finished: usize,
    pub healed: bool,
    pub checked: bool,
    pub violations: Vec<String>,
    /// High watermarks sampled over time, per partition.
    pub high_watermarks: HashMap<i32, i64>,
    /// Messages of unknown fate found stored (once), counted by the checker.
    pub unknown_stored: usize,
    /// What the transactional producer was told about each transaction.
    pub txn_fates: HashMap<usize, crate::txn_producer::TxnFate>,
    /// With retention: each partition's log start offset when the checker read the topic.
    pub log_starts: HashMap<i32, i64>,
    /// Cluster runs: snapshots the replicas installed, and those that replaced a log.
    pub snapshots_installed: (u64, u64),
}

impl Oracle {
    pub fn violation(&mut self, what: String) {
        if self.violations.len() < 20 {
            self.violations.push(what);
        }
    }
}
