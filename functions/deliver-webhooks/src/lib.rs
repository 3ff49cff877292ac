//! The delivery queue's consumer. Announced events arrive from the outbox relay (publish-events
//! queues those some endpoint of their tenant wants); each becomes one delivery per endpoint that
//! wants it, and one message per delivery, so a slow or failing endpoint never holds up another's.
//! A delivery message runs one attempt: leased, signed, sent within a short timeout, recorded, and
//! its next attempt scheduled (sweep-webhooks asks for it when due) or, past the last one, the
//! delivery is dead-lettered.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use billy_aws::AwsClients;
use billy_aws::webhooks::HttpWebhookSender;
use billy_core::ports::{QueuePublisher, WebhookRepository};
use billy_core::service::webhooks::{self as service, DELIVER_WEBHOOK, DeliveryStep};
use billy_core::tenant::Scope;
use billy_core::webhook::{RetrySchedule, WebhookEndpoint};
use billy_core::{DomainError, DomainResult};
use billy_lambda::SqsFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::sqs::{ConsumedQueue, Decoding, Queues, for_batch};
use futures::StreamExt;
use std::collections::HashMap;

/// Attempts of one batch in flight at once (each bounded by the sender's timeout).
const CONCURRENCY: usize = 10;

#[derive(Debug)]
pub struct App {
    deps: Deps,
    sender: HttpWebhookSender,
    schedule: RetrySchedule,
    queue: ConsumedQueue,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        // A deployment may shorten the schedule (tests do); a malformed one falls back to the
        // default rather than never retrying.
        let schedule = config
            .get("WEBHOOK_RETRY_GAPS")
            .filter(|g| !g.is_empty())
            .and_then(|g| {
                RetrySchedule::parse(g).map_err(|e| tracing::error!(error = %e, "WEBHOOK_RETRY_GAPS ignored")).ok()
            })
            .unwrap_or_default();
        Ok(Self {
            deps: Deps::new(config, aws)?,
            sender: HttpWebhookSender::from_setting(config.get("WEBHOOK_LOCAL_ENDPOINTS")),
            schedule,
            queue: ConsumedQueue::from_config(config)?,
        })
    }

    /// Runs a batch's steps, several at once; each scope's endpoints are read once a batch (one
    /// query), not once per event.
    async fn run_batch(&self, steps: Vec<DeliveryStep>) -> Vec<Result<(), DomainError>> {
        let mut endpoints: HashMap<Scope, DomainResult<Vec<WebhookEndpoint>>> = HashMap::new();
        for step in &steps {
            if let DeliveryStep::Event(event) = step
                && !endpoints.contains_key(&event.scope)
            {
                endpoints.insert(event.scope.clone(), self.deps.webhooks.endpoints(&event.scope).await);
            }
        }
        let endpoints = &endpoints;
        let runs = steps.into_iter().map(|s| async move { self.step(&s, endpoints).await });
        futures::stream::iter(runs).buffered(CONCURRENCY).collect().await
    }

    async fn step(
        &self,
        step: &DeliveryStep,
        endpoints: &HashMap<Scope, DomainResult<Vec<WebhookEndpoint>>>,
    ) -> Result<(), DomainError> {
        let p = self.deps.ports();
        match step {
            DeliveryStep::Event(event) => {
                let wanted = match endpoints.get(&event.scope) {
                    Some(Ok(found)) => found.as_slice(),
                    Some(Err(e)) => return Err(e.clone()),
                    None => return Err(DomainError::unexpected("the scope's endpoints were not read")),
                };
                let messages = service::fan_out(&p, wanted, event).await?;
                if !messages.is_empty() {
                    self.deps.queue.send(&self.queue.url, &messages).await?;
                }
            }
            DeliveryStep::Attempt { scope, delivery, attempt } => {
                if let service::Attempted::Sent(d) =
                    service::attempt(&p, &self.sender, &self.schedule, scope, delivery, *attempt).await?
                {
                    tracing::info!(delivery = %d.id, attempt, status = d.status.as_str(),
                        code = ?d.attempts.last().and_then(|a| a.status_code), "webhook attempt recorded");
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SqsFunction for App {
    async fn handle(&self, event: SqsEvent) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let queues = Queues { publisher: &self.deps.queue, queue: &self.queue };
        let outcome = for_batch(
            event,
            Decoding::new(DELIVER_WEBHOOK, &[1]),
            Some(queues),
            |steps: Vec<DeliveryStep>| async move { self.run_batch(steps).await },
        )
        .await;
        Ok(outcome.response)
    }
}
