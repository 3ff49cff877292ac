//! Export jobs: one item per export, under the tenant's scope like every entity.

use crate::dynamo::{ENTITY_SK, entity_pk};
use crate::store::Store;
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ids::Id;
use billy_core::ledger::Export;
use billy_core::ports::ExportRepository;
use billy_core::tenant::Scope;

#[derive(Debug, Clone)]
pub struct DynamoExports {
    store: Store,
}

impl DynamoExports {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

#[async_trait]
impl ExportRepository for DynamoExports {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Export>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }
}
