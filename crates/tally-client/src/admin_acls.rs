//! ACLs on the admin client, as `kafka-acls.sh` offers them: add, remove (by filter), list.
//! Codes are Kafka's: resource types Topic 2, Group 3, Cluster 4, TransactionalId 5;
//! patterns LITERAL 3, PREFIXED 4 (ANY 1, MATCH 2 in filters); permissions DENY 2, ALLOW 3.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::error::ClientError;

/// One ACL, with Kafka's codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Admin {
    pub async fn create_acls(&self, acls: &[Acl]) -> Result<(), ClientError> {
        let connection = self.cluster().any_connection().await?;
        let version = connection.version(ApiKey::CreateAcls, 1, 3)?;
        let creations = acls
            .iter()
            .map(|a| {
                AclCreation::default()
                    .with_resource_type(a.resource_type)
                    .with_resource_name(s(&a.resource_name))
                    .with_resource_pattern_type(a.pattern_type)
                    .with_principal(s(&a.principal))
                    .with_host(s(&a.host))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let r = connection
            .send(
                &CreateAclsRequest::default().with_creations(creations),
                version,
                self.cluster().config().request_timeout(),
            )
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

    /// Every ACL (DescribeAcls with a filter that matches anything).
    pub async fn list_acls(&self) -> Result<Vec<Acl>, ClientError> {
        let connection = self.cluster().any_connection().await?;
        let version = connection.version(ApiKey::DescribeAcls, 1, 3)?;
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_pattern_type_filter(1)
            .with_operation(1)
            .with_permission_type(1);
        let r = connection
            .send(&request, version, self.cluster().config().request_timeout())
            .await?;
        if r.error_code != 0 {
            return Err(ClientError::broker(
                r.error_code,
                r.error_message.as_deref(),
            ));
        }
        Ok(r.resources
            .iter()
            .flat_map(|res| {
                res.acls.iter().map(move |a| Acl {
                    resource_type: res.resource_type,
                    resource_name: res.resource_name.to_string(),
                    pattern_type: res.pattern_type,
                    principal: a.principal.to_string(),
                    host: a.host.to_string(),
                    operation: a.operation,
                    permission: a.permission_type,
                })
            })
            .collect())
    }

    /// Removes exactly these ACLs; how many the broker removed.
    pub async fn delete_acls(&self, acls: &[Acl]) -> Result<usize, ClientError> {
        let connection = self.cluster().any_connection().await?;
        let version = connection.version(ApiKey::DeleteAcls, 1, 3)?;
        let filters = acls
            .iter()
            .map(|a| {
                DeleteAclsFilter::default()
                    .with_resource_type_filter(a.resource_type)
                    .with_resource_name_filter(Some(s(&a.resource_name)))
                    .with_pattern_type_filter(a.pattern_type)
                    .with_principal_filter(Some(s(&a.principal)))
                    .with_host_filter(Some(s(&a.host)))
                    .with_operation(a.operation)
                    .with_permission_type(a.permission)
            })
            .collect();
        let r = connection
            .send(
                &DeleteAclsRequest::default().with_filters(filters),
                version,
                self.cluster().config().request_timeout(),
            )
            .await?;
        let mut removed = 0;
        for result in r.filter_results {
            if result.error_code != 0 {
                return Err(ClientError::broker(
                    result.error_code,
                    result.error_message.as_deref(),
                ));
            }
            removed += result.matching_acls.len();
        }
        Ok(removed)
    }
}
