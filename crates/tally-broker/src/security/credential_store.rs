//! The SCRAM credentials of every user (salt, StoredKey, ServerKey, iterations: never a
//! password), in one file of the data directory, `scram-credentials.json`.
//!
//! A change is written whole to a temporary file, fsynced and renamed over the old one before
//! it is visible or acknowledged: what was acknowledged survives a SIGKILL or a power cut, and
//! the memory never says more than the file. Readers (every authentication) take the current
//! map without waiting for a write in progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tally_controller::ScramRecord;
use tally_protocol::scram::{ScramCredential, ScramMechanism, MIN_ITERATIONS};
use thiserror::Error;

pub const FILE_NAME: &str = "scram-credentials.json";
const FORMAT_VERSION: u32 = 1;

/// One user's credentials, by mechanism.
pub type UserCredentials = BTreeMap<ScramMechanism, ScramCredential>;
pub type Users = BTreeMap<String, UserCredentials>;

#[derive(Debug, Error)]
pub enum CredentialError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a credentials file Tally can read: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("sasl.bootstrap.users: {0}")]
    Bootstrap(String),
}

/// One accepted change of an AlterUserScramCredentials request.
#[derive(Debug, Clone)]
pub enum CredentialChange {
    Upsert {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

#[derive(Debug)]
pub struct CredentialStore {
    path: PathBuf,
    users: RwLock<Arc<Users>>,
    /// Serializes writers: each writes the whole file, from the map the last one left.
    write: Mutex<()>,
    /// This process's secret for decoy credentials (see `credential_or_decoy`).
    decoy_secret: Vec<u8>,
}

impl CredentialStore {
    /// Reads the file (none yet is no user). Blocking file I/O.
    pub fn open(log_dir: &Path) -> Result<CredentialStore, CredentialError> {
        let path = log_dir.join(FILE_NAME);
        let users = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| CredentialError::Corrupt {
                path: path.display().to_string(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Users::new(),
            Err(source) => {
                return Err(CredentialError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Ok(CredentialStore {
            path,
            users: RwLock::new(Arc::new(users)),
            write: Mutex::new(()),
            decoy_secret: random_bytes(32),
        })
    }

    pub fn users(&self) -> Arc<Users> {
        Arc::clone(&self.users.read())
    }

    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
        self.users.read().get(user)?.get(&mechanism).cloned()
    }

    /// The user's credential, or for a user without one a decoy that no password matches:
    /// the same salt at every attempt and the usual iteration count, so an exchange with it
    /// looks like one with a real user, and fails like a wrong password.
    pub fn credential_or_decoy(&self, user: &str, mechanism: ScramMechanism) -> ScramCredential {
        if let Some(c) = self.get(user, mechanism) {
            return c;
        }
        let derive = |label: &str, len: usize| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA512, &self.decoy_secret);
            let tag = ring::hmac::sign(&key, format!("{label}\0{user}").as_bytes());
            tag.as_ref()[..len].to_vec()
        };
        ScramCredential {
            salt: derive("salt", 32),
            stored_key: derive("stored", mechanism.key_len()),
            server_key: derive("server", mechanism.key_len()),
            iterations: MIN_ITERATIONS,
        }
    }

    /// Applies `changes` in order, writes the file durably, then makes them visible. On an
    /// error nothing changes, in the file or in memory. Blocking file I/O.
    pub fn alter(&self, changes: &[CredentialChange]) -> Result<(), CredentialError> {
        if changes.is_empty() {
            return Ok(());
        }
        let _writer = self.write.lock();
        let mut users = Users::clone(&self.users.read());
        for change in changes {
            match change {
                CredentialChange::Upsert {
                    user,
                    mechanism,
                    credential,
                } => {
                    users
                        .entry(user.clone())
                        .or_default()
                        .insert(*mechanism, credential.clone());
                }
                CredentialChange::Delete { user, mechanism } => {
                    if let Some(credentials) = users.get_mut(user) {
                        credentials.remove(mechanism);
                        if credentials.is_empty() {
                            users.remove(user);
                        }
                    }
                }
            }
        }
        let bytes = encode(&users);
        super::durable_file::write_durably(&self.path, &bytes, || {
            *self.users.write() = Arc::new(users);
        })
        .map_err(|source| CredentialError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// Creates SCRAM-SHA-256 and SCRAM-SHA-512 credentials for each `(user, password)` that
    /// has no credential yet (a user someone has since changed keeps its credentials).
    /// Blocking: file I/O and PBKDF2.
    pub fn bootstrap(&self, users: &[(String, String)]) -> Result<usize, CredentialError> {
        let known = self.users();
        let new: Vec<(String, String)> = users
            .iter()
            .filter(|(user, _)| !known.contains_key(user))
            .cloned()
            .collect();
        let changes = bootstrap_changes(&new);
        self.alter(&changes)?;
        Ok(changes.len() / ScramMechanism::ALL.len())
    }

    /// Replaces every credential with `users`, in memory only: cluster mode, where the
    /// controller's log keeps them.
    pub fn replace_all(&self, users: Users) {
        *self.users.write() = Arc::new(users);
    }
}

/// SCRAM-SHA-256 and SCRAM-SHA-512 credentials for each `(user, password)`, each with its own
/// salt and 4096 iterations. Blocking: PBKDF2.
pub fn bootstrap_changes(users: &[(String, String)]) -> Vec<CredentialChange> {
    let mut changes = Vec::new();
    for (user, password) in users {
        for mechanism in ScramMechanism::ALL {
            let salt = random_bytes(32);
            let credential = ScramCredential::from_password(
                mechanism,
                password.as_bytes(),
                &salt,
                MIN_ITERATIONS,
            );
            changes.push(CredentialChange::Upsert {
                user: user.clone(),
                mechanism,
                credential,
            });
        }
    }
    changes
}

/// `NAME:PASSWORD` entries, from `sasl.bootstrap.users` (comma-separated) and the lines of
/// `sasl.bootstrap.users.file` (a password may hold ',' there; '#' starts a comment line).
pub fn parse_bootstrap_users(
    list: &str,
    file_text: Option<&str>,
) -> Result<Vec<(String, String)>, CredentialError> {
    let entries = list
        .split(',')
        .chain(file_text.into_iter().flat_map(str::lines))
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'));
    let mut users = Vec::new();
    for entry in entries {
        let Some((name, password)) = entry.split_once(':') else {
            let name = entry.split(':').next().unwrap_or_default();
            return Err(CredentialError::Bootstrap(format!(
                "expected NAME:PASSWORD, got an entry without ':' ({} characters, starting '{}')",
                entry.len(),
                name.chars().take(3).collect::<String>()
            )));
        };
        if name.is_empty() || password.is_empty() {
            return Err(CredentialError::Bootstrap(
                "a user name and its password cannot be empty".into(),
            ));
        }
        users.push((name.to_string(), password.to_string()));
    }
    Ok(users)
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut out = vec![0u8; len];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("the system's random source failed");
    out
}

#[derive(Serialize, Deserialize)]
struct FileForm {
    version: u32,
    users: BTreeMap<String, Vec<ScramRecord>>,
}

/// A credential as the file and the controller's log hold it.
pub fn to_record(mechanism: ScramMechanism, c: &ScramCredential) -> ScramRecord {
    ScramRecord {
        mechanism: mechanism.name().to_string(),
        salt: BASE64.encode(&c.salt),
        stored_key: BASE64.encode(&c.stored_key),
        server_key: BASE64.encode(&c.server_key),
        iterations: c.iterations,
    }
}

pub fn from_record(
    user: &str,
    r: &ScramRecord,
) -> Result<(ScramMechanism, ScramCredential), String> {
    let mechanism = ScramMechanism::from_name(&r.mechanism)
        .ok_or_else(|| format!("unknown mechanism {}", r.mechanism))?;
    let field = |v: &str| BASE64.decode(v).map_err(|e| format!("{user}: {e}"));
    Ok((
        mechanism,
        ScramCredential {
            salt: field(&r.salt)?,
            stored_key: field(&r.stored_key)?,
            server_key: field(&r.server_key)?,
            iterations: r.iterations,
        },
    ))
}

/// The users of the controller's records (cluster mode); a record this version cannot read
/// is left out, and said.
pub fn users_from_records(records: &BTreeMap<String, tally_controller::UserScram>) -> Users {
    let mut users = Users::new();
    for (user, list) in records {
        for record in list.values() {
            match from_record(user, record) {
                Ok((m, c)) => {
                    users.entry(user.clone()).or_default().insert(m, c);
                }
                Err(e) => tracing::warn!(%user, error = %e, "skipping a SCRAM credential"),
            }
        }
    }
    users
}

fn encode(users: &Users) -> Vec<u8> {
    let form = FileForm {
        version: FORMAT_VERSION,
        users: users
            .iter()
            .map(|(user, credentials)| {
                let list = credentials.iter().map(|(m, c)| to_record(*m, c)).collect();
                (user.clone(), list)
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec_pretty(&form).expect("credentials serialize");
    bytes.push(b'\n');
    bytes
}

fn decode(bytes: &[u8]) -> Result<Users, String> {
    let form: FileForm = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if form.version != FORMAT_VERSION {
        return Err(format!(
            "format version {} (this Tally reads 1)",
            form.version
        ));
    }
    let mut users = Users::new();
    for (user, list) in form.users {
        let mut credentials = UserCredentials::new();
        for record in &list {
            let (mechanism, credential) = from_record(&user, record)?;
            credentials.insert(mechanism, credential);
        }
        users.insert(user, credentials);
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_survive_a_reopen_and_a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        assert_eq!(
            store
                .bootstrap(&[("alice".into(), "pw".into()), ("bob".into(), "pw2".into())])
                .unwrap(),
            2
        );
        store
            .alter(&[CredentialChange::Delete {
                user: "bob".into(),
                mechanism: ScramMechanism::Sha256,
            }])
            .unwrap();
        let before = store.users();
        let reopened = CredentialStore::open(dir.path()).unwrap();
        assert_eq!(reopened.users(), before);
        let alice = reopened.get("alice", ScramMechanism::Sha512).unwrap();
        assert!(alice.matches_password(ScramMechanism::Sha512, b"pw"));
        assert!(reopened.get("bob", ScramMechanism::Sha256).is_none());
        assert!(reopened.get("bob", ScramMechanism::Sha512).is_some());
        // Bootstrap leaves a known user alone (its password may have been changed since).
        assert_eq!(
            reopened
                .bootstrap(&[("alice".into(), "new".into())])
                .unwrap(),
            0
        );
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("\"pw\""), "no password in the file");

        // The directory goes away: the write fails and memory keeps what the file said.
        let path = dir.path().to_path_buf();
        drop(dir);
        let err = reopened.alter(&[CredentialChange::Delete {
            user: "alice".into(),
            mechanism: ScramMechanism::Sha512,
        }]);
        assert!(err.is_err());
        assert!(!path.exists());
        assert!(reopened.get("alice", ScramMechanism::Sha512).is_some());
    }

    #[test]
    fn a_corrupt_file_stops_the_open_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let err = CredentialStore::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains(FILE_NAME), "{err}");
    }

    #[test]
    fn bootstrap_users_come_from_the_list_and_the_file() {
        let users = parse_bootstrap_users(
            "admin:secret, ops:a:b",
            Some("# comment\nwriter:pass,with,commas\n\n"),
        )
        .unwrap();
        let want = [
            ("admin", "secret"),
            ("ops", "a:b"),
            ("writer", "pass,with,commas"),
        ];
        assert_eq!(
            users,
            want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
        );
        let err = parse_bootstrap_users("admin", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NAME:PASSWORD"), "{err}");
        assert!(parse_bootstrap_users(":x", None).is_err());
        assert!(parse_bootstrap_users("", None).unwrap().is_empty());
    }
}
