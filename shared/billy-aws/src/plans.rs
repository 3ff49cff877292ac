//! Plans: immutable once created, listed per scope through GSI1.

use crate::dynamo::{ENTITY_SK, entity_pk, list_pk};
use crate::store::{HasId, IndexQuery, Store};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ids::Id;
use billy_core::page::{Page, PageRequest};
use billy_core::plan::Plan;
use billy_core::ports::PlanRepository;
use billy_core::tenant::Scope;

const ENTITY: &str = "plan";

#[derive(Debug, Clone)]
pub struct DynamoPlans {
    store: Store,
}

impl DynamoPlans {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

impl HasId for Plan {
    fn id(&self) -> &Id {
        &self.id
    }
}

#[async_trait]
impl PlanRepository for DynamoPlans {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Plan>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Plan>> {
        self.store.page(scope, &IndexQuery::new("GSI1", list_pk(scope, ENTITY)), page).await
    }
}
