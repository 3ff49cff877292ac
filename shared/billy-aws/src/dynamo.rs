//! DynamoDB helpers: key layout, item (de)serialisation and error mapping to domain errors.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put};
use billy_core::audit::AuditEvent;
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

pub type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1: &str = "GSI1";
pub const GSI1PK: &str = "GSI1PK";
pub const GSI1SK: &str = "GSI1SK";
/// The sort key of an entity's own item (room is left for child items under the same PK).
pub const ENTITY_SK: &str = "#";

/// `ten_…#test#cus_…`: every entity key starts with its scope, so no key can cross tenants.
pub fn entity_pk(scope: &Scope, id: &impl std::fmt::Display) -> String {
    format!("{}#{id}", scope.key())
}

/// `ten_…#test#customer`: the list partition of one entity type within one scope.
pub fn list_pk(scope: &Scope, entity_type: &str) -> String {
    format!("{}#{entity_type}", scope.key())
}

pub fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// Serialises an entity and adds its keys.
pub fn to_item<T: Serialize>(value: &T, keys: &[(&str, String)]) -> DomainResult<Item> {
    let mut item: Item = serde_dynamo::to_item(value).map_err(DomainError::unexpected)?;
    for (name, value) in keys {
        item.insert((*name).to_owned(), s(value.clone()));
    }
    Ok(item)
}

/// Reads an entity back; key attributes are ignored by the entity's own deserialiser.
pub fn from_item<T: DeserializeOwned>(item: Item) -> DomainResult<T> {
    serde_dynamo::from_item(item).map_err(DomainError::unexpected)
}

/// The audit event's put: a conditional append that can never overwrite an earlier event.
pub fn audit_put(audit_table: &str, event: &AuditEvent) -> DomainResult<Put> {
    let item = to_item(
        event,
        &[
            (PK, entity_pk(&event.scope, &event.entity)),
            (SK, format!("v{:012}", event.version)),
            (
                GSI1PK,
                event.account.as_ref().map_or_else(
                    || entity_pk(&event.scope, &event.entity),
                    |a| entity_pk(&event.scope, a),
                ),
            ),
            (GSI1SK, format!("{}#{}", event.at.to_rfc3339(), event.id)),
        ],
    )?;
    Put::builder()
        .table_name(audit_table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(DomainError::unexpected)
}

pub fn new_item_put(table: &str, item: Item) -> DomainResult<Put> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(PK)")
        .build()
        .map_err(DomainError::unexpected)
}

/// A cancelled transaction whose reasons include a failed condition is a concurrent change (or a
/// duplicate) that lost: a typed conflict, never a silent overwrite.
pub fn map_transact_error(err: SdkError<TransactWriteItemsError>, what: &str) -> DomainError {
    if let SdkError::ServiceError(service) = &err
        && let TransactWriteItemsError::TransactionCanceledException(cancel) = service.err()
    {
        let conditional = cancel
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed"));
        if conditional {
            return DomainError::conflict(
                "version_conflict",
                format!("{what} was changed by another request; retry with fresh data"),
            );
        }
        return DomainError::conflict(
            "transaction_conflict",
            format!("{what} is being changed by another request; retry"),
        );
    }
    unexpected(err)
}

pub fn unexpected<E: ProvideErrorMetadata + std::fmt::Debug>(err: E) -> DomainError {
    DomainError::unexpected(format!(
        "{}: {}",
        err.code().unwrap_or("unknown"),
        err.message().unwrap_or("no message")
    ))
}
