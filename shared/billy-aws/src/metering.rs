//! Counts what Billy asks of AWS, for the benchmarks: requests per service and operation, and the
//! DynamoDB capacity units they would consume on AWS, split by table and index. Reads are what the
//! service reports (every request asks for `ReturnConsumedCapacity: INDEXES`). Writes are worked
//! out from the items sent, because DynamoDB Local reports one item per table for a transaction:
//! 2 units per started KB of each transactional item (1 for a plain write), and a standard write
//! per KB of each global secondary index entry written, as DynamoDB bills an index: an entry is
//! written when the item enters the index, deleted (1 unit) when it leaves, both when its keys
//! change, and rewritten when the item is rewritten with the same keys, unless the index projects
//! keys only (then nothing changes in it). The meter remembers the index keys each item last had
//! to tell these apart; projections are told by `project` (read from the tables' descriptions),
//! else GSI2 projects keys only and every other index the whole item. An update is counted as a
//! 1 KB item, since only its changes travel; Billy's updates never change index keys. A write
//! whose condition fails is counted (DynamoDB bills it too) and its keys are remembered as if it
//! had succeeded: Billy's failed writes are few, and most carry the keys already stored. Units are
//! kept in thousandths.

use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity, TransactWriteItem};
use aws_sdk_eventbridge::operation::put_events::PutEventsInput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextMut, BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// What was counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meter {
    /// (service, operation) → requests.
    pub requests: BTreeMap<(String, String), u64>,
    pub dynamodb_write_milli_units: u64,
    pub dynamodb_read_milli_units: u64,
    /// ("read" | "write", table or `table/index`) → capacity units in thousandths.
    pub dynamodb_units_by_target: BTreeMap<(String, String), u64>,
    pub eventbridge_entries: u64,
}

impl Meter {
    pub fn service_requests(&self, service: &str) -> u64 {
        self.requests.iter().filter(|((s, _), _)| s.eq_ignore_ascii_case(service)).map(|(_, n)| n).sum()
    }
}

/// What a global secondary index holds of an item, as far as its write units go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    All,
    KeysOnly,
}

/// An SDK interceptor that adds every request to a shared `Meter`.
#[derive(Debug, Clone, Default)]
pub struct RequestMeter {
    meter: Arc<Mutex<Meter>>,
    indexes: Arc<Mutex<Indexes>>,
}

/// An item's keys in each index it is in: index → (partition key, sort key).
type IndexKeys = BTreeMap<String, (String, String)>;

/// What the meter knows of the indexes: how each projects, and the index keys each item last had.
#[derive(Debug, Default)]
struct Indexes {
    projections: HashMap<(String, String), Projection>,
    /// (table, PK, SK) → the item's index keys.
    keys: HashMap<(String, String, String), IndexKeys>,
}

/// The indexes an item's attributes name (`GSI<n>PK`, `GSI<n>SK`).
const INDEXES: [&str; 4] = ["GSI1", "GSI2", "GSI3", "GSI4"];

