//! Usage in DynamoDB. Each event is an item keyed by its caller's id within the scope (so an id is
//! counted once, whatever its period), indexed under its period total (GSI3, time-ordered) so the
//! events behind a total can be listed. Each total is one item whose quantity DynamoDB adds to
//! exactly (a decimal number) in the same transaction as the event's put; a total closed by its
//! invoice refuses further events by condition. Many events of one total share one update.

use crate::dynamo::{ENTITY_SK, GSI3PK, GSI3SK, Item, PK, SK, from_item, s, sdk_error, to_item};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use billy_core::ids::Id;
use billy_core::ports::{UsageKey, UsageRepository};
use billy_core::schedule::Period;
use billy_core::tenant::Scope;
use billy_core::usage::{Recorded, UsageEvent, UsageTotal, closed};
use billy_core::{DomainError, DomainResult};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

/// Tries of a transaction that keeps meeting concurrent ones on the same totals.
const CONFLICT_TRIES: u32 = 25;

#[derive(Debug, Clone)]
pub struct DynamoUsage {
    store: crate::store::Store,
}

impl DynamoUsage {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: crate::Tables) -> Self {
        Self { store: crate::store::Store::new(client, tables) }
    }
}

pub fn event_pk(scope: &Scope, id: &str) -> String {
    format!("{}#usage#{id}", scope.key())
}

pub fn total_pk(scope: &Scope, subscription: &Id, metric: &str, period: u64) -> String {
    format!("{}#usage_total#{subscription}#{metric}#{period}", scope.key())
}

fn event_sk(event: &UsageEvent) -> String {
    format!("{}#{}", event.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), event.id)
}

fn event_item(scope: &Scope, event: &UsageEvent) -> DomainResult<Item> {
    let mut item = to_item(
        event,
        &[
            (PK, event_pk(scope, &event.id)),
            (SK, ENTITY_SK.to_owned()),
            (GSI3PK, total_pk(scope, &event.subscription, &event.metric, event.period.index)),
            (GSI3SK, event_sk(event)),
        ],
    )?;
    item.insert("entity_type".into(), s("usage_event"));
    item.insert("fingerprint".into(), s(event.fingerprint()));
    Ok(item)
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn total_from_item(item: &Item) -> DomainResult<UsageTotal> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(DomainError::unexpected(format!("usage total without {name}"))),
    };
    let num = |name: &str| match item.get(name) {
        Some(AttributeValue::N(v)) => Decimal::from_str(v).map_err(DomainError::unexpected),
        None => Ok(Decimal::ZERO),
        _ => Err(DomainError::unexpected(format!("usage total's {name} is not a number"))),
    };
    let time = |name: &str| {
        DateTime::parse_from_rfc3339(&text(name)?).map(|t| t.with_timezone(&Utc)).map_err(DomainError::unexpected)
    };
    let index = u64::try_from(num("p_index")?.normalize().mantissa()).map_err(DomainError::unexpected)?;
    Ok(UsageTotal {
        subscription: Id::from_trusted(text("subscription")?),
        metric: text("metric")?,
        period: Period { index, start: time("p_start")?, end: time("p_end")? },
        quantity: num("quantity")?.normalize(),
        events: u64::try_from(num("events")?.normalize().mantissa()).map_err(DomainError::unexpected)?,
        closed: matches!(item.get("closed"), Some(AttributeValue::Bool(true))),
    })
}

/// The attributes that describe a total, set whenever it is written.
fn describe(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    sub: &Id,
    metric: &str,
    period: &Period,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    update
        .expression_attribute_values(":sub", s(sub.as_str()))
        .expression_attribute_values(":metric", s(metric))
        .expression_attribute_values(":pi", number(period.index))
        .expression_attribute_values(":ps", s(period.start.to_rfc3339()))
        .expression_attribute_values(":pe", s(period.end.to_rfc3339()))
        .expression_attribute_values(":type", s("usage_total"))
}

const DESCRIBE: &str =
    "subscription = :sub, metric = :metric, p_index = :pi, p_start = :ps, p_end = :pe, entity_type = :type";

