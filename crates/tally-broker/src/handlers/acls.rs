//! CreateAcls, DescribeAcls and DeleteAcls (v1-v3). Creating and deleting need Alter on the
//! cluster, describing needs Describe; without an authorizer each answers SECURITY_DISABLED,
//! as Kafka does. Changes are on disk (in cluster mode: applied from the controller's log on
//! this node) before the answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use tally_protocol::ResponseError;
use tracing::warn;

use super::RequestContext;
use crate::broker::Broker;
use crate::security::acl::{
    code, AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME,
};

/// A failed write of `acls.json`, as answered.
fn not_written(e: std::io::Error) -> (ResponseError, String) {
    warn!(error = %e, "writing ACLs failed");
    (
        ResponseError::KafkaStorageError,
        "the ACLs could not be written".to_string(),
    )
}

fn message(text: &str) -> Option<StrBytes> {
    Some(StrBytes::from_string(text.to_string()))
}

/// Whether the request may touch ACLs at all: the error to answer with, if not.
fn gate(
    broker: &Broker,
    ctx: &RequestContext,
    operation: Operation,
) -> Option<(ResponseError, &'static str)> {
    if !broker.acls.enabled() {
        return Some((
            ResponseError::SecurityDisabled,
            "No Authorizer is configured (authorizer.class.name)",
        ));
    }
    let allowed = broker.acls.allows(
        &ctx.principal,
        ctx.host(),
        operation,
        ResourceType::Cluster,
        CLUSTER_NAME,
    );
    (!allowed).then_some((
        ResponseError::ClusterAuthorizationFailed,
        "Cluster authorization failed",
    ))
}