impl RequestMeter {
    pub fn snapshot(&self) -> Meter {
        self.meter.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts counting afresh (what is known of the items' index keys is kept).
    pub fn reset(&self) {
        *self.meter.lock().unwrap_or_else(|p| p.into_inner()) = Meter::default();
    }

    /// Says how `index` of `table` projects.
    pub fn project(&self, table: &str, index: &str, projection: Projection) {
        let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        indexes.projections.insert((table.to_owned(), index.to_owned()), projection);
    }

    fn with(&self, f: impl FnOnce(&mut Meter)) {
        f(&mut self.meter.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Write units of one item written `factor` times per KB (2 in a transaction), and of each
    /// index entry it writes: (index or "" for the table, thousandths of a unit).
    fn item_units(
        &self,
        table: &str,
        item: &HashMap<String, AttributeValue>,
        factor: u64,
    ) -> (String, Vec<(String, u64)>) {
        let size = item_size(item);
        let mut parts = vec![(String::new(), factor * kb(size) * 1000)];
        let mut indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        let new_keys: IndexKeys =
            INDEXES.iter().filter_map(|index| Some(((*index).to_owned(), index_keys(item, index)?))).collect();
        let old_keys = match primary_key(table, item) {
            Some(key) => indexes.keys.insert(key, new_keys.clone()).unwrap_or_default(),
            None => BTreeMap::new(),
        };
        for index in INDEXES {
            let projection = indexes.projection(table, index);
            let projected = match projection {
                Projection::KeysOnly => {
                    let (pk, sk) = (format!("{index}PK"), format!("{index}SK"));
                    [crate::dynamo::PK, crate::dynamo::SK, pk.as_str(), sk.as_str()]
                        .iter()
                        .filter_map(|k| item.get(*k).map(|v| u64::try_from(k.len()).unwrap_or(0) + value_size(v)))
                        .sum()
                }
                Projection::All => size,
            };
            let units = match (old_keys.get(index), new_keys.get(index)) {
                (None, None) => 0,
                (None, Some(_)) => kb(projected),
                (Some(_), None) => 1,
                (Some(old), Some(new)) if old == new => match projection {
                    Projection::All => kb(projected),
                    Projection::KeysOnly => 0,
                },
                (Some(_), Some(_)) => 1 + kb(projected),
            };
            if units > 0 {
                parts.push((index.to_owned(), units * 1000));
            }
        }
        (table.to_owned(), parts)
    }

    /// Write units of an update counted as a 1 KB item written `factor` times, and of the entries
    /// it rewrites in the indexes that project the whole item.
    fn update_units(
        &self,
        table: &str,
        key: &HashMap<String, AttributeValue>,
        factor: u64,
    ) -> (String, Vec<(String, u64)>) {
        let mut parts = vec![(String::new(), factor * 1000)];
        let indexes = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = primary_key(table, key).and_then(|k| indexes.keys.get(&k)) {
            for index in keys.keys() {
                if indexes.projection(table, index) == Projection::All {
                    parts.push((index.clone(), 1000));
                }
            }
        }
        (table.to_owned(), parts)
    }

    fn transact_item_units(&self, item: &TransactWriteItem) -> Option<(String, Vec<(String, u64)>)> {
        if let Some(put) = item.put() {
            return Some(self.item_units(put.table_name(), put.item(), 2));
        }
        if let Some(update) = item.update() {
            return Some(self.update_units(update.table_name(), update.key(), 2));
        }
        None
    }
}

impl Indexes {
    fn projection(&self, table: &str, index: &str) -> Projection {
        match self.projections.get(&(table.to_owned(), index.to_owned())) {
            Some(p) => *p,
            None if index == "GSI2" => Projection::KeysOnly,
            None => Projection::All,
        }
    }
}

fn kb(bytes: u64) -> u64 {
    bytes.div_ceil(1024).max(1)
}

fn string_of(item: &HashMap<String, AttributeValue>, attribute: &str) -> Option<String> {
    item.get(attribute).and_then(|v| v.as_s().ok()).cloned()
}

/// An item's table and primary key, when it has the usual `PK` and `SK`.
fn primary_key(table: &str, item: &HashMap<String, AttributeValue>) -> Option<(String, String, String)> {
    Some((table.to_owned(), string_of(item, crate::dynamo::PK)?, string_of(item, crate::dynamo::SK)?))
}

/// The item's keys in `index`, if it is in it.
fn index_keys(item: &HashMap<String, AttributeValue>, index: &str) -> Option<(String, String)> {
    Some((string_of(item, &format!("{index}PK"))?, string_of(item, &format!("{index}SK")).unwrap_or_default()))
}

/// Thousandths of a capacity unit (the service reports fractions such as 0.5 RRU).
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::float_arithmetic)]
fn milli(units: f64) -> u64 {
    (units * 1000.0).round().max(0.0) as u64
}

/// Adds the read capacity one response reports, per table and index.
fn add_reads(m: &mut Meter, consumed: &[ConsumedCapacity]) {
    for c in consumed {
        let table = c.table_name().unwrap_or("?").to_owned();
        m.dynamodb_read_milli_units += milli(c.capacity_units().unwrap_or(0.0));
        let mut parts: Vec<(String, u64)> = Vec::new();
        if let Some(t) = c.table() {
            parts.push((table.clone(), milli(t.capacity_units().unwrap_or(0.0))));
        }
        for (index, cap) in c.global_secondary_indexes().into_iter().flatten() {
            parts.push((format!("{table}/{index}"), milli(cap.capacity_units().unwrap_or(0.0))));
        }
        if parts.is_empty() {
            parts.push((table, milli(c.capacity_units().unwrap_or(0.0))));
        }
        for (target, units) in parts {
            *m.dynamodb_units_by_target.entry(("read".to_owned(), target)).or_default() += units;
        }
    }
}

/// DynamoDB's size of a value: UTF-8 bytes of strings, about one byte per two digits of numbers,
/// 3 bytes of overhead plus one per element for lists and maps.
fn value_size(v: &AttributeValue) -> u64 {
    let len = |s: &str| u64::try_from(s.len()).unwrap_or(u64::MAX);
    match v {
        AttributeValue::S(s) => len(s),
        AttributeValue::N(n) => len(n).div_ceil(2) + 1,
        AttributeValue::B(b) => u64::try_from(b.as_ref().len()).unwrap_or(u64::MAX),
        AttributeValue::Ss(v) => v.iter().map(|s| len(s)).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| len(n).div_ceil(2) + 1).sum(),
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<u64>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + len(k) + value_size(e)).sum::<u64>(),
        _ => 1,
    }
}

fn item_size(item: &HashMap<String, AttributeValue>) -> u64 {
    item.iter().map(|(k, v)| u64::try_from(k.len()).unwrap_or(u64::MAX) + value_size(v)).sum()
}

