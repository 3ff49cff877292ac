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

/// The attribute holding an audit item's events, whole, as deflated JSON (oldest first). Events
/// are mostly snapshots and ids that repeat, and shrink several times over: most items, even an
/// invoice's created and finalized events together, stay under the 1 KB one write unit covers, and
/// so do their copies in the account index. Beside it in the clear: the keys, and the `action` and
/// `entity_type` the stream consumers filter on.
const AUDIT_EVENTS: &str = "events";
/// The actions of the events an item carries before its last one, for the same filters.
const AUDIT_EARLIER_ACTIONS: &str = "earlier_actions";
/// How the previous format kept an event's snapshots (deflated), beside its other fields in the
/// clear: such items still read.
const AUDIT_SNAPSHOTS: &str = "snapshots";

#[derive(serde::Deserialize)]
struct Snapshots {
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
    change: Option<serde_json::Value>,
}

/// The items that store one change's `events`, in order. A run of events of one entity at
/// consecutive versions (an invoice created and finalized in one step) is one item, keyed by the
/// run's last version: one write and one account-index entry instead of one per event. Read back
/// (`audit_events_from_item`), the item gives every event whole. The run's versions are claimed
/// together: a writer of any of them also writes the entity at its version, on a condition only
/// one writer can meet.
pub fn audit_items(events: &[AuditEvent]) -> DomainResult<Vec<Item>> {
    audit_items_within(events, MAX_PACKED_BYTES)
}

/// The most a run's deflated events may take in one item; a larger run (an invoice of hundreds of
/// long lines, whose copies deflate cannot share beyond its 32 KB window) is stored one event per
/// item instead, well within DynamoDB's 400 KB per item.
const MAX_PACKED_BYTES: usize = 256 * 1024;

fn audit_items_within(events: &[AuditEvent], max_packed: usize) -> DomainResult<Vec<Item>> {
    let mut items = Vec::new();
    let mut start = 0;
    for end in 1..=events.len() {
        let continues = events.get(end).is_some_and(|next| events.get(end - 1).is_some_and(|prev| follows(prev, next)));
        if !continues {
            let run = &events[start..end];
            let packed = packed_item(run)?;
            let size = match packed.get(AUDIT_EVENTS) {
                Some(AttributeValue::B(blob)) => blob.as_ref().len(),
                _ => 0,
            };
            if run.len() > 1 && size > max_packed {
                for event in run {
                    items.push(audit_item(event)?);
                }
            } else {
                items.push(packed);
            }
            start = end;
        }
    }
    Ok(items)
}

/// Whether `next` is the version right after `prev`, of the same entity and account.
fn follows(prev: &AuditEvent, next: &AuditEvent) -> bool {
    prev.version != 0
        && next.version == prev.version + 1
        && next.entity == prev.entity
        && next.scope == prev.scope
        && next.account == prev.account
}

/// One event's item, alone.
pub fn audit_item(event: &AuditEvent) -> DomainResult<Item> {
    packed_item(std::slice::from_ref(event))
}

/// The item of a run of events (at least one), keyed by the last.
fn packed_item(run: &[AuditEvent]) -> DomainResult<Item> {
    use std::io::Write as _;
    let (last, earlier) = run.split_last().ok_or_else(|| DomainError::unexpected("an audit item of no event"))?;
    let mut item: Item = [
        (PK, entity_pk(&last.scope, &last.entity)),
        (SK, audit_sk(last)),
        ("action", last.action.clone()),
        ("entity_type", last.entity_type.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)))
    .collect();
    // Only a customer account's events enter its history index: the others' history is their
    // entity's own partition, which the table already serves.
    if let Some(account) = &last.account {
        let at = last.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        item.insert(GSI1PK.to_owned(), s(entity_pk(&last.scope, account)));
        item.insert(GSI1SK.to_owned(), s(format!("{at}#{}", last.id)));
    }
    if !earlier.is_empty() {
        let actions = earlier.iter().map(|e| AttributeValue::S(e.action.clone())).collect();
        item.insert(AUDIT_EARLIER_ACTIONS.to_owned(), AttributeValue::L(actions));
    }
    let json = serde_json::to_vec(run).map_err(DomainError::unexpected)?;
    let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    deflate.write_all(&json).map_err(DomainError::unexpected)?;
    let packed = deflate.finish().map_err(DomainError::unexpected)?;
    item.insert(AUDIT_EVENTS.to_owned(), AttributeValue::B(aws_smithy_types::Blob::new(packed)));
    Ok(item)
}

