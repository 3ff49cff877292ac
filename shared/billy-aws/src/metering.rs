//! Counts what Billy asks of AWS, for the benchmarks: requests per service and operation, and the
//! DynamoDB capacity units they consume under the on-demand pricing model (items up to 1 KB:
//! 1 WRU per write, 2 per transactional write; 1 RRU per strongly consistent read of 4 KB,
//! half for eventually consistent). Units are kept in thousandths, so no float counts them.

use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput;
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_eventbridge::operation::put_events::PutEventsInput;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What was counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meter {
    /// (service, operation) → requests.
    pub requests: BTreeMap<(String, String), u64>,
    pub dynamodb_write_milli_units: u64,
    pub dynamodb_read_milli_units: u64,
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

fn read_units(consistent: bool) -> u64 {
    if consistent { 1000 } else { 500 }
}

impl Intercept for RequestMeter {
    fn name(&self) -> &'static str {
        "RequestMeter"
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
        self.with(|m| {
            *m.requests.entry((service, operation.clone())).or_default() += 1;
            match operation.as_str() {
                "TransactWriteItems" => {
                    let items = input.downcast_ref::<TransactWriteItemsInput>().map_or(0, |i| i.transact_items().len());
                    m.dynamodb_write_milli_units += 2000 * u64::try_from(items).unwrap_or(0);
                }
                "PutItem" | "UpdateItem" | "DeleteItem" => m.dynamodb_write_milli_units += 1000,
                "GetItem" => {
                    let consistent =
                        input.downcast_ref::<GetItemInput>().and_then(|i| i.consistent_read()).unwrap_or(false);
                    m.dynamodb_read_milli_units += read_units(consistent);
                }
                "BatchGetItem" => {
                    if let Some(i) = input.downcast_ref::<BatchGetItemInput>() {
                        for keys in i.request_items().into_iter().flat_map(|r| r.values()) {
                            let n = u64::try_from(keys.keys().len()).unwrap_or(0);
                            m.dynamodb_read_milli_units += n * read_units(keys.consistent_read().unwrap_or(false));
                        }
                    }
                }
                "PutEvents" => {
                    m.eventbridge_entries += input
                        .downcast_ref::<PutEventsInput>()
                        .map_or(0, |i| u64::try_from(i.entries().len()).unwrap_or(0));
                }
                _ => {}
            }
        });
        Ok(())
    }

    /// Queries are charged by what they return: every 4 KB (four small items, at least one unit).
    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<Metadata>().is_none_or(|m| m.name() != "Query") {
            return Ok(());
        }
        let consistent = context
            .input()
            .and_then(|i| i.downcast_ref::<QueryInput>())
            .and_then(|i| i.consistent_read())
            .unwrap_or(false);
        let returned = context
            .output_or_error()
            .and_then(|r| r.ok())
            .and_then(|o| o.downcast_ref::<QueryOutput>())
            .map_or(0, |o| u64::try_from(o.count()).unwrap_or(0));
        self.with(|m| m.dynamodb_read_milli_units += returned.div_ceil(4).max(1) * read_units(consistent));
        Ok(())
    }
}
