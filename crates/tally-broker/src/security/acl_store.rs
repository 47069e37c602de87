//! The ACLs, in one file of the data directory (`acls.json`), changed only by writing the
//! whole file durably before the change is visible or acknowledged; and the authorizer that
//! reads them. The authorizer is on when `authorizer.class.name` is set to anything, as in
//! Kafka; off, everyone may do everything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use super::acl::{
    authorize, authorize_any, AclBinding, AclFilter, AuthorizerSettings, Operation, Requester,
    ResourceType,
};
use super::durable_file::write_durably;
use super::CredentialError;

pub const FILE_NAME: &str = "acls.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct FileForm {
    version: u32,
    acls: Vec<AclBinding>,
}

#[derive(Debug)]
pub struct AclStore {
    path: PathBuf,
    acls: RwLock<Arc<Vec<AclBinding>>>,
    write: Mutex<()>,
    settings: AuthorizerSettings,
    enabled: bool,
}

impl AclStore {
    /// Reads the file (none yet: no ACL). Blocking file I/O.
    pub fn open(
        log_dir: &Path,
        enabled: bool,
        settings: AuthorizerSettings,
    ) -> Result<AclStore, CredentialError> {
        let path = log_dir.join(FILE_NAME);
        let acls = match std::fs::read(&path) {
            Ok(bytes) => {
                let form: FileForm =
                    serde_json::from_slice(&bytes).map_err(|e| CredentialError::Corrupt {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if form.version != FORMAT_VERSION {
                    return Err(CredentialError::Corrupt {
                        path: path.display().to_string(),
                        reason: format!("format version {} (this Tally reads 1)", form.version),
                    });
                }
                form.acls
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(CredentialError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Ok(AclStore {
            path,
            acls: RwLock::new(Arc::new(acls)),
            write: Mutex::new(()),
            settings,
            enabled,
        })
    }

    pub fn is_super_user(&self, principal: &str) -> bool {
        self.settings.super_users.iter().any(|s| s == principal)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn acls(&self) -> Arc<Vec<AclBinding>> {
        Arc::clone(&self.acls.read())
    }

    /// May `principal` at `host` do `operation` on the resource? Always, with no authorizer.
    pub fn allows(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        !self.enabled || {
            let who = Requester { principal, host };
            authorize(
                &self.acls.read(),
                &self.settings,
                who,
                operation,
                resource_type,
                name,
            )
        }
    }

    /// KIP-679's check: `operation` on at least one resource of the type.
    pub fn allows_any(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        !self.enabled || {
            let who = Requester { principal, host };
            authorize_any(
                &self.acls.read(),
                &self.settings,
                who,
                operation,
                resource_type,
            )
        }
    }

    /// Adds ACLs (one already there is not added twice), durably. Blocking file I/O.
    pub fn create(&self, new: &[AclBinding]) -> std::io::Result<()> {
        let _writer = self.write.lock();
        let mut acls = Vec::clone(&self.acls.read());
        for acl in new {
            if !acls.contains(acl) {
                acls.push(acl.clone());
            }
        }
        self.replace(acls)
    }

    /// Removes the ACLs each filter matches, durably; what each filter removed. Blocking.
    pub fn delete(&self, filters: &[AclFilter]) -> std::io::Result<Vec<Vec<AclBinding>>> {
        let _writer = self.write.lock();
        let mut acls = Vec::clone(&self.acls.read());
        let removed: Vec<Vec<AclBinding>> = filters
            .iter()
            .map(|f| acls.iter().filter(|a| f.matches(a)).cloned().collect())
            .collect();
        acls.retain(|a| !filters.iter().any(|f| f.matches(a)));
        self.replace(acls)?;
        Ok(removed)
    }

    /// Replaces every ACL, in memory only: cluster mode, where the controller's log keeps
    /// them.
    pub fn replace_all(&self, acls: Vec<AclBinding>) {
        *self.acls.write() = Arc::new(acls);
    }

    fn replace(&self, acls: Vec<AclBinding>) -> std::io::Result<()> {
        let form = FileForm {
            version: FORMAT_VERSION,
            acls,
        };
        let mut bytes = serde_json::to_vec_pretty(&form).expect("ACLs serialize");
        bytes.push(b'\n');
        write_durably(&self.path, &bytes, || {
            *self.acls.write() = Arc::new(form.acls);
        })
    }
}