/// The actions of the events an audit item holds, oldest first, read without inflating it.
pub fn audit_actions(item: &Item) -> Vec<&str> {
    let earlier = match item.get(AUDIT_EARLIER_ACTIONS) {
        Some(AttributeValue::L(actions)) => actions.iter().filter_map(|a| a.as_s().ok()).map(String::as_str).collect(),
        _ => Vec::new(),
    };
    earlier.into_iter().chain(item.get("action").and_then(|a| a.as_s().ok()).map(String::as_str)).collect()
}

fn inflate(blob: &[u8]) -> DomainResult<Vec<u8>> {
    use std::io::Read as _;
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(blob).read_to_end(&mut json).map_err(DomainError::unexpected)?;
    Ok(json)
}

/// Reads the events an audit item holds back, oldest first (items of the earlier formats, one
/// event with its snapshots deflated or in the clear, still read).
pub fn audit_events_from_item(mut item: Item) -> DomainResult<Vec<AuditEvent>> {
    if let Some(AttributeValue::B(blob)) = item.get(AUDIT_EVENTS) {
        return serde_json::from_slice(&inflate(blob.as_ref())?).map_err(DomainError::unexpected);
    }
    let snapshots = match item.remove(AUDIT_SNAPSHOTS) {
        Some(AttributeValue::B(blob)) => Some(blob.into_inner()),
        _ => None,
    };
    let mut event: AuditEvent = from_item(item)?;
    if let Some(blob) = snapshots {
        let snapshots: Snapshots = serde_json::from_slice(&inflate(&blob)?).map_err(DomainError::unexpected)?;
        (event.before, event.after, event.change) = (snapshots.before, snapshots.after, snapshots.change);
    }
    Ok(vec![event])
}

