//! SaslHandshake (v1) and SaslAuthenticate (v0-v2): the connection's [`SaslSession`] decides,
//! this file turns its steps into answers. PLAIN's check derives a key from the password
//! (thousands of HMACs), so it runs off the async workers.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::security::sasl_session::SASL_AUTHENTICATION_FAILED;
use crate::security::{Mechanism, SaslSession, Step};

/// What the connection does after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    GoOn,
    /// Close the connection after the answer.
    Close,
    /// A failed authentication: hold the answer for `connection.failed.authentication.delay.ms`,
    /// then close. Only this connection waits.
    DelayThenClose,
}

/// Whether the SASL exchange answers this request instead of its handler: SASL requests
/// always; before authentication, everything but ApiVersions (which is then refused).
pub fn intercepts(session: &SaslSession, api_key: ApiKey) -> bool {
    match api_key {
        ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => true,
        ApiKey::ApiVersions => false,
        _ => !session.is_authenticated(),
    }
}

pub fn handshake(
    session: &mut SaslSession,
    request: &SaslHandshakeRequest,
) -> (SaslHandshakeResponse, After) {
    let mechanisms = session
        .enabled_names()
        .into_iter()
        .map(StrBytes::from_static_str)
        .collect();
    let response = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
    match session.handshake(request.mechanism.as_str()) {
        Ok(()) => (response, After::GoOn),
        // As Kafka: a handshake out of place (on a listener without SASL, or after logging
        // in) is answered and the connection goes on; an unknown mechanism ends it.
        Err((code, _)) if session.is_authenticated() => {
            (response.with_error_code(code), After::GoOn)
        }
        Err((code, _)) => (response.with_error_code(code), After::Close),
    }
}

pub async fn authenticate(
    broker: &Arc<Broker>,
    mut session: SaslSession,
    request: SaslAuthenticateRequest,
) -> (SaslSession, SaslAuthenticateResponse, After) {
    let store = Arc::clone(&broker.credentials);
    let nonce = URL_SAFE_NO_PAD.encode(crate::security::credential_store::random_bytes(24));
    let token = request.auth_bytes;
    let step;
    (session, step) = if session.pending_mechanism() == Some(Mechanism::Plain) {
        broker
            .off_runtime(move || {
                let step = session.authenticate(&token, &store, &nonce);
                (session, step)
            })
            .await
    } else {
        let step = session.authenticate(&token, &store, &nonce);
        (session, step)
    };
    let (response, after) = match step {
        Step::Token(bytes) => (
            SaslAuthenticateResponse::default().with_auth_bytes(bytes),
            After::GoOn,
        ),
        Step::Refused { code, message } => {
            let after = if code == SASL_AUTHENTICATION_FAILED {
                broker
                    .metrics
                    .authentication_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                After::DelayThenClose
            } else {
                After::Close
            };
            (
                SaslAuthenticateResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
                after,
            )
        }
    };
    (session, response, after)
}
