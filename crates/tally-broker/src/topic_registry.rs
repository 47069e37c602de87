//! Topics and their partitions: the in-memory registry and its durable record,
//! `tally-topics.json` in the data directory (written atomically on every change). Partition
//! data lives in `<data dir>/<topic>-<partition>/`, tagged with the topic id so a directory left
//! over from a deleted topic is never mistaken for a new topic of the same name.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tally_partition::{OpenReport, Partition};
use tracing::{info, warn};
use uuid::Uuid;

use crate::broker_config::{check_topic_config, BrokerConfig};
use crate::partition_handle::{PartitionHandle, WriterMode};
use crate::topic_error::{validate_topic_name, TopicError};

const TOPICS_FILE: &str = "tally-topics.json";
const PARTITION_METADATA: &str = "partition.metadata";

pub struct Topic {
    pub name: String,
    pub id: Uuid,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<Arc<PartitionHandle>>,
    /// `min.insync.replicas`, resolved once from the topic's and the broker's config (the
    /// produce path reads it per partition).
    pub min_insync_replicas: i64,
}

#[derive(Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: Uuid,
    partitions: i32,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct TopicsFile {
    version: u32,
    topics: Vec<TopicRecord>,
}

pub struct TopicRegistry {
    log_dir: PathBuf,
    config: Arc<BrokerConfig>,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serialises create, delete and add-partitions, and the writes of the topics file.
    admin: Mutex<()>,
    writer_mode: WriterMode,
}

/// The most partitions a topic may have (CreateTopics and CreatePartitions refuse more).
const MAX_PARTITIONS: i32 = 100_000;

/// What the topics file must hold before anything is opened from it: legal, distinct names
/// (a name becomes a directory name) and partition counts this broker could have created.
fn check_records(records: &[TopicRecord]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for r in records {
        validate_topic_name(&r.name).map_err(|e| e.to_string())?;
        if !seen.insert(r.name.as_str()) {
            return Err(format!("topic '{}' is listed twice", r.name));
        }
        if !(1..=MAX_PARTITIONS).contains(&r.partitions) {
            return Err(format!(
                "topic '{}' has {} partitions (1 to {MAX_PARTITIONS})",
                r.name, r.partitions
            ));
        }
    }
    Ok(())
}

fn partition_dir(log_dir: &Path, topic: &str, index: i32) -> PathBuf {
    log_dir.join(format!("{topic}-{index}"))
}

fn storage(e: impl std::fmt::Display) -> TopicError {
    TopicError::Storage(e.to_string())
}