/// The appends of one change's `events`, each on the condition that its item is new.
pub fn audit_puts(audit_table: &str, events: &[AuditEvent]) -> DomainResult<Vec<Put>> {
    audit_items(events)?
        .into_iter()
        .map(|item| {
            Put::builder()
                .table_name(audit_table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map_err(DomainError::unexpected)
        })
        .collect()
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use billy_core::audit::{Actor, Change, Context};
    use billy_core::ids::{Id, RandomIds};
    use billy_core::tenant::Mode;

    fn event() -> AuditEvent {
        let ctx = Context::new(
            Scope::new(Id::from_trusted("ten_a".into()), Mode::Test),
            Actor::System { function: "test".into() },
            None,
        );
        // An invoice-like snapshot of about 2.5 KB of JSON: repetitive, as entity snapshots are.
        let lines: Vec<serde_json::Value> = (0..12)
            .map(|i| serde_json::json!({"description": format!("Seat {i} (2026-01-01 – 2026-02-01)"), "quantity": 1, "unit_amount": 1999, "amount": 1999}))
            .collect();
        let after = serde_json::json!({"id": "inv_1", "status": "pending", "currency": "usd", "items": lines});
        let mut e = ctx.record(
            &RandomIds::new(billy_core::clock::SystemClock),
            chrono::Utc::now(),
            Change {
                entity: &Id::from_trusted("inv_1".into()),
                entity_type: "invoice",
                account: None,
                action: "invoice.created",
                version: 1,
                reason: Some("because"),
                before: None,
                after: Some(&after),
                change: None,
            },
        );
        e.change = Some(serde_json::json!({"type": "created", "invoice": after}));
        e
    }

    fn stored_bytes(item: &Item) -> usize {
        item.iter()
            .map(|(k, v)| {
                k.len()
                    + match v {
                        AttributeValue::B(b) => b.as_ref().len(),
                        other => serde_json::to_string(&format!("{other:?}")).unwrap().len(),
                    }
            })
            .sum()
    }

    #[test]
    fn audit_events_read_back_whole_and_travel_packed() {
        let e = event();
        let item = audit_item(&e).unwrap();
        let clear: Vec<&str> = item.keys().map(String::as_str).filter(|k| *k != AUDIT_EVENTS).collect();
        for k in clear {
            assert!([PK, SK, GSI1PK, GSI1SK, "action", "entity_type"].contains(&k), "{k} in the clear");
        }
        assert!(matches!(item.get(AUDIT_EVENTS), Some(AttributeValue::B(_))));
        assert!(!item.contains_key(GSI1PK), "an event of no customer account has no account-index entry");
        let mut owned = e.clone();
        owned.account = Some(Id::from_trusted("cus_1".into()));
        let indexed = audit_item(&owned).unwrap();
        assert_eq!(indexed.get(GSI1PK), Some(&s(format!("{}#cus_1", e.scope.key()))));
        let plain = serde_json::to_vec(&e).unwrap();
        assert!(stored_bytes(&item) < 1024 && plain.len() > 2048, "a 2 KB+ event fits one write unit");
        assert_eq!(audit_events_from_item(item).unwrap(), vec![e]);
    }

    /// The next version of the same invoice, as its finalization would record it.
    fn next(e: &AuditEvent, action: &str) -> AuditEvent {
        let mut n = e.clone();
        n.id = Id::from_trusted(format!("{}x", e.id));
        n.action = action.to_owned();
        n.version = e.version + 1;
        n.before = e.after.clone();
        n.change = Some(serde_json::json!({"type": "finalized"}));
        n
    }

    #[test]
    fn consecutive_versions_of_one_entity_are_one_item_that_reads_back_as_each_event() {
        let created = event();
        let finalized = next(&created, "invoice.finalized");
        let paid = next(&finalized, "invoice.paid");
        let mut other = event();
        other.entity = Id::from_trusted("inv_2".into());
        let note = next(&created, "invoice.reminder_sent").as_note();

        let items = audit_items(&[created.clone(), finalized.clone(), other.clone(), note.clone()]).unwrap();
        assert_eq!(items.len(), 3, "created and finalized share one item; another entity and a note do not");
        assert_eq!(items[0].get(SK), Some(&s("v000000000002")), "keyed by the run's last version");
        assert_eq!(audit_actions(&items[0]), ["invoice.created", "invoice.finalized"]);
        assert!(stored_bytes(&items[0]) < 1024, "both events still fit one write unit");
        let read: Vec<AuditEvent> = items.into_iter().flat_map(|item| audit_events_from_item(item).unwrap()).collect();
        assert_eq!(read, [created.clone(), finalized.clone(), other, note]);

        // A run too large for one item is stored one event per item, and reads the same.
        let alone = audit_items_within(&[created.clone(), finalized.clone()], 100).unwrap();
        assert_eq!(alone.len(), 2);
        let read: Vec<AuditEvent> = alone.into_iter().flat_map(|item| audit_events_from_item(item).unwrap()).collect();
        assert_eq!(read, [created.clone(), finalized.clone()]);

        // A version skipped, or a version of the same entity in another change, is its own item.
        assert_eq!(audit_items(&[created.clone(), paid]).unwrap().len(), 2);
        assert_eq!(audit_items(std::slice::from_ref(&finalized)).unwrap().len(), 1);
        assert_eq!(audit_actions(&audit_item(&finalized).unwrap()), ["invoice.finalized"]);
    }

    #[test]
    fn audit_events_stored_in_the_earlier_formats_still_read() {
        use std::io::Write as _;
        let e = event();
        // Every field in the clear
        let plain = to_item(&e, &[(PK, "p".into()), (SK, "v1".into())]).unwrap();
        assert_eq!(audit_events_from_item(plain).unwrap(), vec![e.clone()]);
        // Only the snapshots deflated
        let mut item = to_item(&e, &[(PK, "p".into()), (SK, "v1".into())]).unwrap();
        for field in ["before", "after", "change"] {
            item.remove(field);
        }
        let snapshots = serde_json::json!({"before": e.before, "after": e.after, "change": e.change});
        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        deflate.write_all(&serde_json::to_vec(&snapshots).unwrap()).unwrap();
        item.insert(
            AUDIT_SNAPSHOTS.to_owned(),
            AttributeValue::B(aws_smithy_types::Blob::new(deflate.finish().unwrap())),
        );
        assert_eq!(audit_events_from_item(item).unwrap(), vec![e]);
    }
}
