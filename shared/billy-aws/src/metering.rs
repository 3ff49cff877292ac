//! Counts what Billy asks of AWS, for the benchmarks: requests per service and operation, and the
//! DynamoDB capacity units they would consume on AWS, split by table and index. Reads are what the
//! service reports (every request asks for `ReturnConsumedCapacity: INDEXES`). Writes are worked
//! out from the items sent, because DynamoDB Local reports one item per table for a transaction:
//! 2 units per started KB of each transactional item (1 for a plain write), plus one standard write
//! per KB of what each global secondary index the item enters projects (every index projects the
//! whole item except GSI2, which projects keys only; see template.yaml). An update is counted as a
//! 1 KB item, since only its changes travel. Units are kept in thousandths.

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

/// An SDK interceptor that adds every request to a shared `Meter`.
#[derive(Debug, Clone, Default)]
pub struct RequestMeter {
    meter: Arc<Mutex<Meter>>,
}

impl RequestMeter {
    pub fn snapshot(&self) -> Meter {
        self.meter.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        *self.meter.lock().unwrap_or_else(|p| p.into_inner()) = Meter::default();
    }

    fn with(&self, f: impl FnOnce(&mut Meter)) {
        f(&mut self.meter.lock().unwrap_or_else(|p| p.into_inner()));
    }
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

/// Write units of one item written `factor` times per KB (2 in a transaction), and of each index
/// it enters: (index or "" for the table, thousandths of a unit).
fn item_units(table: &str, item: &HashMap<String, AttributeValue>, factor: u64) -> (String, Vec<(String, u64)>) {
    let kb = |bytes: u64| bytes.div_ceil(1024).max(1);
    let size = item_size(item);
    let mut parts = vec![(String::new(), factor * kb(size) * 1000)];
    for index in ["GSI1", "GSI2", "GSI3", "GSI4"] {
        let (pk, sk) = (format!("{index}PK"), format!("{index}SK"));
        if !item.contains_key(&pk) {
            continue;
        }
        let projected = if index == "GSI2" {
            [crate::dynamo::PK, crate::dynamo::SK, pk.as_str(), sk.as_str()]
                .iter()
                .filter_map(|k| item.get(*k).map(|v| u64::try_from(k.len()).unwrap_or(0) + value_size(v)))
                .sum()
        } else {
            size
        };
        parts.push((index.to_owned(), kb(projected) * 1000));
    }
    (table.to_owned(), parts)
}

fn transact_item_units(item: &TransactWriteItem) -> Option<(String, Vec<(String, u64)>)> {
    if let Some(put) = item.put() {
        return Some(item_units(put.table_name(), put.item(), 2));
    }
    if let Some(update) = item.update() {
        return Some((update.table_name().to_owned(), vec![(String::new(), 2000)]));
    }
    None
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
                .map(|i| i.transact_items().iter().filter_map(transact_item_units).collect())
                .unwrap_or_default(),
            "PutItem" => input
                .downcast_ref::<PutItemInput>()
                .map(|i| vec![item_units(i.table_name().unwrap_or("?"), i.item().unwrap_or(&HashMap::new()), 1)])
                .unwrap_or_default(),
            "UpdateItem" => input
                .downcast_ref::<UpdateItemInput>()
                .map(|i| vec![(i.table_name().unwrap_or("?").to_owned(), vec![(String::new(), 1000)])])
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
