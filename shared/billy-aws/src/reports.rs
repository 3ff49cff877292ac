//! The dashboard's counters, in a table of their own (a read model derived from the journal, kept
//! apart from the entities): one item per (scope, bucket) under
//! `<scope>#REPORT`, sorted by bucket key, its counters as numbers moved with `ADD`. A tally is
//! applied once. Counted from a stream shard, the transaction that moves a chunk's counters also
//! moves the shard's checkpoint (`STREAM#<stream>#<shard>`, kept three days) past the chunk, on
//! the condition that it is still where the chunk was counted from: one write per chunk. Without
//! a shard (or while the shard has no checkpoint yet), the transaction adds each invoice's version
//! to the set of versions counted for that invoice (`<scope>#COUNTED#<invoice>`, kept three days,
//! longer than a stream redelivers), failing if any of them is there already; one write guards
//! every event of an invoice in the chunk. A subscription's events move only its renewal, whose
//! state is kept under `<scope>#RENEWAL#<subscription>` and replaced only by a newer version of
//! the subscription, and only if it is still what was read: that condition is their guard.

use crate::dynamo::{Item, PK, SK, s, sdk_error, unexpected};
use crate::store::MAX_TRANSACTION_ITEMS;
use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use billy_core::ids::Id;
use billy_core::ports::{Applied, ReportRepository};
use billy_core::report::{Bucket, Checkpoint, Counter, Counters, Guard, RenewalState, Tally, merge};
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};
use std::collections::HashMap;
use std::time::Duration;

/// How long a guard outlives its event: the stream keeps records for 24 hours.
const MARKER_DAYS: i64 = 3;
/// Tries of a transaction that meets a concurrent one on the same counters.
const CONFLICT_TRIES: u32 = 6;

#[derive(Debug, Clone)]
pub struct DynamoReports {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

pub fn report_pk(scope: &str) -> String {
    format!("{scope}#REPORT")
}

fn renewal_pk(scope: &Scope, subscription: &Id) -> String {
    format!("{}#RENEWAL#{subscription}", scope.key())
}

fn marker_pk(scope: &Scope, event: &Id) -> String {
    format!("{}#TALLIED#{event}", scope.key())
}

/// How far one stream shard's tallies are counted: `STREAM#<stream ARN>#<shard id>`, its
/// `counted_to` position.
fn checkpoint_pk(shard: &str) -> String {
    format!("STREAM#{shard}")
}
const CHECKPOINT_SK: &str = "CHECKPOINT";
const COUNTED_TO: &str = "counted_to";

/// The versions of one entity counted so far: `<scope>#COUNTED#<entity>`, a number set.
fn counted_pk(scope: &Scope, entity: &Id) -> String {
    format!("{}#COUNTED#{entity}", scope.key())
}
const COUNTED_SK: &str = "COUNTED";
const COUNTED: &str = "counted";

/// The versions each entity's tallies count, per entity in the order first met.
fn versions_by_entity(tallies: &[Tally]) -> Vec<((Scope, Id), Vec<u64>)> {
    let mut out: Vec<((Scope, Id), Vec<u64>)> = Vec::new();
    for t in tallies {
        let Guard::Version { entity, version } = &t.guard else { continue };
        let key = (t.scope.clone(), entity.clone());
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, versions)) if !versions.contains(version) => versions.push(*version),
            Some(_) => {}
            None => out.push((key, vec![*version])),
        }
    }
    out
}