/// The update that adds events to a total, refused once the total is closed.
pub fn add_to_total(
    table: &str,
    scope: &Scope,
    sub: &Id,
    metric: &str,
    period: &Period,
    quantity: Decimal,
    events: u64,
) -> DomainResult<Update> {
    describe(Update::builder(), sub, metric, period)
        .table_name(table)
        .key(PK, s(total_pk(scope, sub, metric, period.index)))
        .key(SK, s(ENTITY_SK))
        .update_expression(format!("ADD quantity :q, events :n SET {DESCRIBE}"))
        .condition_expression("attribute_not_exists(closed)")
        .expression_attribute_values(":q", number(quantity))
        .expression_attribute_values(":n", number(events))
        .build()
        .map_err(DomainError::unexpected)
}

/// The update that closes a total as priced (`priced`: what it held when read; `None`: nothing).
pub fn close_total(
    table: &str,
    scope: &Scope,
    sub: &Id,
    metric: &str,
    period: &Period,
    priced: Option<(Decimal, u64)>,
) -> DomainResult<Update> {
    let builder = describe(Update::builder(), sub, metric, period)
        .table_name(table)
        .key(PK, s(total_pk(scope, sub, metric, period.index)))
        .key(SK, s(ENTITY_SK))
        .update_expression(format!("SET closed = :yes, {DESCRIBE}"))
        .expression_attribute_values(":yes", AttributeValue::Bool(true));
    let builder = match priced {
        // Counted events are compared by their number: a total only ever grows by events.
        Some((_, events)) => {
            builder.condition_expression("events = :seen").expression_attribute_values(":seen", number(events))
        }
        None => builder.condition_expression("attribute_not_exists(PK) OR attribute_not_exists(events)"),
    };
    builder.build().map_err(DomainError::unexpected)
}

/// What one transaction try did to its events.
enum Try {
    Done,
    /// Cancelled: per transaction item, its reason code.
    Cancelled(Vec<Option<String>>),
}

impl DynamoUsage {
    async fn send(&self, items: Vec<TransactWriteItem>) -> DomainResult<Try> {
        match self.store.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(Try::Done),
            Err(SdkError::ServiceError(service)) => match service.err() {
                TransactWriteItemsError::TransactionCanceledException(cancel) => Ok(Try::Cancelled(
                    cancel.cancellation_reasons().iter().map(|r| r.code().map(str::to_owned)).collect(),
                )),
                // DynamoDB Local answers a conflicting transaction this way too.
                TransactWriteItemsError::TransactionInProgressException(_) => Ok(Try::Cancelled(Vec::new())),
                _ => Err(sdk_error(SdkError::ServiceError(service))),
            },
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Records `events` (distinct ids) in transactions of at most 100 items; returns, per event,
    /// whether it was counted, its id was taken, or its total was closed.
    async fn record_distinct(&self, scope: &Scope, events: &[UsageEvent]) -> DomainResult<Vec<Outcome>> {
        let mut outcomes: Vec<Option<Outcome>> = events.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..events.len()).collect();
        let mut tries = 0;
        while !pending.is_empty() {
            let mut retry = Vec::new();
            for chunk in chunks(events, &pending) {
                let mut items = Vec::new();
                for &i in &chunk.events {
                    let put = Put::builder()
                        .table_name(&self.store.tables.main)
                        .set_item(Some(event_item(scope, &events[i])?))
                        .condition_expression("attribute_not_exists(PK)")
                        .build()
                        .map_err(DomainError::unexpected)?;
                    items.push(TransactWriteItem::builder().put(put).build());
                }
                for total in &chunk.totals {
                    let first = &events[total.members[0]];
                    let quantity: Decimal = total.members.iter().map(|&i| events[i].quantity).sum();
                    let update = add_to_total(
                        &self.store.tables.main,
                        scope,
                        &first.subscription,
                        &first.metric,
                        &first.period,
                        quantity,
                        total.members.len() as u64,
                    )?;
                    items.push(TransactWriteItem::builder().update(update).build());
                }
                match self.send(items).await? {
                    Try::Done => chunk.events.iter().for_each(|&i| outcomes[i] = Some(Outcome::Counted)),
                    Try::Cancelled(reasons) if reasons.len() == chunk.events.len() + chunk.totals.len() => {
                        let mut decided = false;
                        for (k, &i) in chunk.events.iter().enumerate() {
                            if reasons[k].as_deref() == Some("ConditionalCheckFailed") {
                                outcomes[i] = Some(Outcome::Taken);
                                decided = true;
                            }
                        }
                        for (k, total) in chunk.totals.iter().enumerate() {
                            if reasons[chunk.events.len() + k].as_deref() == Some("ConditionalCheckFailed") {
                                for &i in &total.members {
                                    outcomes[i].get_or_insert(Outcome::Closed);
                                }
                                decided = true;
                            }
                        }
                        retry.extend(chunk.events.iter().copied().filter(|&i| outcomes[i].is_none()));
                        if !decided {
                            tries += 1;
                        }
                    }
                    Try::Cancelled(_) => {
                        retry.extend(chunk.events.iter().copied());
                        tries += 1;
                    }
                }
            }
            if !retry.is_empty() && tries >= CONFLICT_TRIES {
                return Err(DomainError::conflict("transaction_conflict", "usage totals are busy; retry"));
            }
            if !retry.is_empty() && tries > 0 {
                // Concurrent reporters of the same totals: back off a little, differently each time.
                let jitter = u64::from(rand_below(20));
                tokio::time::sleep(std::time::Duration::from_millis(5 * u64::from(tries.min(10)) + jitter)).await;
            }
            pending = retry;
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Counted)).collect())
    }

    async fn stored_events(&self, scope: &Scope, ids: &[&str]) -> DomainResult<HashMap<String, (UsageEvent, String)>> {
        let store = &self.store;
        let keys: Vec<(String, String)> = ids.iter().map(|id| (event_pk(scope, id), ENTITY_SK.to_owned())).collect();
        let found = store.get_items(&keys).await?;
        let mut out = HashMap::new();
        for (_, item) in found {
            let fingerprint = match item.get("fingerprint") {
                Some(AttributeValue::S(f)) => f.clone(),
                _ => String::new(),
            };
            let event: UsageEvent = from_item(item)?;
            out.insert(event.id.clone(), (event, fingerprint));
        }
        Ok(out)
    }
}

