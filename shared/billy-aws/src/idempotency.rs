//! Idempotency records for API requests: the first request with a key claims it (a conditional
//! write that also keeps when the key was first seen), the response is saved when done, a same-key
//! same-body request replays it, a different body is a mismatch, a concurrent duplicate is in
//! flight, and a request that failed with a server error releases the key for a retry of the same
//! body. Records expire by TTL after 48 hours.

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
        // An update rather than a put, so a key taken over after a crash or released after a
        // server error keeps the time it was first seen (what the request's new objects are named
        // from); only a key past its retention starts afresh.
        let fresh = "SET request_hash = :hash, #state = :in_flight, locked_until = :lock, expires_at = :exp, first_seen = :now_ms";
        let attempts = [
            (
                "SET request_hash = :hash, #state = :in_flight, locked_until = :lock, expires_at = :exp, first_seen = if_not_exists(first_seen, :now_ms)",
                // New, or left by a crashed or failed request with the same body.
                "attribute_not_exists(PK) OR (expires_at >= :now AND request_hash = :hash AND (#state = :released OR (#state = :in_flight AND locked_until < :now)))",
            ),
            // Expired but not yet swept by TTL: a new request.
            (fresh, "expires_at < :now"),
        ];
        for (update, condition) in attempts {
            let mut request = self
                .store
                .client
                .update_item()
                .table_name(&self.store.tables.main)
                .key(PK, s(pk(scope, key)))
                .key(SK, s(ENTITY_SK))
                .update_expression(update)
                .condition_expression(condition)
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":now", n(now.timestamp()))
                .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
                .expression_attribute_values(":lock", n((now + LOCK).timestamp()))
                .expression_attribute_values(":exp", n((now + RETENTION).timestamp()))
                .expression_attribute_values(":in_flight", s("in_flight"))
                .expression_attribute_values(":hash", s(request_hash))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
            if condition.contains(":released") {
                request = request.expression_attribute_values(":released", s("released"));
            }
            let claimed = request.send().await;
            match claimed {
                Ok(out) => {
                    let first_seen = out
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get("first_seen"))
                        .and_then(|v| v.as_n().ok())
                        .and_then(|v| v.parse::<i64>().ok())
                        .and_then(DateTime::from_timestamp_millis)
                        .unwrap_or(now);
                    return Ok(IdempotencyDecision::Process { first_seen });
                }
                Err(e) => {
                    let e = e.into_service_error();
                    if !e.is_conditional_check_failed_exception() {
                        return Err(unexpected(e));
                    }
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
            .update_item()
            .table_name(&self.store.tables.main)
            .key(PK, s(pk(scope, key)))
            .key(SK, s(ENTITY_SK))
            .update_expression("SET #state = :released REMOVE locked_until")
            .condition_expression("#state = :in_flight")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_flight", s("in_flight"))
            .expression_attribute_values(":released", s("released"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) => Ok(()),
            Err(e) => Err(unexpected(e.into_service_error())),
        }
    }
}
