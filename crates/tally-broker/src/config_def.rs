//! The table of every config key Tally understands: broker keys (Kafka's names) and the topic
//! keys that override them. One place for names, types, defaults and documentation; the loader,
//! DescribeConfigs and CreateTopics all read it.

/// Kafka's `ConfigType` codes, as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    List = 7,
    /// Shown to no one: DescribeConfigs marks it sensitive and leaves its value out.
    Password = 9,
}

#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub ty: ConfigType,
    pub default: &'static str,
    /// Smallest accepted value for numbers.
    pub min: i64,
    /// For strings with a fixed set of values: the values.
    pub choices: &'static [&'static str],
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    ty: ConfigType,
    default: &'static str,
    min: i64,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        ty,
        default,
        min,
        choices: &[],
        doc,
    }
}

const fn choice(
    name: &'static str,
    default: &'static str,
    choices: &'static [&'static str],
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        ty: STRING,
        default,
        min: 0,
        choices,
        doc,
    }
}

use ConfigType::{Boolean, Int, Long, Short};
const STRING: ConfigType = ConfigType::String;

/// Broker keys. Several are synonyms that Kafka resolves by precedence (see `broker_config`).
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    def("node.id", Int, "0", 0, "The id of this broker in Metadata responses (synonym: broker.id)."),
    def("broker.id", Int, "0", 0, "Synonym of node.id."),
    def("log.dirs", STRING, "./tally-data", 0, "The directory holding all data (one directory is supported)."),
    def("log.dir", STRING, "./tally-data", 0, "Synonym of log.dirs, used when log.dirs is not set."),
    def("listeners", STRING, "PLAINTEXT://127.0.0.1:9092", 0, "Where to listen, comma-separated: NAME://HOST:PORT (NAME a protocol, PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, or a name listener.security.protocol.map gives one) or HOST:PORT."),
    def("listener.security.protocol.map", STRING, "", 0, "NAME:PROTOCOL,... for listeners with names of their own (INTERNAL:SASL_PLAINTEXT)."),
    def("inter.broker.listener.name", STRING, "", 0, "How nodes reach one another: in cluster mode, naming an SSL listener makes Raft's traffic (on its own port) mutual TLS with ssl.keystore.location and ssl.truststore.location; none or PLAINTEXT leaves it plaintext; a SASL listener is refused."),
    def("advertised.listeners", STRING, "", 0, "What Metadata tells clients of each listener, by name (NAME://HOST:PORT,...); a listener not named here is advertised at its own address."),
    def("http.listeners", STRING, "127.0.0.1:9644", 0, "The HTTP address of /metrics, /healthz and /readyz: HOST:PORT, or empty for none."),
    def("ssl.keystore.location", STRING, "", 0, "An SSL listener's certificate chain and private key, in one PEM file."),
    choice("ssl.keystore.type", "PEM", &["PEM"], "Only PEM (Kafka's ssl.keystore.type=PEM)."),
    def("ssl.truststore.location", STRING, "", 0, "PEM certificates of the authorities whose client certificates an SSL listener accepts."),
    choice("ssl.client.auth", "none", &["none", "requested", "required"], "Whether an SSL listener asks clients for a certificate, and whether it must be valid."),
    def("sasl.enabled.mechanisms", ConfigType::List, "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", 0, "The SASL mechanisms SASL_PLAINTEXT and SASL_SSL listeners offer: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512. PLAIN checks the password against the user's stored SCRAM credential."),
    def("sasl.bootstrap.users", ConfigType::Password, "", 0, "Tally only: NAME:PASSWORD[,...] users given SCRAM-SHA-256 and SCRAM-SHA-512 credentials at start when they have none."),
    def("sasl.bootstrap.users.file", STRING, "", 0, "Tally only: a file of NAME:PASSWORD lines, read like sasl.bootstrap.users (no password in a command line)."),
    def("connection.failed.authentication.delay.ms", Int, "100", 0, "How long a failed authentication waits before its answer and the close of its connection."),
    def("authorizer.class.name", STRING, "", 0, "Any value turns on Tally's ACL authorizer (as setting it does in Kafka); empty: everyone may do everything."),
    def("super.users", STRING, "", 0, "Principals that every ACL check allows, separated by ';' (User:admin;User:ops)."),
    def("allow.everyone.if.no.acl.found", Boolean, "false", 0, "With the authorizer on: whether a resource no ACL names is open to everyone."),
    def("ssl.keystore.check.interval.ms", Long, "10000", 100, "Tally only: how often the keystore file is checked for changes; a changed file is loaded for new connections."),
    def("controller.quorum.voters", STRING, "", 0, "Cluster mode: the controller group's voters, ID@HOST:PORT,... (their Raft addresses; this node's is where it listens for Raft). Empty: a single broker."),
    def("raft.listener", STRING, "", 0, "Tally only, cluster mode: HOST:PORT where a node that is not among the voters listens for Raft (its partition replicas replicate there); it joins the cluster as a broker. A voter listens at its entry in controller.quorum.voters."),
    def("num.partitions", Int, "1", 1, "Partitions of an auto-created topic, or of CreateTopics with -1."),
    def("default.replication.factor", Short, "1", 1, "Replication factor of auto-created topics and of CreateTopics with -1; a single broker supports 1."),
    def("auto.leader.rebalance.enable", Boolean, "true", 0, "Cluster mode: a partition's leader hands leadership to the partition's preferred replica (its first) once that one has caught up."),
    def("leader.imbalance.check.interval.seconds", Long, "300", 1, "Cluster mode: how long a node leads a partition whose preferred replica is another before it hands leadership over."),
    def("replica.lag.time.max.ms", Long, "30000", 1, "Cluster mode: a follower its leader has not heard from for this long is out of the ISR, and the leader's retention no longer keeps segments for it (it catches up by snapshot when it returns)."),
    def("auto.create.topics.enable", Boolean, "true", 0, "Create a topic when Metadata asks for one that does not exist."),
    def("log.segment.bytes", Int, "1073741824", 100, "Roll to a new segment when the active one would grow past this."),
    def("log.roll.ms", Long, "604800000", 1, "Roll to a new segment when the active one is older than this."),
    def("log.roll.hours", Int, "168", 1, "log.roll.ms in hours, used when log.roll.ms is not set."),
    def("log.retention.ms", Long, "604800000", -1, "Delete segments older than this; -1 keeps data forever."),
    def("log.retention.minutes", Int, "10080", -1, "log.retention.ms in minutes, used when log.retention.ms is not set."),
    def("log.retention.hours", Int, "168", -1, "log.retention.ms in hours, used when neither ms nor minutes is set."),
    def("log.retention.bytes", Long, "-1", -1, "Delete the oldest segments while a partition is larger; -1 = no limit."),
    def("log.retention.check.interval.ms", Long, "300000", 1, "How often retention and producer expiry run."),
    def("log.index.interval.bytes", Int, "4096", 0, "Bytes between two entries of the sparse offset index."),
    def("log.flush.interval.messages", Long, "9223372036854775807", 1, "fsync after this many messages; 1 = fsync before every acknowledgement. The default leaves flushing to the OS, as Kafka does."),
    choice("log.message.timestamp.type", "CreateTime", &["CreateTime", "LogAppendTime"], "Keep the producer's timestamps, or stamp each batch with the broker's clock."),
    def("log.idempotency.key", STRING, "none", 0, "Default idempotency.key of topics: none, key (the record key) or header:NAME. A record whose key is already stored in the partition within the window is not stored again (a Tally extension)."),
    def("log.idempotency.window.ms", Long, "86400000", 1, "Default idempotency.window.ms: how long a stored idempotency key is remembered."),
    def("log.idempotency.window.max.keys", Long, "1000000", 1, "Default idempotency.window.max.keys: the most idempotency keys remembered per partition; past it the oldest are forgotten first."),
    choice("log.cleanup.policy", "delete", &["delete"], "Only delete is supported (no compaction)."),
    choice("compression.type", "producer", &["producer"], "Batches are stored as the producer compressed them."),
    def("min.insync.replicas", Int, "1", 1, "A single broker has one in-sync replica."),
    def("message.max.bytes", Int, "1048588", 0, "The largest record batch accepted."),
    def("socket.request.max.bytes", Int, "104857600", 1, "The largest request frame accepted; a larger one closes the connection."),
    def("fetch.max.bytes", Int, "57671680", 1024, "The most record bytes one Fetch response carries, whatever the request asks (at least one batch is always returned)."),
    def("max.connections", Int, "10000", 1, "Connections accepted at once; more are closed on accept."),
    def("producer.id.expiration.ms", Int, "86400000", 1, "Forget a producer's state after this long without a write."),
    def("producer.id.expiration.check.interval.ms", Int, "600000", 1, "How often expired producer state is removed."),
    def("group.initial.rebalance.delay.ms", Int, "3000", 0, "How long a new or empty group waits for more members before its first rebalance."),
    def("group.min.session.timeout.ms", Int, "6000", 1, "The shortest session timeout a group member may ask for."),
    def("group.max.session.timeout.ms", Int, "1800000", 1, "The longest session timeout a group member may ask for."),
    def("transaction.state.log.num.partitions", Int, "1", 1, "Partitions of __transaction_state (Kafka's default is 50; one broker needs one)."),
    def("transaction.state.log.compaction.min.records", Long, "10000", 1, "Tally only: compact __transaction_state once it holds this many records and four times more than there are transactional ids."),
    def("transaction.max.timeout.ms", Int, "900000", 1, "The longest transaction.timeout.ms a producer may ask for."),
    def("transactional.id.expiration.ms", Int, "604800000", 1, "Forget a transactional id unused for this long."),
    def("transaction.abort.timed.out.transaction.cleanup.interval.ms", Int, "10000", 1, "How often transactions open past their timeout are aborted."),
    def("offsets.topic.num.partitions", Int, "50", 1, "Cluster mode: partitions of __consumer_offsets, created on the first FindCoordinator (one broker alone keeps one)."),
    def("offsets.topic.replication.factor", Short, "3", 1, "Cluster mode: replicas of each __consumer_offsets partition; until that many brokers are registered FindCoordinator answers COORDINATOR_NOT_AVAILABLE."),
    def("offsets.topic.compaction.min.records", Long, "10000", 1, "Tally only: compact __consumer_offsets once it holds this many records and four times more than there are live keys."),
    def("offsets.retention.minutes", Int, "10080", 1, "Committed offsets of a group that has been empty this long are deleted."),
    def("offset.metadata.max.bytes", Int, "4096", 0, "The largest metadata string committed with an offset."),
    def("producer.state.max.producers.per.partition", Int, "100000", 1, "Tally only: producers remembered per partition; past it, the one that wrote least recently is forgotten."),
];

