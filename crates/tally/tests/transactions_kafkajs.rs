//! kafkajs's transactional producer commits and aborts against Tally, and its consumer (which
//! reads committed data by default) sees exactly the committed records. The script is
//! `tests/kafkajs/transactions.js`; `.ci/run` installs its one dependency with `npm ci`.

use std::path::{Path, PathBuf};
use std::process::Command;

use tally_testkit::{BrokerProcess, WireClient};

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kafkajs")
}

#[test]
fn kafkajs_commits_and_aborts() {
    let dir = script_dir();
    assert!(
        dir.join("node_modules/kafkajs").exists(),
        "kafkajs is not installed: run `npm ci --prefix tests/kafkajs` (as .ci/run does)"
    );
    let broker = BrokerProcess::start(Path::new(TALLY), &[]);
    WireClient::connect(broker.addr)
        .unwrap()
        .create_topic("kafkajs-txn", 2)
        .unwrap();
    let out = Command::new("node")
        .arg(dir.join("transactions.js"))
        .arg(broker.bootstrap())
        .arg("kafkajs-txn")
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kafkajs failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(line).expect("one JSON line");
    let committed = &result["committed"];
    assert_eq!(
        committed.as_array().map(Vec::len),
        Some(4),
        "two transactions of two"
    );
    assert_eq!(
        &result["read"], committed,
        "read_committed sees exactly the committed records"
    );
}
