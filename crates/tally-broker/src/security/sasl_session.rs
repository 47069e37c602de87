//! One connection's SASL state (KIP-43 and KIP-152): SaslHandshake picks a mechanism,
//! SaslAuthenticate carries its tokens, and until they succeed the connection gets nothing
//! else but ApiVersions. A state machine with no I/O: the connection feeds it requests and
//! sends what it returns.
//!
//! PLAIN checks the password against the user's stored SCRAM credential, so one store serves
//! both (Kafka keeps PLAIN's passwords in JAAS files instead). A SCRAM exchange for a user
//! who does not exist runs to the end with a decoy credential (a stable salt, the usual
//! iteration count) and fails like a wrong password, and PLAIN derives a key for an unknown
//! user too, so neither the answer nor its time tells which users exist.

use std::sync::Arc;

use bytes::Bytes;
use tally_protocol::scram::{parse_client_first, ScramMechanism, ServerExchange};

use super::credential_store::CredentialStore;

/// The principal of a connection that did not authenticate (Kafka's name).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    pub fn from_name(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// `sasl.enabled.mechanisms`: a comma-separated list of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
pub fn parse_mechanisms(list: &str) -> Result<Vec<Mechanism>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let m = Mechanism::from_name(name).ok_or_else(|| {
            format!("'{name}' is not supported (supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err("name at least one mechanism".into());
    }
    Ok(out)
}

/// Kafka's error codes for the exchange.
pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
pub const ILLEGAL_SASL_STATE: i16 = 34;
pub const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// What to answer a SASL request, and whether the connection ends after the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes back; the exchange goes on, or has just succeeded.
    Token(Bytes),
    /// Answer with this error; the connection closes after it (after the failure delay
    /// when it is SASL_AUTHENTICATION_FAILED).
    Refused { code: i16, message: String },
}

enum State {
    /// A PLAINTEXT or SSL listener: no SASL here.
    NotSasl,
    AwaitingHandshake,
    AwaitingToken(Mechanism),
    AwaitingScramFinal(Box<ServerExchange>, ScramMechanism),
    Authenticated,
}

pub struct SaslSession {
    state: State,
    enabled: Arc<[Mechanism]>,
    principal: String,
}

impl SaslSession {
    /// A connection on a listener without SASL: it is who its transport says it is.
    pub fn not_sasl(principal: String) -> SaslSession {
        SaslSession {
            state: State::NotSasl,
            enabled: Arc::from(Vec::new()),
            principal,
        }
    }

    /// A connection on a SASL_PLAINTEXT or SASL_SSL listener, not authenticated yet.
    pub fn sasl(enabled: Arc<[Mechanism]>) -> SaslSession {
        SaslSession {
            state: State::AwaitingHandshake,
            enabled,
            principal: ANONYMOUS.to_string(),
        }
    }

    /// Who a connection without SASL is, from its TLS client certificate. A SASL
    /// connection is who it logs in as, whatever its certificate says (as in Kafka).
    pub fn with_transport_principal(mut self, principal: String) -> SaslSession {
        if matches!(self.state, State::NotSasl) {
            self.principal = principal;
        }
        self
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::NotSasl | State::Authenticated)
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The mechanism the connection authenticates with next (PLAIN's check is slow: the
    /// caller runs it off the async workers).
    pub fn pending_mechanism(&self) -> Option<Mechanism> {
        match &self.state {
            State::AwaitingToken(m) => Some(*m),
            _ => None,
        }
    }

    /// The mechanisms to list in a SaslHandshake answer.
    pub fn enabled_names(&self) -> Vec<&'static str> {
        self.enabled.iter().map(|m| m.name()).collect()
    }

