//! Idempotency records for API requests: the first request with a key claims it (conditional put),
//! the response is saved when done, a same-key same-body request replays it, a different body is a
//! mismatch, a concurrent duplicate is in flight. Records expire by TTL after 48 hours.

use crate::dynamo::{ENTITY_SK, PK, SK, s, sdk_error, unexpected};
use crate::store::Store;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billy_core::ports::{IdempotencyDecision, IdempotencyStore};
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};
use chrono::{DateTime, Duration, Utc};

/// Keys are kept at least 24 h (the API's promise); 48 h leaves room for TTL's lazy deletion.
const RETENTION: Duration = Duration::hours(48);
/// A request that claimed a key and then crashed frees it after this long.
const LOCK: Duration = Duration::seconds(60);

#[derive(Debug, Clone)]
pub struct DynamoIdempotency {
    store: Store,
}

impl DynamoIdempotency {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: Store::new(client, tables) }
    }
}

fn pk(scope: &Scope, key: &str) -> String {
    format!("{}#IDEM#{key}", scope.key())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

#[async_trait]
impl IdempotencyStore for DynamoIdempotency {
    async fn begin(
        &self,
        scope: &Scope,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> DomainResult<IdempotencyDecision> {
        let claimed = self
            .store
            .client
            .put_item()
            .table_name(&self.store.tables.main)
            .item(PK, s(pk(scope, key)))
            .item(SK, s(ENTITY_SK))
            .item("request_hash", s(request_hash))
            .item("state", s("in_flight"))
            .item("locked_until", n((now + LOCK).timestamp()))
            .item("expires_at", n((now + RETENTION).timestamp()))
            // New, or expired but not yet swept by TTL, or abandoned by a crashed request with
            // the same body.
            .condition_expression(
                "attribute_not_exists(PK) OR expires_at < :now OR (#state = :in_flight AND locked_until < :now AND request_hash = :hash)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":now", n(now.timestamp()))
            .expression_attribute_values(":in_flight", s("in_flight"))
            .expression_attribute_values(":hash", s(request_hash))
            .send()
            .await;
        match claimed {
            Ok(_) => return Ok(IdempotencyDecision::Process),
            Err(e) => {
                let e = e.into_service_error();
                if !e.is_conditional_check_failed_exception() {
                    return Err(unexpected(e));
                }
            }
        }
        let item = self
            .store
            .get_item(pk(scope, key), ENTITY_SK)
            .await?
            .ok_or_else(|| DomainError::conflict("idempotency_conflict", "retry the request"))?;
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(v)) => v.clone(),
            Some(AttributeValue::N(v)) => v.clone(),
            _ => String::new(),
        };
        if text("request_hash") != request_hash {
            return Ok(IdempotencyDecision::Mismatch);
        }
        if text("state") == "done" {
            return Ok(IdempotencyDecision::Replay {
                status: text("response_status").parse().unwrap_or(200),
                body: text("response_body"),
            });
        }
        Ok(IdempotencyDecision::InFlight)
    }

    async fn complete(&self, scope: &Scope, key: &str, status: u16, body: &str) -> DomainResult<()> {
        self.store
            .client
            .update_item()
            .table_name(&self.store.tables.main)
            .key(PK, s(pk(scope, key)))
            .key(SK, s(ENTITY_SK))
            .update_expression("SET #state = :done, response_status = :st, response_body = :body REMOVE locked_until")
            .condition_expression("attribute_exists(PK)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":done", s("done"))
            .expression_attribute_values(":st", AttributeValue::N(status.to_string()))
            .expression_attribute_values(":body", s(body))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn abandon(&self, scope: &Scope, key: &str) -> DomainResult<()> {
        let result = self
            .store
            .client
            .delete_item()
            .table_name(&self.store.tables.main)
            .key(PK, s(pk(scope, key)))
            .key(SK, s(ENTITY_SK))
            .condition_expression("#state = :in_flight")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_flight", s("in_flight"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(unexpected(e.into_service_error())),
        }
    }
}
