//! The client's side of SASL on a new connection (after ApiVersions, before anything else):
//! SaslHandshake v1 names the mechanism, SaslAuthenticate carries PLAIN's one token or
//! SCRAM's two rounds. A SCRAM login also checks the broker's signature, so a broker that
//! does not know the password cannot pretend it does.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rand::Rng;
use tally_protocol::scram::{ScramClient, ScramMechanism};

use crate::connection::BrokerConnection;
use crate::error::ClientError;
use crate::security::SaslConfig;

pub async fn authenticate(
    connection: &BrokerConnection,
    sasl: &SaslConfig,
    timeout: Duration,
) -> Result<(), ClientError> {
    let version = connection.version(ApiKey::SaslHandshake, 1, 1)?;
    let handshake = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_string(sasl.mechanism.clone()));
    let answer: SaslHandshakeResponse = connection.send(&handshake, version, timeout).await?;
    if answer.error_code != 0 {
        let enabled: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
        let message = format!(
            "SASL mechanism {} (the broker offers: {})",
            sasl.mechanism,
            enabled.join(", ")
        );
        return Err(ClientError::broker(answer.error_code, Some(&message)));
    }
    match ScramMechanism::from_name(&sasl.mechanism) {
        None => {
            let token = format!("\0{}\0{}", sasl.username, sasl.password);
            round(connection, token.into_bytes(), timeout).await?;
            Ok(())
        }
        Some(mechanism) => {
            let nonce: String = rand::rng()
                .sample_iter(&rand::distr::Alphanumeric)
                .take(24)
                .map(char::from)
                .collect();
            let scram = ScramClient::new(mechanism, &sasl.username, &sasl.password, &nonce);
            let first = round(connection, scram.first_message(), timeout).await?;
            // PBKDF2 with the broker's iteration count: off the async workers.
            let (scram, last) = tokio::task::spawn_blocking(move || {
                let mut scram = scram;
                let last = scram.final_message(&first);
                (scram, last)
            })
            .await
            .map_err(|e| ClientError::Protocol(format!("SCRAM: {e}")))?;
            let last = last.map_err(|e| ClientError::Protocol(format!("SCRAM: {e}")))?;
            let reply = round(connection, last, timeout).await?;
            scram
                .verify_server_final(&reply)
                .map_err(|e| ClientError::Protocol(format!("SCRAM: {e}")))
        }
    }
}

/// One SaslAuthenticate: the broker's token, or its refusal as an error.
async fn round(
    connection: &BrokerConnection,
    token: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, ClientError> {
    let version = connection.version(ApiKey::SaslAuthenticate, 0, 2)?;
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let answer: SaslAuthenticateResponse = connection.send(&request, version, timeout).await?;
    if answer.error_code != 0 {
        return Err(ClientError::broker(
            answer.error_code,
            answer.error_message.as_deref(),
        ));
    }
    Ok(answer.auth_bytes)
}
