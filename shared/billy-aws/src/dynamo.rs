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
pub const GSI2PK: &str = "GSI2PK";
pub const GSI2SK: &str = "GSI2SK";
pub const GSI3PK: &str = "GSI3PK";
pub const GSI3SK: &str = "GSI3SK";
pub const GSI4PK: &str = "GSI4PK";
pub const GSI4SK: &str = "GSI4SK";
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

/// The due-index shard of an entity: a stable hash of its id, so one entity always lands in the
/// same shard and shards fill evenly.
pub fn shard_of(id: &impl std::fmt::Display, shards: u32) -> u32 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.to_string().as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards.max(1)
}

/// The sort key of due work: the time first (so `<= T` finds what is due), then what it is.
pub fn due_sk(at: &chrono::DateTime<chrono::Utc>, scope: &Scope, id: &impl std::fmt::Display) -> String {
    format!("{}#{}#{id}", at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), scope.key())
}

/// Splits a `due_sk` back into its scope and id.
pub fn parse_due_sk(sk: &str) -> Option<(Scope, billy_core::ids::Id)> {
    let mut parts = sk.splitn(4, '#');
    let (_at, tenant, mode, id) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let mode = billy_core::tenant::Mode::parse(mode)?;
    Some((
        Scope::new(billy_core::ids::Id::from_trusted(tenant.to_owned()), mode),
        billy_core::ids::Id::from_trusted(id.to_owned()),
    ))
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
/// The due index is spread over this many partitions (see docs/table-design.md). Changing it moves
/// items between shards, so it is a constant of the deployment, not a runtime setting.
pub const DUE_SHARDS: u32 = 16;

/// The audit sort key: `v<version>` for a state change (one per version), `note#<at>#<evt>` for
/// an event that changed nothing (a stale webhook, say), so it still shows in the entity's history.
pub fn audit_sk(event: &AuditEvent) -> String {
    if event.version == 0 {
        format!("note#{}#{}", event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), event.id)
    } else {
        format!("v{:012}", event.version)
    }
}

pub fn audit_put(audit_table: &str, event: &AuditEvent) -> DomainResult<Put> {
    let item = to_item(
        event,
        &[
            (PK, entity_pk(&event.scope, &event.entity)),
            (SK, audit_sk(event)),
            (
                GSI1PK,
                event
                    .account
                    .as_ref()
                    .map_or_else(|| entity_pk(&event.scope, &event.entity), |a| entity_pk(&event.scope, a)),
            ),
            (GSI1SK, format!("{}#{}", event.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), event.id)),
        ],
    )?;
    Put::builder()
        .table_name(audit_table)
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
        let conditional = cancel.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed"));
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

/// An SDK failure (service error, timeout, connection failure) as an unexpected domain error with
/// its whole cause chain, for the logs.
pub fn sdk_error<E: std::error::Error + Send + Sync + 'static, R: std::fmt::Debug + Send + Sync + 'static>(
    err: SdkError<E, R>,
) -> DomainError {
    DomainError::unexpected(aws_smithy_types::error::display::DisplayErrorContext(&err))
}

pub fn unexpected<E: ProvideErrorMetadata + std::fmt::Debug>(err: E) -> DomainError {
    DomainError::unexpected(format!("{}: {}", err.code().unwrap_or("unknown"), err.message().unwrap_or("no message")))
}
