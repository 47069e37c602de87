//! The idempotency-key index of one partition (topic config `idempotency.key`): which keys are
//! stored in the log, at which offset and with which timestamp, so that a later record with a
//! stored key is dropped before it is written, whoever sends it.
//!
//! Like the producer table it follows the log: apply and start-up replay move it through the
//! same transition ([`KeyIndex::index_batch`]), from the batches as they are in the log. A
//! key's time is the broker's clock when its batch was appended (not the producer's timestamp:
//! an application resending old events with their event time is still deduplicated). Snapshots
//! keep those times exactly; a batch replayed after a crash, past the last snapshot, takes its
//! own max timestamp, bounded below by the newest time the index knew and above by the time of
//! the restart ([`KeyClock::Replayed`]). Keys of a transaction are staged per producer and count
//! as stored only when its commit marker is applied; an abort forgets them.
//!
//! Memory is bounded by `idempotency.window.max.keys`: past it the oldest key (in log order) is
//! forgotten first and counted. A key older than `idempotency.window.ms`, or below the log start
//! offset (retention took its segment), is not stored any more, whether or not it has been
//! purged from memory yet.

use crate::idempotency_key::IdempotencyKey;
use crate::key_table::KeyTable;

// Keys come from clients, so the hasher must resist chosen collisions (randomly seeded), and it
// runs a few times per record: foldhash, hashbrown's own default, at a fraction of SipHash's
// cost (SipHash was a third of the broker's time with keys on).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use tally_protocol::{BatchHeader, BatchRecords, EndTxnMarker, KeySource, TxnResult};

/// How many records ahead the filter asks for the table lines a lookup reads.
const LOOKUP_PREFETCH_AHEAD: usize = 16;

/// The topic's idempotency-key settings, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyConfig {
    pub source: KeySource,
    /// `idempotency.window.ms`.
    pub window_ms: i64,
    /// `idempotency.window.max.keys`.
    pub max_keys: usize,
}

impl IdempotencyConfig {
    pub const DEFAULT_WINDOW_MS: i64 = 86_400_000;
    pub const DEFAULT_MAX_KEYS: usize = 1_000_000;
}

/// The time a batch's keys are stored at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyClock {
    /// Live apply: the broker's clock at the append.
    Appended(i64),
    /// Replay of a batch the snapshot does not cover, at broker time `now_ms`.
    Replayed { now_ms: i64 },
}

/// Keys with what is remembered of each, in log order.
pub type KeyList = Vec<(IdempotencyKey, StoredKey)>;
/// The staged keys of open transactions, per producer id.
pub type StagedKeys = Vec<(i64, KeyList)>;

/// What the index remembers of a stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredKey {
    pub offset: i64,
    pub timestamp_ms: i64,
}

/// One key of a batch as the filter kept it: the record's offset delta, its key and the
/// key's hash in the index (computed once, for the lookup and the insert).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptKey {
    pub offset_delta: i32,
    pub key: IdempotencyKey,
    pub hash: u64,
}

/// Counters for `tally keys` and the metrics (not persisted: they count since start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// Records not stored because their key was.
    pub dropped_records: u64,
    /// Keys forgotten because `idempotency.window.max.keys` was reached.
    pub evicted_keys: u64,
}

#[derive(Debug, Clone, Default)]
struct Staged {
    keys: Vec<(IdempotencyKey, StoredKey)>,
    set: HashSet<IdempotencyKey>,
}

#[derive(Debug, Clone)]
pub struct KeyIndex {
    config: IdempotencyConfig,
    /// The stored keys, and the log order they were stored in.
    keys: KeyTable,
    /// Keys of open transactions, per producer id.
    staged: HashMap<i64, Staged>,
    /// The newest key time seen: the lower bound of a replayed batch's time.
    latest_timestamp_ms: i64,
    stats: KeyStats,
}

impl KeyIndex {
    pub fn new(config: IdempotencyConfig) -> KeyIndex {
        let mut keys = KeyTable::default();
        keys.set_max_keys(config.max_keys);
        KeyIndex {
            config,
            keys,
            staged: HashMap::default(),
            latest_timestamp_ms: -1,
            stats: KeyStats::default(),
        }
    }

