//! SASL for the wire client: SaslHandshake v1 and SaslAuthenticate v2 with PLAIN or SCRAM, as
//! a real client sends them, and the broker's refusals as they came.

use anyhow::{bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::scram::{ScramClient, ScramMechanism};

use crate::wire_client::WireClient;

/// A refusal: the error code and message of the answer that refused.
pub type SaslRefusal = (i16, String);

impl WireClient {
    /// Authenticates with `mechanism` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512). `Err` is a
    /// broken connection; `Ok(Err(..))` is the broker's refusal.
    pub fn authenticate(
        &mut self,
        mechanism: &str,
        user: &str,
        password: &str,
    ) -> Result<Result<(), SaslRefusal>> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_string(mechanism.to_string()));
        let answer = self.send(&handshake, 1)?;
        if answer.error_code != 0 {
            let enabled: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
            return Ok(Err((answer.error_code, enabled.join(","))));
        }
        match ScramMechanism::from_name(mechanism) {
            None => {
                let token = format!("\0{user}\0{password}");
                Ok(self.sasl_token(token.into_bytes())?.map(|_| ()))
            }
            Some(m) => {
                let mut client = ScramClient::new(m, user, password, "wireclientnonce");
                let first = match self.sasl_token(client.first_message())? {
                    Ok(first) => first,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                let last = client.final_message(&first)?;
                let reply = match self.sasl_token(last)? {
                    Ok(reply) => reply,
                    Err(refusal) => return Ok(Err(refusal)),
                };
                if let Err(e) = client.verify_server_final(&reply) {
                    bail!("the broker's SCRAM signature: {e}");
                }
                Ok(Ok(()))
            }
        }
    }

    /// One SaslAuthenticate round trip.
    pub fn sasl_token(&mut self, token: Vec<u8>) -> Result<Result<Bytes, SaslRefusal>> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let answer = self.send(&request, 2)?;
        if answer.error_code != 0 {
            let message = answer
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            return Ok(Err((answer.error_code, message)));
        }
        Ok(Ok(answer.auth_bytes))
    }
}
