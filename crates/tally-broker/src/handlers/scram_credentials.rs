//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554). The client sends a
//! salted password, never the password; the broker keeps StoredKey and ServerKey from it. A
//! user's alterations are accepted or refused together, and accepted ones are on disk (in
//! cluster mode: applied from the controller's log on this node) before the answer. Errors as Kafka's: RESOURCE_NOT_FOUND, DUPLICATE_RESOURCE,
//! UNSUPPORTED_SASL_MECHANISM, UNACCEPTABLE_CREDENTIAL.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::scram::{ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};
use tally_protocol::ResponseError;
use tracing::warn;

use super::RequestContext;
use crate::broker::Broker;
use crate::security::credential_store::Users;
use crate::security::CredentialChange;

type Refusal = (ResponseError, String);

pub fn describe(
    broker: &Broker,
    _ctx: &RequestContext,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let users = broker.credentials.users();
    let wanted: Vec<String> = match &request.users {
        Some(list) if !list.is_empty() => list.iter().map(|u| u.name.to_string()).collect(),
        _ => users.keys().cloned().collect(),
    };
    let mut seen = BTreeMap::<&str, usize>::new();
    for name in &wanted {
        *seen.entry(name.as_str()).or_default() += 1;
    }
    let results = seen
        .into_iter()
        .map(|(name, count)| {
            let result =
                DescribeUserScramCredentialsResult::default().with_user(StrBytes::from(name.to_string()));
            let refuse = |e: ResponseError, message: String| {
                result
                    .clone()
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            };
            if count > 1 {
                return refuse(
                    ResponseError::DuplicateResource,
                    format!("Cannot describe SCRAM credentials for the same user twice in a single request: {name}"),
                );
            }
            match users.get(name) {
                None => refuse(
                    ResponseError::ResourceNotFound,
                    format!("Attempt to describe a user credential that does not exist: {name}"),
                ),
                Some(credentials) => result.with_credential_infos(
                    credentials
                        .iter()
                        .map(|(m, c)| {
                            CredentialInfo::default()
                                .with_mechanism(m.kafka_type())
                                .with_iterations(c.iterations as i32)
                        })
                        .collect(),
                ),
            }
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn alter(
    broker: &Arc<Broker>,
    _ctx: &RequestContext,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let (mut outcomes, changes) = decide(&request, &broker.credentials.users());
    let accepted: BTreeSet<String> = changes.iter().map(|c| change_user(c).to_string()).collect();
    let written = match &broker.cluster {
        // The controller's log keeps them; answered once this node has applied the change.
        Some(cluster) => cluster.security.alter_credentials(&changes).await,
        None => {
            let store = Arc::clone(&broker.credentials);
            broker
                .off_runtime(move || store.alter(&changes))
                .await
                .map_err(|e| {
                    warn!(error = %e, "writing SCRAM credentials failed");
                    (
                        ResponseError::KafkaStorageError,
                        "the credentials could not be written".to_string(),
                    )
                })
        }
    };
    if let Err(refusal) = written {
        for user in accepted {
            outcomes.insert(user, Some(refusal.clone()));
        }
    }
    let results = outcomes
        .into_iter()
        .map(|(user, outcome)| {
            let result =
                AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(user));
            match outcome {
                None => result,
                Some((e, message)) => result
                    .with_error_code(e.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn change_user(change: &CredentialChange) -> &str {
    match change {
        CredentialChange::Upsert { user, .. } | CredentialChange::Delete { user, .. } => user,
    }
}

/// Each user's outcome (`None`: accepted) and the changes to write. Pure.
pub fn decide(
    request: &AlterUserScramCredentialsRequest,
    users: &Users,
) -> (BTreeMap<String, Option<Refusal>>, Vec<CredentialChange>) {
    let mut per_user: BTreeMap<String, Result<Vec<CredentialChange>, Refusal>> = BTreeMap::new();
    let mut touched = BTreeSet::new();
    let deletions = request
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism, None));
    let upsertions = request
        .upsertions
        .iter()
        .map(|u| (u.name.to_string(), u.mechanism, Some(u)));
    for (user, mechanism, upsert) in deletions.chain(upsertions) {
        let entry = per_user
            .entry(user.clone())
            .or_insert_with(|| Ok(Vec::new()));
        let Ok(changes) = entry else { continue };
        let change = check(&user, mechanism, upsert, users).and_then(|change| {
            if touched.insert((user.clone(), mechanism)) {
                Ok(change)
            } else {
                Err((
                    ResponseError::DuplicateResource,
                    format!(
                        "A user credential cannot be altered twice in the same request: {user}"
                    ),
                ))
            }
        });
        match change {
            Ok(change) => changes.push(change),
            Err(refusal) => *entry = Err(refusal),
        }
    }
    let mut outcomes = BTreeMap::new();
    let mut accepted = Vec::new();
    for (user, result) in per_user {
        match result {
            Ok(changes) => {
                accepted.extend(changes);
                outcomes.insert(user, None);
            }
            Err(refusal) => {
                outcomes.insert(user, Some(refusal));
            }
        }
    }
    (outcomes, accepted)
}

fn check(
    user: &str,
    mechanism: i8,
    upsert: Option<
        &kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion,
    >,
    users: &Users,
) -> Result<CredentialChange, Refusal> {
    let unacceptable = |m: &str| Err((ResponseError::UnacceptableCredential, m.to_string()));
    if user.is_empty() {
        return unacceptable("Username must not be empty");
    }
    let Some(m) = ScramMechanism::from_kafka_type(mechanism) else {
        return Err((
            ResponseError::UnsupportedSaslMechanism,
            format!("Unknown SCRAM mechanism {mechanism}"),
        ));
    };
    let Some(u) = upsert else {
        if users.get(user).is_none_or(|c| !c.contains_key(&m)) {
            return Err((
                ResponseError::ResourceNotFound,
                format!(
                    "Attempt to delete a user credential that does not exist: {user} ({})",
                    m.name()
                ),
            ));
        }
        return Ok(CredentialChange::Delete {
            user: user.to_string(),
            mechanism: m,
        });
    };
    let iterations = u.iterations;
    if iterations < MIN_ITERATIONS as i32 {
        return unacceptable("Too few iterations");
    }
    if iterations > MAX_ITERATIONS as i32 {
        return unacceptable("Too many iterations");
    }
    if u.salt.is_empty() {
        return unacceptable("The salt must not be empty");
    }
    if u.salted_password.len() != m.key_len() {
        return unacceptable("The salted password has the wrong length for its mechanism");
    }
    Ok(CredentialChange::Upsert {
        user: user.to_string(),
        mechanism: m,
        credential: ScramCredential::from_salted_password(
            m,
            &u.salt,
            &u.salted_password,
            iterations as u32,
        ),
    })
}

#[cfg(test)]
#[path = "scram_credentials_tests.rs"]
mod tests;
