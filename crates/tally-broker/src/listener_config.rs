//! The listener and security keys of the broker's config: `listeners` (named through
//! `listener.security.protocol.map`), what `advertised.listeners` tells each listener's
//! clients, SASL and the authorizer.

use crate::broker_config::{BrokerConfig, ConfigError};
use crate::endpoint::{Endpoint, SecurityProtocol};

impl BrokerConfig {
    /// Every listener (`listeners`, named through `listener.security.protocol.map`).
    pub fn listeners(&self) -> Result<Vec<Endpoint>, ConfigError> {
        Endpoint::parse_list(
            &self.get("listeners").0,
            &self.get("listener.security.protocol.map").0,
        )
    }

    /// The security of Raft's traffic between nodes: the protocol of the listener
    /// `inter.broker.listener.name` names (PLAINTEXT when it names none, as today's
    /// `security.inter.broker.protocol` default).
    pub fn inter_broker_protocol(&self) -> Result<SecurityProtocol, ConfigError> {
        let (name, _) = self.get("inter.broker.listener.name");
        if name.is_empty() {
            return Ok(SecurityProtocol::Plaintext);
        }
        let name = name.to_ascii_uppercase();
        Ok(self
            .listeners()?
            .into_iter()
            .find(|l| l.name == name)
            .map_or(SecurityProtocol::Plaintext, |l| l.protocol))
    }

    /// The first listener: the one cluster mode registers and the ready line names.
    pub fn listener(&self) -> Result<Endpoint, ConfigError> {
        Ok(self.listeners()?.remove(0))
    }

    /// What clients are told for each listener: its `advertised.listeners` entry, else its
    /// bound address (`bound`: listener name and the port actually bound; a wildcard host
    /// becomes 127.0.0.1).
    pub fn advertised_listeners(
        &self,
        bound: &[(String, u16)],
    ) -> Result<Vec<Endpoint>, ConfigError> {
        let (value, _) = self.get("advertised.listeners");
        let map = self.get("listener.security.protocol.map").0;
        let given = if value.is_empty() {
            Vec::new()
        } else {
            Endpoint::parse_list(&value, &map)?
        };
        self.listeners()?
            .into_iter()
            .map(|mut listener| {
                if let Some(a) = given.iter().find(|a| a.name == listener.name) {
                    return Ok(a.clone());
                }
                if let Some((_, port)) = bound.iter().find(|(n, _)| *n == listener.name) {
                    listener.port = *port;
                }
                if listener.host == "0.0.0.0" || listener.host == "::" {
                    listener.host = "127.0.0.1".into();
                }
                Ok(listener)
            })
            .collect()
    }

    /// The first listener's advertised endpoint (`bound_port`: its bound port).
    pub fn advertised(&self, bound_port: u16) -> Result<Endpoint, ConfigError> {
        let first = self.listener()?;
        Ok(self
            .advertised_listeners(&[(first.name, bound_port)])?
            .remove(0))
    }

    /// Whether the ACL authorizer is on, and its settings.
    pub fn authorizer(&self) -> (bool, crate::security::acl::AuthorizerSettings) {
        let super_users = self
            .get("super.users")
            .0
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        (
            !self.get("authorizer.class.name").0.trim().is_empty(),
            crate::security::acl::AuthorizerSettings {
                super_users,
                allow_everyone_if_no_acl_found: self.bool("allow.everyone.if.no.acl.found"),
            },
        )
    }

    pub fn failed_authentication_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.long("connection.failed.authentication.delay.ms") as u64
        )
    }

    /// `sasl.enabled.mechanisms`, checked when the key was set.
    pub fn sasl_mechanisms(&self) -> Vec<crate::security::Mechanism> {
        crate::security::sasl_session::parse_mechanisms(&self.get("sasl.enabled.mechanisms").0)
            .unwrap_or_default()
    }
}