impl TopicRegistry {
    /// Loads the topics file and opens (recovers) every partition.
    pub fn open(
        log_dir: &Path,
        config: Arc<BrokerConfig>,
        now_ms: i64,
        writer_mode: WriterMode,
    ) -> Result<TopicRegistry, TopicError> {
        remove_deleted_dirs(log_dir);
        let path = log_dir.join(TOPICS_FILE);
        let records = match fs::read_to_string(&path) {
            Ok(text) => {
                let file: TopicsFile = serde_json::from_str(&text).map_err(|e| {
                    TopicError::Storage(format!("{} is not valid: {e}", path.display()))
                })?;
                check_records(&file.topics).map_err(|e| {
                    TopicError::Storage(format!("{} is not valid: {e}", path.display()))
                })?;
                file.topics
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(storage(e)),
        };
        let registry = TopicRegistry {
            log_dir: log_dir.to_path_buf(),
            config,
            topics: RwLock::new(HashMap::new()),
            admin: Mutex::new(()),
            writer_mode,
        };
        for record in records {
            let mut partitions = Vec::new();
            for index in 0..record.partitions {
                let (handle, report) = registry.open_partition(
                    &record.name,
                    record.id,
                    index,
                    &record.configs,
                    now_ms,
                )?;
                log_open(&record.name, index, &report);
                partitions.push(handle);
            }
            registry.topics.write().insert(
                record.name.clone(),
                registry.topic(record.name, record.id, record.configs, partitions),
            );
        }
        Ok(registry)
    }

    fn open_partition(
        &self,
        topic: &str,
        id: Uuid,
        index: i32,
        configs: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<(Arc<PartitionHandle>, OpenReport), TopicError> {
        let dir = partition_dir(&self.log_dir, topic, index);
        let meta = dir.join(PARTITION_METADATA);
        let expected = format!("version: 0\ntopic_id: {id}\n");
        match fs::read_to_string(&meta) {
            Ok(found) if found == expected => {}
            Ok(_) => {
                // Data of an older topic with the same name: set it aside, start empty.
                warn!(dir = %dir.display(), "partition directory belongs to another topic id; removing it");
                let aside = self.log_dir.join(format!(
                    "{topic}-{index}.{}-delete",
                    Uuid::new_v4().simple()
                ));
                tally_log::storage::rename(&dir, &aside).map_err(storage)?;
                let _ = tally_log::storage::remove_dir_all(&aside);
            }
            Err(_) => {}
        }
        if !dir.exists() {
            tally_log::storage::create_dir_all(&dir).map_err(storage)?;
            tally_log::storage::sync_dir(&self.log_dir).map_err(storage)?;
        }
        if !meta.exists() {
            // Durable before any data goes in: a partition whose metadata reads back wrong
            // is set aside as another topic's.
            let file = tally_log::storage::create(&meta).map_err(storage)?;
            tally_log::storage::write_all_at(&file, &meta, expected.as_bytes(), 0)
                .and_then(|_| tally_log::storage::sync_all(&file, &meta))
                .and_then(|_| tally_log::storage::sync_dir(&dir))
                .map_err(storage)?;
        }
        let mut partition_config = self.config.partition_config(configs);
        if is_internal(topic) {
            // The broker's own records are keyed by group, partition or transactional id, and
            // each new one supersedes the last: a broker default `log.idempotency.key` must
            // never drop them.
            partition_config.idempotency = None;
        }
        let (partition, report) =
            Partition::open(&dir, partition_config, now_ms).map_err(storage)?;
        Ok((
            Arc::new(PartitionHandle::start(
                topic.to_string(),
                index,
                partition,
                self.writer_mode,
            )),
            report,
        ))
    }

    fn topic(
        &self,
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
        partitions: Vec<Arc<PartitionHandle>>,
    ) -> Arc<Topic> {
        let min_insync_replicas = self.config.min_insync_replicas(&configs);
        Arc::new(Topic {
            name,
            id,
            configs,
            partitions,
            min_insync_replicas,
        })
    }

    fn persist(&self, topics: &HashMap<String, Arc<Topic>>) -> Result<(), TopicError> {
        let mut records: Vec<TopicRecord> = topics
            .values()
            .map(|t| TopicRecord {
                name: t.name.clone(),
                id: t.id,
                partitions: t.partitions.len() as i32,
                configs: t.configs.clone(),
            })
            .collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        let text = serde_json::to_string_pretty(&TopicsFile {
            version: 1,
            topics: records,
        })
        .map_err(storage)?;
        let path = self.log_dir.join(TOPICS_FILE);
        let tmp = self.log_dir.join(format!("{TOPICS_FILE}.tmp"));
        {
            let f = tally_log::storage::create(&tmp).map_err(storage)?;
            tally_log::storage::write_all_at(&f, &tmp, text.as_bytes(), 0).map_err(storage)?;
            tally_log::storage::sync_all(&f, &tmp).map_err(storage)?;
        }
        tally_log::failpoint::hit("topics.before_rename");
        tally_log::storage::rename(&tmp, &path).map_err(storage)?;
        tally_log::storage::sync_dir(&self.log_dir).map_err(storage)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.topics.read().values().find(|t| t.id == id).cloned()
    }

    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<PartitionHandle>> {
        let topics = self.topics.read();
        let t = topics.get(topic)?;
        usize::try_from(index)
            .ok()
            .and_then(|i| t.partitions.get(i))
            .cloned()
    }

    /// All topics, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut v: Vec<Arc<Topic>> = self.topics.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn all_partitions(&self) -> Vec<Arc<PartitionHandle>> {
        self.topics
            .read()
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// Validates topic configs, returning them normalised.
    pub fn check_configs(
        configs: &[(String, Option<String>)],
    ) -> Result<BTreeMap<String, String>, TopicError> {
        let mut out = BTreeMap::new();
        for (key, value) in configs {
            let Some(value) = value else {
                return Err(TopicError::InvalidConfig(format!(
                    "config '{key}' has a null value"
                )));
            };
            let v = check_topic_config(key, value).map_err(TopicError::InvalidConfig)?;
            out.insert(key.clone(), v);
        }
        Ok(out)
    }

    /// Creates a topic (or only validates the request when `validate_only`).
    pub fn create(
        &self,
        name: &str,
        num_partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<Arc<Topic>, TopicError> {
        validate_topic_name(name)?;
        if num_partitions < 1 {
            return Err(TopicError::InvalidPartitions(format!(
                "number of partitions must be at least 1, not {num_partitions}"
            )));
        }
        if num_partitions > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(format!(
                "{num_partitions} partitions is more than this broker allows ({MAX_PARTITIONS})"
            )));
        }
        let _admin = self.admin.lock();
        if let Some(existing) = self.get(name) {
            return Err(TopicError::AlreadyExists(existing.name.clone()));
        }
        let id = Uuid::new_v4();
        if validate_only {
            return Ok(self.topic(name.to_string(), id, configs, Vec::new()));
        }
        let mut partitions = Vec::new();
        for index in 0..num_partitions {
            match self.open_partition(name, id, index, &configs, now_ms) {
                Ok((handle, _)) => partitions.push(handle),
                Err(e) => {
                    for i in 0..=index {
                        let _ = tally_log::storage::remove_dir_all(&partition_dir(
                            &self.log_dir,
                            name,
                            i,
                        ));
                    }
                    return Err(e);
                }
            }
        }
        let topic = self.topic(name.to_string(), id, configs, partitions);
        let mut next = self.topics.read().clone();
        next.insert(name.to_string(), Arc::clone(&topic));
        if let Err(e) = self.persist(&next) {
            for i in 0..num_partitions {
                let _ = tally_log::storage::remove_dir_all(&partition_dir(&self.log_dir, name, i));
            }
            return Err(e);
        }
        *self.topics.write() = next;
        info!(topic = name, partitions = num_partitions, %id, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub fn delete(&self, name: &str) -> Result<Uuid, TopicError> {
        let _admin = self.admin.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let mut next = self.topics.read().clone();
        next.remove(name);
        self.persist(&next)?;
        *self.topics.write() = next;
        // Readers holding a partition keep their open files; the directories go now.
        for p in &topic.partitions {
            let dir = partition_dir(&self.log_dir, name, p.index);
            let aside =
                self.log_dir
                    .join(format!("{name}-{}.{}-delete", p.index, topic.id.simple()));
            if tally_log::storage::rename(&dir, &aside).is_ok() {
                let _ = tally_log::storage::remove_dir_all(&aside);
            }
        }
        info!(topic = name, "deleted topic");
        Ok(topic.id)
    }

    /// Grows a topic to `count` partitions.
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), TopicError> {
        let _admin = self.admin.lock();
        let topic = self
            .get(name)
            .ok_or_else(|| TopicError::Unknown(name.to_string()))?;
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the new count must be larger, not {count}"
            )));
        }
        if count > MAX_PARTITIONS {
            return Err(TopicError::InvalidPartitions(format!(
                "{count} partitions is more than this broker allows ({MAX_PARTITIONS})"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let mut partitions = topic.partitions.clone();
        for index in current..count {
            let (handle, _) = self.open_partition(name, topic.id, index, &topic.configs, now_ms)?;
            partitions.push(handle);
        }
        let grown = self.topic(
            topic.name.clone(),
            topic.id,
            topic.configs.clone(),
            partitions,
        );
        let mut next = self.topics.read().clone();
        next.insert(name.to_string(), grown);
        self.persist(&next)?;
        *self.topics.write() = next;
        info!(topic = name, partitions = count, "added partitions");
        Ok(())
    }

    /// Clean shutdown of every partition: flush, snapshot, recovery point.
    pub async fn close_all(&self) {
        for p in self.all_partitions() {
            match p.run(|p| p.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(topic = %p.topic, partition = p.index, error = %e, "closing partition failed")
                }
                Err(_) => {
                    warn!(topic = %p.topic, partition = p.index, "partition writer stopped before close")
                }
            }
        }
    }
}

fn log_open(topic: &str, index: i32, report: &OpenReport) {
    let log = &report.log;
    if log.truncated_bytes > 0 {
        warn!(
            topic,
            partition = index,
            truncated_bytes = log.truncated_bytes,
            reason = log.truncation_reason.as_deref().unwrap_or(""),
            "recovered partition: cut a torn or corrupt tail"
        );
    }
    info!(
        topic, partition = index, log_end_offset = log.log_end_offset, segments = log.segments,
        scanned_bytes = log.scanned_bytes, snapshot = ?report.snapshot_offset,
        replayed_batches = report.replayed_batches, producers = report.producers,
        "opened partition"
    );
}

/// Finishes deletions a crash interrupted.
fn remove_deleted_dirs(log_dir: &Path) {
    for entry in fs::read_dir(log_dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with("-delete") {
            let _ = tally_log::storage::remove_dir_all(&entry.path());
        }
    }
}

/// The broker's own topics: clients may read them but never write or delete them.
pub fn is_internal(topic: &str) -> bool {
    topic == crate::group::store::OFFSETS_TOPIC || topic == crate::txn::TRANSACTION_STATE_TOPIC
}
