//! Publishes domain events to EventBridge with `PutEvents` in batches of ten, under a stable schema:
//! source `billy`, detail-type = the event type (`invoice.paid`, ...), detail = the event as JSON.

use crate::dynamo::sdk_error;
use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use billy_core::ports::{DomainEvent, EventBus};
use billy_core::{DomainError, DomainResult};

pub const SOURCE: &str = "billy";
const BATCH: usize = 10;
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct EventBridgePublisher {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgePublisher {
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }
}

#[async_trait]
impl EventBus for EventBridgePublisher {
    async fn publish(&self, events: &[DomainEvent]) -> DomainResult<()> {
        for chunk in events.chunks(BATCH) {
            let mut pending: Vec<PutEventsRequestEntry> = chunk
                .iter()
                .map(|e| {
                    Ok(PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(SOURCE)
                        .detail_type(e.kind.as_str())
                        .time(aws_smithy_types::DateTime::from_millis(e.occurred_at.timestamp_millis()))
                        .detail(serde_json::to_string(e).map_err(DomainError::unexpected)?)
                        .build())
                })
                .collect::<DomainResult<_>>()?;
            for attempt in 1..=ATTEMPTS {
                let out =
                    self.client.put_events().set_entries(Some(pending.clone())).send().await.map_err(sdk_error)?;
                if out.failed_entry_count == 0 {
                    break;
                }
                // Results are positional: keep the entries whose result carries an error.
                pending = pending
                    .into_iter()
                    .zip(out.entries())
                    .filter(|(_, r)| r.error_code().is_some())
                    .map(|(e, _)| e)
                    .collect();
                if attempt == ATTEMPTS {
                    return Err(DomainError::unexpected(format!("{} events could not be published", pending.len())));
                }
            }
        }
        Ok(())
    }
}
