//! ACLs with Kafka's semantics (`StandardAuthorizer`): bindings of a resource pattern
//! (LITERAL or PREFIXED, `*` for every name) to a principal, a host, an operation and ALLOW or
//! DENY; the filters of DescribeAcls and DeleteAcls; and the decision, a pure function.
//!
//! The decision, as Kafka's: a super user may do anything; a DENY that matches beats any
//! ALLOW; ALLOW of Read, Write, Delete or Alter implies Describe, and AlterConfigs implies
//! DescribeConfigs; a resource no ACL names at all is open when
//! `allow.everyone.if.no.acl.found` is true, else closed.

use serde::{Deserialize, Serialize};

/// Kafka's codes (`ResourceType`, `PatternType`, `AclOperation`, `AclPermissionType`).
pub mod code {
    pub const ANY: i8 = 1;
    pub const MATCH: i8 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    Literal = 3,
    Prefixed = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    Deny = 2,
    Allow = 3,
}

pub const CLUSTER_NAME: &str = "kafka-cluster";
pub const WILDCARD: &str = "*";

impl ResourceType {
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Topic,
        ResourceType::Group,
        ResourceType::Cluster,
        ResourceType::TransactionalId,
    ];
    pub fn from_code(c: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as i8 == c)
    }
    pub fn name(self) -> &'static str {
        match self {
            ResourceType::Topic => "Topic",
            ResourceType::Group => "Group",
            ResourceType::Cluster => "Cluster",
            ResourceType::TransactionalId => "TransactionalId",
        }
    }
}

impl PatternType {
    pub fn from_code(c: i8) -> Option<Self> {
        [PatternType::Literal, PatternType::Prefixed]
            .into_iter()
            .find(|p| *p as i8 == c)
    }
}

impl Operation {
    pub const ALL_OPS: [Operation; 11] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
    ];
    pub fn from_code(c: i8) -> Option<Self> {
        Self::ALL_OPS.into_iter().find(|o| *o as i8 == c)
    }
    /// Kafka's name, as `kafka-acls.sh` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Operation::All => "All",
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Create => "Create",
            Operation::Delete => "Delete",
            Operation::Alter => "Alter",
            Operation::Describe => "Describe",
            Operation::ClusterAction => "ClusterAction",
            Operation::DescribeConfigs => "DescribeConfigs",
            Operation::AlterConfigs => "AlterConfigs",
            Operation::IdempotentWrite => "IdempotentWrite",
        }
    }
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL_OPS
            .into_iter()
            .find(|o| o.name().eq_ignore_ascii_case(name))
    }
}

impl Permission {
    pub fn from_code(c: i8) -> Option<Self> {
        [Permission::Deny, Permission::Allow]
            .into_iter()
            .find(|p| *p as i8 == c)
    }
}

/// One ACL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// "User:NAME", or "User:*" for every principal.
    pub principal: String,
    /// A client address, or "*".
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Whether this ACL's pattern covers `name` of `resource_type`.
    fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }

    fn applies_to(&self, principal: &str, host: &str) -> bool {
        (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == WILDCARD)
    }
}

/// A DescribeAcls or DeleteAcls filter: `None` fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    /// `None`: ANY. `Some(None)`: MATCH (every pattern that covers the name). `Some(Some(p))`:
    /// exactly that pattern type.
    pub pattern_type: Option<Option<PatternType>>,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, acl: &AclBinding) -> bool {
        let name_ok = match (&self.pattern_type, &self.resource_name) {
            (Some(None), Some(name)) => acl.covers(acl.resource_type, name),
            (_, Some(name)) => &acl.resource_name == name,
            (_, None) => true,
        };
        let pattern_ok = match self.pattern_type {
            Some(Some(p)) => acl.pattern_type == p,
            _ => true,
        };
        self.resource_type.is_none_or(|t| t == acl.resource_type)
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| p == &acl.principal)
            && self.host.as_ref().is_none_or(|h| h == &acl.host)
            && self.operation.is_none_or(|o| o == acl.operation)
            && self.permission.is_none_or(|p| p == acl.permission)
    }
}

/// Who asks, from where.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// The authorizer's settings.
#[derive(Debug, Clone, Default)]
pub struct AuthorizerSettings {
    pub super_users: Vec<String>,
    pub allow_everyone_if_no_acl_found: bool,
}

/// Operations an ALLOW of `granted` also permits.
fn allow_implies(granted: Operation, wanted: Operation) -> bool {
    granted == wanted
        || granted == Operation::All
        || (wanted == Operation::Describe
            && matches!(
                granted,
                Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
            ))
        || (wanted == Operation::DescribeConfigs && granted == Operation::AlterConfigs)
}

/// May `who` do `operation` on `name` of `resource_type`?
pub fn authorize(
    acls: &[AclBinding],
    settings: &AuthorizerSettings,
    who: Requester<'_>,
    operation: Operation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if settings.super_users.iter().any(|s| s == who.principal) {
        return true;
    }
    let mut any = false;
    let mut allowed = false;
    for acl in acls.iter().filter(|a| a.covers(resource_type, name)) {
        any = true;
        if !acl.applies_to(who.principal, who.host) {
            continue;
        }
        match acl.permission {
            Permission::Deny if acl.operation == operation || acl.operation == Operation::All => {
                return false
            }
            Permission::Allow if allow_implies(acl.operation, operation) => allowed = true,
            _ => {}
        }
    }
    allowed || (!any && settings.allow_everyone_if_no_acl_found)
}

/// KIP-679: may `who` do `operation` on at least one resource of `resource_type`? True when
/// an ALLOW applies that no DENY of the same pattern (or of every name) cancels.
pub fn authorize_any(
    acls: &[AclBinding],
    settings: &AuthorizerSettings,
    who: Requester<'_>,
    operation: Operation,
    resource_type: ResourceType,
) -> bool {
    if settings.super_users.iter().any(|s| s == who.principal) {
        return true;
    }
    let applies = |a: &&AclBinding| {
        a.resource_type == resource_type
            && a.applies_to(who.principal, who.host)
            && (a.operation == operation || a.operation == Operation::All)
    };
    let denies: Vec<&AclBinding> = acls
        .iter()
        .filter(applies)
        .filter(|a| a.permission == Permission::Deny)
        .collect();
    let denied_everywhere = denies
        .iter()
        .any(|d| d.pattern_type == PatternType::Literal && d.resource_name == WILDCARD);
    !denied_everywhere
        && acls
            .iter()
            .filter(applies)
            .filter(|a| a.permission == Permission::Allow)
            .any(|a| {
                !denies.iter().any(|d| {
                    d.pattern_type == a.pattern_type && d.resource_name == a.resource_name
                        || (d.pattern_type == PatternType::Prefixed
                            && a.resource_name.starts_with(&d.resource_name))
                })
            })
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
