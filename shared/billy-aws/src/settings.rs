//! Tenant settings: one item per tenant and mode, read afresh (a step reads them once per batch
//! and scope), so a change applies to the very next request. A tenant that saved nothing gets the
//! defaults.

use crate::dynamo::ENTITY_SK;
use crate::items::settings_pk;
use crate::store::Store;
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ports::SettingsRepository;
use billy_core::settings::TenantSettings;
use billy_core::tenant::Scope;

#[derive(Debug, Clone)]
pub struct DynamoSettings {
    store: Store,
}

impl DynamoSettings {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

#[async_trait]
impl SettingsRepository for DynamoSettings {
    async fn get(&self, scope: &Scope) -> DomainResult<TenantSettings> {
        Ok(self.store.get(settings_pk(scope), ENTITY_SK).await?.unwrap_or_default())
    }
}
