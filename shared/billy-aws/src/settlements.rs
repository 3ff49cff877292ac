//! Monthly settlements and the settlement job's runs. A settlement is its own entity, listed under
//! its tenant (GSI1), its customer (GSI3) and its status (GSI4), made unique per (customer,
//! currency, month) by a claim item. While a month is not settled, it sits with the invoices that
//! wait in settlements in the sharded `SETTLE#` partitions of GSI2, where the nightly job finds
//! every tenant with work.

use crate::dynamo::{
    DUE_SHARDS, ENTITY_SK, GSI2PK, GSI2SK, Item, PK, SK, due_sk, entity_pk, list_pk, shard_of, to_item,
};
use crate::items;
use crate::store::{HasId, IndexQuery, Store, keyed};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::ids::Id;
use billy_core::invoice::{Invoice, InvoiceStatus};
use billy_core::page::{Page, PageRequest};
use billy_core::ports::SettlementRepository;
use billy_core::settlement::{Settlement, SettlementRun, SettlementStatus};
use billy_core::tenant::Scope;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

const SETTLEMENT: &str = "settlement";
const RUN: &str = "settlement_run";

fn status_str(status: SettlementStatus) -> &'static str {
    match status {
        SettlementStatus::Open => "open",
        SettlementStatus::Closed => "closed",
        SettlementStatus::Settled => "settled",
    }
}

/// The `SETTLE#` partition of GSI2 an item waiting for the settlement job sits in.
pub fn settling_keys(scope: &Scope, id: &Id, since: &DateTime<Utc>) -> [(&'static str, Option<String>); 2] {
    [(GSI2PK, Some(format!("SETTLE#{}", shard_of(id, DUE_SHARDS)))), (GSI2SK, Some(due_sk(since, scope, id)))]
}

pub fn settlement_item(scope: &Scope, st: &Settlement) -> DomainResult<Item> {
    let mut keys = items::base(scope, &st.id, SETTLEMENT);
    keys.extend(items::child_of(scope, &st.customer, SETTLEMENT, &st.id));
    keys.extend(items::by_status(scope, SETTLEMENT, status_str(st.status), &st.id));
    if st.status != SettlementStatus::Settled {
        keys.extend(settling_keys(scope, &st.id, &st.created));
    }
    keyed(st, &keys)
}

/// The natural key that makes a month's settlement unique.
#[derive(Debug, Serialize, Deserialize)]
pub struct SettlementClaim {
    pub settlement: Id,
}

pub fn settlement_claim(scope: &Scope, st: &Settlement) -> DomainResult<Item> {
    let sk = format!("SETTLEMENT#{}#{}", st.currency, st.month);
    to_item(&SettlementClaim { settlement: st.id.clone() }, &[(PK, entity_pk(scope, &st.customer)), (SK, sk)])
}

pub fn run_item(scope: &Scope, run: &SettlementRun) -> DomainResult<Item> {
    keyed(run, &items::base(scope, &run.id, RUN))
}

impl HasId for Settlement {
    fn id(&self) -> &Id {
        &self.id
    }
}

impl HasId for SettlementRun {
    fn id(&self) -> &Id {
        &self.id
    }
}

#[derive(Debug, Clone)]
pub struct DynamoSettlements {
    store: Store,
}

impl DynamoSettlements {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

#[async_trait]
impl SettlementRepository for DynamoSettlements {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Settlement>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn for_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<Settlement>> {
        self.store.all(&IndexQuery::new("GSI3", format!("{}#{SETTLEMENT}", entity_pk(scope, customer)))).await
    }

    async fn in_status(&self, scope: &Scope, status: SettlementStatus) -> DomainResult<Vec<Settlement>> {
        let partition = format!("{}#{}", list_pk(scope, SETTLEMENT), status_str(status));
        self.store.all(&IndexQuery::new("GSI4", partition)).await
    }

    async fn invoices_in_settlement(&self, scope: &Scope) -> DomainResult<Vec<Invoice>> {
        let partition = format!("{}#{}", list_pk(scope, "invoice"), InvoiceStatus::InSettlement.as_str());
        self.store.all(&IndexQuery::new("GSI4", partition)).await
    }

    async fn scopes_settling(&self) -> DomainResult<Vec<Scope>> {
        crate::subscriptions::scopes_in(&self.store, "SETTLE").await
    }

    async fn list(&self, scope: &Scope, customer: Option<&Id>, page: &PageRequest) -> DomainResult<Page<Settlement>> {
        let query = match customer {
            Some(c) => IndexQuery::new("GSI3", format!("{}#{SETTLEMENT}", entity_pk(scope, c))),
            None => IndexQuery::new("GSI1", list_pk(scope, SETTLEMENT)),
        };
        self.store.page(scope, &query, page).await
    }

    async fn runs(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<SettlementRun>> {
        self.store.page(scope, &IndexQuery::new("GSI1", list_pk(scope, RUN)), page).await
    }
}
