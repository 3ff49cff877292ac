//! Subscriptions, with the sparse, sharded due index (GSI2) that billing sweeps read.

use crate::dynamo::{ENTITY_SK, GSI2SK, entity_pk, parse_due_sk, s, sdk_error};
use crate::items;
use crate::store::{HasId, IndexQuery, Store};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billy_core::ids::Id;
use billy_core::page::PageRequest;
use billy_core::ports::SubscriptionRepository;
use billy_core::subscription::Subscription;
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};
use chrono::{DateTime, Utc};

const ENTITY: &str = "subscription";

#[derive(Debug, Clone)]
pub struct DynamoSubscriptions {
    store: Store,
}

impl DynamoSubscriptions {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

/// Due work (subscriptions or retries) in one partition of GSI2, up to `before`.
pub async fn due_in(
    store: &Store,
    partition: &str,
    before: DateTime<Utc>,
    limit: usize,
) -> DomainResult<Vec<(Scope, Id)>> {
    // "~" sorts after every character of a scope or id, so every key of time `before` matches.
    let upper = format!("{}~", items::millis(&before));
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = store
            .client
            .query()
            .table_name(&store.tables.main)
            .index_name("GSI2")
            .key_condition_expression("GSI2PK = :p AND GSI2SK <= :upper")
            .expression_attribute_values(":p", s(partition))
            .expression_attribute_values(":upper", s(upper.clone()))
            .limit(i32::try_from(limit.min(1000)).unwrap_or(1000))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(sdk_error)?;
        for item in page.items.unwrap_or_default() {
            if let Some(AttributeValue::S(sk)) = item.get(GSI2SK) {
                out.push(parse_due_sk(sk).ok_or_else(|| DomainError::unexpected(format!("bad due key {sk}")))?);
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() || out.len() >= limit {
            out.truncate(limit);
            return Ok(out);
        }
    }
}

/// Every scope with an item in the sharded GSI2 partitions `<prefix>#<shard>`, each once.
pub async fn scopes_in(store: &Store, prefix: &str) -> DomainResult<Vec<Scope>> {
    // Every key sorts before the far future: each shard's whole partition.
    let horizon = chrono::Utc::now() + chrono::Duration::days(365 * 100);
    let mut scopes: Vec<Scope> = Vec::new();
    for shard in 0..crate::dynamo::DUE_SHARDS {
        for (scope, _) in due_in(store, &format!("{prefix}#{shard}"), horizon, usize::MAX).await? {
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
    }
    Ok(scopes)
}

impl HasId for Subscription {
    fn id(&self) -> &Id {
        &self.id
    }
}

#[async_trait]
impl SubscriptionRepository for DynamoSubscriptions {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Subscription>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn scopes_billing(&self) -> DomainResult<Vec<Scope>> {
        scopes_in(&self.store, "DUE").await
    }

    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<Subscription>> {
        self.store.get_many(keys).await
    }

    async fn due(&self, shard: u32, before: DateTime<Utc>, limit: usize) -> DomainResult<Vec<(Scope, Id)>> {
        due_in(&self.store, &format!("DUE#{shard}"), before, limit).await
    }

    async fn for_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<Subscription>> {
        let query = IndexQuery::new("GSI3", format!("{}#{ENTITY}", entity_pk(scope, customer)));
        self.store.all(&query).await
    }

    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<billy_core::page::Page<Subscription>> {
        self.store.page(scope, &IndexQuery::new("GSI1", crate::dynamo::list_pk(scope, ENTITY)), page).await
    }
}
