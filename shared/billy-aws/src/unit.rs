//! The unit of work: several entity writes of one scope and their audit events in one
//! `TransactWriteItems`, with the claims and lookups each write implies.

use crate::dynamo::{ENTITY_SK, PK, SK, entity_pk, s};
use crate::items;
use crate::store::Store;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::Update;
use billy_core::DomainResult;
use billy_core::audit::AuditEvent;
use billy_core::ports::{UnitOfWork, Write};
use billy_core::tenant::Scope;

#[derive(Debug, Clone)]
pub struct DynamoUnitOfWork {
    store: Store,
}

impl DynamoUnitOfWork {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

#[async_trait]
impl UnitOfWork for DynamoUnitOfWork {
    async fn commit(&self, scope: &Scope, writes: Vec<Write>, events: Vec<AuditEvent>) -> DomainResult<()> {
        let store = &self.store;
        let put = |item, expected: Option<u64>| match expected {
            None => store.put_new(item),
            Some(v) => store.put_versioned(item, v),
        };
        let mut puts = Vec::with_capacity(writes.len() + 2);
        let mut updates = Vec::new();
        for write in &writes {
            match write {
                Write::Customer { customer, expected } => puts.push(put(items::customer(scope, customer)?, *expected)?),
                Write::PaymentMethod { method } => puts.push(store.put_new(items::payment_method(scope, method)?)?),
                Write::Plan { plan } => puts.push(store.put_new(items::plan(scope, plan)?)?),
                Write::Subscription { subscription, expected } => {
                    puts.push(put(items::subscription(scope, subscription)?, *expected)?);
                }
                Write::Invoice { invoice, expected } => {
                    puts.push(put(items::invoice(scope, invoice)?, *expected)?);
                    if expected.is_none()
                        && let Some(claim) = items::period_claim(scope, invoice)?
                    {
                        puts.push(store.put_new(claim)?);
                    }
                }
                Write::Transaction { transaction, expected } => {
                    puts.push(put(items::transaction(scope, transaction)?, *expected)?);
                    if expected.is_none() {
                        puts.push(store.put_new(crate::transactions::claim(scope, transaction)?)?);
                    }
                }
                Write::TransactionReference { transaction, gateway, reference } => {
                    updates.push(
                        Update::builder()
                            .table_name(&store.tables.main)
                            .key(PK, s(entity_pk(scope, transaction)))
                            .key(SK, s(ENTITY_SK))
                            .update_expression("SET gateway_reference = :r, gateway = :g")
                            .condition_expression(
                                "attribute_exists(PK) AND #st = :pending AND (attribute_not_exists(gateway_reference) OR attribute_type(gateway_reference, :null))",
                            )
                            .expression_attribute_names("#st", "status")
                            .expression_attribute_values(":r", s(reference.clone()))
                            .expression_attribute_values(":g", s(gateway.clone()))
                            .expression_attribute_values(":pending", s("pending"))
                            .expression_attribute_values(":null", s("NULL"))
                            .build()
                            .map_err(billy_core::DomainError::unexpected)?,
                    );
                }
                Write::GatewayReference { gateway, reference, transaction } => {
                    puts.push(store.put_new(items::gateway_reference(gateway, reference, scope, transaction)?)?);
                }
                Write::GatewayEventApplied { gateway, event_id } => {
                    let now = events.first().map_or_else(chrono::Utc::now, |e| e.at);
                    puts.push(store.put_new(items::gateway_event_applied(gateway, event_id, now)?)?);
                }
                Write::TestClock { clock, expected } => puts.push(put(items::test_clock(scope, clock)?, *expected)?),
            }
        }
        store.transact_with_updates(puts, updates, &events, "change").await
    }
}
