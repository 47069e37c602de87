//! A listener or advertised address as Kafka writes it: `PROTOCOL://HOST:PORT` (or
//! `HOST:PORT`, meaning PLAINTEXT), with the security protocol it speaks.

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
        let (protocol, address) = match one.split_once("://") {
            Some((protocol, rest)) => (parse_protocol(protocol).map_err(|r| err(&r))?, rest),
            None => (SecurityProtocol::Plaintext, *one),
        };
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| err("expected HOST:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| err("the port is not a number from 0 to 65535"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Endpoint {
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
}