    /// SaslHandshake: `Ok` when the mechanism is enabled and none was chosen yet.
    pub fn handshake(&mut self, mechanism: &str) -> Result<(), (i16, String)> {
        match self.state {
            State::AwaitingHandshake => {}
            State::NotSasl => {
                return Err((
                    ILLEGAL_SASL_STATE,
                    "this listener does not use SASL".to_string(),
                ))
            }
            _ => {
                return Err((
                    ILLEGAL_SASL_STATE,
                    "SaslHandshake is only accepted once, before authentication".to_string(),
                ))
            }
        }
        match Mechanism::from_name(mechanism).filter(|m| self.enabled.contains(m)) {
            Some(m) => {
                self.state = State::AwaitingToken(m);
                Ok(())
            }
            None => Err((
                UNSUPPORTED_SASL_MECHANISM,
                format!(
                    "unsupported SASL mechanism {mechanism} (enabled: {})",
                    self.enabled_names().join(", ")
                ),
            )),
        }
    }

    /// SaslAuthenticate: one token of the chosen mechanism. `server_nonce` is used if this
    /// token starts a SCRAM exchange.
    pub fn authenticate(
        &mut self,
        token: &[u8],
        store: &CredentialStore,
        server_nonce: &str,
    ) -> Step {
        match std::mem::replace(&mut self.state, State::AwaitingHandshake) {
            State::AwaitingToken(Mechanism::Plain) => self.plain(token, store),
            State::AwaitingToken(Mechanism::Scram(m)) => {
                self.scram_first(m, token, store, server_nonce)
            }
            State::AwaitingScramFinal(exchange, m) => self.scram_final(*exchange, m, token),
            state => {
                self.state = state;
                Step::Refused {
                    code: ILLEGAL_SASL_STATE,
                    message: "SaslAuthenticate without a SaslHandshake before it".to_string(),
                }
            }
        }
    }

    fn plain(&mut self, token: &[u8], store: &CredentialStore) -> Step {
        // authzid NUL authcid NUL password (RFC 4616).
        let mut parts = token.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return failed("PLAIN: expected authzid NUL user NUL password".into());
        };
        let Ok(user) = std::str::from_utf8(user) else {
            return failed("PLAIN: the user name is not UTF-8".into());
        };
        if !authzid.is_empty() && authzid != user.as_bytes() {
            return failed("PLAIN: the authorization id must be the user or empty".into());
        }
        let verified = ScramMechanism::ALL
            .into_iter()
            .find_map(|m| store.get(user, m).map(|c| c.matches_password(m, password)));
        // An unknown user costs the same key derivation as a known one: the time of the
        // answer does not tell which users exist.
        let verified = verified.unwrap_or_else(|| {
            let m = ScramMechanism::Sha256;
            let _ = store
                .credential_or_decoy(user, m)
                .matches_password(m, password);
            false
        });
        if verified {
            self.succeed(user);
            Step::Token(Bytes::new())
        } else {
            failed("Authentication failed: Invalid username or password".into())
        }
    }

    fn scram_first(
        &mut self,
        mechanism: ScramMechanism,
        token: &[u8],
        store: &CredentialStore,
        server_nonce: &str,
    ) -> Step {
        let first = match parse_client_first(token) {
            Ok(first) => first,
            Err(e) => return failed(format!("{}: {e}", mechanism.name())),
        };
        let credential = store.credential_or_decoy(&first.username, mechanism);
        let (exchange, reply) = ServerExchange::start(mechanism, first, credential, server_nonce);
        self.state = State::AwaitingScramFinal(Box::new(exchange), mechanism);
        Step::Token(Bytes::from(reply))
    }

    fn scram_final(
        &mut self,
        exchange: ServerExchange,
        mechanism: ScramMechanism,
        token: &[u8],
    ) -> Step {
        let user = exchange.username().to_string();
        match exchange.finish(token) {
            Ok(reply) => {
                self.succeed(&user);
                Step::Token(Bytes::from(reply))
            }
            Err(_) => failed(format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {}",
                mechanism.name()
            )),
        }
    }

    fn succeed(&mut self, user: &str) {
        self.state = State::Authenticated;
        self.principal = format!("User:{user}");
    }
}

fn failed(message: String) -> Step {
    Step::Refused {
        code: SASL_AUTHENTICATION_FAILED,
        message,
    }
}

#[cfg(test)]
#[path = "sasl_session_tests.rs"]
mod tests;