    pub fn config(&self) -> &IdempotencyConfig {
        &self.config
    }

    /// Keys remembered (some may be past the window and not yet purged).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    pub fn stats(&self) -> KeyStats {
        self.stats
    }

    /// Whether `key` is stored: remembered, within the window at `now_ms`, and at or above
    /// the log start offset.
    pub fn is_stored(&self, key: &[u8], now_ms: i64, log_start_offset: i64) -> bool {
        self.is_stored_hashed(self.keys.hash(key), key, now_ms, log_start_offset)
    }

    fn is_stored_hashed(&self, hash: u64, key: &[u8], now_ms: i64, log_start_offset: i64) -> bool {
        self.keys
            .get(hash, key)
            .is_some_and(|s| s.offset >= log_start_offset && !self.expired(s, now_ms))
    }

    /// The hash the index files `key` under.
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.keys.hash(key)
    }

    /// Whether `producer_id`'s open transaction already holds `key`.
    pub fn is_staged(&self, producer_id: i64, key: &[u8]) -> bool {
        self.staged
            .get(&producer_id)
            .is_some_and(|s| s.set.contains(key))
    }

    fn expired(&self, stored: StoredKey, now_ms: i64) -> bool {
        now_ms.saturating_sub(stored.timestamp_ms) > self.config.window_ms
    }

    /// Decide (pure): which records of a new client batch are kept. A record is dropped when
    /// its key is stored, is staged by the same producer's open transaction, or was kept
    /// earlier in this batch; the first stored copy wins. Returns one flag per record and the
    /// kept keys.
    pub fn filter(
        &self,
        header: &BatchHeader,
        records: &BatchRecords<'_>,
        now_ms: i64,
        log_start_offset: i64,
    ) -> (Vec<bool>, Vec<KeptKey>) {
        let mut keep = Vec::with_capacity(records.len());
        let mut kept = Vec::new();
        // The batch's keys so far, by the index's hash (computed once per record).
        let mut seen: hashbrown::HashTable<(u64, &[u8])> =
            hashbrown::HashTable::with_capacity(records.len());
        // Hash every key first; each lookup then starts reading what the lookup a few records
        // on reads, so their cache misses overlap rather than follow one another (and the
        // lines are still in cache when apply inserts the kept keys).
        let hashes: Vec<Option<u64>> = (0..records.len())
            .map(|i| Some(self.keys.hash(records.key(i)?)))
            .collect();
        for hash in hashes.iter().take(LOOKUP_PREFETCH_AHEAD).flatten() {
            self.keys.prefetch(*hash);
        }
        for (i, record) in records.records.iter().enumerate() {
            if let Some(Some(ahead)) = hashes.get(i + LOOKUP_PREFETCH_AHEAD) {
                self.keys.prefetch(*ahead);
            }
            let (Some(key), Some(hash)) = (records.key(i), hashes[i]) else {
                keep.push(true);
                continue;
            };
            // A key stays in `seen` even when it is dropped: later copies are dropped too.
            let repeated = seen.find(hash, |(h, k)| *h == hash && *k == key).is_some();
            if !repeated {
                seen.insert_unique(hash, (hash, key), |(h, _)| *h);
            }
            let duplicate = repeated
                || self.is_stored_hashed(hash, key, now_ms, log_start_offset)
                || (header.is_transactional() && self.is_staged(header.producer_id, key));
            keep.push(!duplicate);
            if !duplicate {
                kept.push(KeptKey {
                    offset_delta: record.offset_delta,
                    key: IdempotencyKey::EMPTY,
                    hash,
                });
                kept.last_mut().expect("pushed").key.set(key);
            }
        }
        (keep, kept)
    }

    /// The transition for one batch in the log (apply and replay): a data batch's keys are
    /// stored (or staged, in a transaction); a marker commits or forgets its producer's staged
    /// keys. The clock's time purges what the window has passed.
    pub fn index_batch(
        &mut self,
        header: &BatchHeader,
        keys: &[KeptKey],
        marker: Option<&EndTxnMarker>,
        clock: KeyClock,
    ) {
        let now_ms = match clock {
            KeyClock::Appended(t) => t,
            KeyClock::Replayed { now_ms } => now_ms,
        };
        if let Some(marker) = marker {
            if let Some(staged) = self.staged.remove(&marker.producer_id) {
                if marker.result == TxnResult::Commit {
                    for (key, stored) in staged.keys {
                        self.store(self.keys.hash(&key), &key, stored);
                    }
                }
            }
        } else if !header.is_control() {
            let timestamp_ms = match clock {
                KeyClock::Appended(t) => t,
                KeyClock::Replayed { now_ms } => header
                    .max_timestamp
                    .clamp(self.latest_timestamp_ms.min(now_ms), now_ms),
            };
            // Every data batch moves the lower bound a replayed batch's time cannot go below.
            self.latest_timestamp_ms = self.latest_timestamp_ms.max(timestamp_ms);
            for k in keys {
                let stored = StoredKey {
                    offset: header.base_offset + i64::from(k.offset_delta),
                    timestamp_ms,
                };
                if header.is_transactional() {
                    let staged = self.staged.entry(header.producer_id).or_default();
                    if staged.set.insert(k.key.clone()) {
                        staged.keys.push((k.key.clone(), stored));
                    }
                } else {
                    self.store(k.hash, &k.key, stored);
                }
            }
        }
        self.purge(now_ms, i64::MIN);
    }

    /// Counts records the filter dropped (the writer calls it when it applies the batch).
    pub fn count_dropped(&mut self, records: u64) {
        self.stats.dropped_records += records;
    }

    fn store(&mut self, hash: u64, key: &IdempotencyKey, stored: StoredKey) {
        self.keys.insert(hash, key, stored);
        while self.keys.len() > self.config.max_keys {
            if self.keys.pop_front() {
                self.stats.evicted_keys += 1;
            }
        }
    }

    /// Forgets keys from the oldest on while they are past the window or below
    /// `log_start_offset`. Keys stored out of time order wait for their turn, but
    /// [`KeyIndex::is_stored`] ignores them meanwhile.
    pub fn purge(&mut self, now_ms: i64, log_start_offset: i64) {
        while let Some(front) = self.keys.front() {
            if front.offset >= log_start_offset && !self.expired(front, now_ms) {
                break;
            }
            self.keys.pop_front();
        }
    }

    /// The stored keys in log order, then the staged ones per producer (what a snapshot holds;
    /// tests compare it).
    pub fn entries(&self) -> (KeyList, StagedKeys) {
        let stored = self.keys.in_order().collect();
        let mut staged: StagedKeys = self
            .staged
            .iter()
            .map(|(pid, s)| (*pid, s.keys.clone()))
            .collect();
        staged.sort_by_key(|(pid, _)| *pid);
        (stored, staged)
    }

    /// The keys stored at `now_ms` (within the window, at or above `log_start_offset`), in log
    /// order: what an index means, whatever it has not purged yet.
    pub fn live_entries(&self, now_ms: i64, log_start_offset: i64) -> KeyList {
        let (stored, _) = self.entries();
        stored
            .into_iter()
            .filter(|(_, s)| s.offset >= log_start_offset && !self.expired(*s, now_ms))
            .collect()
    }

    /// Rebuilds an index from snapshot contents.
    pub fn from_entries(
        config: IdempotencyConfig,
        latest_timestamp_ms: i64,
        stored: KeyList,
        staged: StagedKeys,
    ) -> KeyIndex {
        let mut index = KeyIndex::new(config);
        index.latest_timestamp_ms = latest_timestamp_ms;
        for (key, s) in stored {
            index.store(index.keys.hash(&key), &key, s);
        }
        index.stats.evicted_keys = 0;
        for (pid, keys) in staged {
            let entry = index.staged.entry(pid).or_default();
            for (key, s) in keys {
                if entry.set.insert(key.clone()) {
                    entry.keys.push((key, s));
                }
            }
        }
        index
    }

    pub fn latest_timestamp_ms(&self) -> i64 {
        self.latest_timestamp_ms
    }
}
