//! Customers in the main table, listed newest first through GSI1 without a scan.

use crate::dynamo::{ENTITY_SK, entity_pk, list_pk};
use crate::store::{HasId, IndexQuery, Store};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::customer::Customer;
use billy_core::ids::Id;
use billy_core::page::{Page, PageRequest};
use billy_core::ports::CustomerRepository;
use billy_core::tenant::Scope;

const ENTITY: &str = "customer";

#[derive(Debug, Clone)]
pub struct DynamoCustomers {
    store: Store,
}

impl DynamoCustomers {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

impl HasId for Customer {
    fn id(&self) -> &Id {
        &self.id
    }
}

#[async_trait]
impl CustomerRepository for DynamoCustomers {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Customer>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<Customer>> {
        self.store.get_many(keys).await
    }

    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Customer>> {
        self.store.page(scope, &IndexQuery::new("GSI1", list_pk(scope, ENTITY)), page).await
    }
}
