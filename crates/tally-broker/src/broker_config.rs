//! The broker's configuration: defaults from [`crate::config_def`], then a TOML file, then
//! `TALLY_*` environment variables, then `--set key=value` and the named flags, later sources
//! winning. Everything is validated before the broker starts, with one clear message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tally_log::LogConfig;
use tally_partition::{IdempotencyConfig, PartitionConfig};
use tally_protocol::KeySource;
use thiserror::Error;

use crate::config_def::{broker_def, check_value, topic_def, BROKER_CONFIGS};
pub use crate::endpoint::{Endpoint, SecurityProtocol};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown config key '{0}'")]
    UnknownKey(String),
    #[error("invalid config value: {0}")]
    InvalidValue(String),
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid listener '{value}': {reason}")]
    Listener { value: String, reason: String },
}

/// Where a config value came from, with Kafka's DescribeConfigs source codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

#[derive(Debug, Clone, Default)]
pub struct BrokerConfig {
    explicit: BTreeMap<String, String>,
}

/// `TALLY_*` variables that are not config keys: the flags of `tally serve`, the client
/// commands' bootstrap address, and the crash points of tests.
pub const RESERVED_ENV: &[&str] = &[
    "TALLY_DATA_DIR",
    "TALLY_LISTEN",
    "TALLY_ADVERTISE",
    "TALLY_CONFIG",
    "TALLY_LOG",
    "TALLY_BOOTSTRAP",
    "TALLY_FAILPOINT",
    "TALLY_POWER_CUT",
    "TALLY_CONTROL",
    "TALLY_PAUSE",
    "TALLY_HTTP",
    // The client commands' settings: exported for them, they must not stop a broker started
    // from the same shell.
    "TALLY_SECURITY_PROTOCOL",
    "TALLY_SASL_MECHANISM",
    "TALLY_SASL_USERNAME",
    "TALLY_SASL_PASSWORD",
    "TALLY_SASL_PASSWORD_FILE",
    "TALLY_SSL_CA_LOCATION",
    "TALLY_SSL_CERTIFICATE_LOCATION",
    "TALLY_SSL_KEY_LOCATION",
    "TALLY_USER_PASSWORD",
];

impl BrokerConfig {
    pub fn new() -> Self {
        BrokerConfig::default()
    }

    /// Sets a broker key (Kafka's name), validating its value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let key = key.trim();
        let def = broker_def(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
        let value = check_value(def, value).map_err(ConfigError::InvalidValue)?;
        self.explicit.insert(key.to_string(), value);
        Ok(())
    }