pub async fn create(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: CreateAclsRequest,
) -> CreateAclsResponse {
    if let Some((e, text)) = gate(broker, ctx, Operation::Alter) {
        let results = request
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(e.code())
                    .with_error_message(message(text))
            })
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let checked: Vec<Result<AclBinding, String>> = request
        .creations
        .iter()
        .map(|c| {
            binding(
                c.resource_type,
                c.resource_name.as_str(),
                c.resource_pattern_type,
                c.principal.as_str(),
                c.host.as_str(),
                c.operation,
                c.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclBinding> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let written = match &broker.cluster {
        Some(cluster) => cluster.security.create_acls(&valid).await,
        None => {
            let store = Arc::clone(&broker.acls);
            broker
                .off_runtime(move || store.create(&valid))
                .await
                .map_err(not_written)
        }
    };
    let results = checked
        .into_iter()
        .map(|c| match (c, &written) {
            (Err(reason), _) => AclCreationResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(message(&reason)),
            (Ok(_), Err((e, text))) => AclCreationResult::default()
                .with_error_code(e.code())
                .with_error_message(message(text)),
            (Ok(_), Ok(())) => AclCreationResult::default(),
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    r: DescribeAclsRequest,
) -> DescribeAclsResponse {
    if let Some((e, text)) = gate(broker, ctx, Operation::Describe) {
        return DescribeAclsResponse::default()
            .with_error_code(e.code())
            .with_error_message(message(text));
    }
    let filter = match filter(
        r.resource_type_filter,
        r.resource_name_filter.as_deref(),
        r.pattern_type_filter,
        r.principal_filter.as_deref(),
        r.host_filter.as_deref(),
        r.operation,
        r.permission_type,
    ) {
        Ok(f) => f,
        Err(reason) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(message(&reason))
        }
    };
    DescribeAclsResponse::default().with_resources(grouped(
        broker.acls.acls().iter().filter(|a| filter.matches(a)),
    ))
}

/// ACLs grouped by resource pattern, as DescribeAcls answers.
fn grouped<'a>(acls: impl Iterator<Item = &'a AclBinding>) -> Vec<DescribeAclsResource> {
    let mut by_resource: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for a in acls {
        by_resource
            .entry((a.resource_type, a.resource_name.clone(), a.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(a.principal.clone()))
                    .with_host(StrBytes::from_string(a.host.clone()))
                    .with_operation(a.operation as i8)
                    .with_permission_type(a.permission as i8),
            );
    }
    by_resource
        .into_iter()
        .map(|((t, name, p), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(t as i8)
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(p as i8)
                .with_acls(acls)
        })
        .collect()
}

pub async fn delete(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DeleteAclsRequest,
) -> DeleteAclsResponse {
    if let Some((e, text)) = gate(broker, ctx, Operation::Alter) {
        let results = request
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(e.code())
                    .with_error_message(message(text))
            })
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let checked: Vec<Result<AclFilter, String>> = request
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let valid: Vec<AclFilter> = checked
        .iter()
        .filter_map(|c| c.as_ref().ok().cloned())
        .collect();
    let deleted = match &broker.cluster {
        Some(cluster) => cluster.security.delete_acls(&valid).await,
        None => {
            let store = Arc::clone(&broker.acls);
            broker
                .off_runtime(move || store.delete(&valid))
                .await
                .map_err(not_written)
        }
    };
    let mut removed = match deleted {
        Ok(removed) => removed.into_iter(),
        Err((e, text)) => {
            let results = request
                .filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(e.code())
                        .with_error_message(message(&text))
                })
                .collect();
            return DeleteAclsResponse::default().with_filter_results(results);
        }
    };
    let results = checked
        .into_iter()
        .map(|c| match c {
            Err(reason) => DeleteAclsFilterResult::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(message(&reason)),
            Ok(_) => DeleteAclsFilterResult::default().with_matching_acls(
                removed
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(a.resource_type as i8)
                            .with_resource_name(StrBytes::from_string(a.resource_name))
                            .with_pattern_type(a.pattern_type as i8)
                            .with_principal(StrBytes::from_string(a.principal))
                            .with_host(StrBytes::from_string(a.host))
                            .with_operation(a.operation as i8)
                            .with_permission_type(a.permission as i8)
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

/// A binding from a CreateAcls entry, or why it is not one.
pub fn binding(
    resource_type: i8,
    name: &str,
    pattern_type: i8,
    principal: &str,
    host: &str,
    operation: i8,
    permission: i8,
) -> Result<AclBinding, String> {
    let resource_type = ResourceType::from_code(resource_type)
        .ok_or_else(|| format!("resource type {resource_type} is not supported"))?;
    let pattern_type = PatternType::from_code(pattern_type)
        .ok_or_else(|| format!("pattern type {pattern_type}: expected LITERAL or PREFIXED"))?;
    let operation = Operation::from_code(operation)
        .ok_or_else(|| format!("operation {operation} is not supported"))?;
    let permission = Permission::from_code(permission)
        .ok_or_else(|| format!("permission {permission}: expected ALLOW or DENY"))?;
    if !principal.starts_with("User:") || principal.len() == 5 {
        return Err(format!(
            "principal '{principal}': expected User:NAME or User:*"
        ));
    }
    if name.is_empty() {
        return Err("the resource name is empty".into());
    }
    if resource_type == ResourceType::Cluster && name != CLUSTER_NAME {
        return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
    }
    Ok(AclBinding {
        resource_type,
        resource_name: name.to_string(),
        pattern_type,
        principal: principal.to_string(),
        host: if host.is_empty() {
            "*".into()
        } else {
            host.to_string()
        },
        operation,
        permission,
    })
}

/// A filter from DescribeAcls or a DeleteAcls entry (ANY matches anything; MATCH for the
/// pattern type matches every pattern that covers the name).
#[allow(clippy::too_many_arguments)]
pub fn filter(
    resource_type: i8,
    name: Option<&str>,
    pattern_type: i8,
    principal: Option<&str>,
    host: Option<&str>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let any = |c: i8| c == code::ANY;
    Ok(AclFilter {
        resource_type: if any(resource_type) {
            None
        } else {
            Some(
                ResourceType::from_code(resource_type)
                    .ok_or_else(|| format!("resource type {resource_type}"))?,
            )
        },
        resource_name: name.map(str::to_string),
        pattern_type: match pattern_type {
            c if c == code::ANY => None,
            c if c == code::MATCH => Some(None),
            c => Some(Some(
                PatternType::from_code(c).ok_or_else(|| format!("pattern type {c}"))?,
            )),
        },
        principal: principal.map(str::to_string),
        host: host.map(str::to_string),
        operation: if any(operation) {
            None
        } else {
            Some(Operation::from_code(operation).ok_or_else(|| format!("operation {operation}"))?)
        },
        permission: if any(permission) {
            None
        } else {
            Some(
                Permission::from_code(permission)
                    .ok_or_else(|| format!("permission {permission}"))?,
            )
        },
    })
}