impl Intercept for RequestMeter {
    fn name(&self) -> &'static str {
        "RequestMeter"
    }

    /// Asks DynamoDB to report the capacity each read consumed, indexes included.
    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        let indexes = Some(ReturnConsumedCapacity::Indexes);
        if let Some(i) = input.downcast_mut::<GetItemInput>() {
            i.return_consumed_capacity = indexes;
        } else if let Some(i) = input.downcast_mut::<BatchGetItemInput>() {
            i.return_consumed_capacity = indexes;
        } else if let Some(i) = input.downcast_mut::<QueryInput>() {
            i.return_consumed_capacity = indexes;
        }
        Ok(())
    }

    /// Counted before serialization: the operation's metadata is in the config bag by then.
    fn read_before_serialization(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else { return Ok(()) };
        let (service, operation) = (meta.service().to_owned(), meta.name().to_owned());
        let input = context.input();
        let writes: Vec<(String, Vec<(String, u64)>)> = match operation.as_str() {
            "TransactWriteItems" => input
                .downcast_ref::<TransactWriteItemsInput>()
                .map(|i| i.transact_items().iter().filter_map(|t| self.transact_item_units(t)).collect())
                .unwrap_or_default(),
            "PutItem" => input
                .downcast_ref::<PutItemInput>()
                .map(|i| vec![self.item_units(i.table_name().unwrap_or("?"), i.item().unwrap_or(&HashMap::new()), 1)])
                .unwrap_or_default(),
            "UpdateItem" => input
                .downcast_ref::<UpdateItemInput>()
                .map(|i| vec![self.update_units(i.table_name().unwrap_or("?"), i.key().unwrap_or(&HashMap::new()), 1)])
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        self.with(|m| {
            for (table, parts) in writes {
                for (index, units) in parts {
                    m.dynamodb_write_milli_units += units;
                    let target = if index.is_empty() { table.clone() } else { format!("{table}/{index}") };
                    *m.dynamodb_units_by_target.entry(("write".to_owned(), target)).or_default() += units;
                }
            }
            if operation == "PutEvents" {
                m.eventbridge_entries +=
                    input.downcast_ref::<PutEventsInput>().map_or(0, |i| u64::try_from(i.entries().len()).unwrap_or(0));
            }
            *m.requests.entry((service, operation)).or_default() += 1;
        });
        Ok(())
    }

    /// The capacity the service reported for the request, if it was a DynamoDB one.
    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Ok(output)) = context.output_or_error() else { return Ok(()) };
        let one = |c: Option<&ConsumedCapacity>| c.cloned().into_iter().collect::<Vec<_>>();
        let consumed: Vec<ConsumedCapacity> = if let Some(o) = output.downcast_ref::<GetItemOutput>() {
            one(o.consumed_capacity())
        } else if let Some(o) = output.downcast_ref::<BatchGetItemOutput>() {
            o.consumed_capacity().to_vec()
        } else if let Some(o) = output.downcast_ref::<QueryOutput>() {
            one(o.consumed_capacity())
        } else {
            return Ok(());
        };
        self.with(|m| add_reads(m, &consumed));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn item(pairs: &[(&str, &str)]) -> HashMap<String, AttributeValue> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), AttributeValue::S((*v).to_owned()))).collect()
    }

    fn indexed(parts: &(String, Vec<(String, u64)>)) -> Vec<(&str, u64)> {
        parts.1.iter().filter(|(i, _)| !i.is_empty()).map(|(i, u)| (i.as_str(), *u)).collect()
    }

    #[test]
    fn index_entries_are_counted_as_dynamodb_writes_them() {
        let meter = RequestMeter::default();
        meter.project("t", "GSI1", Projection::KeysOnly);
        let v1 =
            item(&[("PK", "a"), ("SK", "#"), ("GSI1PK", "l"), ("GSI1SK", "a"), ("GSI4PK", "pending"), ("GSI4SK", "a")]);
        // A new item enters each of its indexes once.
        assert_eq!(indexed(&meter.item_units("t", &v1, 2)), [("GSI1", 1000), ("GSI4", 1000)]);
        // Rewritten with the same keys: the whole-item index is rewritten, the keys-only one is not.
        let v2 = item(&[
            ("PK", "a"),
            ("SK", "#"),
            ("GSI1PK", "l"),
            ("GSI1SK", "a"),
            ("GSI4PK", "pending"),
            ("GSI4SK", "a"),
            ("x", "y"),
        ]);
        assert_eq!(indexed(&meter.item_units("t", &v2, 2)), [("GSI4", 1000)]);
        // An update rewrites only the whole-item index entries.
        assert_eq!(indexed(&meter.update_units("t", &item(&[("PK", "a"), ("SK", "#")]), 2)), [("GSI4", 1000)]);
        // A changed key deletes the old entry and writes the new one; leaving an index deletes it.
        let v3 =
            item(&[("PK", "a"), ("SK", "#"), ("GSI1PK", "l"), ("GSI1SK", "a"), ("GSI4PK", "paid"), ("GSI4SK", "a")]);
        assert_eq!(indexed(&meter.item_units("t", &v3, 2)), [("GSI4", 2000)]);
        let v4 = item(&[("PK", "a"), ("SK", "#"), ("GSI1PK", "l"), ("GSI1SK", "a")]);
        assert_eq!(indexed(&meter.item_units("t", &v4, 2)), [("GSI4", 1000)]);
        // The table's own units: 2 per KB in a transaction.
        assert_eq!(meter.item_units("t", &v4, 2).1[0], (String::new(), 2000));
    }
}