impl DynamoReports {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// One item of the table, read consistently (through `BatchGetItem`, the read the counting
    /// function is granted).
    async fn item(&self, pk: String, sk: &str) -> DomainResult<Option<Item>> {
        let key: Item = HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))]);
        let wanted = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
            .keys(key)
            .consistent_read(true)
            .build()
            .map_err(DomainError::unexpected)?;
        let out = self.client.batch_get_item().request_items(&self.table, wanted).send().await.map_err(sdk_error)?;
        if out.unprocessed_keys.as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(DomainError::conflict("transaction_conflict", "report counters are busy; retry"));
        }
        Ok(out.responses.and_then(|mut r| r.remove(&self.table)).and_then(|mut items| items.pop()))
    }

    /// The versions of an entity counted so far.
    async fn counted(&self, scope: &Scope, entity: &Id) -> DomainResult<Vec<u64>> {
        let item = self.item(counted_pk(scope, entity), COUNTED_SK).await?;
        let versions = item.as_ref().and_then(|i| i.get(COUNTED)).and_then(|v| v.as_ns().ok());
        Ok(versions.into_iter().flatten().filter_map(|v| v.parse().ok()).collect())
    }

    /// The guards of a chunk, first in its transaction: one update per invoice recording the
    /// versions counted (failing if any was counted before), then a marker per unversioned event.
    fn guards(&self, tallies: &[Tally], expires: i64) -> DomainResult<Vec<TransactWriteItem>> {
        let mut items = Vec::new();
        for ((scope, entity), versions) in versions_by_entity(tallies) {
            let mut update = Update::builder()
                .table_name(&self.table)
                .key(PK, s(counted_pk(&scope, &entity)))
                .key(SK, s(COUNTED_SK))
                .update_expression("ADD #c :vs SET expires_at = :exp")
                .expression_attribute_names("#c", COUNTED)
                .expression_attribute_values(":vs", AttributeValue::Ns(versions.iter().map(u64::to_string).collect()))
                .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()));
            let mut unseen = Vec::new();
            for (i, version) in versions.iter().enumerate() {
                unseen.push(format!("NOT contains(#c, :v{i})"));
                update = update.expression_attribute_values(format!(":v{i}"), AttributeValue::N(version.to_string()));
            }
            let update = update.condition_expression(unseen.join(" AND ")).build().map_err(DomainError::unexpected)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        for t in tallies.iter().filter(|t| t.guard == Guard::Event) {
            let marker: Item = HashMap::from([
                (PK.to_owned(), s(marker_pk(&t.scope, &t.event))),
                (SK.to_owned(), s("TALLIED")),
                ("expires_at".to_owned(), AttributeValue::N(expires.to_string())),
            ]);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(marker))
                .condition_expression("attribute_not_exists(PK)")
                .build()
                .map_err(DomainError::unexpected)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(items)
    }

    /// The shard's checkpoint moved to the chunk's end, on the condition that it is still where
    /// the chunk was counted from.
    fn checkpoint(&self, at: &Checkpoint, expires: i64) -> DomainResult<TransactWriteItem> {
        let update = Update::builder()
            .table_name(&self.table)
            .key(PK, s(checkpoint_pk(&at.shard)))
            .key(SK, s(CHECKPOINT_SK))
            .update_expression("SET #to = :to, expires_at = :exp")
            .expression_attribute_names("#to", COUNTED_TO)
            .expression_attribute_values(":to", s(&at.to))
            .expression_attribute_values(":exp", AttributeValue::N(expires.to_string()));
        let update = match &at.counted_to {
            Some(from) => update.condition_expression("#to = :from").expression_attribute_values(":from", s(from)),
            None => update.condition_expression("attribute_not_exists(PK)"),
        };
        Ok(TransactWriteItem::builder().update(update.build().map_err(DomainError::unexpected)?).build())
    }

    fn items(&self, tallies: &[Tally], checkpoint: Option<&Checkpoint>) -> DomainResult<Vec<TransactWriteItem>> {
        let expires = (chrono::Utc::now() + chrono::Duration::days(MARKER_DAYS)).timestamp();
        let mut items = Vec::new();
        if let Some(at) = checkpoint {
            items.push(self.checkpoint(at, expires)?);
        }
        if checkpoint.is_none_or(|at| at.guarded) {
            items.extend(self.guards(tallies, expires)?);
        }
        for t in tallies {
            let Some(state) = &t.renewal else { continue };
            let mut item: Item = HashMap::from([
                (PK.to_owned(), s(renewal_pk(&t.scope, &state.subscription))),
                (SK.to_owned(), s("RENEWAL")),
                ("version".to_owned(), AttributeValue::N(state.version.to_string())),
            ]);
            if let Some((bucket, amount)) = &state.due {
                item.insert("bucket".into(), s(bucket.key()));
                item.insert("amount".into(), AttributeValue::N(amount.to_string()));
            }
            let put = Put::builder().table_name(&self.table).set_item(Some(item));
            let put = match t.replaces {
                Some(version) => put
                    .condition_expression("#v = :v")
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":v", AttributeValue::N(version.to_string())),
                None => put.condition_expression("attribute_not_exists(PK)"),
            };
            items.push(TransactWriteItem::builder().put(put.build().map_err(DomainError::unexpected)?).build());
        }
        for ((scope, bucket), counters) in merge(tallies) {
            let mut update =
                Update::builder().table_name(&self.table).key(PK, s(report_pk(&scope))).key(SK, s(bucket.key()));
            let mut adds = Vec::new();
            for (i, (counter, by)) in counters.iter().enumerate() {
                adds.push(format!("#c{i} :v{i}"));
                update = update
                    .expression_attribute_names(format!("#c{i}"), counter.as_str())
                    .expression_attribute_values(format!(":v{i}"), AttributeValue::N(by.to_string()));
            }
            let update = update
                .update_expression(format!("ADD {}", adds.join(", ")))
                .build()
                .map_err(DomainError::unexpected)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(DomainError::unexpected("a report chunk exceeds one transaction"));
        }
        Ok(items)
    }
}

