//! Customers' credit balances and coupons. A customer's balances share one partition (one item
//! per currency, its amount moved only by DynamoDB's `ADD`, a withdrawal only while it covers
//! it); movements are their own items, listed per customer through GSI3, newest first.

use crate::dynamo::{ENTITY_SK, GSI3PK, GSI3SK, Item, PK, SK, entity_pk, from_item, list_pk, s, sdk_error};
use crate::store::{HasId, IndexQuery, Store, keyed};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Update};
use billy_core::coupon::Coupon;
use billy_core::credit::{CreditBalance, CreditMovement};
use billy_core::ids::Id;
use billy_core::money::Currency;
use billy_core::page::{Page, PageRequest};
use billy_core::ports::{CouponRepository, CreditRepository};
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};

pub fn balance_pk(scope: &Scope, customer: &Id) -> String {
    format!("{}#credit#{customer}", scope.key())
}

fn movements_pk(scope: &Scope, customer: &Id) -> String {
    format!("{}#credit_movements#{customer}", scope.key())
}

pub fn movement_item(scope: &Scope, m: &CreditMovement) -> DomainResult<Item> {
    keyed(
        m,
        &[
            (PK, Some(entity_pk(scope, &m.id))),
            (SK, Some(ENTITY_SK.to_owned())),
            (GSI3PK, Some(movements_pk(scope, &m.customer))),
            (GSI3SK, Some(m.id.to_string())),
        ],
    )
}

/// The balance's move by a movement: added atomically; a negative one only while it is covered.
pub fn balance_update(table: &str, scope: &Scope, m: &CreditMovement) -> DomainResult<Update> {
    let builder = Update::builder()
        .table_name(table)
        .key(PK, s(balance_pk(scope, &m.customer)))
        .key(SK, s(m.currency.to_string()))
        .update_expression("ADD amount :a SET customer = :c, currency = :cur")
        .expression_attribute_values(":a", AttributeValue::N(m.amount.to_string()))
        .expression_attribute_values(":c", s(m.customer.as_str()))
        .expression_attribute_values(":cur", s(m.currency.to_string()));
    let builder = if m.amount < 0 {
        builder
            .condition_expression("amount >= :need")
            .expression_attribute_values(":need", AttributeValue::N((-m.amount).to_string()))
    } else {
        builder
    };
    builder.build().map_err(DomainError::unexpected)
}

fn balance_from(item: &Item) -> DomainResult<CreditBalance> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(DomainError::unexpected(format!("credit balance without {name}"))),
    };
    let amount = match item.get("amount") {
        Some(AttributeValue::N(v)) => v.parse::<i64>().map_err(DomainError::unexpected)?,
        _ => 0,
    };
    Ok(CreditBalance {
        customer: Id::from_trusted(text("customer")?),
        currency: Currency::parse(&text("currency")?, "currency")?,
        amount,
    })
}

#[derive(Debug, Clone)]
pub struct DynamoCredits {
    store: Store,
}

impl DynamoCredits {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

#[async_trait]
impl CreditRepository for DynamoCredits {
    async fn balances(&self, keys: &[(Scope, Id, Currency)]) -> DomainResult<Vec<i64>> {
        let wanted: Vec<(String, String)> = keys
            .iter()
            .map(|(scope, customer, currency)| (balance_pk(scope, customer), currency.to_string()))
            .collect();
        let found = self.store.get_items(&wanted).await?;
        wanted.iter().map(|k| found.get(k).map_or(Ok(0), |item| balance_from(item).map(|b| b.amount))).collect()
    }

    async fn of_customer(&self, scope: &Scope, customer: &Id) -> DomainResult<Vec<CreditBalance>> {
        let out = self
            .store
            .client
            .query()
            .table_name(&self.store.tables.main)
            .key_condition_expression("PK = :pk")
            .expression_attribute_values(":pk", s(balance_pk(scope, customer)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        out.items.unwrap_or_default().iter().map(balance_from).collect()
    }

    async fn movements(&self, scope: &Scope, customer: &Id, limit: usize) -> DomainResult<Vec<CreditMovement>> {
        let out = self
            .store
            .client
            .query()
            .table_name(&self.store.tables.main)
            .index_name("GSI3")
            .key_condition_expression("GSI3PK = :pk")
            .expression_attribute_values(":pk", s(movements_pk(scope, customer)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(100))
            .send()
            .await
            .map_err(sdk_error)?;
        let items = self.store.behind("GSI3", &movements_pk(scope, customer), out.items.unwrap_or_default()).await?;
        items.into_iter().map(from_item).collect()
    }
}

const COUPON: &str = "coupon";

pub fn coupon_item(scope: &Scope, c: &Coupon) -> DomainResult<Item> {
    keyed(
        c,
        &[
            (PK, Some(entity_pk(scope, &c.id))),
            (SK, Some(ENTITY_SK.to_owned())),
            (crate::dynamo::GSI1PK, Some(list_pk(scope, COUPON))),
            (crate::dynamo::GSI1SK, Some(c.id.to_string())),
        ],
    )
}

impl HasId for Coupon {
    fn id(&self) -> &Id {
        &self.id
    }
}

#[derive(Debug, Clone)]
pub struct DynamoCoupons {
    store: Store,
}

impl DynamoCoupons {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

#[async_trait]
impl CouponRepository for DynamoCoupons {
    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Coupon>> {
        self.store.get(entity_pk(scope, id), ENTITY_SK).await
    }

    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Coupon>> {
        self.store.page(scope, &IndexQuery::new("GSI1", list_pk(scope, COUPON)), page).await
    }
}
