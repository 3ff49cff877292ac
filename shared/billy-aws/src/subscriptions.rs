//! Subscriptions, with the sparse, sharded due index (GSI2) that billing sweeps read.

use crate::dynamo::{
    ENTITY_SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK, GSI3PK, GSI3SK, GSI4PK, GSI4SK, Item, PK, SK,
    due_sk, entity_pk, list_pk, parse_due_sk, s, shard_of, unexpected,
};
use crate::store::{HasId, Store, keyed};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billy_core::audit::AuditEvent;
use billy_core::ids::Id;
use billy_core::ports::SubscriptionRepository;
use billy_core::subscription::Subscription;
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};
use chrono::{DateTime, SecondsFormat, Utc};

const ENTITY: &str = "subscription";

#[derive(Debug, Clone)]
pub struct DynamoSubscriptions {
    store: Store,
    shards: u32,
}

impl DynamoSubscriptions {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables, shards: u32) -> Self {
        Self {
            store: Store::new(client, tables),
            shards: shards.max(1),
        }
    }

    fn item(&self, scope: &Scope, sub: &Subscription) -> DomainResult<Item> {
        // In the due index only while another invoice will be made; a test clock's subscriptions
        // are due on the clock's own partition, so advancing one clock finds exactly its work.
        let due = sub.next_bill_at()?.map(|at| {
            let partition = match &sub.test_clock {
                Some(clock) => format!("DUE#CLOCK#{clock}"),
                None => format!("DUE#{}", shard_of(&sub.id, self.shards)),
            };
            (partition, due_sk(&at, scope, &sub.id))
        });
        keyed(
            sub,
            &[
                (PK, Some(entity_pk(scope, &sub.id))),
                (SK, Some(ENTITY_SK.to_owned())),
                (GSI1PK, Some(list_pk(scope, ENTITY))),
                (GSI1SK, Some(sub.id.to_string())),
                (GSI2PK, due.as_ref().map(|(p, _)| p.clone())),
                (GSI2SK, due.map(|(_, s)| s)),
                (
                    GSI3PK,
                    Some(format!("{}#{ENTITY}", entity_pk(scope, &sub.customer))),
                ),
                (GSI3SK, Some(sub.id.to_string())),
                (
                    GSI4PK,
                    Some(format!(
                        "{}#{}",
                        list_pk(scope, ENTITY),
                        sub.status.as_str()
                    )),
                ),
                (GSI4SK, Some(sub.id.to_string())),
            ],
        )
    }

    /// Due subscriptions of one index partition (a shard, or a test clock's).
    pub async fn due_in(
        &self,
        partition: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> DomainResult<Vec<(Scope, Id)>> {
        // "~" sorts after every character of a scope or id, so every key of time `before` matches.
        let upper = format!("{}~", before.to_rfc3339_opts(SecondsFormat::Millis, true));
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .store
                .client
                .query()
                .table_name(&self.store.tables.main)
                .index_name("GSI2")
                .key_condition_expression("GSI2PK = :p AND GSI2SK <= :upper")
                .expression_attribute_values(":p", s(partition))
                .expression_attribute_values(":upper", s(upper.clone()))
                .limit(i32::try_from(limit.min(1000)).unwrap_or(1000))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| unexpected(e.into_service_error()))?;
            for item in page.items.unwrap_or_default() {
                if let Some(AttributeValue::S(sk)) = item.get(GSI2SK) {
                    out.push(
                        parse_due_sk(sk)
                            .ok_or_else(|| DomainError::unexpected(format!("bad due key {sk}")))?,
                    );
                }
            }
            start = page.last_evaluated_key;
            if start.is_none() || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }
}

impl HasId for Subscription {
    fn id(&self) -> &Id {
        &self.id
    }
}

#[async_trait]
impl SubscriptionRepository for DynamoSubscriptions {
    async fn insert(&self, subscription: &Subscription, event: &AuditEvent) -> DomainResult<()> {
        let put = self.store.put_new(self.item(&event.scope, subscription)?)?;
        self.store
            .transact(vec![put], std::slice::from_ref(event), ENTITY)
            .await
    }

    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Subscription>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn update(
        &self,
        subscription: &Subscription,
        expected_version: u64,
        events: &[AuditEvent],
    ) -> DomainResult<()> {
        let scope = events
            .first()
            .map(|e| e.scope.clone())
            .ok_or_else(|| DomainError::unexpected("a change needs its audit event"))?;
        let put = self
            .store
            .put_versioned(self.item(&scope, subscription)?, expected_version)?;
        self.store.transact(vec![put], events, ENTITY).await
    }

    async fn due(
        &self,
        shard: u32,
        before: DateTime<Utc>,
        limit: usize,
    ) -> DomainResult<Vec<(Scope, Id)>> {
        self.due_in(&format!("DUE#{shard}"), before, limit).await
    }
}