fn rand_below(n: u32) -> u32 {
    use rand::Rng;
    rand::rng().random_range(0..n.max(1))
}

/// What happened to one distinct event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Counted,
    Taken,
    Closed,
}

/// The events of one transaction and the totals they add to.
struct Chunk {
    events: Vec<usize>,
    totals: Vec<TotalGroup>,
}

struct TotalGroup {
    members: Vec<usize>,
}

/// Packs events into transactions of at most 100 items: one put per event and one update per
/// total the transaction touches.
fn chunks(events: &[UsageEvent], pending: &[usize]) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    let mut current = Chunk { events: Vec::new(), totals: Vec::new() };
    let mut index: BTreeMap<(String, String, u64), usize> = BTreeMap::new();
    for &i in pending {
        let e = &events[i];
        let key = (e.subscription.to_string(), e.metric.clone(), e.period.index);
        let new_total = !index.contains_key(&key);
        let needed = current.events.len() + current.totals.len() + 1 + usize::from(new_total);
        if needed > crate::store::MAX_TRANSACTION_ITEMS {
            out.push(std::mem::replace(&mut current, Chunk { events: Vec::new(), totals: Vec::new() }));
            index.clear();
        }
        current.events.push(i);
        match index.get(&key) {
            Some(&t) => current.totals[t].members.push(i),
            None => {
                index.insert(key, current.totals.len());
                current.totals.push(TotalGroup { members: vec![i] });
            }
        }
    }
    if !current.events.is_empty() {
        out.push(current);
    }
    out
}

