//! Credentials and ACLs in cluster mode: the controller's log keeps them (tally-controller's
//! `SecurityRecords`), and every node's `CredentialStore` and `AclStore` follow what its
//! replica of that log has applied. A change (AlterUserScramCredentials, CreateAcls,
//! DeleteAcls, a node's `sasl.bootstrap.users`) is a command to the controller; the node that
//! took the request answers once its own replica has applied it, so the client's next request
//! to that node sees the change, and any other node sees it once its replica catches up.
//!
//! `acls.json` and `scram-credentials.json` are not read in cluster mode.

use std::sync::Arc;

use parking_lot::Mutex;
use tally_controller::{ClusterNode, ControllerCommand, Outcome, SecurityRecords};
use tally_protocol::ResponseError;
use tracing::{info, warn};

use super::CONTROLLER_TIMEOUT;
use crate::security::acl::{AclBinding, AclFilter};
use crate::security::credential_store::{to_record, users_from_records};
use crate::security::{AclStore, CredentialChange, CredentialStore};

type Refusal = (ResponseError, String);

pub struct SecuritySync {
    node: Arc<ClusterNode>,
    credentials: Arc<CredentialStore>,
    acls: Arc<AclStore>,
    /// What the stores were last given. Held while they are replaced, so that two syncs
    /// never leave an older view after a newer one.
    seen: Mutex<Option<SecurityRecords>>,
}

impl SecuritySync {
    pub fn new(
        node: Arc<ClusterNode>,
        credentials: Arc<CredentialStore>,
        acls: Arc<AclStore>,
    ) -> Arc<SecuritySync> {
        let sync = Arc::new(SecuritySync {
            node,
            credentials,
            acls,
            seen: Mutex::new(None),
        });
        sync.sync();
        sync
    }

    /// Gives the stores what this node's replica of the controller has applied, if it
    /// changed since the last time. No I/O: memory only.
    pub fn sync(&self) {
        let mut seen = self.seen.lock();
        let current = self
            .node
            .controller()
            .read(|state| state.security().clone());
        if seen.as_ref() == Some(&current) {
            return;
        }
        self.credentials
            .replace_all(users_from_records(current.scram()));
        let mut acls = Vec::with_capacity(current.acls().len());
        for text in current.acls() {
            match serde_json::from_str::<AclBinding>(text) {
                Ok(acl) => acls.push(acl),
                Err(e) => {
                    warn!(acl = %text, error = %e, "skipping an ACL this version cannot read")
                }
            }
        }
        self.acls.replace_all(acls);
        *seen = Some(current);
    }

    /// Follows the controller's log until it closes or the broker lets go of this sync (the
    /// task holds it weakly, so it does not keep a stopped node alive).
    pub fn follow(self: &Arc<Self>) {
        let sync = Arc::downgrade(self);
        let mut changes = self.node.controller().changes();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(sync) = sync.upgrade() else { return };
                sync.sync();
            }
        });
    }

    /// Proposes `changes` to the controller; answers once this node has applied them.
    pub async fn alter_credentials(&self, changes: &[CredentialChange]) -> Result<(), Refusal> {
        if changes.is_empty() {
            return Ok(());
        }
        self.submit(alter_command(changes, false)).await.map(|_| ())
    }

    /// Proposes a node's `sasl.bootstrap.users` (users who already have a credential keep
    /// it), trying again until the controller takes it or the node stops.
    pub fn bootstrap(self: &Arc<Self>, changes: Vec<CredentialChange>) {
        if changes.is_empty() {
            return;
        }
        let sync = Arc::clone(self);
        let command = alter_command(&changes, true);
        tokio::spawn(async move {
            loop {
                match sync.submit(command.clone()).await {
                    Ok(created) => {
                        return info!(
                            users = created,
                            "sasl.bootstrap.users given to the controller"
                        )
                    }
                    Err((_, e)) => {
                        warn!(error = %e, "sasl.bootstrap.users: the controller did not take them yet");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<(), Refusal> {
        if acls.is_empty() {
            return Ok(());
        }
        let acls = acls.iter().map(encode_acl).collect();
        self.submit(ControllerCommand::CreateAcls { acls })
            .await
            .map(|_| ())
    }

    /// Removes what each filter matches in this node's view; what each filter removed.
    pub async fn delete_acls(
        &self,
        filters: &[AclFilter],
    ) -> Result<Vec<Vec<AclBinding>>, Refusal> {
        let current = self.acls.acls();
        let removed: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| current.iter().filter(|a| f.matches(a)).cloned().collect())
            .collect();
        let acls: Vec<String> = removed.iter().flatten().map(encode_acl).collect();
        if !acls.is_empty() {
            self.submit(ControllerCommand::DeleteAcls { acls }).await?;
        }
        Ok(removed)
    }

    /// Proposes `command`, waits until this node's replica has applied it, and syncs the
    /// stores: how many users or ACLs it touched.
    async fn submit(&self, command: ControllerCommand) -> Result<usize, Refusal> {
        let timed_out = |e: String| (ResponseError::RequestTimedOut, e);
        let (offset, count) = match self.node.submit(&command, CONTROLLER_TIMEOUT).await {
            Ok(Outcome::SecurityChanged { offset, count }) => (offset, count),
            Ok(Outcome::Refused(r)) => return Err((r.error_code(), r.to_string())),
            Ok(other) => return Err(timed_out(format!("unexpected outcome {other:?}"))),
            Err(e) => return Err(timed_out(e.to_string())),
        };
        let mut applied = self.node.controller().changes();
        let caught_up =
            tokio::time::timeout(CONTROLLER_TIMEOUT, applied.wait_for(|end| *end > offset));
        match caught_up.await {
            Ok(Ok(_)) => {}
            _ => {
                return Err(timed_out(format!(
                    "the change at offset {offset} of the metadata log is not applied here yet"
                )))
            }
        }
        self.sync();
        Ok(count)
    }
}

fn encode_acl(acl: &AclBinding) -> String {
    serde_json::to_string(acl).expect("an ACL serializes")
}

fn alter_command(changes: &[CredentialChange], only_new_users: bool) -> ControllerCommand {
    let mut upsertions = Vec::new();
    let mut deletions = Vec::new();
    for change in changes {
        match change {
            CredentialChange::Upsert {
                user,
                mechanism,
                credential,
            } => upsertions.push((user.clone(), to_record(*mechanism, credential))),
            CredentialChange::Delete { user, mechanism } => {
                deletions.push((user.clone(), mechanism.name().to_string()))
            }
        }
    }
    ControllerCommand::AlterScramCredentials {
        upsertions,
        deletions,
        only_new_users,
    }
}