/// Topic keys, each backed by a broker key that gives its default.
pub const TOPIC_CONFIGS: &[(ConfigDef, &str)] = &[
    (
        choice(
            "cleanup.policy",
            "delete",
            &["delete"],
            "Only delete is supported (no compaction).",
        ),
        "log.cleanup.policy",
    ),
    (
        def(
            "retention.ms",
            Long,
            "604800000",
            -1,
            "Delete segments older than this; -1 keeps data forever.",
        ),
        "log.retention.ms",
    ),
    (
        def(
            "retention.bytes",
            Long,
            "-1",
            -1,
            "Delete the oldest segments while a partition is larger; -1 = no limit.",
        ),
        "log.retention.bytes",
    ),
    (
        def(
            "segment.bytes",
            Int,
            "1073741824",
            100,
            "Roll to a new segment when the active one would grow past this.",
        ),
        "log.segment.bytes",
    ),
    (
        def(
            "segment.ms",
            Long,
            "604800000",
            1,
            "Roll to a new segment when the active one is older than this.",
        ),
        "log.roll.ms",
    ),
    (
        def(
            "max.message.bytes",
            Int,
            "1048588",
            0,
            "The largest record batch accepted.",
        ),
        "message.max.bytes",
    ),
    (
        choice(
            "message.timestamp.type",
            "CreateTime",
            &["CreateTime", "LogAppendTime"],
            "Keep the producer's timestamps or stamp the broker's clock.",
        ),
        "log.message.timestamp.type",
    ),
    (
        def(
            "idempotency.key",
            STRING,
            "none",
            0,
            "none, key (the record key) or header:NAME: a record whose key is already stored in the partition within the window is not stored again.",
        ),
        "log.idempotency.key",
    ),
    (
        def(
            "idempotency.window.ms",
            Long,
            "86400000",
            1,
            "How long a stored idempotency key is remembered.",
        ),
        "log.idempotency.window.ms",
    ),
    (
        def(
            "idempotency.window.max.keys",
            Long,
            "1000000",
            1,
            "The most idempotency keys remembered per partition; past it the oldest are forgotten first.",
        ),
        "log.idempotency.window.max.keys",
    ),
    (
        def(
            "flush.messages",
            Long,
            "9223372036854775807",
            1,
            "fsync after this many messages.",
        ),
        "log.flush.interval.messages",
    ),
    (
        def(
            "index.interval.bytes",
            Int,
            "4096",
            0,
            "Bytes between two entries of the sparse offset index.",
        ),
        "log.index.interval.bytes",
    ),
    (
        def(
            "min.insync.replicas",
            Int,
            "1",
            1,
            "A single broker has one in-sync replica.",
        ),
        "min.insync.replicas",
    ),
    (
        choice(
            "compression.type",
            "producer",
            &["producer"],
            "Batches are stored as the producer compressed them.",
        ),
        "compression.type",
    ),
];