#[async_trait]
impl UsageRepository for DynamoUsage {
    async fn record(&self, scope: &Scope, events: Vec<UsageEvent>) -> DomainResult<Vec<DomainResult<Recorded>>> {
        // The same id twice in one request: the first is recorded, the others compared with it.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut distinct = Vec::new();
        for (i, e) in events.iter().enumerate() {
            if !first_of.contains_key(e.id.as_str()) {
                first_of.insert(e.id.as_str(), i);
                distinct.push(i);
            }
        }
        let unique: Vec<UsageEvent> = distinct.iter().map(|&i| events[i].clone()).collect();
        let outcomes = self.record_distinct(scope, &unique).await?;
        let taken: Vec<&str> =
            unique.iter().zip(&outcomes).filter(|(_, o)| **o == Outcome::Taken).map(|(e, _)| e.id.as_str()).collect();
        let stored = if taken.is_empty() { HashMap::new() } else { self.stored_events(scope, &taken).await? };
        let by_id: HashMap<&str, Outcome> =
            unique.iter().map(|e| e.id.as_str()).zip(outcomes.iter().copied()).collect();
        let reused = |e: &UsageEvent| {
            DomainError::invalid(
                "usage_id_reused",
                format!("usage event '{}' was reported before with other content", e.id),
                Some("id"),
            )
        };
        Ok(events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let first = first_of[e.id.as_str()];
                match by_id[e.id.as_str()] {
                    Outcome::Closed => Err(closed(&e.period)),
                    Outcome::Counted if first == i => Ok(Recorded::Counted(e.clone())),
                    Outcome::Counted => {
                        let original = &events[first];
                        if original.fingerprint() == e.fingerprint() {
                            Ok(Recorded::Duplicate(original.clone()))
                        } else {
                            Err(reused(e))
                        }
                    }
                    Outcome::Taken => match stored.get(e.id.as_str()) {
                        Some((original, fingerprint)) if *fingerprint == e.fingerprint() => {
                            Ok(Recorded::Duplicate(original.clone()))
                        }
                        Some(_) => Err(reused(e)),
                        None => Err(DomainError::conflict("transaction_conflict", "usage event being recorded; retry")),
                    },
                }
            })
            .collect())
    }

    async fn totals(&self, keys: &[UsageKey]) -> DomainResult<Vec<Option<UsageTotal>>> {
        let store = &self.store;
        let wanted: Vec<(String, String)> = keys
            .iter()
            .map(|k| (total_pk(&k.scope, &k.subscription, &k.metric, k.period), ENTITY_SK.to_owned()))
            .collect();
        let found = store.get_items(&wanted).await?;
        wanted.iter().map(|k| found.get(k).map(total_from_item).transpose()).collect()
    }

    async fn events(
        &self,
        key: &UsageKey,
        limit: usize,
        after: Option<String>,
    ) -> DomainResult<(Vec<UsageEvent>, Option<String>)> {
        let pk = total_pk(&key.scope, &key.subscription, &key.metric, key.period);
        let mut query = self
            .store
            .client
            .query()
            .table_name(&self.store.tables.main)
            .index_name("GSI3")
            .key_condition_expression("GSI3PK = :pk")
            .expression_attribute_values(":pk", s(pk.clone()))
            .limit(i32::try_from(limit).unwrap_or(100));
        if let Some(cursor) = after {
            query = query
                .exclusive_start_key(GSI3PK, s(pk.clone()))
                .exclusive_start_key(GSI3SK, s(cursor.clone()))
                .exclusive_start_key(PK, s(event_pk(&key.scope, cursor.split_once('#').map_or("", |(_, id)| id))))
                .exclusive_start_key(SK, s(ENTITY_SK));
        }
        let out = query.send().await.map_err(sdk_error)?;
        let items = out.items.unwrap_or_default();
        let next = out.last_evaluated_key.and_then(|k| match k.get(GSI3SK) {
            Some(AttributeValue::S(v)) => Some(v.clone()),
            _ => None,
        });
        let items = self.store.behind("GSI3", &pk, items).await?;
        let events = items.into_iter().map(from_item).collect::<DomainResult<Vec<UsageEvent>>>()?;
        Ok((events, next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(id: &str, metric: &str) -> UsageEvent {
        let at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        UsageEvent {
            id: id.into(),
            subscription: Id::from_trusted("sub_1".into()),
            metric: metric.into(),
            quantity: Decimal::ONE,
            timestamp: at,
            dimensions: BTreeMap::new(),
            period: Period { index: 0, start: at, end: at + chrono::Duration::days(31) },
            received: at,
        }
    }

    #[test]
    fn events_pack_into_transactions_of_at_most_100_items_with_one_update_per_total() {
        let events: Vec<UsageEvent> =
            (0..250).map(|i| event(&format!("e{i}"), if i % 2 == 0 { "a" } else { "b" })).collect();
        let pending: Vec<usize> = (0..events.len()).collect();
        let packed = chunks(&events, &pending);
        assert!(packed.iter().all(|c| c.events.len() + c.totals.len() <= 100));
        assert!(packed.iter().all(|c| c.totals.len() == 2));
        assert_eq!(packed.iter().map(|c| c.events.len()).sum::<usize>(), 250);
        assert_eq!(packed[0].events.len(), 98);
    }
}
