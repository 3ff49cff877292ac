//! Transactions: one item per money movement attempt, whose id its invoice names (so a redelivered
//! step finds and reuses it; attempts counted before invoices named them have a claim per
//! (invoice, kind, attempt) instead), a lookup from the gateway's reference, and filtered lists.

use crate::dynamo::{ENTITY_SK, entity_pk, list_pk};
use crate::items::{self, AttemptClaim, GatewayReference, attempt_claim_key, gateway_reference_pk};
use crate::store::{HasId, IndexQuery, Store};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ids::{Id, IdKind};
use billy_core::page::{Page, PageRequest};
use billy_core::ports::{TransactionFilter, TransactionRepository};
use billy_core::tenant::Scope;
use billy_core::transaction::{Transaction, TransactionType};

const ENTITY: &str = "transaction";

#[derive(Debug, Clone)]
pub struct DynamoTransactions {
    store: Store,
}

impl DynamoTransactions {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

impl HasId for Transaction {
    fn id(&self) -> &Id {
        &self.id
    }
}

/// The smallest id created at or after `at` (ids are time-ordered), for creation-time ranges.
fn id_floor(at: &chrono::DateTime<chrono::Utc>) -> String {
    billy_core::ids::time_floor(IdKind::Transaction, *at)
}

#[async_trait]
impl TransactionRepository for DynamoTransactions {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Transaction>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<Transaction>> {
        self.store.get_many(keys).await
    }

    async fn for_attempt(
        &self,
        scope: &Scope,
        invoice: &Id,
        kind: TransactionType,
        attempt: u32,
    ) -> DomainResult<Option<Transaction>> {
        let (pk, sk) = attempt_claim_key(scope, invoice, kind, attempt);
        let Some(claim) = self.store.get::<AttemptClaim>(pk, &sk).await? else { return Ok(None) };
        self.get(scope, &claim.transaction).await
    }

    async fn by_reference(&self, gateway: &str, reference: &str) -> DomainResult<Option<(Scope, Id)>> {
        let found: Option<GatewayReference> =
            self.store.get(gateway_reference_pk(gateway, reference), ENTITY_SK).await?;
        Ok(found.map(|r| (r.scope, r.transaction)))
    }

    async fn by_references(&self, refs: &[(String, String)]) -> DomainResult<Vec<Option<(Scope, Id)>>> {
        let keys: Vec<(String, String)> =
            refs.iter().map(|(g, r)| (gateway_reference_pk(g, r), ENTITY_SK.to_owned())).collect();
        let found = self.store.get_items(&keys).await?;
        keys.iter()
            .map(|k| {
                found
                    .get(k)
                    .cloned()
                    .map(crate::dynamo::from_item::<GatewayReference>)
                    .transpose()
                    .map(|r| r.map(|r| (r.scope, r.transaction)))
            })
            .collect()
    }

    async fn event_applied(&self, gateway: &str, event_id: &str) -> DomainResult<bool> {
        Ok(self.store.get_item(format!("GWEVT#{gateway}#{event_id}"), ENTITY_SK).await?.is_some())
    }

    async fn rechecks_due(
        &self,
        shard: u32,
        before: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> DomainResult<Vec<(Scope, Id)>> {
        crate::subscriptions::due_in(&self.store, &format!("RECHECK#{shard}"), before, limit).await
    }

    async fn list(
        &self,
        scope: &Scope,
        filter: &TransactionFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Transaction>> {
        let item = filter.item.as_ref().map(|i| i.to_lowercase());
        let keep = |t: &Transaction| {
            filter.kind.is_none_or(|k| t.kind == k)
                && filter.status.is_none_or(|s| t.status == s)
                && filter.amount_min.is_none_or(|min| t.amount >= min)
                && filter.amount_max.is_none_or(|max| t.amount <= max)
                && filter.invoice.as_ref().is_none_or(|i| &t.invoice == i)
                && item.as_ref().is_none_or(|i| t.items.contains(i.as_str()))
        };
        let (index, partition) = match (&filter.customer, filter.status) {
            (Some(customer), _) => ("GSI3", format!("{}#{ENTITY}", entity_pk(scope, customer))),
            (None, Some(status)) if status != items::UNINDEXED_TRANSACTION_STATUS => {
                ("GSI4", format!("{}#{}", list_pk(scope, ENTITY), status.as_str()))
            }
            (None, _) => ("GSI1", list_pk(scope, ENTITY)),
        };
        let mut query = IndexQuery::new(index, partition);
        // Ids are time-ordered: a creation-time range is a sort-key range of every list index, so
        // back-to-back ranges list every transaction exactly once, by the time its id carries. An
        // attempt's id carries the time its invoice counted it, at or a little before its `created`
        // (the step that made it); another's, the moment its id was made, beside its `created`.
        if filter.created_from.is_some() || filter.created_to.is_some() {
            query.sort_range = Some((
                filter.created_from.as_ref().map(id_floor),
                // `created_to` is exclusive: its floor has a zero random part, which no id made at
                // that millisecond has.
                filter.created_to.as_ref().map(id_floor),
            ));
        }
        self.store.page_where(scope, &query, page, keep).await
    }
}

/// The claim of an attempt whose id its invoice does not name, for the unit of work.
pub(crate) fn claim(scope: &Scope, t: &Transaction) -> DomainResult<crate::dynamo::Item> {
    items::attempt_claim(scope, t)
}
