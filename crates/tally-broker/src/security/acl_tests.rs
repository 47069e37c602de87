use super::*;

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern_type: PatternType,
    principal: &str,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.to_string(),
        pattern_type,
        principal: principal.to_string(),
        host: WILDCARD.to_string(),
        operation,
        permission,
    }
}

const ALICE: Requester = Requester {
    principal: "User:alice",
    host: "127.0.0.1",
};
const BOB: Requester = Requester {
    principal: "User:bob",
    host: "127.0.0.1",
};

fn closed() -> AuthorizerSettings {
    AuthorizerSettings {
        super_users: vec!["User:admin".into()],
        allow_everyone_if_no_acl_found: false,
    }
}

use Operation::*;
use PatternType::*;
use Permission::*;
use ResourceType::*;

#[test]
fn allow_is_needed_and_deny_beats_allow() {
    let acls = vec![
        acl(Topic, "orders", Literal, "User:alice", Write, Allow),
        acl(Topic, "pay", Prefixed, "User:*", Read, Allow),
        acl(Topic, "payroll", Literal, "User:bob", Read, Deny),
    ];
    let s = closed();
    assert!(authorize(&acls, &s, ALICE, Write, Topic, "orders"));
    assert!(
        !authorize(&acls, &s, ALICE, Read, Topic, "orders"),
        "Write is not Read"
    );
    assert!(!authorize(&acls, &s, BOB, Write, Topic, "orders"));
    assert!(
        authorize(&acls, &s, ALICE, Describe, Topic, "orders"),
        "Write implies Describe"
    );
    assert!(
        authorize(&acls, &s, BOB, Read, Topic, "payments"),
        "prefix, every user"
    );
    assert!(authorize(&acls, &s, ALICE, Read, Topic, "payroll"));
    assert!(
        !authorize(&acls, &s, BOB, Read, Topic, "payroll"),
        "DENY beats ALLOW"
    );
    assert!(
        !authorize(&acls, &s, ALICE, Read, Topic, "other"),
        "no ACL, closed"
    );
    let admin = Requester {
        principal: "User:admin",
        host: "10.0.0.1",
    };
    assert!(
        authorize(&acls, &s, admin, Delete, Topic, "payroll"),
        "super user"
    );
    let open = AuthorizerSettings {
        allow_everyone_if_no_acl_found: true,
        ..closed()
    };
    assert!(
        authorize(&acls, &open, BOB, Read, Topic, "other"),
        "no ACL, open"
    );
    assert!(
        !authorize(&acls, &open, BOB, Write, Topic, "orders"),
        "an ACL exists"
    );
}

#[test]
fn hosts_wildcards_and_all() {
    let mut from_one_host = acl(Group, "g", Literal, "User:alice", Read, Allow);
    from_one_host.host = "10.1.1.1".into();
    let acls = vec![
        from_one_host,
        acl(Cluster, CLUSTER_NAME, Literal, "User:alice", All, Allow),
        acl(Group, WILDCARD, Literal, "User:bob", All, Allow),
        acl(Group, "secret", Literal, "User:bob", All, Deny),
    ];
    let s = closed();
    assert!(
        !authorize(&acls, &s, ALICE, Read, Group, "g"),
        "another host"
    );
    let there = Requester {
        principal: "User:alice",
        host: "10.1.1.1",
    };
    assert!(authorize(&acls, &s, there, Read, Group, "g"));
    assert!(authorize(&acls, &s, ALICE, Alter, Cluster, CLUSTER_NAME));
    assert!(authorize(&acls, &s, BOB, Read, Group, "anything"));
    assert!(!authorize(&acls, &s, BOB, Read, Group, "secret"));
    assert!(
        !authorize(&acls, &s, BOB, Read, Topic, "anything"),
        "a group ACL is not a topic's"
    );
}

#[test]
fn kip_679_write_on_any_topic_allows_idempotent_writes() {
    let s = closed();
    let acls = vec![acl(Topic, "orders", Literal, "User:alice", Write, Allow)];
    assert!(authorize_any(&acls, &s, ALICE, Write, Topic));
    assert!(!authorize_any(&acls, &s, BOB, Write, Topic));
    let mut denied = acls.clone();
    denied.push(acl(Topic, "orders", Literal, "User:alice", Write, Deny));
    assert!(!authorize_any(&denied, &s, ALICE, Write, Topic));
    let mut everywhere = acls.clone();
    everywhere.push(acl(Topic, WILDCARD, Literal, "User:*", All, Deny));
    assert!(!authorize_any(&everywhere, &s, ALICE, Write, Topic));
}

#[test]
fn filters_match_as_describe_and_delete_do() {
    let a = acl(Topic, "pay", Prefixed, "User:alice", Read, Allow);
    let any = AclFilter::default();
    assert!(any.matches(&a));
    let exact = AclFilter {
        resource_name: Some("pay".into()),
        pattern_type: Some(Some(Prefixed)),
        ..AclFilter::default()
    };
    assert!(exact.matches(&a));
    let literal = AclFilter {
        pattern_type: Some(Some(Literal)),
        ..exact.clone()
    };
    assert!(!literal.matches(&a));
    let matching = AclFilter {
        resource_name: Some("payments".into()),
        pattern_type: Some(None),
        ..AclFilter::default()
    };
    assert!(matching.matches(&a), "MATCH: the prefix covers the name");
    let other_user = AclFilter {
        principal: Some("User:bob".into()),
        ..AclFilter::default()
    };
    assert!(!other_user.matches(&a));
    assert_eq!(
        Operation::from_name("idempotentwrite"),
        Some(IdempotentWrite)
    );
    assert_eq!(Operation::from_code(4), Some(Write));
    assert_eq!(ResourceType::from_code(5), Some(TransactionalId));
}