pub fn broker_def(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == name)
}

pub fn topic_def(name: &str) -> Option<&'static (ConfigDef, &'static str)> {
    TOPIC_CONFIGS.iter().find(|(d, _)| d.name == name)
}

/// Checks `value` against the definition; returns the normalised string.
pub fn check_value(def: &ConfigDef, value: &str) -> Result<String, String> {
    let value = value.trim();
    match def.ty {
        Boolean => match value.to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(value.to_ascii_lowercase()),
            _ => Err(format!(
                "{}: expected true or false, got '{value}'",
                def.name
            )),
        },
        Int | Short | Long => {
            let n: i64 = value
                .parse()
                .map_err(|_| format!("{}: expected a whole number, got '{value}'", def.name))?;
            let max = match def.ty {
                Short => i64::from(i16::MAX),
                Int => i64::from(i32::MAX),
                _ => i64::MAX,
            };
            if n < def.min || n > max {
                return Err(format!(
                    "{}: {n} is out of range [{}, {max}]",
                    def.name, def.min
                ));
            }
            Ok(n.to_string())
        }
        ConfigType::String if def.name.ends_with("idempotency.key") => {
            tally_protocol::KeySource::parse(value).map_err(|e| format!("{}: {e}", def.name))?;
            Ok(value.to_string())
        }
        ConfigType::List if def.name == "sasl.enabled.mechanisms" => {
            crate::security::sasl_session::parse_mechanisms(value)
                .map_err(|e| format!("{}: {e}", def.name))?;
            Ok(value.to_string())
        }
        ConfigType::String | ConfigType::List | ConfigType::Password => {
            if !def.choices.is_empty() && !def.choices.contains(&value) {
                return Err(format!(
                    "{}: '{value}' is not supported (supported: {})",
                    def.name,
                    def.choices.join(", ")
                ));
            }
            Ok(value.to_string())
        }
    }
}
