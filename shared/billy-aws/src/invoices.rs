//! Invoices: exactly one per subscription period (a conditional claim on the period's natural
//! key), optimistic updates with their audit events, the sparse retry index, and filtered lists.

use crate::dynamo::{ENTITY_SK, entity_pk, from_item, list_pk, s, sdk_error};
use crate::items::{self, PeriodClaim, period_claim_key};
use crate::store::{HasId, IndexQuery, Store};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ids::Id;
use billy_core::invoice::Invoice;
use billy_core::page::{Page, PageRequest};
use billy_core::ports::{InvoiceFilter, InvoiceRepository};
use billy_core::tenant::Scope;
use chrono::{DateTime, Utc};

const ENTITY: &str = "invoice";

#[derive(Debug, Clone)]
pub struct DynamoInvoices {
    store: Store,
}

impl DynamoInvoices {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }

    /// Whether an invoice meets the criteria of a list request.
    fn matches(filter: &InvoiceFilter, inv: &Invoice) -> bool {
        filter.status.is_none_or(|s| inv.status == s)
            && filter.customer.as_ref().is_none_or(|c| &inv.customer == c)
            && filter.period_from.is_none_or(|f| inv.period.is_some_and(|p| p.start >= f))
            && filter.period_to.is_none_or(|t| inv.period.is_some_and(|p| p.start < t))
    }

    /// The ids of a subscription's invoices, from its period claims.
    async fn claimed_ids(&self, scope: &Scope, subscription: &Id) -> DomainResult<Vec<Id>> {
        let mut ids = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .store
                .client
                .query()
                .table_name(&self.store.tables.main)
                .key_condition_expression("PK = :pk AND begins_with(SK, :claim)")
                .expression_attribute_values(":pk", s(entity_pk(scope, subscription)))
                .expression_attribute_values(":claim", s("PERIOD#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                ids.push(from_item::<PeriodClaim>(item)?.invoice);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(ids);
            }
        }
    }

    /// Invoices of one subscription, through its period claims, newest first. A subscription has
    /// one claim per billed period (at most a few thousand over its life), read in one query.
    async fn list_for_subscription(
        &self,
        scope: &Scope,
        subscription: &Id,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> DomainResult<Page<Invoice>> {
        let mut ids = self.claimed_ids(scope, subscription).await?;
        ids.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(after) = &page.starting_after {
            ids.retain(|id| id < after);
        }
        let mut data: Vec<Invoice> = Vec::new();
        for chunk in ids.chunks(page.limit + 1) {
            let keys: Vec<(Scope, Id)> = chunk.iter().map(|id| (scope.clone(), id.clone())).collect();
            let found: Vec<Invoice> = self.store.get_many(&keys).await?;
            data.extend(found.into_iter().filter(|inv| Self::matches(filter, inv)));
            if data.len() > page.limit {
                break;
            }
        }
        let has_more = data.len() > page.limit;
        data.truncate(page.limit);
        Ok(Page { next_cursor: if has_more { data.last().map(|i| i.id.to_string()) } else { None }, data, has_more })
    }
}

impl HasId for Invoice {
    fn id(&self) -> &Id {
        &self.id
    }
}

#[async_trait]
impl InvoiceRepository for DynamoInvoices {
    async fn created_between(
        &self,
        scope: &Scope,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        page: &PageRequest,
    ) -> DomainResult<Page<Invoice>> {
        // Ids are time-ordered: a creation-time range is a sort-key range of the scope's list.
        let mut query = IndexQuery::new("GSI1", list_pk(scope, "invoice"));
        query.newest_first = false;
        let floor = |at| billy_core::ids::time_floor(billy_core::ids::IdKind::Invoice, at);
        query.sort_range = Some((Some(floor(from)), Some(floor(to))));
        self.store.page(scope, &query, page).await
    }

    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Invoice>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn get_many(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<Invoice>> {
        self.store.get_many(keys).await
    }

    async fn list(&self, scope: &Scope, filter: &InvoiceFilter, page: &PageRequest) -> DomainResult<Page<Invoice>> {
        if let Some(sub) = &filter.subscription {
            return self.list_for_subscription(scope, sub, filter, page).await;
        }
        // The most selective index first; the remaining criteria are checked on what it lists.
        let (index, partition) = if let Some(customer) = &filter.customer {
            ("GSI3", format!("{}#{ENTITY}", entity_pk(scope, customer)))
        } else if let Some(status) = filter.status.filter(|s| *s != items::UNINDEXED_INVOICE_STATUS) {
            ("GSI4", format!("{}#{}", list_pk(scope, ENTITY), status.as_str()))
        } else {
            ("GSI1", list_pk(scope, ENTITY))
        };
        self.store.page_where(scope, &IndexQuery::new(index, partition), page, |inv| Self::matches(filter, inv)).await
    }

    async fn for_period(
        &self,
        scope: &Scope,
        subscription: &Id,
        period_start: DateTime<Utc>,
    ) -> DomainResult<Option<Invoice>> {
        let (pk, sk) = period_claim_key(scope, subscription, &period_start);
        let Some(claim) = self.store.get::<PeriodClaim>(pk, &sk).await? else { return Ok(None) };
        self.get(scope, &claim.invoice).await
    }

    async fn for_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<Invoice>> {
        self.store.all(&IndexQuery::new("GSI3", format!("{}#{ENTITY}", entity_pk(scope, customer)))).await
    }

    async fn retries_due(&self, shard: u32, before: DateTime<Utc>, limit: usize) -> DomainResult<Vec<(Scope, Id)>> {
        crate::subscriptions::due_in(&self.store, &format!("RETRY#{shard}"), before, limit).await
    }
}
