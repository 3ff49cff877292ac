//! Tenants and API keys in the main table; a key is found by its hash in one GetItem.

use crate::dynamo::{
    self, ENTITY_SK, PK, SK, from_item, map_transact_error, new_item_put, s, to_item, unexpected,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::TransactWriteItem;
use billy_core::DomainResult;
use billy_core::audit::AuditEvent;
use billy_core::ports::TenantRepository;
use billy_core::tenant::{ApiKeyHash, ApiKeyRecord, Tenant};

#[derive(Debug, Clone)]
pub struct DynamoTenants {
    client: aws_sdk_dynamodb::Client,
    tables: crate::Tables,
}

impl DynamoTenants {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { client, tables }
    }
}

fn key_pk(hash: &ApiKeyHash) -> String {
    format!("APIKEY#{}", hash.0)
}

#[async_trait]
impl TenantRepository for DynamoTenants {
    async fn create(
        &self,
        tenant: &Tenant,
        keys: &[ApiKeyRecord],
        event: &AuditEvent,
    ) -> DomainResult<()> {
        let mut puts = vec![new_item_put(
            &self.tables.main,
            to_item(
                tenant,
                &[
                    (PK, format!("TENANT#{}", tenant.id)),
                    (SK, ENTITY_SK.into()),
                ],
            )?,
        )?];
        for key in keys {
            puts.push(new_item_put(
                &self.tables.main,
                to_item(key, &[(PK, key_pk(&key.hash)), (SK, ENTITY_SK.into())])?,
            )?);
        }
        puts.push(dynamo::audit_put(&self.tables.audit, event)?);
        self.client
            .transact_write_items()
            .set_transact_items(Some(
                puts.into_iter()
                    .map(|p| TransactWriteItem::builder().put(p).build())
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| map_transact_error(e, "tenant"))?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &ApiKeyHash) -> DomainResult<Option<ApiKeyRecord>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.main)
            .key(PK, s(key_pk(hash)))
            .key(SK, s(ENTITY_SK))
            .send()
            .await
            .map_err(|e| unexpected(e.into_service_error()))?;
        out.item.map(from_item).transpose()
    }
}
