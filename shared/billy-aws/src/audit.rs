//! The audit journal's read side. There is deliberately no update or delete path: events are
//! appended only inside the repositories' transactions (`dynamo::audit_puts`).

use crate::dynamo::{GSI1, audit_events_from_item, entity_pk, s, sdk_error};
use async_trait::async_trait;
use billy_core::DomainResult;
use billy_core::audit::AuditEvent;
use billy_core::ids::Id;
use billy_core::ports::AuditJournal;
use billy_core::tenant::Scope;

#[derive(Debug, Clone)]
pub struct DynamoAudit {
    client: aws_sdk_dynamodb::Client,
    tables: crate::Tables,
}

impl DynamoAudit {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { client, tables }
    }

    async fn query(&self, index: Option<&str>, key: &str, pk: String) -> DomainResult<Vec<AuditEvent>> {
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.audit)
                .set_index_name(index.map(str::to_owned))
                .key_condition_expression(format!("{key} = :pk"))
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in out.items.unwrap_or_default() {
                events.extend(audit_events_from_item(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(events);
            }
        }
    }
}

#[async_trait]
impl AuditJournal for DynamoAudit {
    async fn for_entity(&self, scope: &Scope, entity: &Id) -> DomainResult<Vec<AuditEvent>> {
        self.query(None, "PK", entity_pk(scope, entity)).await
    }

    async fn for_account(&self, scope: &Scope, account: &Id) -> DomainResult<Vec<AuditEvent>> {
        let mut events = self.query(Some(GSI1), "GSI1PK", entity_pk(scope, account)).await?;
        // The index orders items by their last event's time; the events an item carries before
        // it may be older (a stable sort keeps each item's own order, and the index's for ties).
        events.sort_by_key(|e| e.at);
        Ok(events)
    }
}
