//! Listeners and advertised addresses as Kafka writes them: `NAME://HOST:PORT` (or
//! `HOST:PORT`, meaning PLAINTEXT), comma-separated. A listener's name is its security
//! protocol, or with `listener.security.protocol.map` (`INTERNAL:SASL_PLAINTEXT,...`) any
//! name the map gives a protocol.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::broker_config::ConfigError;

/// Kafka's `security.protocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    /// TLS (rustls), configured by `ssl.keystore.location` and friends.
    Ssl,
    /// SASL authentication (`sasl.enabled.mechanisms`) on a plaintext connection.
    SaslPlaintext,
    /// SASL authentication inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// A resolved listener or advertised address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The listener's name (its protocol's name unless the protocol map names it).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(value: &str) -> Result<Endpoint, ConfigError> {
        let err = |reason: &str| ConfigError::Listener {
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let entries: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let [one] = entries.as_slice() else {
            return Err(err("exactly one listener is supported"));
        };
        Self::parse_one(one, &[]).map_err(|reason| err(&reason))
    }

    /// Every listener of `value`; `map` is `listener.security.protocol.map`.
    pub fn parse_list(value: &str, map: &str) -> Result<Vec<Endpoint>, ConfigError> {
        let err = |reason: String| ConfigError::Listener {
            value: value.to_string(),
            reason,
        };
        let map = parse_map(map).map_err(err)?;
        let mut out: Vec<Endpoint> = Vec::new();
        for entry in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let e = Self::parse_one(entry, &map).map_err(err)?;
            if out.iter().any(|o| o.name == e.name) {
                return Err(err(format!("the listener name {} is used twice", e.name)));
            }
            if e.port != 0 && out.iter().any(|o| o.port == e.port && o.host == e.host) {
                return Err(err(format!("{}:{} is given twice", e.host, e.port)));
            }
            out.push(e);
        }
        if out.is_empty() {
            return Err(err("no listener".into()));
        }
        Ok(out)
    }

    fn parse_one(one: &str, map: &[(String, SecurityProtocol)]) -> Result<Endpoint, String> {
        let (name, protocol, address) = match one.split_once("://") {
            Some((name, rest)) => {
                let name = name.to_ascii_uppercase();
                // The map names listeners; a protocol's own name needs no entry (Kafka's
                // default map lists them all).
                let protocol = match map.iter().find(|(n, _)| *n == name) {
                    Some((_, p)) => *p,
                    None if map.is_empty() => parse_protocol(&name)?,
                    None => parse_protocol(&name).map_err(|_| {
                        format!("listener {name} is not in listener.security.protocol.map")
                    })?,
                };
                (name, protocol, rest)
            }
            None => ("PLAINTEXT".to_string(), SecurityProtocol::Plaintext, one),
        };
        let err = |r: &str| r.to_string();
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| err("expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| err("the port is not a number from 0 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Endpoint {
            name,
            protocol,
            host: if host.is_empty() {
                "0.0.0.0".into()
            } else {
                host.to_string()
            },
            port,
        })
    }

    pub fn socket_addr(&self) -> Result<SocketAddr, ConfigError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ConfigError::Listener {
                value: format!("{}:{}", self.host, self.port),
                reason: "the host does not resolve".into(),
            })
    }
}

/// `NAME:PROTOCOL,...`.
fn parse_map(map: &str) -> Result<Vec<(String, SecurityProtocol)>, String> {
    map.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|entry| {
            let (name, protocol) = entry.split_once(':').ok_or_else(|| {
                format!("listener.security.protocol.map: expected NAME:PROTOCOL, got {entry}")
            })?;
            Ok((
                name.trim().to_ascii_uppercase(),
                parse_protocol(protocol.trim())?,
            ))
        })
        .collect()
}

fn parse_protocol(name: &str) -> Result<SecurityProtocol, String> {
    match name.to_ascii_uppercase().as_str() {
        "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
        "SSL" => Ok(SecurityProtocol::Ssl),
        "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
        "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
        _ => Err(format!(
            "unknown security protocol {name} (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_name_their_protocol() {
        let e = Endpoint::parse("SSL://127.0.0.1:9093").unwrap();
        assert_eq!(e.protocol, SecurityProtocol::Ssl);
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 9093));
        let e = Endpoint::parse("ssl://[::1]:9093").unwrap();
        assert_eq!(
            (e.protocol, e.host.as_str()),
            (SecurityProtocol::Ssl, "::1")
        );
        let e = Endpoint::parse("localhost:9092").unwrap();
        assert_eq!(e.protocol, SecurityProtocol::Plaintext);
        let e = Endpoint::parse("PLAINTEXT://:9092").unwrap();
        assert_eq!(
            (e.protocol, e.host.as_str()),
            (SecurityProtocol::Plaintext, "0.0.0.0")
        );
        let e = Endpoint::parse("SASL_SSL://h:1").unwrap();
        assert!(e.protocol.uses_tls() && e.protocol.uses_sasl());
        let e = Endpoint::parse("sasl_plaintext://h:1").unwrap();
        assert!(!e.protocol.uses_tls() && e.protocol.uses_sasl());
        let bad = Endpoint::parse("QUIC://h:1").unwrap_err().to_string();
        assert!(bad.contains("unknown security protocol QUIC"), "{bad}");
        assert!(Endpoint::parse("SSL://h:1,PLAINTEXT://h:2").is_err());
    }

    #[test]
    fn several_named_listeners() {
        let list = Endpoint::parse_list(
            "PLAINTEXT://127.0.0.1:9092, internal://:9093,CLIENTS://0.0.0.0:9094",
            "INTERNAL:SASL_PLAINTEXT,CLIENTS:SASL_SSL",
        )
        .unwrap();
        let names: Vec<(&str, SecurityProtocol, u16)> = list
            .iter()
            .map(|e| (e.name.as_str(), e.protocol, e.port))
            .collect();
        assert_eq!(
            names,
            [
                ("PLAINTEXT", SecurityProtocol::Plaintext, 9092),
                ("INTERNAL", SecurityProtocol::SaslPlaintext, 9093),
                ("CLIENTS", SecurityProtocol::SaslSsl, 9094),
            ]
        );
        let bad = |l: &str, m: &str| Endpoint::parse_list(l, m).unwrap_err().to_string();
        assert!(
            bad("OTHER://h:1", "INTERNAL:SSL").contains("not in listener.security.protocol.map")
        );
        assert!(bad("SSL://h:1,SSL://h:2", "").contains("used twice"));
        assert!(bad("SSL://h:1,PLAINTEXT://h:1", "").contains("given twice"));
        assert!(bad("SSL://h:1", "INTERNAL").contains("NAME:PROTOCOL"));
        assert!(bad("", "").contains("no listener"));
    }
}
