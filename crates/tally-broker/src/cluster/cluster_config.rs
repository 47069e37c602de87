//! `controller.quorum.voters`, KRaft's format: `ID@HOST:PORT[,ID@HOST:PORT...]`, each the
//! Raft address of a voter of the controller group. Set, it turns cluster mode on. A node
//! whose `node.id` is among them is a voter and listens for Raft at its entry; any other node
//! joins as a broker and listens at `raft.listener`.

use std::collections::BTreeMap;

use crate::broker_config::{BrokerConfig, ConfigError};

/// The voters, or `None` when the key is empty (a single broker).
pub fn quorum_voters(config: &BrokerConfig) -> Result<Option<BTreeMap<u64, String>>, ConfigError> {
    let raft_listener = config.get("raft.listener").0;
    parse_voters(
        &config.get("controller.quorum.voters").0,
        config.node_id(),
        &raft_listener,
    )
}

/// Where a node that is not a voter listens for Raft (`raft.listener`), if it is one.
pub fn raft_listener(config: &BrokerConfig) -> Option<String> {
    let value = config.get("raft.listener").0;
    (!value.trim().is_empty()).then(|| value.trim().to_string())
}

pub fn parse_voters(
    value: &str,
    node_id: i32,
    raft_listener: &str,
) -> Result<Option<BTreeMap<u64, String>>, ConfigError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let bad = |why: String| ConfigError::InvalidValue(format!("controller.quorum.voters: {why}"));
    let mut voters = BTreeMap::new();
    for part in value.split(',').map(str::trim) {
        let (id, addr) = part
            .split_once('@')
            .ok_or_else(|| bad(format!("'{part}' is not ID@HOST:PORT")))?;
        let id: u64 = id
            .parse()
            .map_err(|_| bad(format!("'{id}' in '{part}' is not a node id")))?;
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad(format!("'{addr}' in '{part}' is not HOST:PORT")))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(bad(format!("'{addr}' in '{part}' is not HOST:PORT")));
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(bad(format!("node {id} is listed twice")));
        }
    }
    if node_id < 0 {
        return Err(bad(format!("node.id {node_id} is not a node id")));
    }
    let voter = voters.contains_key(&(node_id as u64));
    let listener = raft_listener.trim();
    if !voter && listener.is_empty() {
        return Err(bad(format!(
            "node.id {node_id} is not among the voters (a node that joins as a broker gives \
             its Raft address in raft.listener, --raft-listen)"
        )));
    }
    if voter && !listener.is_empty() {
        return Err(ConfigError::InvalidValue(format!(
            "raft.listener: node {node_id} is a voter and listens at its entry in \
             controller.quorum.voters"
        )));
    }
    if !listener.is_empty() {
        let port = listener.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
        if !matches!(port, Some(Ok(p)) if p != 0) {
            return Err(ConfigError::InvalidValue(format!(
                "raft.listener: '{listener}' is not HOST:PORT"
            )));
        }
    }
    Ok(Some(voters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_must_include_this_node() {
        let v = parse_voters("1@127.0.0.1:9193, 2@127.0.0.1:9194", 2, "")
            .unwrap()
            .unwrap();
        assert_eq!(v[&1], "127.0.0.1:9193");
        assert_eq!(v.len(), 2);
        assert!(parse_voters("", 1, "").unwrap().is_none());
        // A broker that is not a voter needs its own Raft address; a voter must not have one.
        assert!(parse_voters("1@127.0.0.1:9193", 4, "127.0.0.1:9196").is_ok());
        assert!(parse_voters("1@127.0.0.1:9193", 4, "").is_err());
        assert!(parse_voters("1@127.0.0.1:9193", 4, "127.0.0.1").is_err());
        assert!(parse_voters("1@127.0.0.1:9193", 1, "127.0.0.1:9196").is_err());
        for bad in [
            "1@127.0.0.1:9193",
            "x@h:1",
            "2@h",
            "2@:9",
            "2@h:0",
            "2@h:1,2@h:2",
            "2",
        ] {
            assert!(parse_voters(bad, 2, "").is_err(), "{bad}");
        }
    }
}
