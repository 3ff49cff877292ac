//! The transactional outbox's relay: a DynamoDB stream consumer on the audit table that turns every
//! new audit event whose action is a published event type into an EventBridge event, under the
//! audit event's own id, and hands the steps some of them ask for (a finalized invoice's charge or
//! payout, a failed one's retry, an export's run, the webhook deliveries of a tenant whose
//! endpoints want it) straight to their queues, in SQS batches. A change that
//! committed is announced, and followed, at least once, even if the function that made it died
//! right after its commit; an announcement is never made under two ids.

use async_trait::async_trait;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use aws_sdk_dynamodb::types::AttributeValue;
use billy_aws::AwsClients;
use billy_aws::dynamo::{audit_actions, audit_events_from_item};
use billy_core::audit::AuditEvent;
use billy_core::billing::ChargeRequest;
use billy_core::events::EventType;
use billy_core::ledger::RunExport;
use billy_core::plan::Direction;
use billy_core::ports::{DomainEvent, EventBus, QueueMessage, QueuePublisher, WebhookRepository};
use billy_core::service::webhooks::DeliveryStep;
use billy_core::tenant::Scope;
use billy_core::webhook::WebhookEndpoint;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::resume_at;
use billy_lambda::views;
use billy_lambda::{StreamBatch, StreamFunction};
use futures::StreamExt;
use std::collections::HashMap;

/// EventBridge takes ten entries a call.
const PUT_EVENTS_BATCH: usize = 10;
/// `PutEvents` calls in flight at once.
const PUBLISHING_CONCURRENCY: usize = 8;

/// The domain event an audit event announces, if its action is published at all.
pub fn announcement(audit: &AuditEvent) -> Option<DomainEvent> {
    let kind = EventType::from_action(&audit.action)?;
    let object = audit.after.as_ref().map(|after| views::snapshot(&audit.entity_type, after));
    let mut data = serde_json::json!({"object": object, "reason": audit.reason, "actor": audit.actor});
    if kind == EventType::SubscriptionCreated {
        // Whether its first period was due when it was made: the billing tick's rule asks for
        // these only, so a subscription that starts later costs no invocation.
        data["first_bill_due"] = serde_json::json!(first_bill_due(audit));
    }
    Some(DomainEvent { id: audit.id.clone(), kind, scope: audit.scope.clone(), occurred_at: audit.at, data })
}

/// The announcements of the events one audit item holds, oldest first. Most of the journal is
/// never announced: an item none of whose actions is gets skipped before it is inflated.
pub fn announced(item: HashMap<String, AttributeValue>) -> billy_core::DomainResult<Vec<DomainEvent>> {
    if audit_actions(&item).into_iter().all(|action| EventType::from_action(action).is_none()) {
        return Ok(Vec::new());
    }
    Ok(audit_events_from_item(item)?.iter().filter_map(announcement).collect())
}

fn first_bill_due(audit: &AuditEvent) -> bool {
    let sub =
        audit.after.clone().and_then(|a| serde_json::from_value::<billy_core::subscription::Subscription>(a).ok());
    sub.and_then(|s| s.next_bill_at().ok().flatten()).is_some_and(|at| at <= audit.at)
}

/// The queue messages an announcement asks for (each step is idempotent, so a repeat is harmless).
pub fn commands(event: &DomainEvent) -> Vec<(Route, QueueMessage)> {
    let direction = ChargeRequest::direction_announced(event);
    let route = match direction {
        Direction::Debit => Route::Charge,
        Direction::Payout => Route::Payout,
    };
    let charge =
        ChargeRequest::from_announcement(event).and_then(|r| r.message_for(direction).ok()).map(|m| (route, m));
    let export = RunExport::from_announcement(event).and_then(|r| r.message().ok()).map(|m| (Route::Export, m));
    charge.into_iter().chain(export).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Charge,
    Payout,
    Export,
    Delivery,
}

/// The events of a batch some endpoint of their tenant wants, as messages for the delivery queue.
/// Each scope's endpoints are read once a batch; a tenant with none (most events) costs that one
/// query and nothing more, instead of a message and an invocation per event. If a scope's
/// endpoints cannot be read, its events are all queued (deliver-webhooks reads them again): a
/// failing look-up never holds up the announcements and charges of the batch.
pub async fn deliveries(
    webhooks: &dyn WebhookRepository,
    events: &[&DomainEvent],
) -> Result<Vec<QueueMessage>, billy_core::DomainError> {
    let mut endpoints: HashMap<&Scope, Option<Vec<WebhookEndpoint>>> = HashMap::new();
    let mut messages = Vec::new();
    for event in events {
        if !endpoints.contains_key(&event.scope) {
            let found = webhooks.endpoints(&event.scope).await;
            if let Err(e) = &found {
                tracing::warn!(error = %e, "webhook endpoints not read; the scope's events go to the delivery queue");
            }
            endpoints.insert(&event.scope, found.ok());
        }
        let wanted = match &endpoints[&event.scope] {
            Some(found) => found.iter().any(|e| e.wants(event.kind.as_str())),
            None => true,
        };
        if wanted {
            messages.push(DeliveryStep::Event((*event).clone()).message()?);
        }
    }
    Ok(messages)
}

