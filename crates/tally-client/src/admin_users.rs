//! SCRAM users on the admin client, as `kafka-configs.sh --alter --add-config
//! 'SCRAM-SHA-512=[password=…]' --entity-type users` offers them (KIP-554): the salt and the
//! salted password are computed here, so the password itself never crosses the network.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::StrBytes;
use rand::RngCore;
use tally_protocol::scram::ScramMechanism;

use crate::admin::Admin;
use crate::error::ClientError;

/// A user with SCRAM credentials: (mechanism, iterations) of each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramUser {
    pub user: String,
    pub credentials: Vec<(String, i32)>,
}

fn mechanism(name: &str) -> Result<ScramMechanism, ClientError> {
    ScramMechanism::from_name(&name.to_ascii_uppercase()).ok_or_else(|| {
        ClientError::Config(format!(
            "SCRAM mechanism {name}: expected SCRAM-SHA-256 or SCRAM-SHA-512"
        ))
    })
}

impl Admin {
    /// Users and their SCRAM credentials: all of them, or the ones named (an unknown name
    /// is RESOURCE_NOT_FOUND).
    pub async fn describe_scram_users(
        &self,
        users: &[String],
    ) -> Result<Vec<ScramUser>, ClientError> {
        let connection = self.cluster().any_connection().await?;
        let version = connection.version(ApiKey::DescribeUserScramCredentials, 0, 0)?;
        let names = (!users.is_empty()).then(|| {
            users
                .iter()
                .map(|u| UserName::default().with_name(StrBytes::from_string(u.clone())))
                .collect()
        });
        let request = DescribeUserScramCredentialsRequest::default().with_users(names);
        let r = connection
            .send(&request, version, self.cluster().config().request_timeout())
            .await?;
        if r.error_code != 0 {
            return Err(ClientError::broker(
                r.error_code,
                r.error_message.as_deref(),
            ));
        }
        r.results
            .into_iter()
            .map(|u| {
                if u.error_code != 0 {
                    return Err(ClientError::broker(
                        u.error_code,
                        u.error_message.as_deref(),
                    ));
                }
                let credentials = u
                    .credential_infos
                    .iter()
                    .map(|c| {
                        let name = ScramMechanism::from_kafka_type(c.mechanism).map_or_else(
                            || format!("mechanism {}", c.mechanism),
                            |m| m.name().into(),
                        );
                        (name, c.iterations)
                    })
                    .collect();
                Ok(ScramUser {
                    user: u.user.to_string(),
                    credentials,
                })
            })
            .collect()
    }

    /// Creates or replaces `user`'s credential for `mechanism_name` (SCRAM-SHA-256 or
    /// SCRAM-SHA-512) with a fresh random salt.
    pub async fn upsert_scram_credential(
        &self,
        user: &str,
        mechanism_name: &str,
        password: &str,
        iterations: u32,
    ) -> Result<(), ClientError> {
        let m = mechanism(mechanism_name)?;
        let mut salt = vec![0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        // PBKDF2 with thousands of rounds: off the async workers.
        let (password, salt_for_key) = (password.as_bytes().to_vec(), salt.clone());
        let salted = tokio::task::spawn_blocking(move || {
            m.salted_password(&password, &salt_for_key, iterations)
        })
        .await
        .map_err(|e| ClientError::Protocol(format!("deriving the salted password: {e}")))?;
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(m.kafka_type())
            .with_iterations(iterations as i32)
            .with_salt(Bytes::from(salt))
            .with_salted_password(Bytes::from(salted));
        self.alter_scram(
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]),
        )
        .await
    }

    /// Deletes `user`'s credential for `mechanism_name`.
    pub async fn delete_scram_credential(
        &self,
        user: &str,
        mechanism_name: &str,
    ) -> Result<(), ClientError> {
        let deletion = ScramCredentialDeletion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism(mechanism_name)?.kafka_type());
        self.alter_scram(AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]))
            .await
    }

    async fn alter_scram(
        &self,
        request: AlterUserScramCredentialsRequest,
    ) -> Result<(), ClientError> {
        let connection = self.cluster().any_connection().await?;
        let version = connection.version(ApiKey::AlterUserScramCredentials, 0, 0)?;
        let r = connection
            .send(&request, version, self.cluster().config().request_timeout())
            .await?;
        for result in r.results {
            if result.error_code != 0 {
                return Err(ClientError::broker(
                    result.error_code,
                    result.error_message.as_deref(),
                ));
            }
        }
        Ok(())
    }
}