#[async_trait]
impl ReportRepository for DynamoReports {
    async fn apply(&self, tallies: &[Tally], checkpoint: Option<&Checkpoint>) -> DomainResult<Applied> {
        if tallies.is_empty() {
            return Ok(Applied::All);
        }
        let items = self.items(tallies, checkpoint)?;
        if items.is_empty() {
            // (Only renewals that moved nothing: a redelivered subscription event.)
            return Ok(Applied::All);
        }
        let mut tries = 0;
        loop {
            tries += 1;
            let sent = self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await;
            let Err(err) = sent else { return Ok(Applied::All) };
            let cancel = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => cancel,
                _ => return Err(sdk_error(err)),
            };
            let reasons = cancel.cancellation_reasons();
            let failed = |r: &aws_sdk_dynamodb::types::CancellationReason| r.code() == Some("ConditionalCheckFailed");
            // The checkpoint comes first, then the guards (one per invoice, then the events'
            // markers), then the renewal states.
            if checkpoint.is_some() && reasons.first().is_some_and(failed) {
                return Ok(Applied::NoneCheckpointMoved);
            }
            let rest = &reasons[usize::from(checkpoint.is_some()).min(reasons.len())..];
            let guarded = checkpoint.is_none_or(|at| at.guarded);
            let entities = if guarded { versions_by_entity(tallies) } else { Vec::new() };
            let markers: Vec<&Tally> = tallies.iter().filter(|t| guarded && t.guard == Guard::Event).collect();
            let mut seen: Vec<Id> = markers
                .iter()
                .zip(rest.iter().skip(entities.len()))
                .filter(|(_, r)| failed(r))
                .map(|(t, _)| t.event.clone())
                .collect();
            for ((scope, entity), _) in entities.iter().zip(rest).filter(|(_, r)| failed(r)).map(|(e, _)| e) {
                let counted = self.counted(scope, entity).await?;
                seen.extend(tallies.iter().filter_map(|t| match &t.guard {
                    Guard::Version { entity: e, version }
                        if e == entity && t.scope == *scope && counted.contains(version) =>
                    {
                        Some(t.event.clone())
                    }
                    _ => None,
                }));
            }
            if !seen.is_empty() {
                return Ok(Applied::NoneAlreadyApplied(seen));
            }
            if rest.iter().any(failed) {
                return Ok(Applied::NoneRenewalMoved);
            }
            if tries >= CONFLICT_TRIES {
                return Err(DomainError::conflict("transaction_conflict", "report counters are busy; retry"));
            }
            if !reasons.iter().any(|r| r.code() == Some("TransactionConflict")) {
                return Err(unexpected(cancel.clone()));
            }
            let jitter = u64::from(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos()
                    % 20,
            );
            tokio::time::sleep(Duration::from_millis(20 * u64::from(tries) + jitter)).await;
        }
    }

    async fn counted_to(&self, shard: &str) -> DomainResult<Option<String>> {
        let item = self.item(checkpoint_pk(shard), CHECKPOINT_SK).await?;
        Ok(item.and_then(|mut i| i.remove(COUNTED_TO)).and_then(|v| v.as_s().ok().cloned()))
    }

    async fn renewals(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<(Scope, RenewalState)>> {
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let mut wanted = aws_sdk_dynamodb::types::KeysAndAttributes::builder().consistent_read(true);
            let mut by_pk = HashMap::new();
            for (scope, subscription) in chunk {
                let pk = renewal_pk(scope, subscription);
                wanted = wanted.keys(HashMap::from([(PK.to_owned(), s(pk.clone())), (SK.to_owned(), s("RENEWAL"))]));
                by_pk.insert(pk, (scope.clone(), subscription.clone()));
            }
            let mut request = HashMap::from([(self.table.clone(), wanted.build().map_err(DomainError::unexpected)?)]);
            for _ in 0..10 {
                let got = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(request.clone()))
                    .send()
                    .await
                    .map_err(sdk_error)?;
                for item in got.responses().and_then(|r| r.get(&self.table)).into_iter().flatten() {
                    let Some((scope, subscription)) =
                        item.get(PK).and_then(|v| v.as_s().ok()).and_then(|pk| by_pk.get(pk))
                    else {
                        continue;
                    };
                    let number =
                        |name: &str| item.get(name).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
                    let due = item
                        .get("bucket")
                        .and_then(|v| v.as_s().ok())
                        .and_then(|k| Bucket::parse(k))
                        .map(|bucket| (bucket, number("amount").unwrap_or(0)));
                    let version = u64::try_from(number("version").unwrap_or(0)).unwrap_or(0);
                    out.push((scope.clone(), RenewalState { subscription: subscription.clone(), version, due }));
                }
                match got.unprocessed_keys() {
                    Some(left) if !left.is_empty() => request = left.clone(),
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn buckets(&self, scope: &Scope, kind: &str, from: &str, to: &str) -> DomainResult<Vec<(Bucket, Counters)>> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(report_pk(&scope.key())))
                .expression_attribute_values(":from", s(format!("{kind}#{from}")))
                .expression_attribute_values(":to", s(format!("{kind}#{to}~")))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in page.items() {
                let Some(bucket) = item.get(SK).and_then(|v| v.as_s().ok()).and_then(|k| Bucket::parse(k)) else {
                    continue;
                };
                let counters: Counters = item
                    .iter()
                    .filter_map(|(name, value)| Some((Counter::parse(name)?, value.as_n().ok()?.parse::<i64>().ok()?)))
                    .collect();
                out.push((bucket, counters));
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }
}
