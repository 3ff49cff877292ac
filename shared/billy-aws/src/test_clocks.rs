//! Test clocks, and the work due on one clock (its own partitions of the due index).

use crate::dynamo::{ENTITY_SK, entity_pk};
use crate::store::Store;
use crate::subscriptions::due_in;
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ids::Id;
use billy_core::ports::TestClockRepository;
use billy_core::tenant::Scope;
use billy_core::test_clock::TestClock;
use chrono::{DateTime, Utc};

/// One advance bills at most this many subscriptions or retries per pass (a clock has at most
/// three customers, so this is never reached in practice).
const LIMIT: usize = 10_000;

#[derive(Debug, Clone)]
pub struct DynamoTestClocks {
    store: Store,
}

impl DynamoTestClocks {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

#[async_trait]
impl TestClockRepository for DynamoTestClocks {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<TestClock>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<TestClock>> {
        self.store.get_many(keys).await
    }

    async fn due_subscriptions(&self, clock: &Id, before: DateTime<Utc>) -> DomainResult<Vec<(Scope, Id)>> {
        due_in(&self.store, &format!("DUE#CLOCK#{clock}"), before, LIMIT).await
    }

    async fn due_retries(&self, clock: &Id, before: DateTime<Utc>) -> DomainResult<Vec<(Scope, Id)>> {
        due_in(&self.store, &format!("RETRY#CLOCK#{clock}"), before, LIMIT).await
    }

    async fn due_rechecks(&self, clock: &Id, before: DateTime<Utc>) -> DomainResult<Vec<(Scope, Id)>> {
        due_in(&self.store, &format!("RECHECK#CLOCK#{clock}"), before, LIMIT).await
    }
}
