//! The sweeper: asks for the next attempt of every invoice whose dunning retry is due, looks up at
//! their gateways the transactions whose outcome was lost (on its schedule across all shards; on a
//! `test_clock.advanced` announcement, for that clock), and asks for every webhook delivery attempt
//! that is due (retries are hours apart, beyond what a queue's delay can hold).

use async_trait::async_trait;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use billy_aws::AwsClients;
use billy_aws::dynamo::DUE_SHARDS;
use billy_core::DomainResult;
use billy_core::billing::{sweep_retries, sweep_unknown};
use billy_core::events::EventType;
use billy_core::ports::{
    Clock, InvoiceRepository, QueuePublisher, TestClockRepository, TransactionRepository, WebhookRepository,
};
use billy_core::service::webhooks::due_attempts;
use billy_lambda::EventFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::function::{announcement, subject};

const PER_SHARD: usize = 1000;

#[derive(Debug)]
pub struct App {
    deps: Deps,
    delivery_queue: String,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, delivery_queue: config.require("DELIVERY_QUEUE_URL")?.to_owned() })
    }

    /// Asks for every webhook delivery attempt due (real time: endpoints are not on test clocks).
    async fn sweep_deliveries(&self) -> usize {
        let p = self.deps.ports();
        let now = self.deps.clock.now();
        let mut asked = 0;
        for shard in 0..DUE_SHARDS {
            let swept = async {
                let due = self.deps.webhooks.deliveries_due(shard, now, PER_SHARD).await?;
                let messages = due_attempts(&p, &due, now).await?;
                self.deps.queue.send(&self.delivery_queue, &messages).await?;
                Ok::<_, billy_core::DomainError>(messages.len())
            };
            match swept.await {
                Ok(n) => asked += n,
                Err(e) => tracing::warn!(shard, error = %e, "deliveries not swept; the next sweep retries them"),
            }
        }
        asked
    }

    async fn sweep(&self, event: &EventBridgeEvent) -> DomainResult<(usize, usize)> {
        let d = &self.deps;
        let p = d.ports();
        if let Some(announced) = announcement(event) {
            if announced.kind != EventType::TestClockAdvanced {
                return Ok((0, 0));
            }
            let Some(id) = subject(&announced) else { return Ok((0, 0)) };
            let Some(clock) = d.clocks.get(&announced.scope, &id).await? else { return Ok((0, 0)) };
            let retries = d.clocks.due_retries(&clock.id, clock.frozen_time).await?;
            let rechecks = d.clocks.due_rechecks(&clock.id, clock.frozen_time).await?;
            return Ok((
                sweep_retries(&p, &retries, clock.frozen_time).await?,
                sweep_unknown(&p, &rechecks, clock.frozen_time).await?,
            ));
        }
        let now = d.clock.now();
        let (mut asked, mut looked_up) = (0, 0);
        for shard in 0..DUE_SHARDS {
            let swept = async {
                let retries = d.invoices.retries_due(shard, now, PER_SHARD).await?;
                let rechecks = d.transactions.rechecks_due(shard, now, PER_SHARD).await?;
                Ok::<_, billy_core::DomainError>((
                    sweep_retries(&p, &retries, now).await?,
                    sweep_unknown(&p, &rechecks, now).await?,
                ))
            };
            match swept.await {
                Ok((a, l)) => {
                    asked += a;
                    looked_up += l;
                }
                Err(e) => tracing::warn!(shard, error = %e, "shard not swept; the next sweep retries it"),
            }
        }
        Ok((asked, looked_up))
    }
}

#[async_trait]
impl EventFunction for App {
    async fn handle(&self, event: EventBridgeEvent) -> Result<(), lambda_runtime::Error> {
        let clock_advanced = announcement(&event).is_some();
        let (retries, lookups) = self.sweep(&event).await?;
        let deliveries = if clock_advanced { 0 } else { self.sweep_deliveries().await };
        tracing::info!(retries, lookups, deliveries, "sweep done");
        Ok(())
    }
}
