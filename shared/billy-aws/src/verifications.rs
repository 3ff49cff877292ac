//! Verification runs: one item each, listed under its tenant (GSI1).

use crate::dynamo::{ENTITY_SK, Item, entity_pk, list_pk};
use crate::store::{HasId, IndexQuery, Store, keyed};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ids::Id;
use billy_core::page::{Page, PageRequest};
use billy_core::ports::VerificationRepository;
use billy_core::tenant::Scope;
use billy_core::verification::Verification;

const ENTITY: &str = "verification";

pub fn verification_item(scope: &Scope, v: &Verification) -> DomainResult<Item> {
    keyed(v, &crate::items::base(scope, &v.id, ENTITY))
}

impl HasId for Verification {
    fn id(&self) -> &Id {
        &self.id
    }
}

#[derive(Debug, Clone)]
pub struct DynamoVerifications {
    store: Store,
}

impl DynamoVerifications {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

#[async_trait]
impl VerificationRepository for DynamoVerifications {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Verification>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Verification>> {
        self.store.page(scope, &IndexQuery::new("GSI1", list_pk(scope, ENTITY)), page).await
    }
}
