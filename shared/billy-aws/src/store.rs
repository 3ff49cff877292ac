//! The one place where entities meet DynamoDB: create and replace with their audit events in one
//! transaction (optimistic versions), get, and paged queries over the indexes. Repositories only
//! say which keys an entity has.

use crate::Tables;
use crate::dynamo::{ENTITY_SK, Item, PK, SK, audit_puts, from_item, map_transact_error, s, sdk_error, to_item};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use billy_core::audit::AuditEvent;
use billy_core::ids::Id;
use billy_core::page::{Page, PageRequest};
use billy_core::tenant::Scope;
use billy_core::{DomainError, DomainResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

/// DynamoDB allows 100 items in one transaction.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

#[derive(Debug, Clone)]
pub struct Store {
    pub client: aws_sdk_dynamodb::Client,
    pub tables: Tables,
}

/// A secondary index query: which index and its partition value. The list indexes (GSI1, GSI3,
/// GSI4) project keys only, so an index is never rewritten when an entity changes without moving
/// in it; the entities are read from the table by those keys.
#[derive(Debug, Clone)]
pub struct IndexQuery {
    pub index: &'static str,
    pub partition: String,
    /// Newest first (ids are time-ordered).
    pub newest_first: bool,
    /// Only sort keys in `[from, to)`: a key condition, so nothing outside is read at all.
    pub sort_range: Option<(Option<String>, Option<String>)>,
}

impl IndexQuery {
    pub fn new(index: &'static str, partition: String) -> Self {
        Self { index, partition, newest_first: true, sort_range: None }
    }
}

/// The key condition of a query: the partition, and the sort key range when there is one.
fn key_condition(query: &IndexQuery, sk_attr: &str) -> (String, HashMap<String, AttributeValue>) {
    let mut values = HashMap::from([(":pk".to_owned(), s(query.partition.clone()))]);
    let condition = match &query.sort_range {
        Some((Some(from), Some(to))) => {
            values.insert(":skfrom".into(), s(from.clone()));
            values.insert(":skto".into(), s(to.clone()));
            format!("#pk = :pk AND {sk_attr} BETWEEN :skfrom AND :skto")
        }
        Some((Some(from), None)) => {
            values.insert(":skfrom".into(), s(from.clone()));
            format!("#pk = :pk AND {sk_attr} >= :skfrom")
        }
        Some((None, Some(to))) => {
            values.insert(":skto".into(), s(to.clone()));
            format!("#pk = :pk AND {sk_attr} <= :skto")
        }
        _ => "#pk = :pk".to_owned(),
    };
    (condition, values)
}

impl Store {
    pub fn new(client: aws_sdk_dynamodb::Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    /// A Put of a new item that fails if the key exists.
    pub fn put_new(&self, item: Item) -> DomainResult<Put> {
        Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .map_err(DomainError::unexpected)
    }

    /// A Put that replaces an entity only if its stored version is still `expected`.
    pub fn put_versioned(&self, item: Item, expected: u64) -> DomainResult<Put> {
        Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
            .build()
            .map_err(DomainError::unexpected)
    }

    /// Writes `puts` and appends `events`, all or nothing.
    pub async fn transact(&self, puts: Vec<Put>, events: &[AuditEvent], what: &str) -> DomainResult<()> {
        self.transact_with_updates(puts, Vec::new(), events, what).await
    }

    /// Writes `puts` and `updates` and appends `events`, all or nothing.
    pub async fn transact_with_updates(
        &self,
        puts: Vec<Put>,
        updates: Vec<aws_sdk_dynamodb::types::Update>,
        events: &[AuditEvent],
        what: &str,
    ) -> DomainResult<()> {
        let items = self.transaction_items(puts, updates, events)?;
        if items.len() > MAX_TRANSACTION_ITEMS {
            return Err(DomainError::unexpected(format!("{what}: {} items exceed one transaction", items.len())));
        }
        self.send_transaction(items).await.map_err(|e| map_transact_error(e, what))
    }

    /// The items of one transaction: `puts`, `updates`, then the audit appends of `events`.
    pub fn transaction_items(
        &self,
        puts: Vec<Put>,
        updates: Vec<aws_sdk_dynamodb::types::Update>,
        events: &[AuditEvent],
    ) -> DomainResult<Vec<TransactWriteItem>> {
        let mut items: Vec<TransactWriteItem> =
            puts.into_iter().map(|p| TransactWriteItem::builder().put(p).build()).collect();
        items.extend(updates.into_iter().map(|u| TransactWriteItem::builder().update(u).build()));
        for put in audit_puts(&self.tables.audit, events)? {
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(items)
    }

    pub async fn send_transaction(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<
        (),
        aws_sdk_dynamodb::error::SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError>,
    > {
        self.client.transact_write_items().set_transact_items(Some(items)).send().await.map(|_| ())
    }

    pub async fn get<T: DeserializeOwned>(&self, pk: String, sk: &str) -> DomainResult<Option<T>> {
        self.get_item(pk, sk).await?.map(from_item).transpose()
    }

    pub async fn get_item(&self, pk: String, sk: &str) -> DomainResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.main)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }

    /// Fetches entities by scope and id (in the order given), skipping missing ones: one
    /// `BatchGetItem` per 100 keys, whatever their tenants.
    pub async fn get_many<T: DeserializeOwned>(&self, keys: &[(Scope, Id)]) -> DomainResult<Vec<T>> {
        let keys: Vec<(String, String)> =
            keys.iter().map(|(scope, id)| (crate::dynamo::entity_pk(scope, id), ENTITY_SK.to_owned())).collect();
        let found = self.get_items(&keys).await?;
        keys.iter().filter_map(|k| found.get(k).cloned()).map(from_item).collect()
    }

    /// The entities behind one page of index keys, in the index's order, read from the table
    /// consistently (an entity the index lists is always found). One that has moved out of the
    /// partition since the index listed it (an invoice paid meanwhile, say) is left out.
    pub(crate) async fn behind(&self, index: &str, partition: &str, keys: Vec<Item>) -> DomainResult<Vec<Item>> {
        let key_of = |k: &Item| Some((k.get(PK)?.as_s().ok()?.clone(), k.get(SK)?.as_s().ok()?.clone()));
        let wanted: Vec<(String, String)> = keys.iter().filter_map(key_of).collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut found = self.get_items(&wanted).await?;
        let pk_attr = format!("{index}PK");
        let still_listed = |item: &Item| item.get(&pk_attr).and_then(|v| v.as_s().ok()).is_some_and(|p| p == partition);
        Ok(wanted.iter().filter_map(|k| found.remove(k)).filter(still_listed).collect())
    }

    /// Fetches items of the main table by (PK, SK), consistently, 100 keys per request, retrying
    /// what DynamoDB leaves unprocessed. Missing items are absent from the map.
    pub async fn get_items(&self, keys: &[(String, String)]) -> DomainResult<HashMap<(String, String), Item>> {
        let mut unique: Vec<&(String, String)> = keys.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found = HashMap::with_capacity(unique.len());
        for chunk in unique.chunks(100) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|(pk, sk)| HashMap::from([(PK.to_owned(), s(pk.clone())), (SK.to_owned(), s(sk.clone()))]))
                .collect();
            let mut request = Some(
                aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(DomainError::unexpected)?,
            );
            let mut round = 0u32;
            while let Some(keys) = request.take() {
                if round > 0 {
                    // Unprocessed keys mean the table is throttling: back off before asking again.
                    tokio::time::sleep(std::time::Duration::from_millis(25 << round.min(6))).await;
                }
                round += 1;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.tables.main, keys)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                for item in out.responses.unwrap_or_default().remove(&self.tables.main).unwrap_or_default() {
                    if let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) = (item.get(PK), item.get(SK)) {
                        found.insert((pk.clone(), sk.clone()), item);
                    }
                }
                request =
                    out.unprocessed_keys.and_then(|mut u| u.remove(&self.tables.main)).filter(|k| !k.keys.is_empty());
            }
        }
        Ok(found)
    }

    /// One page of an index, newest first, resuming after the entity `starting_after`.
    pub async fn page<T: DeserializeOwned + HasId>(
        &self,
        scope: &Scope,
        query: &IndexQuery,
        page: &PageRequest,
    ) -> DomainResult<Page<T>> {
        self.page_where(scope, query, page, |_: &T| true).await
    }

    /// One page of the entities of an index that `keep` keeps, newest first, resuming after the
    /// entity `starting_after`. `keep` may discard entities, so the query continues until the
    /// page is full or the index is exhausted.
    pub async fn page_where<T: DeserializeOwned + HasId>(
        &self,
        scope: &Scope,
        query: &IndexQuery,
        page: &PageRequest,
        keep: impl Fn(&T) -> bool,
    ) -> DomainResult<Page<T>> {
        let (pk_attr, sk_attr) = (format!("{}PK", query.index), format!("{}SK", query.index));
        let mut start = page.starting_after.as_ref().map(|after| {
            HashMap::from([
                (pk_attr.clone(), s(query.partition.clone())),
                (sk_attr.clone(), s(after.to_string())),
                (PK.to_owned(), s(crate::dynamo::entity_pk(scope, after))),
                (SK.to_owned(), s(ENTITY_SK)),
            ])
        });
        let mut data: Vec<T> = Vec::new();
        let (condition, key_values) = key_condition(query, &sk_attr);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.main)
                .index_name(query.index)
                .key_condition_expression(&condition)
                .expression_attribute_names("#pk", pk_attr.clone())
                .set_expression_attribute_values(Some(key_values.clone()))
                .scan_index_forward(!query.newest_first)
                .limit(i32::try_from(page.limit + 1).unwrap_or(101))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_error)?;
            for item in self.behind(query.index, &query.partition, out.items.unwrap_or_default()).await? {
                let entity: T = from_item(item)?;
                if keep(&entity) {
                    data.push(entity);
                }
            }
            start = out.last_evaluated_key;
            if data.len() > page.limit || start.is_none() {
                break;
            }
        }
        let has_more = data.len() > page.limit;
        data.truncate(page.limit);
        Ok(Page { next_cursor: if has_more { data.last().map(|e| e.id().to_string()) } else { None }, data, has_more })
    }
}

impl Store {
    /// Every entity of an index partition (small partitions only: a customer's children).
    pub async fn all<T: DeserializeOwned>(&self, query: &IndexQuery) -> DomainResult<Vec<T>> {
        let (pk_attr, mut start, mut out) = (format!("{}PK", query.index), None, Vec::new());
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.main)
                .index_name(query.index)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", pk_attr.clone())
                .expression_attribute_values(":pk", s(query.partition.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(sdk_error)?;
            for item in self.behind(query.index, &query.partition, page.items.unwrap_or_default()).await? {
                out.push(from_item(item)?);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }
}

/// Entities listed with cursors expose their id.
pub trait HasId {
    fn id(&self) -> &Id;
}

/// Serialises an entity with its keys; `None` keys are left out (sparse indexes).
pub fn keyed<T: Serialize>(value: &T, keys: &[(&str, Option<String>)]) -> DomainResult<Item> {
    let present: Vec<(&str, String)> = keys.iter().filter_map(|(k, v)| v.clone().map(|v| (*k, v))).collect();
    to_item(value, &present)
}
