//! Tenants and API keys in the main table; a key is found by its hash in one GetItem.

use crate::dynamo::{ENTITY_SK, PK, SK, to_item};
use crate::store::Store;
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::audit::AuditEvent;
use billy_core::ports::TenantRepository;
use billy_core::tenant::{ApiKeyHash, ApiKeyRecord, Tenant};

#[derive(Debug, Clone)]
pub struct DynamoTenants {
    store: Store,
}

impl DynamoTenants {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

fn key_pk(hash: &ApiKeyHash) -> String {
    format!("APIKEY#{}", hash.0)
}

#[async_trait]
impl TenantRepository for DynamoTenants {
    async fn create(&self, tenant: &Tenant, keys: &[ApiKeyRecord], event: &AuditEvent) -> DomainResult<()> {
        let mut puts = vec![
            self.store.put_new(to_item(tenant, &[(PK, format!("TENANT#{}", tenant.id)), (SK, ENTITY_SK.into())])?)?,
        ];
        for key in keys {
            puts.push(self.store.put_new(to_item(key, &[(PK, key_pk(&key.hash)), (SK, ENTITY_SK.into())])?)?);
        }
        self.store.transact(puts, std::slice::from_ref(event), "tenant").await
    }

    async fn key_by_hash(&self, hash: &ApiKeyHash) -> DomainResult<Option<ApiKeyRecord>> {
        self.store.get(key_pk(hash), ENTITY_SK).await
    }
}
