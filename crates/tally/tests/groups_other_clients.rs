//! Group consumers of kcat (`-G`, Debian's librdkafka) and kafka-python, installed by
//! `.ci/run`: each consumes a topic in two runs, and the second run resumes exactly where the
//! first one's commits left off.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use tally_testkit::{BatchSpec, BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");
const MESSAGES: usize = 300;

/// A broker with a 3-partition topic holding m0..m299.
fn seeded(topic: &str) -> BrokerProcess {
    let broker = BrokerProcess::start(
        Path::new(TALLY),
        &["--set", "group.initial.rebalance.delay.ms=0"],
    );
    let mut c = WireClient::connect(broker.addr).unwrap();
    c.create_topic(topic, 3).unwrap();
    for p in 0..3 {
        let mut spec = BatchSpec::new(-1, -1, -1, 0);
        spec.values = (0..MESSAGES)
            .filter(|i| i % 3 == p)
            .map(|i| format!("m{i}").into_bytes())
            .collect();
        assert_eq!(
            c.produce(9, topic, p as i32, spec.encode())
                .unwrap()
                .error_code,
            0
        );
    }
    broker
}

fn check(first: Vec<String>, second: Vec<String>) {
    assert_eq!(
        first.len() + second.len(),
        MESSAGES,
        "first {} + second {}",
        first.len(),
        second.len()
    );
    let all: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        all.len(),
        MESSAGES,
        "a message was delivered twice across the two runs"
    );
    assert_eq!(
        all,
        (0..MESSAGES)
            .map(|i| format!("m{i}"))
            .collect::<BTreeSet<_>>()
    );
}

fn kcat(bootstrap: &str, count: usize) -> Vec<String> {
    let out = Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-G",
            "kcat-group",
            "-X",
            "auto.offset.reset=earliest",
            "-c",
            &count.to_string(),
            "-q",
            "-f",
            "%s\\n",
            "kc",
        ])
        .output()
        .expect("kcat is installed (.ci/run installs it: apt-get install kcat)");
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn kcat_balanced_group_consumer_resumes_from_its_commits() {
    let broker = seeded("kc");
    let first = kcat(&broker.bootstrap(), 120);
    let second = kcat(&broker.bootstrap(), 180);
    check(first, second);
}

const PYTHON: &str = r#"
import sys
from kafka import KafkaConsumer
bootstrap, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
consumer = KafkaConsumer(topic, group_id="python-group", bootstrap_servers=bootstrap,
                         auto_offset_reset="earliest", enable_auto_commit=False,
                         consumer_timeout_ms=30000)
got = []
for message in consumer:
    got.append(message.value.decode())
    if len(got) == count:
        break
consumer.commit()
consumer.close()
print("\n".join(got))
"#;

fn python(bootstrap: &str, count: usize) -> Vec<String> {
    let out = Command::new("python3")
        .args(["-c", PYTHON, bootstrap, "py", &count.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "kafka-python consumer failed (.ci/run installs it: pip install kafka-python): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn kafka_python_group_consumer_resumes_from_its_commits() {
    let broker = seeded("py");
    let first = python(&broker.bootstrap(), 120);
    let second = python(&broker.bootstrap(), 180);
    check(first, second);
}
