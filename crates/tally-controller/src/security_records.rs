//! Who may log in and what they may do, replicated: every user's SCRAM credentials and the
//! ACLs, so a user created or an ACL added through any node holds on every node, and survives
//! any node's loss, as KRaft keeps `UserScramCredentialRecord` and `AccessControlEntryRecord`
//! in its metadata log.
//!
//! The controller keeps them without reading them: a credential is the broker's record of it
//! (salt and keys in base64, iterations), an ACL its binding as the broker's JSON. The
//! broker decides what a change is; the controller orders the changes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One SCRAM credential: never a password. The same fields as a broker's
/// `scram-credentials.json` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramRecord {
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    pub salt: String,
    pub stored_key: String,
    pub server_key: String,
    pub iterations: u32,
}

/// A user's credentials, by mechanism name.
pub type UserScram = BTreeMap<String, ScramRecord>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityRecords {
    scram: BTreeMap<String, UserScram>,
    acls: BTreeSet<String>,
}

impl SecurityRecords {
    pub fn scram(&self) -> &BTreeMap<String, UserScram> {
        &self.scram
    }

    pub fn acls(&self) -> &BTreeSet<String> {
        &self.acls
    }

    /// Deletions then upsertions, as one change. `only_new_users`: a user who already has a
    /// credential is left as it is (bootstrap users, proposed by every node at start).
    /// Returns how many users the change touched.
    pub fn alter_scram(
        &mut self,
        upsertions: &[(String, ScramRecord)],
        deletions: &[(String, String)],
        only_new_users: bool,
    ) -> usize {
        let mut touched = BTreeSet::new();
        for (user, mechanism) in deletions {
            if let Some(credentials) = self.scram.get_mut(user) {
                if credentials.remove(mechanism).is_some() {
                    touched.insert(user.clone());
                }
                if credentials.is_empty() {
                    self.scram.remove(user);
                }
            }
        }
        let existing: BTreeSet<String> = self.scram.keys().cloned().collect();
        for (user, record) in upsertions {
            if only_new_users && existing.contains(user) {
                continue;
            }
            self.scram
                .entry(user.clone())
                .or_default()
                .insert(record.mechanism.clone(), record.clone());
            touched.insert(user.clone());
        }
        touched.len()
    }

    /// Adds the ACLs not there yet; how many were new.
    pub fn create_acls(&mut self, acls: &[String]) -> usize {
        acls.iter()
            .filter(|a| self.acls.insert((*a).clone()))
            .count()
    }

    /// Removes the ACLs that are there; how many were.
    pub fn delete_acls(&mut self, acls: &[String]) -> usize {
        acls.iter().filter(|a| self.acls.remove(*a)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mechanism: &str, salt: &str) -> ScramRecord {
        ScramRecord {
            mechanism: mechanism.into(),
            salt: salt.into(),
            stored_key: "k".into(),
            server_key: "s".into(),
            iterations: 4096,
        }
    }

    #[test]
    fn bootstrap_users_do_not_replace_existing_ones() {
        let mut s = SecurityRecords::default();
        let alice = ("alice".to_string(), record("SCRAM-SHA-256", "first"));
        assert_eq!(s.alter_scram(&[alice], &[], true), 1);
        let again = ("alice".to_string(), record("SCRAM-SHA-256", "second"));
        assert_eq!(s.alter_scram(std::slice::from_ref(&again), &[], true), 0);
        assert_eq!(s.scram()["alice"]["SCRAM-SHA-256"].salt, "first");
        // An explicit change does replace it.
        assert_eq!(s.alter_scram(&[again], &[], false), 1);
        assert_eq!(s.scram()["alice"]["SCRAM-SHA-256"].salt, "second");
        // Deleting the last mechanism removes the user.
        let gone = [("alice".to_string(), "SCRAM-SHA-256".to_string())];
        assert_eq!(s.alter_scram(&[], &gone, false), 1);
        assert!(s.scram().is_empty());
    }

    #[test]
    fn acls_are_a_set() {
        let mut s = SecurityRecords::default();
        assert_eq!(s.create_acls(&["a".into(), "b".into(), "a".into()]), 2);
        assert_eq!(s.delete_acls(&["a".into(), "c".into()]), 1);
        assert_eq!(s.acls().iter().collect::<Vec<_>>(), ["b"]);
    }
}
