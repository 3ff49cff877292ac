//! Customers in the main table, listed newest first through GSI1 without a scan.

use crate::dynamo::{
    self, ENTITY_SK, GSI1, GSI1PK, GSI1SK, PK, SK, entity_pk, from_item, list_pk,
    map_transact_error, new_item_put, s, to_item, unexpected,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::TransactWriteItem;
use billy_core::DomainResult;
use billy_core::audit::AuditEvent;
use billy_core::customer::Customer;
use billy_core::ids::Id;
use billy_core::page::{Page, PageRequest};
use billy_core::ports::CustomerRepository;
use billy_core::tenant::Scope;
use std::collections::HashMap;

const ENTITY: &str = "customer";

#[derive(Debug, Clone)]
pub struct DynamoCustomers {
    client: aws_sdk_dynamodb::Client,
    tables: crate::Tables,
}

impl DynamoCustomers {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { client, tables }
    }
}

fn keys(scope: &Scope, id: &Id) -> [(&'static str, String); 4] {
    [
        (PK, entity_pk(scope, id)),
        (SK, ENTITY_SK.to_owned()),
        (GSI1PK, list_pk(scope, ENTITY)),
        (GSI1SK, id.to_string()),
    ]
}

#[async_trait]
impl CustomerRepository for DynamoCustomers {
    async fn insert(&self, customer: &Customer, event: &AuditEvent) -> DomainResult<()> {
        let put = new_item_put(
            &self.tables.main,
            to_item(customer, &keys(&event.scope, &customer.id))?,
        )?;
        let audit = dynamo::audit_put(&self.tables.audit, event)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().put(audit).build())
            .send()
            .await
            .map_err(|e| map_transact_error(e, "customer"))?;
        Ok(())
    }

    async fn get(&self, scope: &Scope, id: &Id) -> DomainResult<Option<Customer>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.main)
            .key(PK, s(entity_pk(scope, id)))
            .key(SK, s(ENTITY_SK))
            .send()
            .await
            .map_err(|e| unexpected(e.into_service_error()))?;
        out.item.map(from_item).transpose()
    }

    async fn list(&self, scope: &Scope, page: &PageRequest) -> DomainResult<Page<Customer>> {
        let start = page.starting_after.as_ref().map(|after| {
            keys(scope, after)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), s(v)))
                .collect::<HashMap<_, _>>()
        });
        // One extra item tells whether another page exists without a second query.
        let out = self
            .client
            .query()
            .table_name(&self.tables.main)
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :pk")
            .expression_attribute_values(":pk", s(list_pk(scope, ENTITY)))
            .scan_index_forward(false)
            .limit(i32::try_from(page.limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| unexpected(e.into_service_error()))?;
        let mut data: Vec<Customer> = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect::<DomainResult<_>>()?;
        let has_more = data.len() > page.limit;
        data.truncate(page.limit);
        Ok(Page {
            next_cursor: if has_more {
                data.last().map(|c| c.id.to_string())
            } else {
                None
            },
            data,
            has_more,
        })
    }
}