    /// Parses `key=value` as given to `--set`.
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ConfigError> {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| ConfigError::InvalidValue(format!("'{pair}' is not KEY=VALUE")))?;
        self.set(key, value)
    }

    /// Reads a TOML file with Kafka's key names, either quoted (`"log.dirs" = "x"`) or as
    /// dotted keys (`log.dirs = "x"`), which TOML nests into tables.
    pub fn merge_toml_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.merge_toml_str(&text).map_err(|e| match e {
            ConfigError::File { reason, .. } => ConfigError::File {
                path: path.display().to_string(),
                reason,
            },
            other => other,
        })
    }

    pub fn merge_toml_str(&mut self, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: String::new(),
                reason: e.message().to_string(),
            })?;
        let mut flat = Vec::new();
        flatten("", &toml::Value::Table(table), &mut flat);
        for (key, value) in flat {
            self.set(&key, &value)?;
        }
        Ok(())
    }

    /// Applies `TALLY_LOG_RETENTION_MS=...`-style variables: lower-case, `_` becomes `.`.
    pub fn merge_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("TALLY_") else {
                continue;
            };
            if RESERVED_ENV.contains(&name.as_str()) {
                continue;
            }
            let key = rest.to_ascii_lowercase().replace('_', ".");
            self.set(&key, &value).map_err(|e| match e {
                ConfigError::UnknownKey(k) => {
                    ConfigError::UnknownKey(format!("{k} (from environment variable {name})"))
                }
                other => other,
            })?;
        }
        Ok(())
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.explicit.get(key).map(String::as_str)
    }

    fn default_of(key: &str) -> &'static str {
        broker_def(key).map(|d| d.default).unwrap_or("")
    }

    /// The effective value of a broker key with synonyms resolved, and where it came from.
    pub fn get(&self, key: &str) -> (String, ConfigSource) {
        let pick = |keys: &[(&str, i64)]| -> Option<(String, ConfigSource)> {
            keys.iter().find_map(|(k, factor)| {
                self.raw(k).map(|v| {
                    let v = if *factor == 1 {
                        v.to_string()
                    } else {
                        let n: i64 = v.parse().unwrap_or(0);
                        if n < 0 {
                            "-1".to_string()
                        } else {
                            (n * factor).to_string()
                        }
                    };
                    (v, ConfigSource::StaticBroker)
                })
            })
        };
        let resolved = match key {
            "node.id" | "broker.id" => pick(&[("node.id", 1), ("broker.id", 1)]),
            "log.dirs" | "log.dir" => pick(&[("log.dirs", 1), ("log.dir", 1)]),
            "log.roll.ms" => pick(&[("log.roll.ms", 1), ("log.roll.hours", 3_600_000)]),
            "log.retention.ms" => pick(&[
                ("log.retention.ms", 1),
                ("log.retention.minutes", 60_000),
                ("log.retention.hours", 3_600_000),
            ]),
            other => pick(&[(other, 1)]),
        };
        resolved.unwrap_or_else(|| (Self::default_of(key).to_string(), ConfigSource::Default))
    }

    pub(crate) fn long(&self, key: &str) -> i64 {
        self.get(key).0.parse().expect("validated number")
    }

    pub(crate) fn bool(&self, key: &str) -> bool {
        self.get(key).0 == "true"
    }

    pub fn node_id(&self) -> i32 {
        self.long("node.id") as i32
    }

    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(self.get("log.dirs").0)
    }

    pub fn num_partitions(&self) -> i32 {
        self.long("num.partitions") as i32
    }
    pub fn default_replication_factor(&self) -> u16 {
        self.long("default.replication.factor")
            .clamp(1, i64::from(u16::MAX)) as u16
    }
    /// How long a node leads a partition whose preferred replica is another before handing
    /// leadership over; None when `auto.leader.rebalance.enable` is off.
    pub fn preferred_leader_check(&self) -> Option<std::time::Duration> {
        self.bool("auto.leader.rebalance.enable").then(|| {
            std::time::Duration::from_secs(
                self.long("leader.imbalance.check.interval.seconds").max(1) as u64,
            )
        })
    }
    pub fn auto_create_topics(&self) -> bool {
        self.bool("auto.create.topics.enable")
    }
    pub fn socket_request_max_bytes(&self) -> usize {
        self.long("socket.request.max.bytes") as usize
    }
    /// `fetch.max.bytes`: caps a Fetch request's `max_bytes`.
    pub fn fetch_max_bytes(&self) -> usize {
        self.long("fetch.max.bytes") as usize
    }
    /// The HTTP listener's address, or `None` when `http.listeners` is empty.
    pub fn http_listener(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        let (value, _) = self.get("http.listeners");
        if value.trim().is_empty() {
            return Ok(None);
        }
        Endpoint::parse(&value)?.socket_addr().map(Some)
    }

    pub fn ssl_keystore_check_interval_ms(&self) -> u64 {
        self.long("ssl.keystore.check.interval.ms").max(100) as u64
    }

    pub fn max_connections(&self) -> usize {
        self.long("max.connections") as usize
    }
    pub fn group_config(&self) -> crate::group::GroupConfig {
        crate::group::GroupConfig {
            initial_rebalance_delay_ms: self.long("group.initial.rebalance.delay.ms") as u64,
            min_session_timeout_ms: self.long("group.min.session.timeout.ms") as i32,
            max_session_timeout_ms: self.long("group.max.session.timeout.ms") as i32,
            offsets_retention_ms: self.long("offsets.retention.minutes") * 60_000,
            offset_metadata_max_bytes: self.long("offset.metadata.max.bytes") as usize,
            compaction_min_records: self.long("offsets.topic.compaction.min.records") as u64,
        }
    }

    pub fn txn_config(&self) -> crate::txn::TxnConfig {
        crate::txn::TxnConfig {
            max_timeout_ms: self.long("transaction.max.timeout.ms") as i32,
            id_expiration_ms: self.long("transactional.id.expiration.ms"),
            abort_check_interval_ms: self
                .long("transaction.abort.timed.out.transaction.cleanup.interval.ms")
                as u64,
            compaction_min_records: self.long("transaction.state.log.compaction.min.records")
                as u64,
        }
    }

    /// How `__consumer_offsets` is created in cluster mode.
    pub fn offsets_topic(&self) -> crate::cluster::group_partitions::OffsetsTopicConfig {
        crate::cluster::group_partitions::OffsetsTopicConfig {
            partitions: self.long("offsets.topic.num.partitions") as u32,
            replication_factor: self.long("offsets.topic.replication.factor") as u16,
        }
    }

    pub fn transaction_state_partitions(&self) -> i32 {
        self.long("transaction.state.log.num.partitions") as i32
    }

    /// `replica.lag.time.max.ms` (cluster mode).
    pub fn replica_lag_time_max(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.long("replica.lag.time.max.ms") as u64)
    }

    pub fn retention_check_interval_ms(&self) -> u64 {
        self.long("log.retention.check.interval.ms") as u64
    }
    pub fn producer_id_expiration_check_interval_ms(&self) -> u64 {
        self.long("producer.id.expiration.check.interval.ms") as u64
    }

    /// Checks what cannot be checked key by key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listeners = self.listeners()?;
        let named = |name: &str| listeners.iter().any(|l| l.name == name);
        let (adv, _) = self.get("advertised.listeners");
        if !adv.is_empty() {
            let map = self.get("listener.security.protocol.map").0;
            for endpoint in Endpoint::parse_list(&adv, &map)? {
                let reason = if endpoint.port == 0 {
                    "the advertised port cannot be 0".to_string()
                } else if !named(&endpoint.name) {
                    format!("{} is not one of the listeners", endpoint.name)
                } else {
                    continue;
                };
                return Err(ConfigError::Listener { value: adv, reason });
            }
        }
        let (inter, _) = self.get("inter.broker.listener.name");
        if !inter.is_empty() && !named(&inter.to_ascii_uppercase()) {
            return Err(ConfigError::Listener {
                value: inter,
                reason: "inter.broker.listener.name must name one of the listeners".into(),
            });
        }
        let cluster_mode = crate::cluster::cluster_config::quorum_voters(self)?.is_some();
        if cluster_mode && self.inter_broker_protocol()?.uses_sasl() {
            return Err(ConfigError::Listener {
                value: inter,
                reason: "Raft traffic between Tally nodes is authenticated by certificates, \
                         not SASL: name an SSL listener (or a PLAINTEXT one) for it"
                    .into(),
            });
        }
        match crate::cluster::cluster_config::quorum_voters(self)? {
            None if self.long("default.replication.factor") != 1 => {
                return Err(ConfigError::InvalidValue(
                    "default.replication.factor: a single broker supports only 1".into(),
                ));
            }
            // The filter runs in the single broker's writer; a replicated partition would
            // index keys without dropping any.
            Some(_) if self.get("log.idempotency.key").0 != "none" => {
                return Err(ConfigError::InvalidValue(
                    "log.idempotency.key: idempotency keys are not supported in cluster mode yet"
                        .into(),
                ));
            }
            Some(voters) if self.long("default.replication.factor") > voters.len() as i64 => {
                return Err(ConfigError::InvalidValue(format!(
                    "default.replication.factor: larger than the {} voters",
                    voters.len()
                )));
            }
            _ => {}
        }
        if self.get("log.dirs").0.contains(',') {
            return Err(ConfigError::InvalidValue(
                "log.dirs: only one data directory is supported".into(),
            ));
        }
        Ok(())
    }

    /// The effective value of a topic key given the topic's own overrides.
    pub fn topic_value(
        &self,
        key: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Option<(String, ConfigSource)> {
        let (_, broker_key) = topic_def(key)?;
        Some(match overrides.get(key) {
            Some(v) => (v.clone(), ConfigSource::DynamicTopic),
            None => self.get(broker_key),
        })
    }

    /// `min.insync.replicas` for a topic with `overrides`.
    pub fn min_insync_replicas(&self, overrides: &BTreeMap<String, String>) -> i64 {
        self.topic_value("min.insync.replicas", overrides)
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or(1)
    }

    /// The partition settings for a topic with `overrides`.
    pub fn partition_config(&self, overrides: &BTreeMap<String, String>) -> PartitionConfig {
        let num = |key: &str| -> i64 {
            self.topic_value(key, overrides)
                .and_then(|(v, _)| v.parse().ok())
                .expect("validated topic config")
        };
        PartitionConfig {
            log: LogConfig {
                segment_bytes: num("segment.bytes") as u64,
                segment_ms: num("segment.ms"),
                retention_ms: num("retention.ms"),
                retention_bytes: num("retention.bytes"),
                index_interval_bytes: num("index.interval.bytes") as u32,
                flush_interval_messages: num("flush.messages") as u64,
            },
            max_message_bytes: num("max.message.bytes") as usize,
            producer_id_expiration_ms: self.long("producer.id.expiration.ms"),
            max_producers: self.long("producer.state.max.producers.per.partition") as usize,
            log_append_time: self
                .topic_value("message.timestamp.type", overrides)
                .is_some_and(|(v, _)| v == "LogAppendTime"),
            leader_epoch: 0,
            idempotency: self.idempotency_config(overrides),
        }
    }

    /// `idempotency.key` and its window for a topic with `overrides`; `None` for `none`.
    pub fn idempotency_config(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Option<IdempotencyConfig> {
        let (value, _) = self.topic_value("idempotency.key", overrides)?;
        let source = KeySource::parse(&value).expect("validated topic config")?;
        let num = |key: &str| -> i64 {
            self.topic_value(key, overrides)
                .and_then(|(v, _)| v.parse().ok())
                .expect("validated topic config")
        };
        Some(IdempotencyConfig {
            source,
            window_ms: num("idempotency.window.ms"),
            max_keys: num("idempotency.window.max.keys") as usize,
        })
    }

    /// Every broker key with its effective value (for DescribeConfigs on the broker).
    pub fn all(&self) -> Vec<(&'static str, String, ConfigSource)> {
        BROKER_CONFIGS
            .iter()
            .map(|d| {
                let (v, s) = self.get(d.name);
                (d.name, v, s)
            })
            .collect()
    }
}

/// Validates one topic config override (CreateTopics); returns the normalised value.
pub fn check_topic_config(key: &str, value: &str) -> Result<String, String> {
    let (def, _) =
        topic_def(key).ok_or_else(|| format!("unknown or unsupported topic config '{key}'"))?;
    check_value(def, value)
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<(String, String)>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        toml::Value::Array(a) => out.push((
            prefix.to_string(),
            a.iter()
                .map(|v| match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        )),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_synonyms() {
        let mut c = BrokerConfig::new();
        assert_eq!(
            c.get("log.retention.ms"),
            ("604800000".into(), ConfigSource::Default)
        );
        c.set("log.retention.hours", "1").unwrap();
        assert_eq!(c.get("log.retention.ms").0, "3600000");
        c.set("log.retention.minutes", "2").unwrap();
        assert_eq!(c.get("log.retention.ms").0, "120000");
        c.set("log.retention.ms", "5").unwrap();
        assert_eq!(
            c.get("log.retention.ms"),
            ("5".into(), ConfigSource::StaticBroker)
        );
        c.set("broker.id", "3").unwrap();
        assert_eq!(c.node_id(), 3);
        c.set("log.dir", "/x").unwrap();
        assert_eq!(c.log_dir(), PathBuf::from("/x"));
    }

    #[test]
    fn toml_quoted_and_dotted_keys() {
        let mut c = BrokerConfig::new();
        c.merge_toml_str("\"log.dirs\" = \"/data\"\nnum.partitions = 3\nauto.create.topics.enable = false\nlisteners = [\"PLAINTEXT://127.0.0.1:9999\"]\n")
            .unwrap();
        assert_eq!(c.log_dir(), PathBuf::from("/data"));
        assert_eq!(c.num_partitions(), 3);
        assert!(!c.auto_create_topics());
        assert_eq!(
            c.listener().unwrap(),
            Endpoint {
                name: "PLAINTEXT".into(),
                protocol: SecurityProtocol::Plaintext,
                host: "127.0.0.1".into(),
                port: 9999
            }
        );
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let mut c = BrokerConfig::new();
        assert_eq!(
            c.set("no.such.key", "1"),
            Err(ConfigError::UnknownKey("no.such.key".into()))
        );
        let e = c.set("num.partitions", "zero").unwrap_err().to_string();
        assert!(
            e.contains("num.partitions") && e.contains("whole number"),
            "{e}"
        );
        assert!(c
            .set("num.partitions", "0")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(c.set("auto.create.topics.enable", "yes").is_err());
        let err = c
            .set("sasl.enabled.mechanisms", "PLAIN,GSSAPI")
            .unwrap_err();
        assert!(err.to_string().contains("GSSAPI"), "{err}");
        c.set("sasl.enabled.mechanisms", "SCRAM-SHA-512").unwrap();
        assert!(c.set("log.message.timestamp.type", "Wall").is_err());
        assert!(c.set_pair("num.partitions").is_err());
        assert!(c.merge_toml_str("num.partitions = ").is_err());
        c.set("listeners", "SASL_GSSAPI://h:1").unwrap();
        assert!(c.validate().is_err());
        c.set("listeners", "a:1,b:2").unwrap();
        assert!(c.validate().is_err());
        c.set("listeners", "127.0.0.1:99999").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn environment_variables() {
        let mut c = BrokerConfig::new();
        c.merge_env(vec![
            ("TALLY_NUM_PARTITIONS".to_string(), "4".to_string()),
            ("TALLY_DATA_DIR".to_string(), "/ignored".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
            // The client commands' settings, exported in the broker's shell.
            (
                "TALLY_SECURITY_PROTOCOL".to_string(),
                "SASL_SSL".to_string(),
            ),
            ("TALLY_SASL_PASSWORD".to_string(), "secret".to_string()),
            ("TALLY_SSL_CA_LOCATION".to_string(), "ca.pem".to_string()),
        ])
        .unwrap();
        assert_eq!(c.num_partitions(), 4);
        let e = c
            .merge_env(vec![("TALLY_NOPE".to_string(), "1".to_string())])
            .unwrap_err();
        assert!(e.to_string().contains("TALLY_NOPE"));
    }

    #[test]
    fn idempotency_keys_resolve_once_into_the_partition_config() {
        let c = BrokerConfig::new();
        assert_eq!(c.partition_config(&BTreeMap::new()).idempotency, None);
        assert!(check_topic_config("idempotency.key", "value").is_err());
        assert!(check_topic_config("idempotency.key", "header:").is_err());
        let mut o = BTreeMap::new();
        o.insert(
            "idempotency.key".to_string(),
            check_topic_config("idempotency.key", "header:order-id").unwrap(),
        );
        o.insert("idempotency.window.ms".to_string(), "5000".to_string());
        let i = c.partition_config(&o).idempotency.unwrap();
        assert_eq!(i.source, KeySource::Header("order-id".into()));
        assert_eq!((i.window_ms, i.max_keys), (5000, 1_000_000));
        let mut cluster = BrokerConfig::new();
        cluster.set("log.idempotency.key", "key").unwrap();
        cluster
            .set("controller.quorum.voters", "1@127.0.0.1:9193")
            .unwrap();
        cluster.set("node.id", "1").unwrap();
        assert!(cluster
            .validate()
            .unwrap_err()
            .to_string()
            .contains("cluster mode"));
    }

    #[test]
    fn topic_overrides() {
        let mut c = BrokerConfig::new();
        c.set("log.segment.bytes", "5000").unwrap();
        let mut o = BTreeMap::new();
        assert_eq!(c.partition_config(&o).log.segment_bytes, 5000);
        o.insert("segment.bytes".to_string(), "7000".to_string());
        o.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let p = c.partition_config(&o);
        assert_eq!(p.log.segment_bytes, 7000);
        assert!(p.log_append_time);
        assert!(check_topic_config("cleanup.policy", "compact").is_err());
        assert!(check_topic_config("bogus", "1").is_err());
        assert_eq!(check_topic_config("retention.ms", " 100 ").unwrap(), "100");
    }
}