#[derive(Debug)]
pub struct App {
    deps: Deps,
    charge_queue: String,
    payout_queue: String,
    export_queue: String,
    delivery_queue: String,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self {
            deps: Deps::new(config, aws)?,
            charge_queue: config.require("CHARGE_QUEUE_URL")?.to_owned(),
            payout_queue: config.require("PAYOUT_QUEUE_URL")?.to_owned(),
            export_queue: config.require("EXPORT_QUEUE_URL")?.to_owned(),
            delivery_queue: config.require("DELIVERY_QUEUE_URL")?.to_owned(),
        })
    }
}

#[async_trait]
impl StreamFunction for App {
    /// Publishes in stream order; on a failure, reports the first record not yet published, so the
    /// stream resumes there (what was published before it may be published again: at least once,
    /// same ids).
    async fn handle(&self, batch: StreamBatch) -> Result<DynamoDbEventResponse, lambda_runtime::Error> {
        let mut pending: Vec<(Option<String>, DomainEvent)> = Vec::new();
        for record in batch.event.records {
            if record.event_name != "INSERT" {
                continue;
            }
            let sequence = record.change.sequence_number.clone();
            let item: HashMap<String, AttributeValue> = record.change.new_image.into();
            let mut attributes: Vec<String> = item.keys().cloned().collect();
            attributes.sort();
            if !item.get("action").is_some_and(AttributeValue::is_s) {
                // Nothing but audit events belongs on this table; a stray item must not hold up
                // every announcement after it.
                tracing::warn!(sequence = ?sequence, ?attributes, "not an audit event; skipped");
                continue;
            }
            match announced(item) {
                Ok(events) => pending.extend(events.into_iter().map(|e| (sequence.clone(), e))),
                Err(e) => {
                    // (Attribute names only: an audit event's values are never logged.)
                    tracing::error!(error = %e, sequence = ?sequence, ?attributes, "unreadable audit event; the stream retries it");
                    return Ok(resume_at(sequence));
                }
            }
        }
        // The steps first: a failure here retries the whole batch, and every step is idempotent.
        let mut routed: HashMap<Route, Vec<QueueMessage>> = HashMap::new();
        for (_, event) in &pending {
            for (route, message) in commands(event) {
                routed.entry(route).or_default().push(message);
            }
        }
        let announced: Vec<&DomainEvent> = pending.iter().map(|(_, e)| e).collect();
        match deliveries(&self.deps.webhooks, &announced).await {
            Ok(messages) if !messages.is_empty() => {
                routed.insert(Route::Delivery, messages);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "deliveries not encoded; the stream retries the batch");
                return Ok(resume_at(pending.first().and_then(|(s, _)| s.clone())));
            }
        }
        for (route, messages) in routed {
            let queue = match route {
                Route::Charge => &self.charge_queue,
                Route::Payout => &self.payout_queue,
                Route::Export => &self.export_queue,
                Route::Delivery => &self.delivery_queue,
            };
            if let Err(e) = self.deps.queue.send(queue, &messages).await {
                tracing::warn!(error = %e, "steps not relayed; the stream retries the batch");
                return Ok(resume_at(pending.first().and_then(|(s, _)| s.clone())));
            }
        }
        // Several `PutEvents` at once (announcements carry no order between them); on a failure the
        // stream resumes at the first chunk that did not go out.
        let chunks: Vec<(usize, Vec<DomainEvent>)> = pending
            .chunks(PUT_EVENTS_BATCH)
            .map(|chunk| chunk.iter().map(|(_, e)| e.clone()).collect())
            .enumerate()
            .collect();
        let bus = &self.deps.bus;
        let outcomes: Vec<(usize, Result<(), billy_core::DomainError>)> = futures::stream::iter(chunks)
            .map(|(i, events)| async move { (i, bus.publish(&events).await) })
            .buffer_unordered(PUBLISHING_CONCURRENCY)
            .collect()
            .await;
        if let Some((first, e)) = outcomes.iter().filter(|(_, r)| r.is_err()).min_by_key(|(i, _)| *i) {
            tracing::warn!(error = ?e, "announcements not published; the stream retries from the first of them");
            return Ok(resume_at(pending[first * PUT_EVENTS_BATCH].0.clone()));
        }
        Ok(DynamoDbEventResponse::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use billy_core::ids::{Id, IdKind};
    use billy_core::page::{Page, PageRequest};
    use billy_core::tenant::Mode;
    use billy_core::webhook::WebhookDelivery;
    use chrono::{DateTime, Utc};

    /// Endpoints by scope; a scope missing from the map fails its look-up.
    #[derive(Debug)]
    struct Endpoints(HashMap<Scope, Vec<WebhookEndpoint>>);

    #[async_trait]
    impl WebhookRepository for Endpoints {
        async fn endpoint(&self, _: &Scope, _: &Id) -> billy_core::DomainResult<Option<WebhookEndpoint>> {
            Ok(None)
        }
        async fn endpoints(&self, scope: &Scope) -> billy_core::DomainResult<Vec<WebhookEndpoint>> {
            self.0.get(scope).cloned().ok_or_else(|| billy_core::DomainError::unexpected("throttled"))
        }
        async fn delivery(&self, _: &Scope, _: &Id) -> billy_core::DomainResult<Option<WebhookDelivery>> {
            Ok(None)
        }
        async fn deliveries(
            &self,
            _: &Scope,
            _: &Id,
            _: &PageRequest,
        ) -> billy_core::DomainResult<Page<WebhookDelivery>> {
            Ok(Page { data: Vec::new(), has_more: false, next_cursor: None })
        }
        async fn create_delivery(&self, _: &Scope, _: &WebhookDelivery) -> billy_core::DomainResult<bool> {
            Ok(true)
        }
        async fn save_delivery(&self, _: &Scope, _: &WebhookDelivery, _: u64) -> billy_core::DomainResult<()> {
            Ok(())
        }
        async fn deliveries_due(
            &self,
            _: u32,
            _: DateTime<Utc>,
            _: usize,
        ) -> billy_core::DomainResult<Vec<(Scope, Id)>> {
            Ok(Vec::new())
        }
    }

    fn scope(seed: &str) -> Scope {
        Scope::new(Id::derived(IdKind::Tenant, Utc::now(), seed), Mode::Test)
    }

    fn event(scope: &Scope, kind: EventType) -> DomainEvent {
        let id = Id::derived(IdKind::Event, Utc::now(), &format!("{scope}{kind}"));
        DomainEvent { id, kind, scope: scope.clone(), occurred_at: Utc::now(), data: serde_json::json!({}) }
    }

    fn endpoint(events: &[&str]) -> WebhookEndpoint {
        let now = Utc::now();
        WebhookEndpoint {
            id: Id::derived(IdKind::WebhookEndpoint, now, "e"),
            url: "https://hooks.example.com/h".into(),
            enabled_events: events.iter().map(|e| (*e).to_owned()).collect(),
            description: None,
            secrets: Vec::new(),
            deleted: false,
            created: now,
            updated: now,
            livemode: false,
            version: 1,
        }
    }

    /// One journal item of an invoice's consecutive versions, with these actions.
    fn journal_item(actions: &[&'static str]) -> HashMap<String, AttributeValue> {
        let ctx = billy_core::audit::Context::new(
            scope("j"),
            billy_core::audit::Actor::System { function: "generate-invoice".into() },
            None,
        );
        let ids = billy_core::ids::RandomIds::new(billy_core::clock::SystemClock);
        let invoice = Id::derived(IdKind::Invoice, Utc::now(), "j");
        let events: Vec<AuditEvent> = (1..)
            .zip(actions)
            .map(|(version, action)| {
                ctx.record(
                    &ids,
                    Utc::now(),
                    billy_core::audit::Change::<serde_json::Value> {
                        entity: &invoice,
                        entity_type: "invoice",
                        account: None,
                        action,
                        version,
                        reason: None,
                        before: None,
                        after: None,
                        change: None,
                    },
                )
            })
            .collect();
        let mut items = billy_aws::dynamo::audit_items(&events).unwrap();
        assert_eq!(items.len(), 1);
        items.remove(0)
    }

    #[test]
    fn an_item_is_announced_for_each_announced_event_it_holds_even_when_its_last_is_not() {
        // An invoice created and put into its month's settlement in one step: only the creation
        // is announced, though the item is keyed (and its action named) by the settlement.
        let kinds = |item| announced(item).unwrap().into_iter().map(|e| e.kind).collect::<Vec<_>>();
        assert_eq!(kinds(journal_item(&["invoice.created", "invoice.in_settlement"])), [EventType::InvoiceCreated]);
        assert_eq!(
            kinds(journal_item(&["invoice.created", "invoice.finalized"])),
            [EventType::InvoiceCreated, EventType::InvoiceFinalized]
        );
        assert!(kinds(journal_item(&["invoice.in_settlement"])).is_empty());
    }

    #[tokio::test]
    async fn only_events_an_endpoint_wants_are_queued_and_a_failed_look_up_queues_its_scopes_events() {
        // GIVEN a tenant wanting invoice.paid, one with no endpoint, and one whose look-up fails
        let (wants, none, failing) = (scope("a"), scope("b"), scope("c"));
        let repo =
            Endpoints(HashMap::from([(wants.clone(), vec![endpoint(&["invoice.paid"])]), (none.clone(), Vec::new())]));
        let events = [
            event(&wants, EventType::InvoicePaid),
            event(&wants, EventType::InvoiceCreated),
            event(&none, EventType::InvoicePaid),
            event(&failing, EventType::InvoiceCreated),
        ];
        // WHEN the batch's deliveries are worked out
        let refs: Vec<&DomainEvent> = events.iter().collect();
        let queued = deliveries(&repo, &refs).await.unwrap();
        // THEN the wanted event and the unreadable scope's event are queued, nothing else
        let ids: Vec<serde_json::Value> = queued.iter().map(|m| m.body["event"]["id"].clone()).collect();
        assert_eq!(ids, vec![serde_json::json!(events[0].id), serde_json::json!(events[3].id)]);
    }
}
